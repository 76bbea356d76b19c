//! Choosing the instance of a backend that a request (or its retry) goes to.
//!
//! 1. An instance whose ejection ran out gets the next request as its trial (half-open),
//!    if no other request has taken the trial.
//! 2. Otherwise an instance in rotation (`health::Admission::Yes`), by the backend's
//!    `balance`: `random` (weighted), `round_robin` (smooth weighted round robin, as nginx
//!    does it, on this core's copy of the table) or `least_requests` (of two instances drawn
//!    at random, the one with fewer of this core's requests in flight per unit of weight).
//! 3. When no instance is in rotation (every one ejected or failing its health check), any
//!    instance at random: rgate fails open rather than answer 503 with live containers
//!    behind. Not for a retry: one that would only find instances out of rotation is not
//!    made (an ejected instance is the least likely to answer, and may cost a timeout).
//!
//! Instances already tried for this request are never picked again. No allocation, no lock:
//! a pick reads each instance's shared state once and this core's counters.

use crate::backends::{BackendInstances, Instance};
use crate::config::Balance;
use crate::health::{now_ms, Admission};

/// The instance a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Picked {
    /// Index into the backend's instances.
    pub(crate) index: usize,
    /// This request is the instance's half-open trial: its outcome decides the circuit.
    pub(crate) trial: bool,
}

/// The instance for the next attempt of a request that already tried `tried`, or `None`
/// when every instance was tried (or there is none).
pub(crate) fn pick(
    backend: &BackendInstances,
    balance: Balance,
    tried: &[usize],
) -> Option<Picked> {
    let instances = &backend.instances;
    if instances.len() == 1 {
        // A backend of one never ejects its instance, and a failed health check fails open;
        // but it may have been ejected while it had siblings: then its requests go on, and
        // the first after the ejection is its trial, so that a success closes the circuit.
        if tried.contains(&0) {
            return None;
        }
        let health = &instances[0].health;
        let trial = health.admission(now_ms) == Admission::TrialDue && health.claim_trial();
        return Some(Picked { index: 0, trial });
    }
    let now = std::cell::OnceCell::new();
    let mut in_rotation = 0u64;
    for (i, instance) in instances.iter().enumerate() {
        if tried.contains(&i) {
            continue;
        }
        match instance.health.admission(|| *now.get_or_init(now_ms)) {
            Admission::Yes => in_rotation += u64::from(instance.weight),
            Admission::TrialDue if instance.health.claim_trial() => {
                return Some(Picked {
                    index: i,
                    trial: true,
                })
            }
            Admission::TrialDue | Admission::No => {}
        }
    }
    let admitted = |i: usize, inst: &Instance| {
        !tried.contains(&i) && inst.health.admission(|| u64::MAX) == Admission::Yes
    };
    let index = if in_rotation == 0 {
        if !tried.is_empty() {
            return None;
        }
        random_weighted(instances, |_, _| true)?
    } else {
        match balance {
            Balance::Random => random_weighted(instances, admitted)?,
            Balance::RoundRobin => round_robin(instances, admitted)?,
            Balance::LeastRequests => least_requests(instances, admitted)?,
        }
    };
    Some(Picked {
        index,
        trial: false,
    })
}

/// An instance at random among those `eligible`, in proportion to their weights.
fn random_weighted(
    instances: &[Instance],
    eligible: impl Fn(usize, &Instance) -> bool,
) -> Option<usize> {
    let total: u64 = instances
        .iter()
        .enumerate()
        .filter(|&(i, inst)| eligible(i, inst))
        .map(|(_, inst)| u64::from(inst.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut ticket = fastrand::u64(..total);
    for (i, inst) in instances.iter().enumerate() {
        if !eligible(i, inst) {
            continue;
        }
        let w = u64::from(inst.weight);
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
    }
    None
}

/// Smooth weighted round robin: every eligible instance gains its weight, the one with the
/// most is chosen and pays the total. Equal weights take exact turns.
fn round_robin(
    instances: &[Instance],
    eligible: impl Fn(usize, &Instance) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<(usize, i64)> = None;
    for (i, inst) in instances.iter().enumerate() {
        if !eligible(i, inst) {
            continue;
        }
        let w = i64::from(inst.weight);
        total += w;
        let current = inst.local.current_weight.get() + w;
        inst.local.current_weight.set(current);
        if best.is_none_or(|(_, c)| current > c) {
            best = Some((i, current));
        }
    }
    let (i, current) = best?;
    instances[i].local.current_weight.set(current - total);
    Some(i)
}

/// The power of two choices: two eligible instances at random (by weight), the one with
/// fewer in-flight requests per unit of weight.
fn least_requests(
    instances: &[Instance],
    eligible: impl Fn(usize, &Instance) -> bool,
) -> Option<usize> {
    let a = random_weighted(instances, &eligible)?;
    let Some(b) = random_weighted(instances, |i, inst| i != a && eligible(i, inst)) else {
        return Some(a);
    };
    let load = |i: usize| u64::from(instances[i].local.in_flight.get());
    let weight = |i: usize| u64::from(instances[i].weight);
    // a/wa <= b/wb, without division.
    if load(a) * weight(b) <= load(b) * weight(a) {
        Some(a)
    } else {
        Some(b)
    }
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
