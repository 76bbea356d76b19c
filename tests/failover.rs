//! Failing instances on the wire: a fixed-address backend of several instances of which one
//! refuses connections, hangs, resets, is slow, or recovers — and what clients see (no
//! error that another instance could have spared them), what the failing instance sees
//! (ejected within a few failures, tried again after its ejection), and what is never done
//! (a POST sent twice, retries beyond the budget). Also the balancing policies and
//! `max_in_flight`.

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, limits, wait_for, wait_until, Backend, Client, Fault, Gateway};

/// A gateway routing `/` to backend `b` of `instances`, with `policy` (YAML lines at the
/// backend entry's indentation) and `extra` top-level YAML.
fn gateway(instances: &[&Backend], policy: &str, extra: &str, cores: u32) -> Gateway {
    let list: Vec<String> = instances.iter().map(|b| format!("'{}'", b.addr)).collect();
    let mut y = format!(
        "routes:\n  - path_prefix: /\n    backend: b\nbackends:\n  - name: b\n    addresses: [{}]\n",
        list.join(", ")
    );
    for line in policy.lines().filter(|l| !l.trim().is_empty()) {
        y += &format!("    {}\n", line.trim_start());
    }
    y += extra;
    Gateway::options(&y).cores(cores).start()
}

/// `n` GETs of `path` from `clients` threads at once (each its own connections); the
/// statuses seen, by status.
fn load(gw: &Gateway, clients: usize, n: usize, path: &str) -> BTreeMap<u16, usize> {
    let addr = gw.addr;
    let per_client = n / clients;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_string();
            thread::spawn(move || {
                (0..per_client)
                    .map(|_| get(addr, &path).map_or(0, |r| r.status))
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let mut seen = BTreeMap::new();
    for t in threads {
        for status in t.join().unwrap() {
            *seen.entry(status).or_default() += 1;
        }
    }
    seen
}

/// Which instance answered each of `n` sequential GETs, by name.
fn served_by(gw: &Gateway, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = get(gw.addr, "/who").unwrap();
        *seen.entry(r.echo().backend().to_string()).or_default() += 1;
    }
    seen
}

fn all_ok(n: usize) -> BTreeMap<u16, usize> {
    BTreeMap::from([(200, n)])
}

/// Sends GETs (each must succeed) until rgate logs `line`; bounded by `limits::CONDITION`.
fn get_until_logged(gw: &Gateway, line: &str) {
    wait_until(limits::CONDITION, format!("{line:?} in the log"), || {
        assert_eq!(get(gw.addr, "/until").unwrap().status, 200);
        gw.log().contains(line)
    });
}

#[test]
fn one_refusing_instance_of_three_costs_no_client_an_error() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let mut refusing = Backend::start("refusing");
    refusing.stop();
    let gw = gateway(&[&a, &refusing, &b], "", "", 2);
    assert_eq!(load(&gw, 4, 1000, "/x"), all_ok(1000));
    gw.wait_log(
        limits::CONDITION,
        &format!("instance {} (static): ejected", refusing.addr),
    );
    assert_eq!(a.requests() + b.requests(), 1000);
}

#[test]
fn a_hanging_instance_costs_gets_nothing_and_is_ejected_after_three_timeouts() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let hanging = Backend::start("hanging");
    hanging.set_fault(Fault::Hang);
    let gw = gateway(
        &[&a, &hanging, &b],
        "",
        "timeouts:\n  response_header_ms: 300\n",
        2,
    );
    assert_eq!(load(&gw, 4, 200, "/x"), all_ok(200));
    gw.wait_log(
        limits::CONDITION,
        &format!("instance {} (static): ejected", hanging.addr),
    );
    // Ejected: the requests that follow never wait on it (so their latency is the healthy
    // instances'; `make bench` measures it).
    let before = hanging.requests();
    assert!(
        (3..=20).contains(&before),
        "{before} requests reached the hung instance"
    );
    assert_eq!(load(&gw, 4, 200, "/y"), all_ok(200));
    assert_eq!(hanging.requests(), before);
}

#[test]
fn a_request_with_a_body_is_never_sent_twice() {
    // The instance resets every connection once it has the head: whether the body went out
    // or not, it may have acted on it.
    let a = Backend::start("a");
    let resetting = Backend::start("resetting");
    resetting.set_fault(Fault::ResetAfterHead);
    let gw = gateway(
        &[&a, &resetting],
        "circuit_breaker: {failures: 1000}",
        "",
        1,
    );
    let mut failed = 0;
    for i in 0..40 {
        let mut c = gw.client();
        let target = format!("/post/{i}");
        c.send(
            format!("POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
                .as_bytes(),
        );
        let r = c.read_response(false);
        let copies = a.received("POST", &target) + resetting.received("POST", &target);
        assert_eq!(
            copies, 1,
            "POST {target} reached the backends {copies} times"
        );
        if r.status != 200 {
            r.gateway_error(502);
            failed += 1;
        }
    }
    // Both instances had their share (the test would prove nothing otherwise).
    assert!(
        failed > 0 && a.requests() > 0,
        "{failed} failed, {} to a",
        a.requests()
    );
}

#[test]
fn a_get_reset_before_its_response_is_answered_by_another_instance() {
    let a = Backend::start("a");
    let resetting = Backend::start("resetting");
    resetting.set_fault(Fault::ResetAfterHead);
    // Not ejected, and a budget that allows a retry per request: every request that meets
    // the resetting instance is retried.
    let gw = gateway(
        &[&a, &resetting],
        "circuit_breaker: {failures: 1000}\nretries: {budget_percent: 100}",
        "",
        1,
    );
    assert_eq!(load(&gw, 2, 100, "/x"), all_ok(100));
    assert!(
        resetting.requests() > 10,
        "the resetting instance was hardly tried"
    );
    // DELETE is idempotent too; a POST without a body is not: never sent twice, so some
    // meet the resetting instance and fail.
    for _ in 0..20 {
        let r = gw.request("DELETE /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    let mut failed = 0;
    for i in 0..40 {
        let target = format!("/p/{i}");
        let r = gw.request(&format!(
            "POST {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(
            a.received("POST", &target) + resetting.received("POST", &target),
            1
        );
        failed += usize::from(r.status == 502);
    }
    assert!(failed > 0, "no POST met the resetting instance");
}

#[test]
fn an_ejected_instance_gets_traffic_again_once_it_recovers() {
    let a = Backend::start("a");
    let mut flaky = Backend::start("flaky");
    flaky.stop();
    let gw = gateway(&[&a, &flaky], "circuit_breaker: {ejection_ms: 1000}", "", 1);
    get_until_logged(
        &gw,
        &format!("instance {} (static): ejected for 1 s", flaky.addr),
    );
    let ejected_at = Instant::now();
    flaky.restart();
    // Within the ejection and a second, the trial request reaches it, and it is back.
    let back = wait_for(
        Duration::from_secs(2),
        "the recovered instance to serve",
        || {
            let r = get(gw.addr, "/again")?;
            if r.echo().backend() == "flaky" {
                Ok(ejected_at.elapsed())
            } else {
                Err("not yet".into())
            }
        },
    );
    assert!(
        back >= Duration::from_millis(900),
        "tried after {back:?}: ejection not respected"
    );
    gw.wait_log(limits::CONDITION, "back in rotation");
    let shares = served_by(&gw, 40);
    assert!(shares.get("flaky").is_some_and(|&n| n >= 5), "{shares:?}");
}

#[test]
fn a_failed_trial_ejects_the_instance_again_for_twice_as_long() {
    let a = Backend::start("a");
    let mut down = Backend::start("down");
    down.stop();
    let gw = gateway(&[&a, &down], "circuit_breaker: {ejection_ms: 300}", "", 1);
    get_until_logged(&gw, "ejected for 0.3 s");
    // Requests go on: the trial fails (and is retried on `a`), the ejection doubles.
    get_until_logged(&gw, "ejected again for 0.6 s");
    get_until_logged(&gw, "ejected again for 1.2 s");
}

#[test]
fn with_every_instance_failing_retries_stay_within_the_budget() {
    // Three instances that reset every request: each attempt is a connection they count.
    let instances: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("r{i}"))).collect();
    for b in &instances {
        b.set_fault(Fault::ResetAfterHead);
    }
    let refs: Vec<&Backend> = instances.iter().collect();
    // No ejection (it would hide the budget), one core.
    let gw = gateway(&refs, "circuit_breaker: {failures: 100000}", "", 1);
    let started = Instant::now();
    let requests = 500;
    let seen = load(&gw, 2, requests, "/x");
    assert_eq!(seen, BTreeMap::from([(502, requests)]));
    let attempts: usize = instances.iter().map(Backend::requests).sum();
    let seconds = started.elapsed().as_secs() as usize + 1;
    // The budget, on the one core: 20 % of the requests of the last 10 s, and a reserve
    // of 10 per second of that window (both 10 s windows the run may touch).
    let windows = seconds.div_ceil(10) + 1;
    let allowed = requests + requests / 5 + 100 * windows;
    assert!(
        attempts <= allowed,
        "{attempts} attempts for {requests} requests (allowed {allowed})"
    );
    // Retries did happen, up to the budget.
    assert!(attempts > requests + requests / 10, "{attempts} attempts");
}

#[test]
fn round_robin_spreads_exactly() {
    let bs: Vec<Backend> = ["a", "b", "c"].iter().map(|n| Backend::start(n)).collect();
    let refs: Vec<&Backend> = bs.iter().collect();
    let gw = gateway(&refs, "balance: round_robin", "", 1);
    let shares = served_by(&gw, 300);
    assert_eq!(
        shares,
        BTreeMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
    );
}

#[test]
fn weights_of_fixed_addresses_set_the_shares() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let y = format!(
        "routes:\n  - path_prefix: /\n    backend: b\nbackends:\n  - name: b\n    balance: round_robin\n    addresses: [{{address: '{}', weight: 3}}, '{}']\n",
        a.addr, b.addr
    );
    let gw = Gateway::options(&y).cores(1).start();
    let shares = served_by(&gw, 200);
    assert_eq!(
        shares,
        BTreeMap::from([("a".into(), 150), ("b".into(), 50)])
    );
}

#[test]
fn least_requests_avoids_a_slow_instance() {
    let (fast, slow) = (Backend::start("fast"), Backend::start("slow"));
    slow.set_fault(Fault::Slow(200));
    let gw = gateway(&[&fast, &slow], "balance: least_requests", "", 1);
    assert_eq!(load(&gw, 4, 200, "/x"), all_ok(200));
    // Random would send it half (100); with two choices it gets a request only while it
    // has no more in flight than the fast one.
    assert!(
        slow.requests() < 40,
        "slow instance got {} of 200",
        slow.requests()
    );
}

#[test]
fn max_in_flight_answers_overloaded_with_retry_after_and_queues_nothing() {
    let b = Backend::start("b");
    let gw = gateway(&[&b], "max_in_flight: 2", "", 2);
    let held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = gw.client();
            c.send(b"GET /h?do=hold HTTP/1.1\r\nHost: t\r\n\r\n");
            c
        })
        .collect();
    wait_until(limits::CONDITION, "two held requests", || b.held() == 2);
    let r = get(gw.addr, "/third").unwrap();
    let v = r.gateway_error(503);
    assert_eq!(v["error"], "overloaded");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(b.received("GET", "/third"), 0);
    b.release();
    for mut c in held {
        assert_eq!(c.read_response(false).status, 200);
    }
    assert_eq!(get(gw.addr, "/fourth").unwrap().status, 200);
}

/// `clients` threads each send `each` POSTs with a body, one at a time, through a 2-core
/// gateway to three instances of which one hangs; returns how many got 504 and how many
/// reached the hanging instance.
fn posts_past_a_hanging_instance(clients: usize, each: usize) -> (usize, usize) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let hanging = Backend::start("hanging");
    hanging.set_fault(Fault::Hang);
    // The default circuit breaker: one response timeout ejects.
    let gw = gateway(
        &[&a, &hanging, &b],
        "",
        "timeouts:\n  response_header_ms: 300\n",
        2,
    );
    let timeouts: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|k| {
                let gw = &gw;
                s.spawn(move || {
                    let mut timeouts = 0;
                    for i in 0..each {
                        let mut c = gw.client();
                        c.send(
                            format!(
                                "POST /p/{k}/{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
                            )
                            .as_bytes(),
                        );
                        let r = c.read_response(false);
                        if r.status != 200 {
                            assert_eq!(r.gateway_error(504)["error"], "gateway_timeout");
                            timeouts += 1;
                        }
                    }
                    timeouts
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    (timeouts, hanging.requests())
}

#[test]
fn requests_that_cannot_be_retried_fail_at_most_once_per_core() {
    // POSTs with a body to a hanging instance: one sent there times out (504) and is not
    // retried (the backend may have acted on it); that timeout ejects the instance at once.
    let (timeouts, reached) = posts_past_a_hanging_instance(1, 60);
    assert_eq!(
        timeouts, 1,
        "one client, one request at a time: exactly one"
    );
    assert_eq!(reached, 1);
    // Two clients at once (as many as the gateway has cores): each may have one request at
    // the hanging instance before the first timeout ejects it; never more.
    let (timeouts, reached) = posts_past_a_hanging_instance(2, 40);
    assert!((1..=2).contains(&timeouts), "{timeouts} timeouts");
    assert_eq!(
        reached, timeouts,
        "every POST that reached it was answered 504"
    );
}

#[test]
fn a_backend_that_stops_reading_an_upload_is_answered_for_and_counted_against() {
    // `pause` makes the backend read nothing of the body for 3 s; rgate's writes of a body
    // larger than the socket buffers then wait, past `body_idle_ms`.
    let b = Backend::start("b");
    let gw = gateway(&[&b], "", "timeouts:\n  body_idle_ms: 300\n", 1);
    let mut c = gw.client();
    let n = 64 << 20;
    c.send(
        format!("POST /up?pause=3000 HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n")
            .as_bytes(),
    );
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        if c.try_send(&chunk).is_err() {
            break;
        }
        if c.has_data() {
            break;
        }
    }
    let r = c.read_response(false);
    assert_eq!(r.gateway_error(502)["error"], "bad_gateway");
    assert!(r.text().contains("stopped reading"), "{}", r.text());
}
