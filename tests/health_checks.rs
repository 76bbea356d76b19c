//! Active health checks, seen from outside: the real rgate binary in front of two real
//! `demo-backend` processes (a fixed-address backend with a `health_check`), one of them
//! switched to misbehave through its control endpoints; what clients get and what `/stats`
//! shows.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{get, limits, listening_port, wait_for, Client, Gateway, ProcessGroup};
use serde_json::Value;

/// One demo-backend process on 127.0.0.1, named `name` in its answers (`service`).
struct Demo {
    addr: SocketAddr,
    _process: ProcessGroup,
}

impl Demo {
    fn start(name: &str) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo-backend"));
        cmd.env("PORT", "0")
            .env("BIND", "127.0.0.1")
            .env("SERVICE_NAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = ProcessGroup::spawn(&mut cmd);
        let port = wait_for(
            limits::START,
            format!("demo-backend {name} to listen"),
            || listening_port(process.id()),
        );
        Demo {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _process: process,
        }
    }

    /// `POST /control/<what>` straight to the instance.
    fn control(&self, what: &str) {
        let mut c = Client::try_connect(self.addr, limits::IO).expect("connect to demo-backend");
        let request = format!(
            "POST /control/{what} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = c.try_exchange(request.as_bytes()).expect("control request");
        assert_eq!(r.status, 200, "control {what}: {}", r.text());
    }
}

/// Two instances, `one` and `two`, checked every 100 ms.
fn start() -> (Demo, Demo, Gateway) {
    let one = Demo::start("one");
    let two = Demo::start("two");
    let config = format!(
        "routes:
  - {{path_prefix: /api, backend: demo}}
backends:
  - name: demo
    addresses: ['{}', '{}']
    health_check: {{path: /health, interval_ms: 100, timeout_ms: 100, healthy_after: 2, unhealthy_after: 2}}
",
        one.addr, two.addr
    );
    let rgate = Gateway::start(&config);
    (one, two, rgate)
}

/// Which demo answered `GET /api/x` through rgate (the request must succeed).
fn served_by(rgate: &Gateway) -> String {
    let r = rgate.get("/api/x");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), rgate.log());
    r.json()["service"].as_str().unwrap_or_default().to_string()
}

/// The instance at `addr` in `/stats`.
fn instance(rgate: &Gateway, addr: SocketAddr) -> Result<Value, String> {
    let r = get(rgate.addr, "/stats")?;
    let stats: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    stats["backends"]["demo"]["instances"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|i| i["address"] == addr.to_string())
                .cloned()
        })
        .ok_or_else(|| format!("no instance {addr} in {stats}"))
}

/// Waits until `/stats` shows the instance at `addr` in `state`.
fn wait_state(rgate: &Gateway, addr: SocketAddr, state: &str) {
    wait_for(
        limits::CONDITION,
        format!("{addr} to be {state} in /stats; log:\n{}", rgate.log()),
        || {
            let i = instance(rgate, addr)?;
            if i["state"] == state {
                Ok(())
            } else {
                Err(format!("state {}", i["state"]))
            }
        },
    )
}

/// Waits until a request is served by `name` (random balancing: bounded by the deadline).
fn wait_served_by(rgate: &Gateway, name: &str) {
    wait_for(
        limits::CONDITION,
        format!("a request served by {name}"),
        || match served_by(rgate) {
            n if n == name => Ok(()),
            other => Err(format!("served by {other}")),
        },
    )
}

#[test]
fn an_instance_failing_its_health_check_gets_no_traffic_until_it_passes_again() {
    let (one, two, rgate) = start();
    wait_served_by(&rgate, "one");
    wait_served_by(&rgate, "two");
    assert_eq!(instance(&rgate, two.addr).unwrap()["state"], "up");

    two.control("health/fail");
    wait_state(&rgate, two.addr, "unhealthy");
    rgate.wait_log(
        limits::CONDITION,
        &format!(
            "backend demo, instance {} (static): unhealthy (health check: status 503)",
            two.addr
        ),
    );
    assert_eq!(instance(&rgate, one.addr).unwrap()["state"], "up");
    for i in 0..50 {
        assert_eq!(
            served_by(&rgate),
            "one",
            "request {i} went to the unhealthy instance"
        );
    }

    two.control("health/pass");
    wait_state(&rgate, two.addr, "up");
    rgate.wait_log(
        limits::CONDITION,
        &format!(
            "backend demo, instance {} (static): healthy again",
            two.addr
        ),
    );
    wait_served_by(&rgate, "two");
    // The verdicts were logged once each, not at every check.
    let log = rgate.log();
    assert_eq!(
        log.matches(": unhealthy (health check:").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches(": healthy again").count(), 1, "{log}");
}

#[test]
fn when_every_instance_fails_its_health_check_traffic_still_flows() {
    let (one, two, rgate) = start();
    one.control("health/fail");
    two.control("health/fail");
    wait_state(&rgate, one.addr, "unhealthy");
    wait_state(&rgate, two.addr, "unhealthy");
    // Fail open: both still serve, so rgate sends traffic to them rather than answer 503.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(served_by(&rgate));
    }
    // Any instance, at random: both (a miss has odds of 2 in 2^30).
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn a_hung_instance_fails_its_check_by_the_timeout_and_the_other_keeps_serving() {
    let (one, two, rgate) = start();
    two.control("hang");
    wait_state(&rgate, two.addr, "unhealthy");
    rgate.wait_log(
        limits::CONDITION,
        &format!(
            "backend demo, instance {} (static): unhealthy (health check: no answer within 100 ms)",
            two.addr
        ),
    );
    // The hung instance's checks (one thread each, held 100 ms) never held up the other's.
    assert_eq!(instance(&rgate, one.addr).unwrap()["state"], "up");
    for i in 0..30 {
        assert_eq!(
            served_by(&rgate),
            "one",
            "request {i} went to the hung instance"
        );
    }
    two.control("normal");
    wait_state(&rgate, two.addr, "up");
    wait_served_by(&rgate, "two");
}
