//! The per-core keep-alive pool of backend connections, keyed by backend address.
//!
//! A connection enters only through `BackendConn::into_reusable` (proof that its response
//! ended cleanly and both sides agreed to keep-alive). The most recently used connection is
//! taken first (it is the least likely to have been closed by the backend); at most
//! `MAX_IDLE_PER_ADDR` wait per address, and none longer than the pool idle timeout.
//! One the backend closed while it was idle is dropped when taken, never handed out: a
//! connection idle for `STALE_CHECK_AFTER` or more is checked (one non-blocking peek)
//! before reuse. One reused sooner is not — under load that is almost every reuse, and the
//! peek would be a syscall per request; backends close idle connections after seconds, and
//! a backend that dies within those milliseconds is covered by the proxy's retry.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::upstream::ReusableConn;

/// Idle time after which a pooled connection is checked for a close before reuse.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(20);

/// Idle connections kept per backend address on one core.
pub(crate) const MAX_IDLE_PER_ADDR: usize = 64;

struct Idle {
    conn: ReusableConn,
    since: Instant,
}

pub(crate) struct IdlePool {
    idle_timeout: Duration,
    by_addr: HashMap<SocketAddr, VecDeque<Idle>>,
}

impl IdlePool {
    pub(crate) fn new(idle_timeout: Duration) -> IdlePool {
        IdlePool {
            idle_timeout,
            by_addr: HashMap::new(),
        }
    }

    /// The freshest idle connection to `addr`, if one is young enough.
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<ReusableConn> {
        let queue = self.by_addr.get_mut(&addr)?;
        while let Some(idle) = queue.pop_back() {
            let idle_for = idle.since.elapsed();
            if idle_for >= self.idle_timeout {
                continue;
            }
            if idle_for < STALE_CHECK_AFTER || !idle.conn.is_stale() {
                return Some(idle.conn);
            }
        }
        None
    }

    pub(crate) fn put(&mut self, addr: SocketAddr, conn: ReusableConn) {
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

    /// Closes every idle connection (drain).
    pub(crate) fn clear(&mut self) {
        self.by_addr.clear();
    }
}
