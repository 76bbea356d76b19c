//! The instance one attempt of a request goes to, held for as long as the attempt runs:
//! it counts the attempt in this core's in-flight requests of the instance (for
//! `least_requests`), reports the outcome to the instance's circuit, and gives a half-open
//! trial back when the attempt ends without a verdict (the client left).

use std::net::SocketAddr;
use std::rc::Rc;

use crate::backends::{BackendInstances, BackendTable, Instance};
use crate::balance::{pick, Picked};
use crate::config::BackendPolicy;
use crate::health::{BackendHealth, Failure};

pub(super) struct Attempt {
    /// The table the request started with (a retry picks from the same one).
    table: Rc<BackendTable>,
    backend: usize,
    picked: Picked,
    /// The outcome was reported (a trial is given back only without one).
    reported: bool,
    /// Instances tried before this one, for the next pick.
    tried: Vec<usize>,
}

impl Attempt {
    /// The first attempt of a request to backend `backend`, or `None` when it has no instance.
    pub(super) fn first(
        table: Rc<BackendTable>,
        backend: usize,
        policy: &BackendPolicy,
    ) -> Option<Attempt> {
        let picked = pick(table.backends.get(backend)?, policy.balance, &[])?;
        Some(Attempt::start(table, backend, picked, Vec::new()))
    }

    fn start(
        table: Rc<BackendTable>,
        backend: usize,
        picked: Picked,
        tried: Vec<usize>,
    ) -> Attempt {
        let attempt = Attempt {
            table,
            backend,
            picked,
            reported: false,
            tried,
        };
        let local = &attempt.instance().local;
        local.in_flight.set(local.in_flight.get() + 1);
        attempt
    }

    pub(super) fn backend(&self) -> &BackendInstances {
        &self.table.backends[self.backend]
    }

    pub(super) fn instance(&self) -> &Instance {
        &self.backend().instances[self.picked.index]
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.instance().addr
    }

    pub(super) fn backend_health(&self) -> &BackendHealth {
        &self.backend().health
    }

    /// The instance answered.
    pub(super) fn succeeded(&mut self) {
        self.reported = true;
        let b = self.backend();
        self.instance()
            .health
            .success(&self.instance().name(&b.name), self.picked.trial);
    }

    /// The attempt failed on the instance's side. Whether the backend can spare the
    /// instance is counted on `current`, the core's newest table (the request's own may be
    /// older, with instances that are gone).
    pub(super) fn failed(&mut self, policy: &BackendPolicy, current: &BackendTable, kind: Failure) {
        self.reported = true;
        let b = self.backend();
        let instance = self.instance();
        let siblings = || {
            current
                .backends
                .get(self.backend)
                .map_or((0, 0), BackendInstances::rotation)
        };
        instance.health.failure(
            &policy.breaker,
            &instance.name(&b.name),
            &b.health,
            siblings,
            self.picked.trial,
            kind,
        );
    }

    /// The next attempt, on an instance not tried yet; `None` when none is left.
    pub(super) fn next(&self, policy: &BackendPolicy) -> Option<Attempt> {
        let mut tried = self.tried.clone();
        tried.push(self.picked.index);
        let picked = pick(self.backend(), policy.balance, &tried)?;
        Some(Attempt::start(
            self.table.clone(),
            self.backend,
            picked,
            tried,
        ))
    }

    /// This attempt failed and the request goes on to another instance: counted as a retry.
    pub(super) fn count_retry(&self) {
        self.instance().health.count_retry();
        self.backend_health().count_retry();
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let instance = self.instance();
        instance
            .local
            .in_flight
            .set(instance.local.in_flight.get() - 1);
        if self.picked.trial && !self.reported {
            instance.health.release_trial();
        }
    }
}

/// A request counted in its backend's `max_in_flight` (all cores), until dropped.
pub(super) struct BackendSlot {
    table: Rc<BackendTable>,
    backend: usize,
}

impl BackendSlot {
    /// A slot of the attempt's backend, or `None` when it has `max` requests in flight.
    pub(super) fn take(attempt: &Attempt, max: u32) -> Option<BackendSlot> {
        attempt.backend_health().enter(max).then(|| BackendSlot {
            table: attempt.table.clone(),
            backend: attempt.backend,
        })
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        self.table.backends[self.backend].health.leave();
    }
}
