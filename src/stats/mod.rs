//! Traffic statistics: per-core counters written without locks on the request path, a stats
//! thread adding them to SQLite, and the `/stats` and `/metrics` endpoints.
//!
//! * `histogram` — the fixed log-linear latency bucket layout (mergeable, ≤ 1.6 % error).
//! * `counters` — one core's atomic counters (single writer), by route, backend, instance.
//! * `traffic` — plain counts (`Traffic`, `Totals`): snapshots, deltas, merged totals.
//! * `store` — the SQLite database: additive deltas, totals, per-minute history.
//! * `collector` — the stats thread: collect, write `live − flushed`, publish.
//! * `render` — the `/stats` JSON and the `/metrics` Prometheus text.
//! * `node` — the `node` label (this host's name) on every `/metrics` series, for a cluster.
//! * `dashboard` — the `/stats` HTML page for browsers (chosen by `Accept`), which draws the
//!   JSON.
//!
//! `StatsHub` ties them together: the cores get their `CoreCounters` from it, the stats
//! thread publishes into it, and `render` answers `/stats` and `/metrics` from the published
//! database totals plus the live counters not yet written (see `collector` for why that
//! counts every request exactly once). Rendering runs on the core that got the request; it
//! reads atomics and clones what the stats thread published, and never touches SQLite.
//!
//! Errors: the store's failures are one `store::StoreError`. At start-up a database that
//! cannot be used is a `StatsError` naming the file, and rgate exits 2 (`startup`). While
//! serving, a failed write is logged by the stats thread and retried on the next tick;
//! counting and `/stats` go on.

mod collector;
mod connections;
mod counters;
mod dashboard;
mod histogram;
mod node;
mod render;
mod store;
mod traffic;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backends::BackendTable;
use crate::clock::unix_now;
use crate::config::{Config, Route, StatsSettings};

pub(crate) use collector::Collector;
pub(crate) use counters::CoreCounters;
pub(crate) use store::StatsError;

use crate::access_log::LogCounters;
use crate::limits::ConnectionLimits;
use collector::{Published, PublishedSlot, HISTORY_SHOWN_MINUTES};
use connections::ConnectionsView;
use store::{MinuteRow, Store};
use traffic::{Key, Totals};

/// Why a request did not get a normal backend response; counted as "errors by kind".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
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
    /// The backend had `max_in_flight` requests already (503).
    Overloaded,
}

impl ErrorKind {
    pub(crate) const ALL: [ErrorKind; 6] = [
        ErrorKind::NoInstance,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::InvalidResponse,
        ErrorKind::Client,
        ErrorKind::Overloaded,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The name used in `/stats`, `/metrics` and the database.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ErrorKind::NoInstance => "no_instance",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Client => "client",
            ErrorKind::Overloaded => "overloaded",
        }
    }
}

/// One finished request, as the proxy saw it.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    /// Index into `Config::routes`; None for the default response and rejected requests.
    pub(crate) route: Option<usize>,
    /// Index into `Config::backends`.
    pub(crate) backend: Option<usize>,
    pub(crate) instance: Option<SocketAddr>,
    /// The status the client got (0 if it got none: the connection was cut).
    pub(crate) status: u16,
    /// Request bytes received from the client (head and body).
    pub(crate) bytes_in: u64,
    /// Response bytes sent to the client (head and body).
    pub(crate) bytes_out: u64,
    /// From the request head received to the response fully sent.
    pub(crate) latency: Duration,
    pub(crate) error: Option<ErrorKind>,
}

/// Which of rgate's own endpoints a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The stats path, as JSON.
    Stats,
    /// The stats path, as the HTML page (a browser asked: `dashboard::prefers_html`).
    Dashboard,
    Metrics,
}

impl Endpoint {
    /// What the stats path answers a request with these header fields: the page when its
    /// `Accept` asks for HTML, the JSON otherwise.
    pub(crate) fn at_stats_path(headers: &[httparse::Header<'_>]) -> Endpoint {
        let accept = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("accept"))
            .map(|h| h.value);
        if dashboard::prefers_html(accept) {
            Endpoint::Dashboard
        } else {
            Endpoint::Stats
        }
    }

    /// The request field the answer depends on, for `Vary` (RFC 9110 §12.5.5): the stats path
    /// answers the page or the JSON by `Accept`, so a cache must keep them apart.
    pub(crate) fn vary(self) -> Option<&'static str> {
        match self {
            Endpoint::Stats | Endpoint::Dashboard => Some("Accept"),
            Endpoint::Metrics => None,
        }
    }
}

/// The statistics shared by all cores and the stats thread. (`pub` only because the per-core
/// state's public fields name it; everything it offers is `pub(crate)`.)
pub struct StatsHub {
    cores: Vec<Arc<CoreCounters>>,
    settings: StatsSettings,
    route_names: Vec<String>,
    /// Where each route was declared (`file`, `labels`), by index.
    route_sources: Vec<&'static str>,
    /// Per backend (index of `Config::backends`): its `max_in_flight`, shown with its count.
    max_in_flight: Vec<Option<u32>>,
    started_at: i64,
    started: Instant,
    /// This host's name: the `node` label of every `/metrics` series.
    node: String,
    /// When the database was created: counting began then.
    since: i64,
    published: PublishedSlot,
    /// The database, until the stats thread takes it.
    store: Mutex<Option<Store>>,
}

impl StatsHub {
    /// Opens (or creates) the statistics database at `db` and builds the counters of
    /// `cores` cores. An unusable database is an error: rgate must not run without it.
    pub(crate) fn open(config: &Config, db: &Path, cores: usize) -> Result<StatsHub, StatsError> {
        let now = unix_now();
        let mut store = Store::open(db, now)?;
        let (base, history) = store
            .read(now.div_euclid(60) - HISTORY_SHOWN_MINUTES + 1)
            .map_err(|reason| StatsError {
                path: db.to_path_buf(),
                reason,
            })?;
        Ok(StatsHub::with_store(
            config, cores, store, base, history, now,
        ))
    }

    /// A hub over an empty in-memory database (nothing survives the process); for tests.
    #[cfg(test)]
    pub(crate) fn new(config: &Config, cores: usize) -> StatsHub {
        let now = unix_now();
        let store = Store::in_memory(now);
        StatsHub::with_store(config, cores, store, Totals::default(), Vec::new(), now)
    }

    fn with_store(
        config: &Config,
        cores: usize,
        store: Store,
        base: Totals,
        history: Vec<MinuteRow>,
        now: i64,
    ) -> StatsHub {
        let route_names: Vec<String> = config.routes.iter().map(Route::name).collect();
        let backend_names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        StatsHub {
            cores: (0..cores)
                .map(|_| {
                    Arc::new(CoreCounters::new(
                        route_names.clone(),
                        backend_names.clone(),
                    ))
                })
                .collect(),
            settings: config.stats.clone(),
            route_names,
            route_sources: config.routes.iter().map(|r| r.source.name()).collect(),
            max_in_flight: config
                .backends
                .iter()
                .map(|b| b.policy.max_in_flight)
                .collect(),
            started_at: now,
            started: Instant::now(),
            node: node::hostname(),
            since: store.created_at(),
            published: Mutex::new(Arc::new(Published {
                base,
                flushed: Totals::default(),
                history,
            })),
            store: Mutex::new(Some(store)),
        }
    }

    pub(crate) fn core_counters(&self, core: usize) -> Arc<CoreCounters> {
        self.cores[core].clone()
    }

    /// The content type and body of one of rgate's own endpoints (the page is the same
    /// every time, and borrowed).
    pub(crate) fn render(
        &self,
        endpoint: Endpoint,
        table: &BackendTable,
        limits: &ConnectionLimits,
        access_log: Option<&LogCounters>,
    ) -> (&'static str, Cow<'static, [u8]>) {
        let view = || {
            let mut view = self.view(table, limits);
            view.access_log = access_log;
            view
        };
        match endpoint {
            Endpoint::Stats => ("application/json", render::json(&view()).into()),
            Endpoint::Dashboard => (
                dashboard::PAGE_CONTENT_TYPE,
                dashboard::PAGE.as_bytes().into(),
            ),
            Endpoint::Metrics => (
                "text/plain; version=0.0.4; charset=utf-8",
                render::prometheus(&view()).into(),
            ),
        }
    }

    /// Database totals as last written, plus what the cores counted since: the published
    /// pair is read before the live counters, so `live ≥ flushed` field by field.
    fn view<'a>(&'a self, table: &'a BackendTable, limits: &ConnectionLimits) -> render::View<'a> {
        let published = self.published();
        let unwritten = self.live().since(&published.flushed);
        let mut totals = published.base.clone();
        totals.merge(&unwritten);
        let mut history = published.history.clone();
        if let Some(t) = unwritten.get(&Key::total()) {
            let minute = unix_now().div_euclid(60);
            let r = t.requests();
            match history.last_mut().filter(|m| m.minute == minute) {
                Some(row) => {
                    row.requests += r.total;
                    row.errors += r.error;
                    row.latency.merge(&t.latency);
                }
                None => history.push(MinuteRow {
                    minute,
                    requests: r.total,
                    errors: r.error,
                    latency: t.latency.clone(),
                }),
            }
        }
        let oldest = unix_now().div_euclid(60) - HISTORY_SHOWN_MINUTES + 1;
        history.retain(|m| m.minute >= oldest);
        render::View {
            totals,
            history,
            started_at: self.started_at,
            since: self.since,
            node: &self.node,
            uptime: self.started.elapsed(),
            route_names: &self.route_names,
            route_sources: &self.route_sources,
            max_in_flight: &self.max_in_flight,
            table,
            connections: ConnectionsView {
                per_core: self.cores.iter().map(|c| c.connections.read()).collect(),
                limits: *limits,
                descriptors_open: connections::descriptors_open(),
            },
            access_log: None,
        }
    }

    /// The sum of every core's counters, as they are now.
    fn live(&self) -> Totals {
        let mut totals = Totals::default();
        for core in &self.cores {
            core.add_to(&mut totals);
        }
        totals
    }

    fn published(&self) -> Arc<Published> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, p: Published) {
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
    }

    fn take_store(&self) -> Option<Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
