//! The harness for rgate's integration tests: start the real `rgate` binary on a free port,
//! talk to it over raw sockets, and put real backend servers behind it.
//!
//! * `Gateway` — one rgate process with its own temp dir, config, db and pid file; killed on drop.
//! * `Client`  — a raw HTTP/1.1 client socket that reads responses by their framing.
//! * `Backend` (`backend.rs`) — a std-threads HTTP/1.1 server on 127.0.0.1:0 whose behaviour is picked per
//!   request by the query (`?do=chunked&n=100`, see `Backend`), and which reports what it
//!   received as JSON.
//!
//! Every read has a timeout and every loop a bound: a broken gateway fails a test, it never
//! hangs it. Not for: anything beyond 127.0.0.1, fixed ports, timing assertions.

#![allow(dead_code)]

mod backend;

// Not every test binary uses the backend.
#[allow(unused_imports)]
pub use backend::{Backend, HOP_RESPONSE};

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any single read or write may block in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// How long rgate may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head the client accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Size of the pieces bodies are generated and streamed in.
pub const PIECE: usize = 64 * 1024;

/// A fresh directory unique to this process and call.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rgate-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// ----- the gateway process -----

pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    pub fn start(config: &str) -> Gateway {
        Gateway::start_with_env(config, &[])
    }

    /// Starts rgate with `config` and extra environment variables; waits for "listening on".
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = temp_dir("gw");
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rgate"));
        cmd.args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--cores",
            "2",
            "--config",
        ])
        .arg(&config_path)
        .arg("--db")
        .arg(dir.join("rgate.db"))
        .arg("--pid-file")
        .arg(dir.join("rgate.pid"))
        .env_remove("RGATE_DRIVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start rgate");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Reads stderr to the end, so the pipe never fills, and reports the listening address.
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Gateway {
                addr,
                dir,
                child,
                log,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "rgate did not report listening; stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    /// Everything rgate wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut c = self.client();
        c.send(raw.as_bytes());
        c.read_response(raw.starts_with("HEAD "))
    }

    /// `GET path` on a new connection.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n"))
    }

    /// A `/proc/<pid>/status` field in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- rgate stderr ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// YAML for one route per `(prefix, backend)` and one static backend per `(name, addrs)`.
pub fn config(routes: &[(&str, &str)], backends: &[(&str, &[SocketAddr])], extra: &str) -> String {
    let mut y = String::from("routes:\n");
    for (prefix, backend) in routes {
        y += &format!("  - path_prefix: {prefix}\n    backend: {backend}\n");
    }
    y += "default_response:\n  body: This is not reachable\n  status_code: 403\nbackends:\n";
    for (name, addrs) in backends {
        let list: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
        y += &format!("  - name: {name}\n    addresses: [{}]\n", list.join(", "));
    }
    y + extra
}

// ----- the raw client -----

#[derive(Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    /// Header fields in the order received, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field(
                "body",
                &String::from_utf8_lossy(&self.body[..self.body.len().min(2000)]),
            )
            .finish()
    }
}

impl Response {
    /// The value of the only (or first) field named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The request the echo backend received (its JSON report).
    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "expected an echo, got {self:?}");
        Echo(self.json())
    }

    /// Checks the shape of an error rgate made itself; returns its JSON.
    pub fn gateway_error(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        assert_eq!(
            self.header("Content-Length"),
            Some(self.body.len().to_string().as_str())
        );
        let v = self.json();
        assert_eq!(v["status"], status, "{v}");
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        v
    }
}

/// What the echo backend reports about a request it received.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub fn method(&self) -> &str {
        self.0["method"].as_str().unwrap()
    }
    pub fn target(&self) -> &str {
        self.0["target"].as_str().unwrap()
    }
    pub fn version(&self) -> &str {
        self.0["version"].as_str().unwrap()
    }
    pub fn backend(&self) -> &str {
        self.0["backend"].as_str().unwrap()
    }
    pub fn body_len(&self) -> u64 {
        self.0["body_len"].as_u64().unwrap()
    }
    pub fn body_sum(&self) -> u64 {
        self.0["body_sum"].as_u64().unwrap()
    }
    /// Header fields in the order the backend received them.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// How a read of a response ended, when it did not end well.
#[derive(Debug)]
pub enum ReadError {
    /// The connection closed (`Ok(0)`) before the message was complete.
    Closed {
        got: usize,
    },
    /// Reset or other I/O error.
    Io(io::Error),
    /// Nothing arrived within `IO_TIMEOUT`: the gateway hung.
    TimedOut,
    Malformed(String),
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to rgate");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to rgate");
    }

    /// Reads more bytes into the buffer; 0 means the peer closed.
    fn fill(&mut self) -> Result<usize, ReadError> {
        let mut chunk = [0u8; PIECE];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ReadError::TimedOut)
            }
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// Reads one response head (an interim 1xx one included).
    pub fn read_head(&mut self) -> Result<Response, ReadError> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return parse_head(&head).map_err(ReadError::Malformed);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Malformed("head too large".into()));
            }
            let got = self.buf.len();
            if self.fill()? == 0 {
                return Err(ReadError::Closed { got });
            }
        }
    }

    /// Reads the body of `head`, by its framing, handing it to `sink` piece by piece.
    pub fn read_body(
        &mut self,
        head: &Response,
        request_was_head: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        let s = head.status;
        if request_was_head || (100..200).contains(&s) || s == 204 || s == 304 {
            return Ok(());
        }
        let chunked = head
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
        if chunked {
            return self.read_chunked(sink);
        }
        match head.header("Content-Length") {
            Some(n) => {
                let n: usize = n.parse().map_err(|_| ReadError::Malformed(n.into()))?;
                self.read_exact_into(n, sink)
            }
            None => loop {
                if !self.buf.is_empty() {
                    sink(&self.buf);
                    self.buf.clear();
                }
                if self.fill()? == 0 {
                    return Ok(());
                }
            },
        }
    }

    fn read_exact_into(&mut self, n: usize, sink: &mut dyn FnMut(&[u8])) -> Result<(), ReadError> {
        let mut left = n;
        loop {
            let k = left.min(self.buf.len());
            if k > 0 {
                sink(&self.buf[..k]);
                self.buf.drain(..k);
                left -= k;
            }
            if left == 0 {
                return Ok(());
            }
            if self.fill()? == 0 {
                return Err(ReadError::Closed { got: n - left });
            }
        }
    }

    fn read_line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let got = self.buf.len();
            if self.fill()? == 0 {
                return Err(ReadError::Closed { got });
            }
        }
    }

    fn read_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<(), ReadError> {
        for _ in 0..10_000_000 {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| ReadError::Malformed(format!("chunk size {line:?}")))?;
            if size == 0 {
                // Trailer fields, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            self.read_exact_into(size, sink)?;
            if !self.read_line()?.is_empty() {
                return Err(ReadError::Malformed("no CRLF after chunk data".into()));
            }
        }
        Err(ReadError::Malformed("too many chunks".into()))
    }

    /// Reads a whole response (head and body), or says how it failed.
    pub fn try_read_response(&mut self, request_was_head: bool) -> Result<Response, ReadError> {
        let mut resp = self.read_head()?;
        let mut body = Vec::new();
        self.read_body(&resp, request_was_head, &mut |b| body.extend_from_slice(b))?;
        resp.body = body;
        Ok(resp)
    }

    pub fn read_response(&mut self, request_was_head: bool) -> Response {
        self.try_read_response(request_was_head)
            .unwrap_or_else(|e| panic!("reading a response failed: {e:?}"))
    }

    /// Asserts the peer closes the connection cleanly (FIN, no more bytes) within the timeout.
    pub fn expect_closed(&mut self) {
        match self.fill() {
            Ok(0) if self.buf.is_empty() => {}
            Ok(_) => panic!(
                "expected close, got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("expected a clean close, got {e:?}"),
        }
    }

    /// Asserts the connection is still open: a new request gets an answer.
    pub fn expect_open(&mut self) {
        self.send(b"GET /__probe HTTP/1.1\r\nHost: probe\r\n\r\n");
        let r = self.read_response(false);
        assert!(r.status > 0);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Response, String> {
    let text = std::str::from_utf8(head).map_err(|e| e.to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        if n.ends_with(' ') || line.starts_with([' ', '\t']) {
            return Err(format!("bad header line {line:?}"));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Ok(Response {
        version,
        status,
        headers,
        body: Vec::new(),
    })
}

// ----- bodies: generated, never stored -----

/// Byte `i` of every generated body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// Fills `buf` with the pattern starting at offset `from`.
pub fn pattern(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(from + k as u64);
    }
}

/// A running checksum (FNV-1a, 64 bits) and length of a body seen piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub len: u64,
    pub sum: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            len: 0,
            sum: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.sum = (self.sum ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.len += data.len() as u64;
    }

    /// The digest of the first `n` pattern bytes.
    pub fn of_pattern(n: u64) -> Digest {
        let mut d = Digest::default();
        let mut buf = vec![0u8; PIECE];
        let mut at = 0;
        while at < n {
            let k = (n - at).min(PIECE as u64) as usize;
            pattern(&mut buf[..k], at);
            d.update(&buf[..k]);
            at += k as u64;
        }
        d
    }
}

/// Writes `n` pattern bytes, in `piece`-sized writes, chunk-framed when `chunked`.
pub fn write_pattern(w: &mut impl Write, n: u64, piece: usize, chunked: bool) -> io::Result<()> {
    let mut buf = vec![0u8; piece];
    let mut at = 0;
    while at < n {
        let k = (n - at).min(piece as u64) as usize;
        pattern(&mut buf[..k], at);
        if chunked {
            write!(w, "{k:x}\r\n")?;
            w.write_all(&buf[..k])?;
            w.write_all(b"\r\n")?;
        } else {
            w.write_all(&buf[..k])?;
        }
        at += k as u64;
    }
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}
