//! demo-backend: the small HTTP/1.1 service behind the demo's `payment` and `orders` routes and
//! the Docker tests. Every request is answered with JSON naming the service (`SERVICE_NAME`),
//! the container's hostname, the method, the path and the request headers.
//!
//! It is for demos and tests, not production: one thread per connection, std only (plus libc
//! for signals), bodies read and discarded. What it does care about is stopping well:
//! on SIGTERM it keeps serving for `DEMO_DRAIN_MS` (default 1000) with `Connection: close` on
//! every answer, so the gateway has time to drop it from its table, then waits for the requests
//! in flight and exits 0.
//!
//! * `GET /health` answers 200, or 503 when `DEMO_UNHEALTHY` is set (to a value other than 0).
//! * Control, so that tests can make a running instance misbehave (each answers 200 with
//!   `{"control":"<what>"}`; `/control/*` is always answered, whatever the mode):
//!   - `POST /control/health/fail` / `POST /control/health/pass`: `/health` answers 503 / 200
//!     from now on;
//!   - `POST /control/hang`: from now on every other request is read (body included) and
//!     never answered; its connection is held open until the client closes it;
//!   - `POST /control/normal`: requests are answered again (connections already held stay
//!     held), and `/health` passes.
//! * `demo-backend --check` is the Docker healthcheck: exit 0 when `/health` answers 200.
//! * `PORT` (default 8080) is the port it listens on; `BIND` (default `0.0.0.0`, every
//!   interface, as a container needs) the address: `make run` without Docker uses 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest request head accepted (request line + headers).
const MAX_HEAD: usize = 16 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping process waits for requests in flight after the drain period.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(5);

struct Service {
    name: String,
    hostname: String,
    /// `/health` answers 503.
    unhealthy: AtomicBool,
    /// Requests other than `/control/*` are never answered.
    hang: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .unwrap_or_else(|_| fail(&format!("PORT={p:?} is not a port"))),
        Err(_) => 8080,
    };
    if std::env::args().nth(1).as_deref() == Some("--check") {
        std::process::exit(if health_check(port) { 0 } else { 1 });
    }
    block_stop_signals();
    let service = Arc::new(Service {
        name: std::env::var("SERVICE_NAME").unwrap_or_else(|_| "demo".into()),
        hostname: hostname(),
        unhealthy: AtomicBool::new(
            std::env::var("DEMO_UNHEALTHY").is_ok_and(|v| !v.is_empty() && v != "0"),
        ),
        hang: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    let drain = Duration::from_millis(
        std::env::var("DEMO_DRAIN_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let bind: std::net::IpAddr = match std::env::var("BIND") {
        Ok(b) => b
            .parse()
            .unwrap_or_else(|_| fail(&format!("BIND={b:?} is not an IP address"))),
        Err(_) => [0, 0, 0, 0].into(),
    };
    let listener = TcpListener::bind((bind, port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}:{port}: {e}")));
    // The port it got (PORT=0 picks a free one).
    let port = listener.local_addr().map_or(port, |a| a.port());
    eprintln!(
        "demo-backend {} ({}) listening on port {port}",
        service.name, service.hostname
    );
    {
        let service = service.clone();
        std::thread::spawn(move || stop_on_signal(&service, drain));
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let service = service.clone();
        std::thread::spawn(move || {
            let _ = serve_connection(&service, stream);
        });
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("demo-backend: {msg}");
    std::process::exit(2)
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after), so that
/// `stop_on_signal` takes them with `sigwait`. Blocking also matters as PID 1 in a container:
/// the kernel drops signals to PID 1 that have no handler, unless they are blocked.
fn block_stop_signals() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset; pointers are to a
    // local that outlives the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn stop_on_signal(service: &Service, drain: Duration) {
    let mut signal: libc::c_int = 0;
    // SAFETY: as in `block_stop_signals`; `signal` outlives the call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigwait(&set, &mut signal);
    }
    eprintln!(
        "demo-backend: signal {signal}: serving {} ms more, then exiting",
        drain.as_millis()
    );
    service.draining.store(true, Ordering::SeqCst);
    std::thread::sleep(drain);
    let deadline = Instant::now() + IN_FLIGHT_LIMIT;
    while service.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("demo-backend: stopped");
    std::process::exit(0);
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it when
    // the name fits, and the last byte stays 0 otherwise.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// One parsed request head.
struct Request {
    method: String,
    path: String,
    version_1_0: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        match self.header("connection").map(str::to_ascii_lowercase) {
            Some(v) if v.contains("close") => true,
            Some(v) if v.contains("keep-alive") => false,
            _ => self.version_1_0,
        }
    }
}

fn serve_connection(service: &Service, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_head(&mut reader)? else {
            return Ok(());
        };
        if service.hang.load(Ordering::SeqCst) && !request.path.starts_with("/control/") {
            discard_body(&mut reader, &request)?;
            hold(&mut reader);
            return Ok(());
        }
        service.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = answer(service, &mut reader, &mut writer, &request);
        service.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !result? {
            return Ok(());
        }
    }
}

/// Hang mode: keeps the connection open, answering nothing and discarding whatever comes,
/// until the client closes it.
fn hold(reader: &mut BufReader<TcpStream>) {
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// A `/control/*` request: the mode it sets, or `None` for an unknown one.
fn control(service: &Service, request: &Request) -> Option<&'static str> {
    if request.method != "POST" {
        return None;
    }
    let (flag, value, name) = match request.path.as_str() {
        "/control/health/fail" => (&service.unhealthy, true, "health/fail"),
        "/control/health/pass" => (&service.unhealthy, false, "health/pass"),
        "/control/hang" => (&service.hang, true, "hang"),
        "/control/normal" => {
            service.unhealthy.store(false, Ordering::SeqCst);
            (&service.hang, false, "normal")
        }
        _ => return None,
    };
    flag.store(value, Ordering::SeqCst);
    eprintln!("demo-backend: control: {name}");
    Some(name)
}

/// Reads a request head; `None` on a clean end of the connection before any byte.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerated empty line before a request (RFC 9112 §2.2)
            }
            break;
        }
        lines.push(line);
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Request {
        method: method.into(),
        path: path.into(),
        version_1_0: version == "HTTP/1.0",
        headers,
    }))
}

/// Reads and discards the request body, answers; returns whether the connection stays open.
fn answer(
    service: &Service,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request: &Request,
) -> io::Result<bool> {
    let body_bytes = discard_body(reader, request)?;
    let close = request.wants_close() || service.draining.load(Ordering::SeqCst);
    let (status, body) = if request.path.starts_with("/control/") {
        match control(service, request) {
            Some(name) => ("200 OK", format!("{{\"control\":{}}}", json_string(name))),
            None => ("404 Not Found", "{\"control\":null}".to_string()),
        }
    } else if request.path == "/health" {
        if service.unhealthy.load(Ordering::SeqCst) {
            (
                "503 Service Unavailable",
                "{\"health\":\"unhealthy\"}".to_string(),
            )
        } else {
            ("200 OK", "{\"health\":\"ok\"}".to_string())
        }
    } else {
        ("200 OK", describe(service, request, body_bytes))
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let mut out = head.into_bytes();
    if request.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    writer.write_all(&out)?;
    Ok(!close)
}

/// Consumes the body (Content-Length or chunked) and returns its length.
fn discard_body(reader: &mut BufReader<TcpStream>, request: &Request) -> io::Result<u64> {
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        let len: u64 = request
            .header("content-length")
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?
            .unwrap_or(0);
        return io::copy(&mut reader.take(len), &mut io::sink());
    }
    let mut total = 0u64;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(total);
                }
            }
        }
        total += io::copy(&mut reader.take(size), &mut io::sink())?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

fn describe(service: &Service, request: &Request, body_bytes: u64) -> String {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in &request.headers {
        headers
            .entry(n.to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v)
            })
            .or_insert_with(|| v.clone());
    }
    let headers: Vec<String> = headers
        .iter()
        .map(|(n, v)| format!("{}:{}", json_string(n), json_string(v)))
        .collect();
    format!(
        "{{\"service\":{},\"hostname\":{},\"method\":{},\"path\":{},\"body_bytes\":{body_bytes},\"headers\":{{{}}}}}",
        json_string(&service.name),
        json_string(&service.hostname),
        json_string(&request.method),
        json_string(&request.path),
        headers.join(",")
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The healthcheck: `GET /health` on this container's port answers 200.
fn health_check(port: u16) -> bool {
    let limit = Duration::from_secs(2);
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut first = String::new();
    let _ = BufReader::new(s).read_line(&mut first);
    first.starts_with("HTTP/1.1 200")
}
