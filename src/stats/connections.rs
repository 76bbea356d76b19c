//! One core's client-connection gauges and counts (single writer: the core), and how
//! `/stats` and `/metrics` show them with the limits and the descriptors in use. Not stored:
//! they describe this process.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::limits::ConnectionLimits;

#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    /// Client connections open now.
    open: AtomicU64,
    /// Of them, keep-alive connections parked without a task.
    parked: AtomicU64,
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
    pub(crate) parked: u64,
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

    pub(crate) fn set_parked(&self, n: usize) {
        self.parked.store(n as u64, Ordering::Relaxed);
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
            parked: get(&self.parked),
            refused_per_ip: get(&self.refused_per_ip),
            idle_closed_at_cap: get(&self.idle_closed_at_cap),
            accept_paused: get(&self.accept_paused),
            accept_failed: get(&self.accept_failed),
            slow_body_cut: get(&self.slow_body_cut),
            slow_read_cut: get(&self.slow_read_cut),
        }
    }
}

/// What `/stats` and `/metrics` show of the connections.
pub(crate) struct ConnectionsView {
    pub(crate) per_core: Vec<ConnectionCounts>,
    pub(crate) limits: ConnectionLimits,
    /// Descriptors this process has open (`None` where /proc cannot tell).
    pub(crate) descriptors_open: Option<u64>,
}

/// Descriptors open in this process: the entries of /proc/self/fd (one directory read, at
/// the time `/stats` or `/metrics` is asked; never on the request path).
pub(crate) fn descriptors_open() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

impl ConnectionsView {
    fn sum(&self, pick: fn(&ConnectionCounts) -> u64) -> u64 {
        self.per_core.iter().map(pick).sum()
    }

    /// The `connections` object of `/stats`.
    pub(crate) fn json(&self) -> Value {
        let l = &self.limits;
        json!({
            "open": self.sum(|c| c.open),
            "open_per_core": self.per_core.iter().map(|c| c.open).collect::<Vec<_>>(),
            "parked": self.sum(|c| c.parked),
            "max": l.max_connections,
            "max_per_core": l.per_core,
            "max_per_ip_per_core": l.per_ip,
            "refused_per_ip": self.sum(|c| c.refused_per_ip),
            "idle_closed_at_cap": self.sum(|c| c.idle_closed_at_cap),
            "accept_paused": self.sum(|c| c.accept_paused),
            "accept_failed": self.sum(|c| c.accept_failed),
            "slow_body_cut": self.sum(|c| c.slow_body_cut),
            "slow_read_cut": self.sum(|c| c.slow_read_cut),
            "descriptors_open": self.descriptors_open,
            "descriptors_limit": l.nofile,
        })
    }

    /// The connection families of `/metrics`.
    pub(crate) fn prometheus(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, lines: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            out.push_str(lines);
        };
        let mut open = String::new();
        for (core, c) in self.per_core.iter().enumerate() {
            let _ = writeln!(open, "rgate_connections_open{{core=\"{core}\"}} {}", c.open);
        }
        family(
            "rgate_connections_open",
            "gauge",
            "Client connections open, by core.",
            &open,
        );
        let mut parked = String::new();
        for (core, c) in self.per_core.iter().enumerate() {
            let _ = writeln!(
                parked,
                "rgate_connections_parked{{core=\"{core}\"}} {}",
                c.parked
            );
        }
        family(
            "rgate_connections_parked",
            "gauge",
            "Of the open client connections, idle keep-alive ones parked without a task, by core.",
            &parked,
        );
        family(
            "rgate_connections_max",
            "gauge",
            "The most client connections rgate takes (limits.max_connections, or from the open-files limit).",
            &format!("rgate_connections_max {}\n", self.limits.max_connections),
        );
        family(
            "rgate_connections_refused_total",
            "counter",
            "New connections refused, by the limit that refused them.",
            &format!(
                "rgate_connections_refused_total{{limit=\"per_ip\"}} {}\n",
                self.sum(|c| c.refused_per_ip)
            ),
        );
        family(
            "rgate_connections_idle_closed_total",
            "counter",
            "Idle keep-alive connections closed to make room at the connection cap.",
            &format!(
                "rgate_connections_idle_closed_total {}\n",
                self.sum(|c| c.idle_closed_at_cap)
            ),
        );
        family(
            "rgate_accept_paused_total",
            "counter",
            "Times a core stopped accepting at its connection cap with no idle connection to close.",
            &format!("rgate_accept_paused_total {}\n", self.sum(|c| c.accept_paused)),
        );
        family(
            "rgate_accept_failed_total",
            "counter",
            "Accepts that failed (e.g. out of descriptors).",
            &format!(
                "rgate_accept_failed_total {}\n",
                self.sum(|c| c.accept_failed)
            ),
        );
        family(
            "rgate_slow_clients_cut_total",
            "counter",
            "Client exchanges cut: a request body under the minimum rate (body), a client that read nothing in time (read).",
            &format!(
                "rgate_slow_clients_cut_total{{kind=\"body\"}} {}\nrgate_slow_clients_cut_total{{kind=\"read\"}} {}\n",
                self.sum(|c| c.slow_body_cut),
                self.sum(|c| c.slow_read_cut)
            ),
        );
        if let Some(n) = self.descriptors_open {
            family(
                "rgate_open_fds",
                "gauge",
                "Open file descriptors of this process.",
                &format!("rgate_open_fds {n}\n"),
            );
        }
        family(
            "rgate_max_fds",
            "gauge",
            "The open-files limit (soft, after raising it to the hard one at start).",
            &format!("rgate_max_fds {}\n", self.limits.nofile),
        );
    }
}
