//! The client side of the bench: plain blocking sockets, one thread per connection.
//!
//! * `load` — keep-alive (or connection-per-request) load, closed loop or at a fixed rate.
//!   At a fixed rate, request k of connection c is due at `start + (k·C + c) / rate` and its
//!   latency is measured from that due time, not from when it was actually sent: a server
//!   that stalls is charged for every request it delayed (no coordinated omission).
//! * `idle` — opens many keep-alive connections, one answered request each, then holds them.
//! * `upload` — streams one large Content-Length body and waits for the response.
//!
//! Why threads and blocking I/O rather than an event loop: a fixed-rate sender must wake at
//! its due time to within microseconds. monoio's timer wheel ticks in milliseconds, which
//! would add up to a millisecond of false latency to every request; `nanosleep` with the
//! timer slack set to 1 ns is exact to a few microseconds. A few dozen threads on the load
//! generator's CPU cost context switches, the same for every contender.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// How long a request may take before the run counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Stack of each load thread: they only hold a socket and a small buffer.
const THREAD_STACK: usize = 256 * 1024;
const MAX_HEADERS: usize = 32;
const UPLOAD_WRITE_BYTES: usize = 256 * 1024;

/// One client connection with its read buffer.
pub struct Conn {
    io: TcpStream,
    buf: Vec<u8>,
}

/// A response read off the wire.
pub struct Response {
    pub status: u16,
    /// The server will close the connection after it.
    pub close: bool,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let io = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
        io.set_nodelay(true)?;
        io.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        io.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(Conn {
            io,
            buf: Vec::with_capacity(4096),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes)
    }

    /// Reads one whole response (its Content-Length body included).
    pub fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(head)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut body = 0usize;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            body = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or_else(|| invalid("bad content-length"))?;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(invalid("chunked responses are not expected"));
                        }
                    }
                    let total = head + body;
                    while self.buf.len() < total {
                        self.fill()?;
                    }
                    self.buf.drain(..total);
                    return Ok(Response { status, close });
                }
                Ok(httparse::Status::Partial) => self.fill()?,
                Err(e) => return Err(invalid(&e.to_string())),
            }
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        let n = self.io.read(&mut self.buf[len..]);
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            _ => Ok(()),
        }
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

pub fn request_bytes(addr: SocketAddr, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rgate-bench\r\n{connection}\r\n")
        .into_bytes()
}

/// What one load run measured.
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub seconds: f64,
    pub latency: Histogram,
}

pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second over all connections; `None` is a closed loop.
    pub rate: Option<f64>,
    /// A new connection per request.
    pub close: bool,
}

struct ThreadResult {
    requests: u64,
    errors: u64,
    non_2xx: u64,
    latency: Histogram,
}

pub fn load(spec: &LoadSpec) -> io::Result<LoadReport> {
    set_precise_timers();
    let request = request_bytes(spec.addr, &spec.path, spec.close);
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + spec.duration;
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(spec.connections);
    for c in 0..spec.connections {
        let tx = tx.clone();
        let request = request.clone();
        let (addr, close, rate, conns) = (spec.addr, spec.close, spec.rate, spec.connections);
        let thread = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let r = drive_one(addr, &request, close, c, conns, rate, start, deadline);
                let _ = tx.send(r);
            })?;
        threads.push(thread);
    }
    drop(tx);
    let mut report = LoadReport {
        requests: 0,
        errors: 0,
        non_2xx: 0,
        seconds: 0.0,
        latency: Histogram::new(),
    };
    for r in rx {
        report.requests += r.requests;
        report.errors += r.errors;
        report.non_2xx += r.non_2xx;
        report.latency.merge(&r.latency);
    }
    for t in threads {
        let _ = t.join();
    }
    // Until the last response: at a fixed rate, a server that fell behind is still
    // answering after the deadline, and its achieved rate must show it.
    report.seconds = start
        .elapsed()
        .as_secs_f64()
        .max(spec.duration.as_secs_f64());
    Ok(report)
}

/// One connection's loop: until the deadline, send a request, wait for its response.
#[allow(clippy::too_many_arguments)]
fn drive_one(
    addr: SocketAddr,
    request: &[u8],
    close: bool,
    index: usize,
    connections: usize,
    rate: Option<f64>,
    start: Instant,
    deadline: Instant,
) -> ThreadResult {
    let mut r = ThreadResult {
        requests: 0,
        errors: 0,
        non_2xx: 0,
        latency: Histogram::new(),
    };
    let mut conn: Option<Conn> = None;
    sleep_until(start);
    for k in 0u64.. {
        let due = match rate {
            Some(rate) => {
                let offset = (k as f64 * connections as f64 + index as f64) / rate;
                let due = start + Duration::from_secs_f64(offset);
                if due >= deadline {
                    break;
                }
                sleep_until(due);
                due
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
        };
        match exchange(&mut conn, addr, request) {
            Ok(resp) => {
                r.latency.record(due.elapsed().as_nanos() as u64);
                r.requests += 1;
                if !(200..300).contains(&resp.status) {
                    r.non_2xx += 1;
                }
                if resp.close || close {
                    conn = None;
                }
            }
            Err(_) => {
                r.errors += 1;
                conn = None;
                // Do not spin on a refusing server.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    r
}

fn exchange(conn: &mut Option<Conn>, addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    if conn.is_none() {
        *conn = Some(Conn::connect(addr)?);
    }
    let c = conn.as_mut().expect("connected above");
    c.send(request)?;
    c.read_response()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Asks the kernel to wake sleeping threads on time rather than up to 50 µs late.
fn set_precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// What the idle-connection run reports once every connection is open and quiet.
pub struct IdleReport {
    pub opened: usize,
    pub failed: usize,
    pub seconds: f64,
}

/// Opens up to `count` connections (one answered request each), reports through `ready`,
/// then keeps them open until `release` says so (or its sender goes away).
pub fn idle(
    addr: SocketAddr,
    path: &str,
    count: usize,
    budget: Duration,
    ready: impl FnOnce(&IdleReport),
    release: impl FnOnce(),
) -> io::Result<()> {
    let request = request_bytes(addr, path, false);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(count);
    let mut failed = 0;
    while conns.len() < count && started.elapsed() < budget && failed < 100 {
        let opened = Conn::connect(addr).and_then(|mut c| {
            c.send(&request)?;
            let resp = c.read_response()?;
            if resp.close {
                return Err(invalid("server closed an idle keep-alive connection"));
            }
            Ok(c)
        });
        match opened {
            Ok(c) => conns.push(c),
            Err(e) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("benchtool idle: connection {} failed: {e}", conns.len());
                }
            }
        }
    }
    ready(&IdleReport {
        opened: conns.len(),
        failed,
        seconds: started.elapsed().as_secs_f64(),
    });
    release();
    drop(conns);
    Ok(())
}

pub struct UploadReport {
    pub bytes: u64,
    pub seconds: f64,
    pub status: u16,
}

/// Streams a `bytes`-long POST body and waits for the response.
pub fn upload(addr: SocketAddr, path: &str, bytes: u64) -> io::Result<UploadReport> {
    let mut conn = Conn::connect(addr)?;
    conn.io.set_read_timeout(Some(Duration::from_secs(120)))?;
    conn.io.set_write_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {bytes}\r\n\r\n"
    );
    let started = Instant::now();
    conn.send(head.as_bytes())?;
    let chunk = vec![b'x'; UPLOAD_WRITE_BYTES];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        conn.send(&chunk[..n])?;
        left -= n as u64;
    }
    let resp = conn.read_response()?;
    Ok(UploadReport {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        status: resp.status,
    })
}
