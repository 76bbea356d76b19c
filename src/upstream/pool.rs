//! The per-core keep-alive pool of backend connections, keyed by backend address.
//!
//! A connection enters only through `BackendConn::into_reusable` (proof that its response
//! ended cleanly and both sides agreed to keep-alive). The most recently used connection is
//! taken first (it is the least likely to have been closed by the backend); at most
//! `MAX_IDLE_PER_ADDR` wait per address, and none longer than the pool idle timeout.
//! Every connection is checked when taken (one non-blocking peek), however briefly it was
//! idle: one with any unread byte or an EOF is closed, never handed out. A byte nobody asked
//! for is a response to a request rgate did not send — handing that connection to the next
//! client would give it someone else's answer — and an EOF means the backend closed it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{IdleState, ReusableConn};

/// Idle connections kept per backend address on one core.
pub(crate) const MAX_IDLE_PER_ADDR: usize = 64;

struct Idle {
    conn: ReusableConn,
    since: Instant,
}

pub(crate) struct IdlePool {
    idle_timeout: Duration,
    by_addr: HashMap<SocketAddr, VecDeque<Idle>, BuildHasherDefault<AddrHasher>>,
    /// Instances seen sending bytes nobody asked for, and until when none of their
    /// connections is reused (see `STRAY_BYTES_COOLDOWN`).
    distrusted: HashMap<SocketAddr, Instant, BuildHasherDefault<AddrHasher>>,
}

/// How long this core reuses no connection to an instance after catching it sending bytes
/// beyond a response. Such bytes are only caught when they arrive before the connection is
/// reused; bytes that arrive after rgate's next request on it cannot be told from the
/// answer (no HTTP/1.1 proxy can), so an instance that did it once is not trusted with
/// reuse for a while: every request gets a connection of its own.
pub(crate) const STRAY_BYTES_COOLDOWN: Duration = Duration::from_secs(60);

/// The pool map's hasher. Its keys are backend addresses, which come from the config and
/// from Docker, never from clients, so a multiply-rotate hash (as in rustc's FxHash) is
/// safe here — and the map is used twice per request, where SipHash showed in profiles.
#[derive(Default)]
struct AddrHasher(u64);

impl AddrHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl IdlePool {
    pub(crate) fn new(idle_timeout: Duration) -> IdlePool {
        IdlePool {
            idle_timeout,
            by_addr: HashMap::default(),
            distrusted: HashMap::default(),
        }
    }

    /// The freshest idle connection to `addr`, if one is young enough.
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<ReusableConn> {
        let queue = self.by_addr.get_mut(&addr)?;
        while let Some(idle) = queue.pop_back() {
            if idle.since.elapsed() >= self.idle_timeout {
                continue;
            }
            match idle.conn.idle_state() {
                IdleState::Quiet => return Some(idle.conn),
                IdleState::Closed => {}
                IdleState::StrayBytes => {
                    self.distrust(addr);
                    return None;
                }
            }
        }
        None
    }

    /// Stops reusing connections to `addr` for `STRAY_BYTES_COOLDOWN`: it sent bytes beyond
    /// a response. Its idle connections are closed now.
    pub(crate) fn distrust(&mut self, addr: SocketAddr) {
        let now = Instant::now();
        self.by_addr.remove(&addr);
        let before = self.distrusted.insert(addr, now + STRAY_BYTES_COOLDOWN);
        // Said once per episode, not once per response of a backend that keeps doing it.
        if before.is_none_or(|until| until <= now) {
            log::warn!(
                "backend {addr} sent bytes beyond a response; its connections are not reused for {} s",
                STRAY_BYTES_COOLDOWN.as_secs()
            );
        }
    }

    pub(crate) fn put(&mut self, addr: SocketAddr, conn: ReusableConn) {
        if !self.distrusted.is_empty() {
            match self.distrusted.get(&addr) {
                Some(&until) if Instant::now() < until => return,
                Some(_) => {
                    self.distrusted.remove(&addr);
                }
                None => {}
            }
        }
        let queue = self.by_addr.entry(addr).or_default();
        if queue.len() >= MAX_IDLE_PER_ADDR {
            queue.pop_front();
        }
        queue.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes connections idle for longer than the timeout; drops empty entries.
    pub(crate) fn evict_expired(&mut self) {
        let timeout = self.idle_timeout;
        self.by_addr.retain(|_, queue| {
            queue.retain(|idle| idle.since.elapsed() < timeout);
            !queue.is_empty()
        });
    }

    /// Whether no connection is idle here (the core's tick may rest).
    pub(crate) fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Closes every idle connection (drain).
    pub(crate) fn clear(&mut self) {
        self.by_addr.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn nearby_backend_addresses_hash_apart() {
        let hasher = BuildHasherDefault::<AddrHasher>::default();
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:8080",
            "127.0.0.1:8081",
            "127.0.0.2:8080",
            "172.17.0.2:80",
            "172.17.0.3:80",
            "[::1]:8080",
            "[::2]:8080",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut hashes: Vec<u64> = addrs.iter().map(|a| hasher.hash_one(a)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), addrs.len());
        assert_eq!(hasher.hash_one(addrs[0]), hasher.hash_one(addrs[0]));
    }
}
