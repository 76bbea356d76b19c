//! A request's statistics record, filled in as the request goes (route, backend, instance,
//! status, bytes, error kind) and committed to the core's counters exactly once, just
//! before the last byte of its response is written — so a client that has its whole
//! response and then asks `/stats` (on any core) always finds its request counted — and
//! its access-log line, written once the exchange has ended (so it knows whether the
//! response was cut). rgate's own endpoints (`/stats`, `/metrics`) are neither counted
//! nor logged.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::access_log::format::{Entry, LoggedHead};

use crate::http::request_id::RequestId;
use crate::stats::{ErrorKind, RequestRecord};
use crate::worker::Worker;

/// One request's statistics. Committed exactly once, just before the last byte of its
/// response is written: a client that has the whole response and then asks `/stats`
/// (on any core) always finds its request counted.
pub(super) struct RequestRecorder {
    pub(super) record: RequestRecord,
    pub(super) id: RequestId,
    started: Instant,
    committed: bool,
    /// rgate's own endpoint: neither counted nor logged.
    own_endpoint: bool,
    /// The head's fields for the access log (when there is one and the head parsed).
    pub(super) head: Option<LoggedHead>,
    /// The backend's status and how long its head took after the request was decided.
    pub(super) upstream: Option<(u16, Duration)>,
    /// Attempts on other instances after the first.
    pub(super) retries: u32,
}

impl RequestRecorder {
    pub(super) fn new(started: Instant, bytes_in: u64, id: RequestId) -> RequestRecorder {
        RequestRecorder {
            id,
            record: RequestRecord {
                route: None,
                backend: None,
                instance: None,
                status: 0,
                bytes_in,
                bytes_out: 0,
                latency: Duration::ZERO,
                error: None,
            },
            started,
            committed: false,
            own_endpoint: false,
            head: None,
            upstream: None,
            retries: 0,
        }
    }

    /// The request is for rgate's own endpoint: it is not traffic.
    pub(super) fn own_endpoint(&mut self) {
        self.own_endpoint = true;
        self.committed = true;
    }

    /// Time since the request's head arrived.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes the request's access-log line, if the core has a log. `cut`: the response was
    /// cut after its head.
    pub(super) fn log(&mut self, core: &Worker, client: IpAddr, cut: bool) {
        let Some(log) = &core.access_log else { return };
        if self.own_endpoint {
            return;
        }
        let r = &self.record;
        let config = &core.settings.config;
        let mut entry = Entry {
            unix_ms: 0,
            client,
            head: self.head.as_ref(),
            status: r.status,
            upstream: self.upstream,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration: self.started.elapsed(),
            route: r
                .route
                .and_then(|i| core.settings.route_names.get(i))
                .map(String::as_str),
            backend: r
                .backend
                .and_then(|i| config.backends.get(i))
                .map(|b| b.name.as_str()),
            instance: r.instance,
            request_id: self.id.as_str(),
            error: r.error.map(|e| e.name()),
            retries: self.retries,
            cut,
        };
        log.write(&mut entry, core.alarms.is_draining());
    }

    pub(super) fn commit(&mut self, core: &Worker) {
        if !self.committed {
            self.committed = true;
            self.record.latency = self.started.elapsed();
            core.counters.record(&self.record);
        }
    }

    /// Marks the request as failed, and how (the last failure wins).
    pub(super) fn fail(&mut self, kind: ErrorKind) {
        self.record.error = Some(kind);
    }
}
