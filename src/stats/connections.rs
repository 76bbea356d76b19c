//! One core's client-connection gauges and counts (single writer: the core), read by
//! `/stats` and `/metrics`. Not stored: they describe this process.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    /// Client connections open now.
    open: AtomicU64,
    /// New connections answered 503 and closed: their address had its cap.
    refused_per_ip: AtomicU64,
    /// Idle keep-alive connections closed to make room under the core's cap.
    idle_closed_at_cap: AtomicU64,
    /// Times the core stopped accepting at its cap with no idle connection to close.
    accept_paused: AtomicU64,
    /// Accepts that failed (e.g. out of descriptors).
    accept_failed: AtomicU64,
    /// Requests cut for a body slower than `limits.min_request_body_rate`.
    slow_body_cut: AtomicU64,
    /// Responses cut because the client read nothing for `timeouts.client_write_ms`.
    slow_read_cut: AtomicU64,
}

/// What a reader sees of one core's `ConnectionCounters`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionCounts {
    pub(crate) open: u64,
    pub(crate) refused_per_ip: u64,
    pub(crate) idle_closed_at_cap: u64,
    pub(crate) accept_paused: u64,
    pub(crate) accept_failed: u64,
    pub(crate) slow_body_cut: u64,
    pub(crate) slow_read_cut: u64,
}

impl ConnectionCounters {
    pub(crate) fn set_open(&self, n: usize) {
        self.open.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn refused_per_ip(&self) {
        self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn idle_closed_at_cap(&self) {
        self.idle_closed_at_cap.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accept_paused(&self) {
        self.accept_paused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accept_failed(&self) {
        self.accept_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_body_cut(&self) {
        self.slow_body_cut.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_read_cut(&self) {
        self.slow_read_cut.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> ConnectionCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionCounts {
            open: get(&self.open),
            refused_per_ip: get(&self.refused_per_ip),
            idle_closed_at_cap: get(&self.idle_closed_at_cap),
            accept_paused: get(&self.accept_paused),
            accept_failed: get(&self.accept_failed),
            slow_body_cut: get(&self.slow_body_cut),
            slow_read_cut: get(&self.slow_read_cut),
        }
    }
}
