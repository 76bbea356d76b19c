//! Tests of `health/mod.rs`: the circuit breaker's transitions, the half rule, the in-flight cap.

use std::time::Duration;

use super::*;
use crate::backends::{BackendInstances, Instance};

fn backend(n: usize) -> BackendInstances {
    let instances = (0..n)
        .map(|i| Instance::new(([127, 0, 0, 1], 9000 + i as u16).into(), "t".into(), 1))
        .collect();
    BackendInstances::new("b".into(), instances)
}

fn policy(ejection_ms: u64, max_ms: u64) -> BreakerPolicy {
    BreakerPolicy {
        failures: 3,
        timeouts: 2,
        ejection: Duration::from_millis(ejection_ms),
        max_ejection: Duration::from_millis(max_ms),
        on_5xx: false,
    }
}

fn fail(b: &BackendInstances, i: usize, p: &BreakerPolicy) {
    fail_as(b, i, p, false);
}

/// A failure of instance `i`, of its half-open trial when `trial`.
fn fail_as(b: &BackendInstances, i: usize, p: &BreakerPolicy, trial: bool) {
    fail_with(b, i, p, trial, Failure::Error);
}

fn fail_with(b: &BackendInstances, i: usize, p: &BreakerPolicy, trial: bool, kind: Failure) {
    let inst = &b.instances[i];
    inst.health
        .failure(p, &inst.name("b"), &b.health, || b.rotation(), trial, kind);
}

fn until_ms(h: &InstanceHealth) -> u64 {
    h.open_until_ms.load(Ordering::Relaxed)
}

#[test]
fn three_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() {
    let b = backend(3);
    let p = policy(30_000, 300_000);
    let h = &b.instances[0].health;
    fail(&b, 0, &p);
    fail(&b, 0, &p);
    h.success(&b.instances[0].name("b"), false);
    fail(&b, 0, &p);
    fail(&b, 0, &p);
    assert_eq!(h.circuit(), Circuit::Closed);
    fail(&b, 0, &p);
    assert_eq!(h.circuit(), Circuit::Open);
    assert_eq!(h.admission(now_ms), Admission::No);
    assert_eq!(h.ejections(), 1);
    assert!(matches!(h.shown(), Shown::Ejected { .. }));
    let left = until_ms(h) - now_ms();
    assert!((29_000..=30_000).contains(&left), "{left}");
}

#[test]
fn timeouts_open_the_circuit_at_their_own_threshold_and_count_as_failures_too() {
    let b = backend(4);
    let p = policy(30_000, 300_000);
    let timeout = |i| fail_with(&b, i, &p, false, Failure::Timeout);
    // Two timeouts in a row (this policy's `timeouts`) open it before three failures would.
    timeout(0);
    assert_eq!(b.instances[0].health.circuit(), Circuit::Closed);
    timeout(0);
    assert_eq!(b.instances[0].health.circuit(), Circuit::Open);
    // A timeout also counts as one of the `failures`: error, error, timeout opens it.
    fail(&b, 1, &p);
    fail(&b, 1, &p);
    timeout(1);
    assert_eq!(b.instances[1].health.circuit(), Circuit::Open);
    // A success resets both counts: timeout, success, timeout leaves it closed.
    let h = &b.instances[2].health;
    timeout(2);
    h.success(&b.instances[2].name("b"), false);
    timeout(2);
    assert_eq!(h.circuit(), Circuit::Closed);
    // Errors between timeouts do not reset the timeout count (here far from `failures`;
    // a new backend, as two of four are out already).
    let b = backend(4);
    let p = BreakerPolicy {
        failures: 5,
        ..policy(30_000, 300_000)
    };
    fail_with(&b, 3, &p, false, Failure::Timeout);
    fail(&b, 3, &p);
    assert_eq!(b.instances[3].health.circuit(), Circuit::Closed);
    fail_with(&b, 3, &p, false, Failure::Timeout);
    assert_eq!(b.instances[3].health.circuit(), Circuit::Open);
}

#[test]
fn a_failed_trial_doubles_the_ejection_up_to_the_maximum() {
    let b = backend(3);
    let p = policy(1_000, 3_000);
    let h = &b.instances[0].health;
    for _ in 0..3 {
        fail(&b, 0, &p);
    }
    let mut lengths = Vec::new();
    for _ in 0..3 {
        // The ejection ran out (as far as the admission is told): the trial is due.
        assert_eq!(h.admission(|| u64::MAX), Admission::TrialDue);
        assert!(h.claim_trial());
        assert!(!h.claim_trial(), "a second request took the same trial");
        assert_eq!(h.admission(|| u64::MAX), Admission::No);
        assert_eq!(h.shown(), Shown::Probing);
        // Attempts beside the trial (sent before the ejection) do not move the circuit.
        fail(&b, 0, &p);
        h.success(&b.instances[0].name("b"), false);
        assert_eq!(h.circuit(), Circuit::HalfOpen);
        fail_as(&b, 0, &p, true);
        assert_eq!(h.circuit(), Circuit::Open);
        lengths.push((until_ms(h) - now_ms() + 500) / 1000);
    }
    assert_eq!(lengths, [2, 3, 3]);
    assert_eq!(h.ejections(), 4);
    // A successful trial closes it and forgets the streak.
    assert!(h.claim_trial());
    h.success(&b.instances[0].name("b"), true);
    assert_eq!(h.circuit(), Circuit::Closed);
    // A core that saw the trial due before that success cannot reopen the circuit.
    assert!(!h.claim_trial());
    assert_eq!(h.circuit(), Circuit::Closed);
    assert_eq!(h.admission(now_ms), Admission::Yes);
    for _ in 0..3 {
        fail(&b, 0, &p);
    }
    assert_eq!((until_ms(h) - now_ms() + 500) / 1000, 1);
}

#[test]
fn a_released_trial_can_be_taken_again() {
    let b = backend(2);
    let p = policy(1, 1);
    for _ in 0..3 {
        fail(&b, 0, &p);
    }
    let h = &b.instances[0].health;
    assert!(h.claim_trial());
    h.release_trial();
    assert_eq!(h.admission(now_ms), Admission::TrialDue);
    assert!(h.claim_trial());
}

#[test]
fn fewer_than_half_of_the_instances_never_stay_in_rotation() {
    let p = policy(30_000, 300_000);
    for (n, may_eject) in [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2)] {
        let b = backend(n);
        for i in 0..n {
            for _ in 0..10 {
                fail(&b, i, &p);
            }
        }
        assert_eq!(b.rotation(), (n, may_eject), "{n} instances");
    }
    // An instance failing its health check counts as out.
    let b = backend(2);
    b.instances[1].health.set_unhealthy(true);
    for _ in 0..10 {
        fail(&b, 0, &p);
    }
    assert_eq!(b.instances[0].health.circuit(), Circuit::Closed);
}

#[test]
fn the_in_flight_limit_is_never_passed() {
    let h = BackendHealth::default();
    assert!(h.enter(2));
    assert!(h.enter(2));
    assert!(!h.enter(2));
    h.leave();
    assert!(h.enter(2));
    assert_eq!(h.in_flight(), 2);
}

#[test]
fn spare_rule() {
    assert!(!can_spare(1, 0));
    assert!(can_spare(2, 0));
    assert!(!can_spare(2, 1));
    assert!(can_spare(4, 1));
    assert!(!can_spare(4, 2));
}
