//! Traffic statistics (issue 4 builds this out): per-core counters written without locks on
//! the request path, a stats thread adding them to SQLite, and the `/stats` and `/metrics`
//! endpoints. This first version only defines the interface the data plane calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::BackendTable;
use crate::config::Config;

/// Why a request did not get a normal backend response; counted as "errors by kind".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The route's backend had no instance (503).
    NoInstance,
    /// Connecting to the backend failed or timed out (503).
    Connect,
    /// The backend did not answer in time (504), or went silent mid-body.
    Timeout,
    /// The backend's response was invalid, or it closed mid-exchange (502).
    InvalidResponse,
    /// The client sent a malformed request, or went away mid-exchange.
    Client,
}

/// One finished request, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Index into `Config::routes`; None for the default response and rejected requests.
    pub route: Option<usize>,
    /// Index into `Config::backends`.
    pub backend: Option<usize>,
    pub instance: Option<SocketAddr>,
    /// The status the client got (0 if it got none: the connection was cut).
    pub status: u16,
    /// Request bytes received from the client (head and body).
    pub bytes_in: u64,
    /// Response bytes sent to the client (head and body).
    pub bytes_out: u64,
    /// From the request head received to the response fully sent.
    pub latency: Duration,
    pub error: Option<ErrorKind>,
}

/// One core's counters. Only that core writes them.
#[derive(Debug, Default)]
pub struct CoreCounters {}

impl CoreCounters {
    pub fn record(&self, _record: &RequestRecord) {}
}

/// Which of rgate's own endpoints a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Stats,
    Metrics,
}

/// The statistics shared by all cores and the stats thread.
pub struct StatsHub {
    cores: Vec<Arc<CoreCounters>>,
}

impl StatsHub {
    pub fn new(_config: &Config, cores: usize) -> StatsHub {
        StatsHub {
            cores: (0..cores).map(|_| Arc::default()).collect(),
        }
    }

    pub fn core_counters(&self, core: usize) -> Arc<CoreCounters> {
        self.cores[core].clone()
    }

    /// The body and content type of one of rgate's own endpoints.
    pub fn render(&self, _endpoint: Endpoint, _table: &BackendTable) -> (&'static str, Vec<u8>) {
        ("application/json", b"{}".to_vec())
    }
}
