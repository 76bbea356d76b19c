//! `benchtool relay` — the floor under every proxy, on epoll: no HTTP at all. Each client
//! connection is paired with one backend connection of its own, and bytes are copied both
//! ways as they come. A proxy cannot do less work per request than this (it must at least
//! read the request, write it on, read the response and write it back), so the relay's CPU
//! per request is what rgate's is compared with, user and kernel apart.
//!
//! One thread, one level-triggered epoll set, non-blocking sockets. Per readiness it makes
//! one `read` and one `write`, no more: a socket with more to read stays ready and the next
//! `epoll_wait` says so, so the relay never reads to `EAGAIN` (a wasted syscall per request).
//! A pair stops reading a side while the bytes it read from it are not all written to the
//! other (back-pressure), and watches for writability only then.
//!
//! What it is not: a proxy. The backend connection is opened with a blocking connect as
//! the client is accepted (on loopback it completes within the call); the relay is measured
//! on keep-alive traffic, where connections are opened once per run.
//!
//! `relay_uring.rs` is the same floor on io_uring (monoio, as rgate).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Bytes read from one side before they must be written to the other.
pub const RELAY_BUF: usize = 16 * 1024;
/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// How long accepting a client may wait for its backend connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The token of the listening socket; pairs use `index << 1 | side`.
const LISTENER_TOKEN: u64 = u64::MAX;

pub fn run(listen: SocketAddr, to: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER_TOKEN)?;
    eprintln!("benchtool relay (epoll): {listen} -> {to}");
    let mut pairs = Pairs::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
    loop {
        let ready = epoll.wait(&mut events)?;
        for event in &events[..ready] {
            let (flags, token) = (event.events, event.u64);
            if token == LISTENER_TOKEN {
                accept_all(&listener, to, &epoll, &mut pairs)?;
                continue;
            }
            let (index, side) = Side::from_token(token);
            // An event for a pair closed earlier in this batch (or for its slot's new
            // pair) only costs a read that finds nothing.
            let Some(pair) = pairs.get_mut(index) else {
                continue;
            };
            let readable = flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
            let writable = flags & libc::EPOLLOUT as u32 != 0;
            let outcome = pair.on_ready(side, readable, writable);
            match outcome {
                Ok(true) => pair.update_interest(&epoll, index)?,
                Ok(false) | Err(_) => pairs.remove(index),
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    to: SocketAddr,
    epoll: &Epoll,
    pairs: &mut Pairs,
) -> io::Result<()> {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // The client gave up before we accepted it: nothing to pair.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        };
        let Ok(backend) = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) else {
            continue; // dropping the client closes it: what a relay with no backend does
        };
        let sockets = [client, backend];
        for s in &sockets {
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
        }
        let index = pairs.insert(Pair::new(sockets));
        let pair = pairs.get_mut(index).expect("just inserted");
        for side in [Side::Client, Side::Backend] {
            let fd = pair.sockets[side as usize].as_raw_fd();
            epoll.add(fd, libc::EPOLLIN as u32, side.token(index))?;
        }
    }
}

/// Which socket of a pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client = 0,
    Backend = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    fn token(self, index: usize) -> u64 {
        (index as u64) << 1 | self as u64
    }

    fn from_token(token: u64) -> (usize, Side) {
        let side = if token & 1 == 0 {
            Side::Client
        } else {
            Side::Backend
        };
        ((token >> 1) as usize, side)
    }
}

/// Bytes read from one socket and not yet written to the other, and whether that socket
/// has said end-of-stream.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    source: Source,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Open,
    /// Read 0 bytes: the other socket was shut down for writing.
    Ended,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: vec![0; RELAY_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            source: Source::Open,
        }
    }

    fn pending(&self) -> bool {
        self.start < self.end
    }

    /// Its source ended and everything it read was written on.
    fn finished(&self) -> bool {
        self.source == Source::Ended && !self.pending()
    }

    fn wants_read(&self) -> bool {
        !self.pending() && self.source == Source::Open
    }
}

/// A client connection and its backend connection; `pipes[s]` carries what `sockets[s]`
/// sent towards the other socket.
struct Pair {
    sockets: [TcpStream; 2],
    pipes: [Pipe; 2],
    /// The epoll events each socket is registered for.
    interest: [u32; 2],
}

impl Pair {
    fn new(sockets: [TcpStream; 2]) -> Pair {
        Pair {
            sockets,
            pipes: [Pipe::new(), Pipe::new()],
            interest: [libc::EPOLLIN as u32; 2],
        }
    }

    /// Moves bytes after `side` became readable or writable; `Ok(false)` once both
    /// directions have ended and nothing is left to write.
    fn on_ready(&mut self, side: Side, readable: bool, writable: bool) -> io::Result<bool> {
        if readable {
            self.transfer(side)?;
        }
        if writable {
            self.transfer(side.other())?;
        }
        Ok(!self.pipes.iter().all(Pipe::finished))
    }

    /// One read from `from` if its pipe is empty, then one write of what the pipe holds.
    fn transfer(&mut self, from: Side) -> io::Result<()> {
        let to = from.other();
        let pipe = &mut self.pipes[from as usize];
        if pipe.wants_read() {
            match (&self.sockets[from as usize]).read(&mut pipe.buf) {
                Ok(0) => {
                    pipe.source = Source::Ended;
                    let _ = self.sockets[to as usize].shutdown(Shutdown::Write);
                }
                Ok(n) => (pipe.start, pipe.end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if pipe.pending() {
            match (&self.sockets[to as usize]).write(&pipe.buf[pipe.start..pipe.end]) {
                Ok(n) => pipe.start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Re-registers a socket only when what it waits for changed: reading while its pipe
    /// is empty, writing while the other pipe holds bytes for it.
    fn update_interest(&mut self, epoll: &Epoll, index: usize) -> io::Result<()> {
        for side in [Side::Client, Side::Backend] {
            let mut wanted = 0;
            if self.pipes[side as usize].wants_read() {
                wanted |= libc::EPOLLIN as u32;
            }
            if self.pipes[side.other() as usize].pending() {
                wanted |= libc::EPOLLOUT as u32;
            }
            if wanted != self.interest[side as usize] {
                let fd = self.sockets[side as usize].as_raw_fd();
                epoll.modify(fd, wanted, side.token(index))?;
                self.interest[side as usize] = wanted;
            }
        }
        Ok(())
    }
}

/// The live pairs, by index; freed indices are reused. Dropping a pair closes both
/// sockets, which takes them out of the epoll set.
#[derive(Default)]
struct Pairs {
    slots: Vec<Option<Pair>>,
    free: Vec<usize>,
}

impl Pairs {
    fn insert(&mut self, pair: Pair) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(pair);
                i
            }
            None => {
                self.slots.push(Some(pair));
                self.slots.len() - 1
            }
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Pair> {
        self.slots.get_mut(index).and_then(Option::as_mut)
    }

    fn remove(&mut self, index: usize) {
        if self.slots[index].take().is_some() {
            self.free.push(index);
        }
    }
}

/// An epoll instance. The only `unsafe` of the relay is its three system calls.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd that
        // nothing else owns, so OwnedFd may close it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is a valid epoll_event for the duration of the call; the kernel
        // copies it and keeps no pointer.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for events (no timeout: the relay runs until killed); retries on EINTR.
    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: the kernel writes at most `max` events into `events`, which holds
            // `events.len()` of them.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, -1) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
