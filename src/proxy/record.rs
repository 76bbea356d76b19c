//! A request's statistics record, filled in as the request goes (route, backend, instance,
//! status, bytes, error kind) and committed to the core's counters exactly once, just
//! before the last byte of its response is written — so a client that has its whole
//! response and then asks `/stats` (on any core) always finds its request counted. rgate's
//! own endpoints (`/stats`, `/metrics`) are never counted.

use std::time::{Duration, Instant};

use crate::stats::{ErrorKind, RequestRecord};
use crate::worker::Worker;

/// One request's statistics. Committed exactly once, just before the last byte of its
/// response is written: a client that has the whole response and then asks `/stats`
/// (on any core) always finds its request counted.
pub(super) struct RequestRecorder {
    pub(super) record: RequestRecord,
    started: Instant,
    pub(super) committed: bool,
}

impl RequestRecorder {
    pub(super) fn new(started: Instant, bytes_in: u64) -> RequestRecorder {
        RequestRecorder {
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
        }
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
