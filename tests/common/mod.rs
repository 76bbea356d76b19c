//! The harness for rgate's integration tests: start the real `rgate` binary on a free port,
//! talk to it over raw sockets, and put real backend servers behind it. Every test crate in
//! `tests/` uses this one harness (`mod common;`); what only one kind of test needs beyond it
//! lives beside that test (Docker containers in `support_docker`, stats JSON in `stats/`).
//!
//! * `Gateway` (`gateway.rs`) — one rgate process with its own temp dir, config, db and pid
//!   file; killed on drop. `Gateway::options` starts the variants (private binary copy,
//!   extra args or env, another dir or db); `StderrLog`, `send_signal`, `exited` for processes.
//! * `Client` (`client.rs`) — a raw HTTP/1.1 client socket that reads responses by their
//!   framing; `get_once` for one `Connection: close` request.
//! * `Backend` (`backend.rs`) — a std-threads HTTP/1.1 server on 127.0.0.1:0 whose behaviour is picked per
//!   request by the query (`?do=chunked&n=100`, see `Backend`), and which reports what it
//!   received as JSON.
//!
//! Every read has a timeout and every loop a bound: a broken gateway fails a test, it never
//! hangs it. Not for: anything beyond 127.0.0.1, fixed ports, timing assertions.

#![allow(dead_code)]

mod backend;
mod client;
mod gateway;

// Not every test binary uses every part.
#[allow(unused_imports)]
pub use backend::{Backend, HOP_RESPONSE};
#[allow(unused_imports)]
pub use client::{get_once, Client, Echo, ReadError, Response};
#[allow(unused_imports)]
pub use gateway::{exited, send_signal, wait_child_exit, Gateway, Launch, StderrLog};

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The longest any single read or write may block in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
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

/// An address on 127.0.0.1 with nothing listening on it (connecting is refused).
pub fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
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
