//! Tests of `balance.rs`: picks by policy and weight, tried instances, trials, failing open.

use std::time::Duration;

use super::*;
use crate::config::BreakerPolicy;
use crate::health::Failure;

fn backend(weights: &[u32]) -> BackendInstances {
    let instances = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Instance::new(([127, 0, 0, 1], 9000 + i as u16).into(), "t".into(), w))
        .collect();
    BackendInstances::new("b".into(), instances)
}

/// How many of `n` picks went to each instance.
fn shares(b: &BackendInstances, balance: Balance, n: usize) -> Vec<usize> {
    let mut got = vec![0; b.instances.len()];
    for _ in 0..n {
        got[pick(b, balance, &[]).unwrap().index] += 1;
    }
    got
}

fn eject(b: &BackendInstances, i: usize, ejection: Duration) {
    let policy = BreakerPolicy {
        failures: 1,
        timeouts: 1,
        ejection,
        ..BreakerPolicy::default()
    };
    let inst = &b.instances[i];
    inst.health.failure(
        &policy,
        &inst.name("b"),
        &b.health,
        || b.rotation(),
        false,
        Failure::Error,
    );
    assert!(inst.health.is_out(), "instance {i} was not ejected");
}

#[test]
fn round_robin_takes_exact_turns_by_weight() {
    let b = backend(&[1, 1, 1]);
    assert_eq!(shares(&b, Balance::RoundRobin, 300), [100, 100, 100]);
    let b = backend(&[3, 1]);
    assert_eq!(shares(&b, Balance::RoundRobin, 400), [300, 100]);
    // Smooth: the heavy instance's turns are spread, not four in a row.
    let b = backend(&[2, 1]);
    let order: Vec<usize> = (0..6)
        .map(|_| pick(&b, Balance::RoundRobin, &[]).unwrap().index)
        .collect();
    assert_eq!(order, [0, 1, 0, 0, 1, 0]);
}

#[test]
fn random_follows_the_weights() {
    let b = backend(&[1, 9]);
    let got = shares(&b, Balance::Random, 10_000);
    // 10 % ± a wide margin (the draw is random, the test must not be flaky).
    assert!((600..1400).contains(&got[0]), "{got:?}");
}

#[test]
fn least_requests_avoids_the_busy_instance() {
    let b = backend(&[1, 1, 1]);
    b.instances[0].local.in_flight.set(50);
    let got = shares(&b, Balance::LeastRequests, 3_000);
    // Instance 0 wins only when drawn twice, which the two-choice draw never does.
    assert_eq!(got[0], 0, "{got:?}");
    assert!(got[1] > 1000 && got[2] > 1000, "{got:?}");
}

#[test]
fn tried_instances_are_never_picked_again() {
    let b = backend(&[1, 1, 1]);
    for balance in [Balance::Random, Balance::RoundRobin, Balance::LeastRequests] {
        for _ in 0..100 {
            let p = pick(&b, balance, &[0, 2]).unwrap();
            assert_eq!(p.index, 1);
        }
        assert_eq!(pick(&b, balance, &[0, 1, 2]), None);
    }
    let one = backend(&[1]);
    assert_eq!(pick(&one, Balance::Random, &[0]), None);
    assert_eq!(pick(&backend(&[]), Balance::Random, &[]), None);
}

#[test]
fn an_ejected_instance_gets_no_traffic_then_one_trial() {
    let b = backend(&[1, 1, 1]);
    eject(&b, 0, Duration::from_millis(200));
    for balance in [Balance::Random, Balance::RoundRobin, Balance::LeastRequests] {
        assert_eq!(shares(&b, balance, 300)[0], 0);
    }
    std::thread::sleep(Duration::from_millis(250));
    // The first pick after the ejection is the trial; the others skip it while it runs.
    assert_eq!(
        pick(&b, Balance::Random, &[]),
        Some(Picked {
            index: 0,
            trial: true
        })
    );
    assert_eq!(shares(&b, Balance::Random, 300)[0], 0);
    b.instances[0]
        .health
        .success(&b.instances[0].name("b"), true);
    assert!(shares(&b, Balance::RoundRobin, 300)[0] > 0);
}

#[test]
fn with_every_instance_out_of_rotation_it_fails_open_but_does_not_retry() {
    let b = backend(&[1, 1]);
    eject(&b, 0, Duration::from_secs(60));
    b.instances[1].health.set_unhealthy(true);
    let got = shares(&b, Balance::RoundRobin, 1000);
    assert!(got[0] > 0 && got[1] > 0, "{got:?}");
    // A retry after instance 1 failed finds only the ejected 0: none.
    assert_eq!(pick(&b, Balance::Random, &[1]), None);
    // Nor after a failure on an instance in rotation when the rest is out.
    let b = backend(&[1, 1, 1]);
    eject(&b, 0, Duration::from_secs(60));
    b.instances[2].health.set_unhealthy(true);
    assert_eq!(pick(&b, Balance::Random, &[1]), None);
}

#[test]
fn a_lone_instance_ejected_while_it_had_siblings_gets_its_trial() {
    let b = backend(&[1, 1]);
    eject(&b, 0, Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    // Its sibling is gone: the table now holds only it.
    let lone = BackendInstances::new(
        "b".into(),
        vec![Instance {
            health: b.instances[0].health.clone(),
            ..Instance::new(b.instances[0].addr, "t".into(), 1)
        }],
    );
    let p = pick(&lone, Balance::Random, &[]).unwrap();
    assert_eq!(
        p,
        Picked {
            index: 0,
            trial: true
        }
    );
    lone.instances[0]
        .health
        .success(&lone.instances[0].name("b"), true);
    assert!(!lone.instances[0].health.is_out());
}
