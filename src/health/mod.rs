//! Instance health: what rgate knows of each instance beyond "its container runs".
//!
//! * Passive (`InstanceHealth`, a circuit breaker): the outcome of every request sent to
//!   an instance. Consecutive failures (connect refused or timed out, no response head in
//!   time, a reset or close before the response, an invalid response; optionally a 5xx)
//!   eject it for `ejection` (30 s): `failures` (3) of them, or `timeouts` (1) connect or
//!   response timeouts, each of which cost a client the whole timeout; then one trial request goes to it (half-open): success
//!   puts it back, failure ejects it again for twice as long, up to `max_ejection`.
//!   Ejection never leaves fewer than half of a backend's instances in rotation.
//! * Active: optional `health_check` requests from a control-plane thread; an instance
//!   that fails them is `unhealthy` and gets no traffic until it passes again.
//!
//! The state is **shared by all cores**, in atomics (no lock): an instance that fails on
//! one core is out on every core after `failures` failures in total, not per core. On the
//! request path a healthy instance's state is only read (one load per pick and one per
//! outcome), so its cache line stays shared; it is written when something fails or changes.
//! The control plane keeps each instance's state across new backend tables
//! (`backends::TablePublisher::publish` adopts it by address).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::BreakerPolicy;

pub(crate) mod checker;

/// Milliseconds on a clock shared by every thread, from the first time it is read.
pub(crate) fn now_ms() -> u64 {
    epoch().0.elapsed().as_millis() as u64
}

/// The clock's start, and the wall-clock time then (to show "ejected until" as a date).
fn epoch() -> &'static (Instant, SystemTime) {
    static EPOCH: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    EPOCH.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Unix milliseconds of a point on the shared clock.
pub(crate) fn unix_ms(at_ms: u64) -> u64 {
    let start = epoch().1.duration_since(UNIX_EPOCH).unwrap_or_default();
    (start + Duration::from_millis(at_ms)).as_millis() as u64
}

/// The circuit of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Circuit {
    /// In rotation.
    Closed,
    /// Out of rotation until a time.
    Open,
    /// Its ejection ran out: one trial request is (or may be) on its way.
    HalfOpen,
}

impl Circuit {
    fn from_u8(v: u8) -> Circuit {
        match v {
            1 => Circuit::Open,
            2 => Circuit::HalfOpen,
            _ => Circuit::Closed,
        }
    }
}

/// What a pick may do with an instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// In rotation.
    Yes,
    /// Out of rotation, but its ejection ran out and nobody is trying it: the picker may
    /// claim the trial (`claim_trial`).
    TrialDue,
    /// Out of rotation.
    No,
}

/// How an instance shows in `/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Up,
    /// Ejected until this unix time (ms).
    Ejected {
        until_unix_ms: u64,
    },
    Probing,
    Unhealthy,
}

impl Shown {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shown::Up => "up",
            Shown::Ejected { .. } => "ejected",
            Shown::Probing => "probing",
            Shown::Unhealthy => "unhealthy",
        }
    }
}

/// What kind of failure an attempt met, for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Refused, reset, closed early, invalid, or a 5xx when those count.
    Error,
    /// No connection or no response head in time: each one cost a client a whole timeout,
    /// so fewer of them open the circuit (`BreakerPolicy::timeouts`).
    Timeout,
}

/// One instance's health, shared by the cores and the health checker.
#[derive(Default)]
pub(crate) struct InstanceHealth {
    circuit: AtomicU8,
    /// Consecutive failures while the circuit is closed, and how many of them were timeouts.
    failures: AtomicU32,
    timeouts: AtomicU32,
    /// End of the current ejection, on `now_ms`'s clock.
    open_until_ms: AtomicU64,
    /// Ejections since the instance was last healthy (each doubles the next one).
    streak: AtomicU32,
    /// A trial request holds the half-open circuit.
    trial: AtomicBool,
    /// The active health check's verdict.
    unhealthy: AtomicBool,
    /// Counts since rgate started: ejections, and attempts that failed here and were sent
    /// to another instance.
    ejections: AtomicU64,
    retried_away: AtomicU64,
}

impl fmt::Debug for InstanceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceHealth({:?})", self.circuit())
    }
}

impl InstanceHealth {
    pub(crate) fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.circuit.load(Ordering::Acquire))
    }

    /// Whether a request may go here now. `now` is read only for an open circuit.
    pub(crate) fn admission(&self, now: impl FnOnce() -> u64) -> Admission {
        if self.unhealthy.load(Ordering::Relaxed) {
            return Admission::No;
        }
        match self.circuit() {
            Circuit::Closed => Admission::Yes,
            Circuit::Open if now() >= self.open_until_ms.load(Ordering::Acquire) => {
                Admission::TrialDue
            }
            Circuit::HalfOpen if !self.trial.load(Ordering::Relaxed) => Admission::TrialDue,
            Circuit::Open | Circuit::HalfOpen => Admission::No,
        }
    }

    /// Takes the one trial of an instance whose ejection ran out; false if another request
    /// took it first. The taker must report the outcome, or `release_trial`.
    pub(crate) fn claim_trial(&self) -> bool {
        if self
            .trial
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // Another core may have closed the circuit (its trial succeeded) between our look at
        // it and the claim: only an open or half-open circuit is tried.
        if self.swap_circuit(Circuit::Open, Circuit::HalfOpen)
            || self.circuit() == Circuit::HalfOpen
        {
            return true;
        }
        self.trial.store(false, Ordering::Release);
        false
    }

    /// The trial ended without a verdict (the client left): the next request may try.
    pub(crate) fn release_trial(&self) {
        self.trial.store(false, Ordering::Release);
    }

    /// A response came. `name` is for the log line when this closes the circuit; `trial`:
    /// the request was the half-open trial (only its outcome decides the circuit).
    pub(crate) fn success(&self, name: &InstanceName<'_>, trial: bool) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.timeouts.store(0, Ordering::Relaxed);
        }
        if trial
            && self.circuit() == Circuit::HalfOpen
            && self.swap_circuit(Circuit::HalfOpen, Circuit::Closed)
        {
            self.streak.store(0, Ordering::Relaxed);
            self.trial.store(false, Ordering::Release);
            log::info!("{name}: back in rotation (its trial request succeeded)");
        }
    }

    /// An attempt failed here. `backend` and `siblings` (how many of the backend's
    /// instances there are, and how many are out of rotation) are asked only when this
    /// failure would open the circuit: it opens only if the backend can spare the instance.
    /// `trial`: the attempt was the half-open trial (only its outcome reopens the circuit).
    /// A `Failure::Timeout` counts towards both thresholds, `failures` and `timeouts`.
    pub(crate) fn failure(
        &self,
        policy: &BreakerPolicy,
        name: &InstanceName<'_>,
        backend: &BackendHealth,
        siblings: impl FnOnce() -> (usize, usize),
        trial: bool,
        kind: Failure,
    ) {
        match self.circuit() {
            // Attempts that started before the ejection, or beside the trial, do not count.
            Circuit::Open => {}
            Circuit::HalfOpen if !trial => {}
            Circuit::HalfOpen => {
                let streak = self.streak.load(Ordering::Relaxed) + 1;
                let out = self.open_for(policy, streak);
                if self.swap_circuit(Circuit::HalfOpen, Circuit::Open) {
                    self.streak.store(streak, Ordering::Relaxed);
                    self.ejections.fetch_add(1, Ordering::Relaxed);
                    self.trial.store(false, Ordering::Release);
                    log::info!(
                        "{name}: ejected again for {} s (its trial request failed)",
                        out.as_secs_f64()
                    );
                }
            }
            Circuit::Closed => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let timeouts = match kind {
                    Failure::Timeout => self.timeouts.fetch_add(1, Ordering::Relaxed) + 1,
                    Failure::Error => self.timeouts.load(Ordering::Relaxed),
                };
                if failures < policy.failures && timeouts < policy.timeouts {
                    return;
                }
                let mut out = Duration::ZERO;
                let ejected = backend.exclusively(|| {
                    let (total, already_out) = siblings();
                    if !can_spare(total, already_out) {
                        return false;
                    }
                    // The end first: a core that sees the circuit open reads it next.
                    out = self.open_for(policy, 0);
                    self.swap_circuit(Circuit::Closed, Circuit::Open)
                });
                if ejected {
                    self.failures.store(0, Ordering::Relaxed);
                    self.timeouts.store(0, Ordering::Relaxed);
                    self.streak.store(0, Ordering::Relaxed);
                    self.ejections.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "{name}: ejected for {} s after {failures} consecutive failures \
                         ({timeouts} of them timeouts)",
                        out.as_secs_f64()
                    );
                }
            }
        }
    }

    /// Moves the circuit from `from` to `to`; false if another thread moved it first.
    fn swap_circuit(&self, from: Circuit, to: Circuit) -> bool {
        self.circuit
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Sets the end of an ejection (`streak` earlier ejections in a row double it); returns
    /// its length.
    fn open_for(&self, policy: &BreakerPolicy, streak: u32) -> Duration {
        let doubled = policy
            .ejection
            .checked_mul(1u32.checked_shl(streak).unwrap_or(u32::MAX))
            .unwrap_or(policy.max_ejection);
        let out = doubled.min(policy.max_ejection);
        self.open_until_ms.store(
            now_ms().saturating_add(out.as_millis() as u64),
            Ordering::Release,
        );
        out
    }

    /// Whether the circuit is open or half-open (for the "at least half stay" rule).
    pub(crate) fn is_out(&self) -> bool {
        self.circuit() != Circuit::Closed || self.unhealthy.load(Ordering::Relaxed)
    }

    /// Counts an attempt that failed here and went to another instance.
    pub(crate) fn count_retry(&self) {
        self.retried_away.fetch_add(1, Ordering::Relaxed);
    }

    /// The active check's verdict; true when it changed.
    pub(crate) fn set_unhealthy(&self, unhealthy: bool) -> bool {
        self.unhealthy.swap(unhealthy, Ordering::AcqRel) != unhealthy
    }

    pub(crate) fn shown(&self) -> Shown {
        if self.unhealthy.load(Ordering::Relaxed) {
            return Shown::Unhealthy;
        }
        match self.circuit() {
            Circuit::Closed => Shown::Up,
            Circuit::HalfOpen => Shown::Probing,
            Circuit::Open => {
                let until = self.open_until_ms.load(Ordering::Relaxed);
                if now_ms() >= until {
                    // Its ejection ran out; the next request to the backend is its trial.
                    Shown::Probing
                } else {
                    Shown::Ejected {
                        until_unix_ms: unix_ms(until),
                    }
                }
            }
        }
    }

    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retried_away.load(Ordering::Relaxed)
    }
}

/// Names an instance in log lines: `backend api, instance 10.0.0.5:80 (3f2a…)`.
pub(crate) struct InstanceName<'a> {
    pub(crate) backend: &'a str,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) source: &'a str,
}

impl fmt::Display for InstanceName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backend {}, instance {} ({})",
            self.backend, self.addr, self.source
        )
    }
}

/// A backend's shared counts and limits (all cores).
#[derive(Debug, Default)]
pub(crate) struct BackendHealth {
    /// Taken while one core ejects an instance, so two cores never eject past the half.
    ejecting: AtomicBool,
    /// Requests in flight to the backend, counted only when it has `max_in_flight`.
    in_flight: AtomicU32,
    /// Requests answered 503 `overloaded`.
    overloaded: AtomicU64,
    /// Attempts sent to another instance after a failure.
    retries: AtomicU64,
    /// Retries not made because the retry budget was spent.
    budget_exhausted: AtomicU64,
}

impl BackendHealth {
    /// Runs `eject` while no other core ejects an instance of this backend; false (nothing
    /// run) if one does: the caller's next failure tries again.
    pub(crate) fn exclusively(&self, eject: impl FnOnce() -> bool) -> bool {
        if self
            .ejecting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let done = eject();
        self.ejecting.store(false, Ordering::Release);
        done
    }

    /// Takes an in-flight slot under `max`; false when the backend is full.
    pub(crate) fn enter(&self, max: u32) -> bool {
        let mut now = self.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    /// Gives back a slot taken by `enter`.
    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// `(retries, retries refused by the budget, requests answered overloaded)` since start.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (
            self.retries.load(Ordering::Relaxed),
            self.budget_exhausted.load(Ordering::Relaxed),
            self.overloaded.load(Ordering::Relaxed),
        )
    }
}

/// Whether one more of `total` instances may leave rotation when `out` already have:
/// never fewer than half stay (a backend of one never ejects its instance).
pub(crate) fn can_spare(total: usize, out: usize) -> bool {
    (out + 1) * 2 <= total
}

#[cfg(test)]
mod tests;
