//! The strict recording backend: a std-threads HTTP/1.1 server on 127.0.0.1:0 that parses
//! every byte rgate sends it with `wire::parse_message` (so anything ambiguous is a recorded
//! protocol error, answered 400 and closed), records each message with a serial number and
//! the connection it came on, and answers it with a keep-alive response whose body names
//! the request: `"{serial} {method} {target} {body_len}"`. A test may register an exact raw
//! response for a path (`reply`); the response corpus uses that.
//!
//! What tests read: the messages, the protocol errors, and per connection how many bytes
//! arrived versus how many were parsed — bytes beyond the last complete message on an open
//! connection are exactly what request smuggling leaves behind.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::wire::{parse_message, valid_host, Message, Role};

/// How often a connection thread looks at the stop flag while it waits for bytes.
const POLL: Duration = Duration::from_millis(100);

/// What the backend does after writing a raw response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Keep the connection and read the next request.
    KeepOpen,
    /// Close the connection.
    Close,
}

/// An exact response for one path: `parts` are written one `write` each, in order. With
/// `hold_last`, the last part waits until the test calls `release` (at most `HOLD_LIMIT`):
/// bytes that arrive after rgate has read the response, as a backend's late bytes or close
/// would.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub parts: Vec<Vec<u8>>,
    pub then: Then,
    pub hold_last: bool,
}

/// The longest a held last part waits for `release`.
const HOLD_LIMIT: Duration = Duration::from_secs(5);

/// One message the backend parsed.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub serial: usize,
    /// The connection it came on: shown in a failing test's message (`Debug`).
    #[allow(dead_code)]
    pub conn: usize,
    pub msg: Message,
}

/// What happened on one backend connection.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    pub received: usize,
    /// Bytes that made up complete messages.
    pub parsed: usize,
    pub messages: usize,
    pub closed: bool,
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    conns: Vec<ConnRecord>,
    messages: Vec<Recorded>,
    errors: Vec<String>,
    replies: HashMap<String, RawReply>,
    replies_done: HashSet<String>,
    released: HashSet<String>,
    /// A clone of each connection being served, by id (to shut them all on drop); removed
    /// when its serving thread ends, so a long run does not hoard descriptors.
    open: HashMap<usize, TcpStream>,
}

struct State {
    stop: AtomicBool,
    inner: Mutex<Inner>,
}

/// A snapshot of the counters, to tell what one test case added.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub messages: usize,
    pub errors: usize,
    pub received: usize,
}

pub struct StrictBackend {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
    /// The listening socket (owned by the accept thread), shut down to end its `accept`.
    listener_fd: RawFd,
}

impl StrictBackend {
    pub fn start() -> StrictBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind strict backend");
        let addr = listener.local_addr().unwrap();
        let listener_fd = listener.as_raw_fd();
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
        });
        let st = state.clone();
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let id = {
                    let mut inner = st.inner.lock().unwrap();
                    inner.conns.push(ConnRecord::default());
                    let id = inner.conns.len() - 1;
                    if let Ok(c) = stream.try_clone() {
                        inner.open.insert(id, c);
                    }
                    id
                };
                let st = st.clone();
                thread::spawn(move || {
                    serve(stream, id, &st);
                    st.inner.lock().unwrap().open.remove(&id);
                });
            }
        });
        StrictBackend {
            addr,
            state,
            accept: Some(accept),
            listener_fd,
        }
    }

    /// Answers requests for `path` (the target without its query) with `reply`.
    pub fn reply(&self, path: &str, reply: RawReply) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.replies_done.remove(path);
        inner.released.remove(path);
        inner.replies.insert(path.to_string(), reply);
    }

    /// Lets the held last part of the reply for `path` go.
    pub fn release(&self, path: &str) {
        self.state
            .inner
            .lock()
            .unwrap()
            .released
            .insert(path.to_string());
    }

    /// Whether the raw reply for `path` was written completely.
    pub fn reply_done(&self, path: &str) -> bool {
        self.state.inner.lock().unwrap().replies_done.contains(path)
    }

    pub fn mark(&self) -> Mark {
        let inner = self.state.inner.lock().unwrap();
        Mark {
            messages: inner.messages.len(),
            errors: inner.errors.len(),
            received: inner.conns.iter().map(|c| c.received).sum(),
        }
    }

    /// Messages parsed since `mark`.
    pub fn messages_since(&self, mark: Mark) -> Vec<Recorded> {
        self.state.inner.lock().unwrap().messages[mark.messages..].to_vec()
    }

    /// Protocol errors recorded since `mark`.
    pub fn errors_since(&self, mark: Mark) -> Vec<String> {
        self.state.inner.lock().unwrap().errors[mark.errors..].to_vec()
    }

    pub fn errors(&self) -> Vec<String> {
        self.state.inner.lock().unwrap().errors.clone()
    }

    pub fn messages(&self) -> Vec<Recorded> {
        self.state.inner.lock().unwrap().messages.clone()
    }

    pub fn conns(&self) -> Vec<ConnRecord> {
        self.state.inner.lock().unwrap().conns.clone()
    }

    /// Waits up to `limit` until no open connection holds bytes beyond its last complete
    /// message; otherwise says which ones do (what a smuggled prefix looks like).
    pub fn settle(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let pending: Vec<String> = self
                .conns()
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.closed && c.error.is_none() && c.received > c.parsed)
                .map(|(i, c)| {
                    format!(
                        "backend conn {i} holds {} unparsed bytes and is still open",
                        c.received - c.parsed
                    )
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(pending.join("; "));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for StrictBackend {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Shutting the listening socket down ends a blocked accept (with an error) on
        // Linux; a connection to wake it could fail when the run used up the ephemeral
        // ports, and the join would then wait forever.
        // SAFETY: the accept thread owns the listener until it returns, which the join
        // below waits for: the descriptor is still that socket.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for (_, s) in self.state.inner.lock().unwrap().open.drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The 400 the backend answers a protocol error with, before it closes.
fn refuse(out: &mut TcpStream, why: &str) {
    let body = format!("strict backend: {why}");
    let _ = write!(
        out,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(mut stream: TcpStream, id: usize, st: &State) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    loop {
        // Parse every complete message buffered so far.
        loop {
            match parse_message(&buf, Role::Request, false) {
                Ok(Some((msg, used))) => {
                    buf.drain(..used);
                    let host_problem = host_problem(&msg);
                    if let Some(why) = host_problem {
                        record_error(st, id, &why);
                        refuse(&mut stream, &why);
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    let serial = {
                        let mut inner = st.inner.lock().unwrap();
                        let serial = inner.messages.len();
                        let c = &mut inner.conns[id];
                        c.parsed += used;
                        c.messages += 1;
                        inner.messages.push(Recorded {
                            serial,
                            conn: id,
                            msg: msg.clone(),
                        });
                        serial
                    };
                    if !answer(&mut stream, st, serial, &msg) {
                        close(st, id, &stream);
                        return;
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    record_error(st, id, &why);
                    refuse(&mut stream, &why);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        if eof {
            close(st, id, &stream);
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                st.inner.lock().unwrap().conns[id].received += n;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => eof = true,
        }
    }
}

/// RFC 9112 §3.2: exactly one Host in HTTP/1.1, and a valid one.
fn host_problem(msg: &Message) -> Option<String> {
    let hosts = msg.all("host");
    if msg.start[2] == "HTTP/1.1" && hosts.len() != 1 {
        return Some(format!(
            "{} Host fields in an HTTP/1.1 request",
            hosts.len()
        ));
    }
    if hosts.len() > 1 {
        return Some("more than one Host".into());
    }
    hosts
        .iter()
        .find(|h| !valid_host(h))
        .map(|h| format!("invalid Host {h:?}"))
}

fn record_error(st: &State, id: usize, why: &str) {
    let mut inner = st.inner.lock().unwrap();
    inner.errors.push(format!("backend conn {id}: {why}"));
    inner.conns[id].error = Some(why.to_string());
    inner.conns[id].closed = true;
}

fn close(st: &State, id: usize, stream: &TcpStream) {
    st.inner.lock().unwrap().conns[id].closed = true;
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes the response to one message; false when the connection must close now.
fn answer(out: &mut TcpStream, st: &State, serial: usize, msg: &Message) -> bool {
    let path = msg.target().split('?').next().unwrap_or("").to_string();
    let raw = st.inner.lock().unwrap().replies.get(&path).cloned();
    if let Some(raw) = raw {
        let last = raw.parts.len().saturating_sub(1);
        for (i, part) in raw.parts.iter().enumerate() {
            if raw.hold_last && i == last {
                let deadline = Instant::now() + HOLD_LIMIT;
                while !st.inner.lock().unwrap().released.contains(&path)
                    && Instant::now() < deadline
                {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            if out.write_all(part).and_then(|()| out.flush()).is_err() {
                return false;
            }
        }
        let keep = raw.then == Then::KeepOpen;
        if !keep {
            let _ = out.shutdown(Shutdown::Both);
        }
        st.inner.lock().unwrap().replies_done.insert(path);
        return keep;
    }
    let body = format!(
        "{serial} {} {} {}",
        msg.method(),
        msg.target(),
        msg.body.len()
    );
    let mut text = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Serial: {serial}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if msg.method() != "HEAD" {
        text += &body;
    }
    let closes = msg.connection_has("close") || msg.start[2] == "HTTP/1.0";
    out.write_all(text.as_bytes()).is_ok() && !closes
}

/// The (serial, target) an echo body names, when it is one.
pub fn echo_of(body: &[u8]) -> Option<(usize, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split(' ');
    let serial = parts.next()?.parse().ok()?;
    let _method = parts.next()?;
    let target = parts.next()?.to_string();
    parts.next()?.parse::<usize>().ok()?;
    Some((serial, target))
}
