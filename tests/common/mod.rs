//! The harness for rgate's integration tests: start the real `rgate` binary on a free port,
//! talk to it over raw sockets, and put real backend servers behind it. Every test crate in
//! `tests/` uses this one harness (`mod common;`); what only one kind of test needs beyond it
//! lives beside that test (Docker containers in `support_docker`, the fake Docker daemon in
//! `support_fake_docker`, load clients in `support_load`, stats JSON in `stats/`, headless
//! Chromium and the DOM it dumps in `dashboard/`).
//!
//! * `Gateway` (`gateway.rs`) — one rgate process with its own temp dir, config, db and pid
//!   file. `Gateway::options` starts the variants (private binary copy, extra args or env,
//!   another dir or db); `StderrLog` for what a process says.
//! * `ProcessGroup` (`process.rs`) — every process a test starts leads a process group of its
//!   own, killed whole on drop (restart successors and serving processes included);
//!   `send_signal`, `exited`, `listening_port`.
//! * `Client` (`client.rs`) — a raw HTTP/1.1 client socket that reads responses by their
//!   framing; `get` — the suite's one `GET` (`Connection: close`, bounded, `Result`), also as
//!   `Gateway::get` (fails the test instead).
//! * `Backend` (`backend.rs`) — a std-threads HTTP/1.1 server on 127.0.0.1:0 whose behaviour is
//!   picked per request by the query (`?do=chunked&n=100`, `?do=hold` until `release`, see
//!   `Backend`), and which reports what it received as JSON.
//! * Here: `limits` (the one set of time limits), `poll` / `wait_for` / `wait_until` (the one
//!   way to wait for a condition: polled, with a deadline, never a fixed sleep), `TempDir`
//!   (removed on drop), `DeadPort` (a port that refuses, held), configs and generated bodies.
//!
//! Every read has a timeout and every loop a bound: a broken gateway fails a test, it never
//! hangs it. No port is found free, released and bound again later (another test could take it
//! meanwhile): rgate and backends bind port 0 and say what they got, and a port that must stay
//! someone's is held by a bound socket. Not for: anything beyond 127.0.0.1, fixed ports,
//! timing assertions.

// No blanket `allow(dead_code)`: each test binary compiles this module and uses a part of it,
// so the items only some binaries use carry their own `#[allow(dead_code)]` (with the reason
// "not every test binary uses it"); a helper no binary uses any more is still reported.

mod backend;
mod client;
mod gateway;
mod process;

#[allow(unused_imports)] // not every test binary uses every part
pub use backend::{Backend, Fault, HOP_RESPONSE};
#[allow(unused_imports)]
pub use client::{get, get_request, Client, Echo, ReadError, Response};
#[allow(unused_imports)]
pub use gateway::{Gateway, Launch, StderrLog};
#[allow(unused_imports)]
pub use process::{exited, listening_port, send_signal, wait_child_exit, ProcessGroup};

use std::fmt::Display;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The suite's one set of time limits. A limit is how long a test waits before it calls
/// something broken, never how long it expects something to take: on a loaded 2-CPU machine
/// everything is slower, so every limit is generous, and nothing waits for a limit to pass
/// (`wait_for` returns as soon as the condition holds).
#[allow(dead_code)] // not every test binary uses every limit
pub mod limits {
    use std::time::Duration;

    /// The longest any single read or write may block.
    pub const IO: Duration = Duration::from_secs(15);
    /// How long a process may take to start (say it listens, or say it is ready).
    pub const START: Duration = Duration::from_secs(30);
    /// How long a process told to stop (or expected to exit) may take to exit, beyond any
    /// drain it was given.
    pub const EXIT: Duration = Duration::from_secs(20);
    /// How long a condition polled by `wait_for` may take to hold: a restart to hand over,
    /// counters to reach the database, a Docker event to reach the table.
    pub const CONDITION: Duration = Duration::from_secs(20);
    /// How often `wait_for` looks again.
    pub const POLL_EVERY: Duration = Duration::from_millis(20);
}

pub use limits::IO as IO_TIMEOUT;

/// Size of the pieces bodies are generated and streamed in.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub const PIECE: usize = 64 * 1024;

// ----- polling: the suite's one way to wait for something -----

/// Asks `probe` every `POLL_EVERY` until it answers `Ok`, for at most `limit`; the answer, or
/// the last `Err` (what was seen instead) when the time is up. Runs `probe` at least once.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(format!("not within {limit:?}; last: {last}"))
            }
            Err(_) => thread::sleep(limits::POLL_EVERY),
        }
    }
}

/// `poll` that fails the test, naming `what` was awaited and what was seen last.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn wait_for<T>(
    limit: Duration,
    what: impl Display,
    probe: impl FnMut() -> Result<T, String>,
) -> T {
    poll(limit, probe).unwrap_or_else(|e| panic!("timed out waiting for {what}: {e}"))
}

/// Waits up to `limit` for `cond` to hold; fails the test naming `what` otherwise.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn wait_until(limit: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    wait_for(limit, what, || {
        if cond() {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
}

// ----- temporary directories and addresses -----

/// A fresh directory unique to this process and call, removed (with everything in it) when
/// dropped, also when the test failed.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct TempDir(PathBuf);

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new `TempDir` named after `tag`.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn temp_dir(tag: &str) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rgate-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// A port on 127.0.0.1 that refuses connections, held for as long as this lives: a socket
/// bound to it that never listens. Connecting gets a reset (nothing listens), and no other
/// test can bind the port meanwhile (unlike a port found free, released and used later).
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct DeadPort {
    pub addr: SocketAddr,
    _socket: OwnedFd,
}

#[allow(dead_code)] // not every test binary uses it
pub fn dead_port() -> DeadPort {
    let socket = bound_socket("127.0.0.1:0".parse().unwrap(), false).expect("bind a dead port");
    DeadPort {
        addr: local_addr(&socket).expect("getsockname"),
        _socket: socket,
    }
}

/// A TCP socket bound to `addr` (not listening), with SO_REUSEPORT when `shared`, so that
/// another socket of this process can bind the same port while it holds it.
pub(crate) fn bound_socket(addr: SocketAddr, shared: bool) -> io::Result<OwnedFd> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor we own from here on; the sockaddr is a
    // zeroed struct of the right size filled in below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            if opt == libc::SO_REUSEPORT && !shared {
                continue;
            }
            let rc = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
        let rc = libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// getsockname(2) of an IPv4 socket.
pub(crate) fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: getsockname writes at most `len` bytes into the zeroed struct.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::getsockname(
            fd.as_raw_fd(),
            &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
            &mut len,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Ok(SocketAddr::from((ip, u16::from_be(sa.sin_port))))
    }
}

/// YAML for one route per `(prefix, backend)` and one static backend per `(name, addrs)`.
#[allow(dead_code)] // shared by the test binaries; each uses a part
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

// ----- bodies: generated, never stored -----

/// Byte `i` of every generated body.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// Fills `buf` with the pattern starting at offset `from`.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn pattern(buf: &mut [u8], from: u64) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(from + k as u64);
    }
}

/// A running checksum (FNV-1a, 64 bits) and length of a body seen piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // shared by the test binaries; each uses a part
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

#[allow(dead_code)] // shared by the test binaries; each uses a part
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
#[allow(dead_code)] // shared by the test binaries; each uses a part
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
