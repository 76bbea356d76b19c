//! The test backend: a std-threads HTTP/1.1 server on 127.0.0.1 whose behaviour is picked
//! per request by its query, and which reports what it received. Not a real server: it
//! trusts its input and exists only to be put behind rgate.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::io::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{bound_socket, local_addr, pattern, write_pattern, Digest, IO_TIMEOUT, PIECE};

/// The longest a `do=hold` or `do=stall` request waits to be released.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// A backend server. What it does with a request is chosen by the request's query:
///
/// | query | response |
/// | --- | --- |
/// | (none) | 200, JSON echo: method, target, version, headers in order, body length and digest |
/// | `do=chunked&n=N` | 200, chunked, N pattern bytes in chunks of 1 to 64 KiB |
/// | `do=large&n=N` | 200, Content-Length N, pattern bytes |
/// | `do=until-close&n=N` | 200, no length, N pattern bytes, then close |
/// | `do=status&code=C` | status C (204, 304, …), with an ETag, no body |
/// | `do=sleep&ms=M` | the echo, after M ms |
/// | `do=die&n=N` | announces N bytes, sends N/10, closes |
/// | `do=garbage` | a line that is not HTTP, then close |
/// | `do=ambiguous` | a response with both Content-Length and Transfer-Encoding, then close |
/// | `do=upgrade` | 101, then echoes every byte until EOF |
/// | `do=hop` | 200 with a mix of hop-by-hop and end-to-end fields (see `HOP_RESPONSE`) |
/// | `do=early` | 103 Early Hints, then the echo |
/// | `do=close-reused` | on a connection's first request the echo; on a later one, close unanswered |
/// | `do=hold` | the echo, once the test calls `release` (`held` counts the requests waiting) |
/// | `do=stall&n=N` | announces N bytes, sends N/10, then sends nothing until `release`, and closes |
/// | `do=die-chunked&n=N` | a chunked body of which N bytes are sent, then close, no last chunk |
///
/// `pause=M` (with any of them) waits M ms before reading the request body.
///
/// `set_fault` makes the whole instance misbehave, whatever the query (see `Fault`), as a
/// failing server would; `stop` makes it refuse connections.
/// A HEAD request gets the head the GET would have had. Every response body is streamed.
///
/// What rgate forwards must parse: a request head or chunked body the backend cannot read
/// fails the test when the backend is dropped (a connection merely cut is not a parse error).
/// The port is the backend's for its whole life, also between `stop` and `restart`: a socket
/// bound to it (never listening) keeps it, so no other test can take it meanwhile.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    accept: Option<JoinHandle<()>>,
    /// The listening socket while listening (owned by the accept thread), shut down to end
    /// its `accept`.
    listener_fd: Option<RawFd>,
    /// Bound to `addr` with SO_REUSEPORT, never listening: holds the port while stopped.
    _port: OwnedFd,
}

#[derive(Default)]
struct BackendState {
    name: String,
    /// Close a keep-alive connection after it was idle this long.
    idle_close: Option<Duration>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Connections the peer closed while they waited for a request.
    closed_by_peer: AtomicUsize,
    /// Connections the backend closed itself because they were idle (`idle_close`).
    idle_closed: AtomicUsize,
    requests: AtomicUsize,
    /// A clone of each connection being served, by connection number (to shut them on
    /// `stop`); removed when its thread ends, so a long test does not hoard descriptors.
    open: Mutex<HashMap<usize, TcpStream>>,
    /// Requests and bodies the backend could not parse.
    parse_errors: Mutex<Vec<String>>,
    gate: Gate,
    fault: Mutex<Fault>,
    /// `METHOD target` of every request head received, in order.
    received: Mutex<Vec<String>>,
}

/// How a whole instance misbehaves (`Backend::set_fault`), checked as each request head
/// arrives.
#[allow(dead_code)] // shared by the test binaries; each uses a part
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answers as the query says.
    #[default]
    None,
    /// Reads the head, then never answers: the connection stays open until the fault is
    /// cleared, the backend stops, or `HOLD_LIMIT`.
    Hang,
    /// Reads the head, then resets the connection (RST) without a byte of response.
    ResetAfterHead,
    /// Answers after this many milliseconds.
    Slow(u64),
}

/// Where `do=hold` requests wait: each takes a ticket; `release` lets every ticket taken
/// so far through (later ones wait for the next `release`).
#[derive(Default)]
struct Gate {
    /// (tickets taken, tickets released)
    tickets: Mutex<(usize, usize)>,
    opened: Condvar,
    waiting: AtomicUsize,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl Gate {
    /// Waits until released (or `HOLD_LIMIT`); true when released.
    fn wait(&self) -> bool {
        let mut t = self.tickets.lock().unwrap();
        t.0 += 1;
        let mine = t.0;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let (t, timeout) = self
            .opened
            .wait_timeout_while(t, HOLD_LIMIT, |t| t.1 < mine)
            .unwrap();
        drop(t);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        !timeout.timed_out()
    }

    fn release(&self) {
        let mut t = self.tickets.lock().unwrap();
        t.1 = t.0;
        self.opened.notify_all();
    }
}

/// The head `do=hop` answers with.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub const HOP_RESPONSE: &str = "HTTP/1.1 200 OK\r\nX-First: 1\r\nConnection: keep-alive, X-Private\r\n\
X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Middle: two words\r\n\
TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Last: 3\r\n\
Content-Length: 2\r\n\r\nok";

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::start_inner(name, None, "127.0.0.1:0".parse().unwrap())
    }

    /// A backend that closes keep-alive connections idle for longer than `idle`.
    pub fn start_closing_idle(name: &str, idle: Duration) -> Backend {
        Backend::start_inner(name, Some(idle), "127.0.0.1:0".parse().unwrap())
    }

    fn start_inner(name: &str, idle_close: Option<Duration>, addr: SocketAddr) -> Backend {
        let state = Arc::new(BackendState {
            name: name.to_string(),
            idle_close,
            ..BackendState::default()
        });
        let port = bound_socket(addr, true).expect("bind the backend's port");
        let mut b = Backend {
            addr: local_addr(&port).expect("getsockname"),
            state,
            accept: None,
            listener_fd: None,
            _port: port,
        };
        b.listen();
        b
    }

    /// Listens on `addr`: a second socket on the port the backend holds (SO_REUSEPORT).
    fn listen(&mut self) {
        let socket = bound_socket(self.addr, true).expect("bind backend");
        // SAFETY: listen(2) on a socket we own.
        if unsafe { libc::listen(socket.as_raw_fd(), 1024) } < 0 {
            panic!("listen: {}", io::Error::last_os_error());
        }
        // SAFETY: a listening TCP socket, whose ownership moves into the listener.
        let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
        self.listener_fd = Some(listener.as_raw_fd());
        self.state.stop.store(false, Ordering::SeqCst);
        let state = self.state.clone();
        self.accept = Some(thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let nth = state.connections.fetch_add(1, Ordering::SeqCst);
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                state.open.lock().unwrap().insert(nth, clone);
                let state = state.clone();
                thread::spawn(move || {
                    let _forget = Forget(&state, nth);
                    let end = stream.try_clone();
                    match serve_backend_conn(stream, &state) {
                        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                            state.parse_errors.lock().unwrap().push(e.to_string());
                        }
                        // `Fault::ResetAfterHead`: the last descriptor's close resets it.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                        _ => {}
                    }
                    // `open` holds a clone of the socket: closing means shutting it down.
                    if let Ok(s) = end {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        }));
    }

    /// Stops listening and closes every open connection (as a crashed backend would).
    /// Connecting is refused until `restart`; the port stays the backend's.
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Shutting the listening socket down ends a blocked accept on Linux (a connection
        // to wake it can fail once a test has used up the ephemeral ports).
        if let Some(fd) = self.listener_fd.take() {
            // SAFETY: the accept thread owns the listener until it returns, which the join
            // below waits for: the descriptor is still that socket.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for (_, s) in self.state.open.lock().unwrap().drain() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens again on the same address after `stop`.
    #[allow(dead_code)] // not every test binary uses it
    pub fn restart(&mut self) {
        self.listen();
    }

    /// Lets every `do=hold` (and `do=stall`) request received so far go on.
    #[allow(dead_code)] // not every test binary uses it
    pub fn release(&self) {
        self.state.gate.release();
    }

    /// `do=hold` and `do=stall` requests waiting for `release` now.
    #[allow(dead_code)] // not every test binary uses it
    pub fn held(&self) -> usize {
        self.state.gate.waiting.load(Ordering::SeqCst)
    }

    /// Connections the backend closed itself for idleness (`start_closing_idle`), so far.
    #[allow(dead_code)] // not every test binary uses it
    pub fn idle_closed(&self) -> usize {
        self.state.idle_closed.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections the peer (rgate) closed between requests, so far.
    #[allow(dead_code)] // not every test binary uses it
    pub fn closed_by_peer(&self) -> usize {
        self.state.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Makes the instance misbehave from its next request on (`Fault::None` ends it).
    #[allow(dead_code)] // not every test binary uses it
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// How many request heads `METHOD target` (exactly) arrived so far.
    #[allow(dead_code)] // not every test binary uses it
    pub fn received(&self, method: &str, target: &str) -> usize {
        let wanted = format!("{method} {target}");
        let seen = self.state.received.lock().unwrap();
        seen.iter().filter(|r| **r == wanted).count()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.release();
        if self.accept.is_some() {
            self.stop();
        }
        let errors = self.state.parse_errors.lock().unwrap();
        if !errors.is_empty() && !thread::panicking() {
            panic!(
                "backend {:?} could not parse what rgate forwarded: {errors:?}",
                self.state.name
            );
        }
    }
}

struct BackendRequest {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl BackendRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, key: &str) -> Option<&str> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn query_u64(&self, key: &str) -> u64 {
        self.query(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

fn serve_backend_conn(stream: TcpStream, state: &BackendState) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(PIECE, stream.try_clone()?);
    let mut out = stream;
    for nth in 0.. {
        // Waiting for the next request is where an idle connection gets closed.
        reader
            .get_ref()
            .set_read_timeout(Some(state.idle_close.unwrap_or(IO_TIMEOUT)))?;
        match reader.fill_buf() {
            Ok([]) => {
                state.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Ok(_) => {}
            Err(e)
                if state.idle_close.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                // Shut down before counting, so a test that sees the count sees the close.
                let _ = out.shutdown(std::net::Shutdown::Both);
                state.idle_closed.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        reader.get_ref().set_read_timeout(Some(IO_TIMEOUT))?;
        let req = read_request_head(&mut reader)?;
        let line = format!("{} {}", req.method, req.target);
        state.received.lock().unwrap().push(line);
        state.requests.fetch_add(1, Ordering::SeqCst);
        let fault = *state.fault.lock().unwrap();
        match fault {
            Fault::None => {}
            Fault::Hang => {
                hang(state);
                return Ok(());
            }
            Fault::ResetAfterHead => {
                reset(&out, state);
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            Fault::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
        }
        let mut digest = Digest::default();
        // `pause=M`: let the body pile up in front of us first (memory tests).
        thread::sleep(Duration::from_millis(req.query_u64("pause")));
        read_request_body(&mut reader, &req, &mut digest)?;
        let keep_alive = match req.header("Connection") {
            Some(c) if c.eq_ignore_ascii_case("close") => false,
            _ => req.version == "HTTP/1.1",
        };
        if req.query("do") == Some("close-reused") && nth > 0 {
            return Ok(());
        }
        if !respond(&mut reader, &mut out, &req, digest, state)? || !keep_alive {
            return Ok(());
        }
    }
    Ok(())
}

/// Removes a connection's clone from `BackendState::open` when its thread ends.
struct Forget<'a>(&'a BackendState, usize);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.open.lock().unwrap().remove(&self.1);
    }
}

/// Holds a connection unanswered while the instance hangs (bounded by `HOLD_LIMIT`).
fn hang(state: &BackendState) {
    let start = std::time::Instant::now();
    while *state.fault.lock().unwrap() == Fault::Hang
        && !state.stop.load(Ordering::SeqCst)
        && start.elapsed() < HOLD_LIMIT
    {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Makes closing `stream` reset it (SO_LINGER 0), and forgets the backend's own clone of it,
/// so that the connection's last descriptor closes when the serving thread ends.
fn reset(stream: &TcpStream, state: &BackendState) {
    let peer = stream.peer_addr().ok();
    state
        .open
        .lock()
        .unwrap()
        .retain(|_, s| s.peer_addr().ok() != peer);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we hold, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// One line, which must end in LF: a line cut short by the connection closing is
/// `UnexpectedEof`, not a parse error.
fn read_line(r: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    r.read_line(line)?;
    if line.ends_with('\n') {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

fn read_request_head(r: &mut impl BufRead) -> io::Result<BackendRequest> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    read_line(r, &mut line)?;
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    let mut req = BackendRequest {
        method: method.into(),
        target: target.into(),
        version: version.into(),
        headers: Vec::new(),
    };
    for _ in 0..200 {
        line.clear();
        read_line(r, &mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            return Ok(req);
        }
        let (n, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
        req.headers.push((n.to_string(), v.trim().to_string()));
    }
    Err(bad("too many headers"))
}

fn read_request_body(
    r: &mut impl BufRead,
    req: &BackendRequest,
    digest: &mut Digest,
) -> io::Result<()> {
    let mut take = |r: &mut dyn BufRead, mut n: u64| -> io::Result<()> {
        while n > 0 {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = buf.len().min(n as usize);
            digest.update(&buf[..k]);
            r.consume(k);
            n -= k as u64;
        }
        Ok(())
    };
    if req
        .header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let mut line = String::new();
        loop {
            line.clear();
            read_line(r, &mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    read_line(r, &mut line)?;
                    if line.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            take(r, size)?;
            line.clear();
            read_line(r, &mut line)?;
            if line != "\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no CRLF after chunk data",
                ));
            }
        }
    }
    let n = req
        .header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    take(r, n)
}

/// Answers one request. Returns false when the connection must close now.
fn respond(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    req: &BackendRequest,
    digest: Digest,
    state: &BackendState,
) -> io::Result<bool> {
    let head_only = req.method == "HEAD";
    let n = req.query_u64("n");
    match req.query("do").unwrap_or("") {
        "chunked" => {
            out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            if !head_only {
                write_chunked_varied(out, n)?;
            }
        }
        "large" => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n")?;
            if !head_only {
                write_pattern(out, n, PIECE, false)?;
            }
        }
        "until-close" => {
            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")?;
            if !head_only {
                write_pattern(out, n, PIECE, false)?;
                return Ok(false);
            }
        }
        "status" => {
            let code = req.query_u64("code");
            write!(
                out,
                "HTTP/1.1 {code} X\r\nETag: \"v1\"\r\nX-Status: {code}\r\n\r\n"
            )?;
        }
        "sleep" => {
            thread::sleep(Duration::from_millis(req.query_u64("ms")));
            write_echo(out, req, digest, state, head_only)?;
        }
        "die" => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n")?;
            write_pattern(out, n / 10, PIECE, false)?;
            thread::sleep(Duration::from_millis(50));
            return Ok(false);
        }
        "hold" => {
            state.gate.wait();
            write_echo(out, req, digest, state, head_only)?;
        }
        "stall" => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n")?;
            write_pattern(out, n / 10, PIECE, false)?;
            out.flush()?;
            state.gate.wait();
            return Ok(false);
        }
        "die-chunked" => {
            out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            let mut body = Vec::new();
            write_pattern(&mut body, n, 1000, true)?;
            body.truncate(body.len() - b"0\r\n\r\n".len());
            out.write_all(&body)?;
            return Ok(false);
        }
        "garbage" => {
            out.write_all(b"this is not http at all\r\n\r\n")?;
            return Ok(false);
        }
        "ambiguous" => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )?;
            return Ok(false);
        }
        "upgrade" => {
            out.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            // Bytes already buffered behind the head belong to the new protocol.
            let pending = reader.buffer().to_vec();
            reader.consume(pending.len());
            out.write_all(&pending)?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                match reader.get_mut().read(&mut buf) {
                    Ok(0) | Err(_) => return Ok(false),
                    Ok(k) => out.write_all(&buf[..k])?,
                }
            }
        }
        "hop" => out.write_all(HOP_RESPONSE.as_bytes())?,
        "early" => {
            out.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")?;
            write_echo(out, req, digest, state, head_only)?;
        }
        _ => write_echo(out, req, digest, state, head_only)?,
    }
    out.flush()?;
    Ok(true)
}

fn write_echo(
    out: &mut TcpStream,
    req: &BackendRequest,
    digest: Digest,
    state: &BackendState,
    head_only: bool,
) -> io::Result<()> {
    let headers: Vec<[&str; 2]> = req
        .headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    let body = serde_json::json!({
        "backend": state.name,
        "method": req.method,
        "target": req.target,
        "version": req.version,
        "headers": headers,
        "body_len": digest.len,
        "body_sum": digest.sum,
    })
    .to_string();
    let mut msg = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if !head_only {
        msg += &body;
    }
    out.write_all(msg.as_bytes())
}

/// Chunked body of `n` pattern bytes with chunk sizes cycling from 1 byte to 64 KiB.
fn write_chunked_varied(out: &mut TcpStream, n: u64) -> io::Result<()> {
    const SIZES: [usize; 6] = [1, 7, 300, 4096, 10_000, PIECE];
    let mut w = io::BufWriter::with_capacity(PIECE * 2, out);
    let mut buf = vec![0u8; PIECE];
    let (mut at, mut i) = (0u64, 0);
    while at < n {
        let k = (n - at).min(SIZES[i % SIZES.len()] as u64) as usize;
        pattern(&mut buf[..k], at);
        write!(w, "{k:x}\r\n")?;
        w.write_all(&buf[..k])?;
        w.write_all(b"\r\n")?;
        at += k as u64;
        i += 1;
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}
