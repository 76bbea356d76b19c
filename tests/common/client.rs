//! The raw HTTP/1.1 client of the integration tests: a socket that writes exactly the bytes a
//! test gives it and reads responses by their framing (Content-Length, chunked, until close),
//! so a test sees what rgate put on the wire. Every read and write has a timeout.
//!
//! Two flavours of every call: one that panics with a useful message (most tests), and a
//! `try_` one that says what went wrong (load clients that count failures, tests that poll).
//! Not for: parsing anything rgate is allowed to send that a test never asks for (HTTP/2,
//! pipelining more than one response ahead).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{IO_TIMEOUT, PIECE};

/// The largest response head the client accepts.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Clone)]
#[allow(dead_code)] // shared by the test binaries; each uses a part
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

#[allow(dead_code)] // shared by the test binaries; each uses a part
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

    /// Whether the response announces that the connection closes after it.
    pub fn closes_connection(&self) -> bool {
        self.header("Connection").is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
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
        // The request's ID, in the body and in the head alike.
        let id = v["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{v}");
        assert_eq!(self.header("X-Request-Id"), Some(id), "{self:?}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(4), "one shape: {v}");
        v
    }
}

/// What the echo backend reports about a request it received.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct Echo(pub serde_json::Value);

#[allow(dead_code)] // shared by the test binaries; each uses a part
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
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub enum ReadError {
    /// The connection closed (`Ok(0)`) before the message was complete.
    Closed {
        got: usize,
    },
    /// Reset or other I/O error.
    Io(io::Error),
    /// Nothing arrived within the client's timeout: the gateway hung.
    TimedOut,
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed { got } => write!(f, "closed after {got} bytes of the message"),
            ReadError::Io(e) => write!(f, "read: {e}"),
            ReadError::TimedOut => write!(f, "read: timed out"),
            ReadError::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl Client {
    /// Connects with `IO_TIMEOUT` on every read and write.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to rgate");
        Client::on(stream, IO_TIMEOUT).expect("set socket options")
    }

    /// Connects within `timeout`, which then bounds every read and write too.
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        Client::on(TcpStream::connect_timeout(&addr, timeout)?, timeout)
    }

    /// Connects from the local address `source` (e.g. 127.0.0.2, a second client address).
    pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> Client {
        let SocketAddr::V4(to) = addr else {
            panic!("IPv4 only")
        };
        let fd = super::bound_socket(SocketAddr::from((source, 0)), false).expect("bind source");
        // SAFETY: connect(2) on a socket we own, with a zeroed sockaddr_in filled in here.
        let rc = unsafe {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = to.port().to_be();
            sa.sin_addr.s_addr = u32::from(*to.ip()).to_be();
            libc::connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "connect: {}", io::Error::last_os_error());
        Client::on(TcpStream::from(fd), IO_TIMEOUT).expect("set socket options")
    }

    fn on(stream: TcpStream, timeout: Duration) -> io::Result<Client> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to rgate");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `request` and reads one response; the error says which half failed.
    pub fn try_exchange(&mut self, request: &[u8]) -> Result<Response, String> {
        self.try_send(request).map_err(|e| format!("write: {e}"))?;
        let was_head = request.starts_with(b"HEAD ");
        self.try_read_response(was_head).map_err(|e| e.to_string())
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
    /// Whether rgate has sent something not read yet (a peek; nothing is consumed).
    pub fn has_data(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let got = matches!(self.stream.peek(&mut byte), Ok(n) if n > 0);
        self.stream.set_nonblocking(false).expect("blocking");
        got
    }

    /// Reads until the connection ends (closed, reset, or silent for `IO_TIMEOUT`);
    /// returns how many bytes came.
    pub fn read_to_end_counting(&mut self) -> u64 {
        let mut total = self.buf.len() as u64;
        self.buf.clear();
        let mut chunk = vec![0u8; 1 << 16];
        while let Ok(n) = self.stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    }

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
        if let Err(e) = self.try_expect_closed() {
            panic!("expected a clean close, got {e:?}");
        }
    }

    /// Whether the peer closes the connection cleanly (FIN, no more bytes) within the timeout.
    pub fn try_expect_closed(&mut self) -> Result<(), ReadError> {
        match self.fill()? {
            0 if self.buf.is_empty() => Ok(()),
            _ => Err(ReadError::Malformed(format!(
                "expected close, got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ))),
        }
    }

    /// Asserts the connection is still open: a new request gets an answer.
    pub fn expect_open(&mut self) {
        self.send(b"GET /__probe HTTP/1.1\r\nHost: probe\r\n\r\n");
        let r = self.read_response(false);
        assert!(r.status > 0);
    }
}

/// The suite's one `GET`: `GET path` with `Connection: close` on a fresh connection whose
/// every step is bounded by `IO_TIMEOUT`; the response, and proof that nothing followed it
/// before rgate closed. `Err` says which step failed (for tests that count failures or poll);
/// `Gateway::get` is the same, failing the test instead.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let mut c = Client::try_connect(addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: rgate.test\r\nConnection: close\r\n\r\n");
    let response = c.try_exchange(request.as_bytes())?;
    c.try_expect_closed()
        .map_err(|e| format!("after the response: {e}"))?;
    Ok(response)
}

/// The bytes of a keep-alive `GET path`, for `Client::try_exchange` on a connection a test
/// keeps open.
#[allow(dead_code)] // not every test binary uses it
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: rgate.test\r\n\r\n").into_bytes()
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
