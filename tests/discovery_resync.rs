//! Docker discovery against the fake Docker daemon (`support_fake_docker`), end to end through
//! the real rgate binary: a daemon restart (the event stream breaks, the daemon is gone for a
//! while, it comes back with other containers and no event about them), a daemon unusable at
//! start (retried with backoff, then found), `kill` and `destroy` events taking a container
//! out of the table at once, and a swarm worker: `docker.mode: swarm` says why it cannot serve,
//! `auto` follows the node's containers.
//!
//! The fake daemon lets a test decide exactly when Docker goes away, comes back and what it
//! says, which a real daemon does not (tests/docker.rs has those tests).

mod common;
mod support_fake_docker;

use std::time::Duration;

use common::{get, limits, wait_for, wait_until, Backend, Gateway};
use support_fake_docker::{FakeContainer, FakeDocker};

const CONFIG: &str = "routes:\n  - path_prefix: /\n    backend: resync\n\
                      backends:\n  - name: resync\n    match_labels: [app_name=resync]\n";

/// rgate on `CONFIG`, with the fake daemon as its Docker.
fn rgate_on(fake: &FakeDocker, config: &str) -> Gateway {
    Gateway::options(config)
        .env(&[("DOCKER_HOST", &fake.docker_host())])
        .start()
}

/// Which backend answered `GET path` through rgate; `Err` with the status and error code
/// for one of rgate's errors, or how the exchange failed.
fn answered_by(gw: &Gateway, path: &str) -> Result<String, String> {
    let r = get(gw.addr, path)?;
    if r.status != 200 {
        let code = r.json()["error"].as_str().unwrap_or("?").to_string();
        return Err(format!("{} {code}", r.status));
    }
    Ok(r.echo().backend().to_string())
}

fn context(fake: &FakeDocker, gw: &Gateway) -> String {
    format!("fake daemon saw {:?}\nlog:\n{}", fake.requests(), gw.log())
}

#[test]
fn a_daemon_restart_keeps_the_last_table_then_resynchronises_from_a_full_list() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let fake = FakeDocker::start(vec![FakeContainer::new(
        0xa1,
        "resync-a",
        a.addr.port(),
        "resync",
    )]);
    let gw = rgate_on(&fake, CONFIG);

    // Startup discovery: the one container, at A.
    for _ in 0..5 {
        assert_eq!(
            answered_by(&gw, "/resync").as_deref(),
            Ok("A"),
            "{}",
            context(&fake, &gw)
        );
    }
    // rgate follows events, so going down breaks a live stream.
    wait_until(limits::CONDITION, "rgate to subscribe to events", || {
        fake.event_streams() == 1
    });

    // The daemon goes away. rgate notices, retries, and meanwhile serves the last table.
    fake.go_down();
    gw.wait_log(limits::CONDITION, "cannot reach Docker at unix://");
    for _ in 0..10 {
        assert_eq!(
            answered_by(&gw, "/resync").as_deref(),
            Ok("A"),
            "while the daemon is away; {}",
            context(&fake, &gw)
        );
    }
    let log = gw.log();
    assert!(
        log.contains("docker: lost Docker at unix://") && log.contains("reconnecting"),
        "the log does not mention losing the daemon:\n{log}"
    );
    // The retry says what really happens while away: the last table serves.
    let retry_line = log
        .lines()
        .find(|l| l.contains("cannot reach Docker at unix://"))
        .unwrap();
    assert!(
        retry_line.contains("serving the last known backends"),
        "the retry line should say the last table serves: {retry_line}"
    );

    // Back, with container B only and no event about it: rgate must re-list and find B. On
    // the way, A (not yet re-listed) or a brief 503 no_instances are what the README allows.
    fake.come_back(vec![FakeContainer::new(
        0xb2,
        "resync-b",
        b.addr.port(),
        "resync",
    )]);
    let mut brief_503s = 0;
    wait_for(
        limits::CONDITION,
        "rgate to answer from B",
        || match answered_by(&gw, "/resync") {
            Ok(name) if name == "B" => Ok(()),
            Ok(name) if name == "A" => Err("still A".into()),
            Err(e) if e == "503 no_instances" => {
                brief_503s += 1;
                Err(e)
            }
            other => panic!("while resynchronising: {other:?}; {}", context(&fake, &gw)),
        },
    );
    assert!(brief_503s < 10, "{brief_503s} answers 503: not brief");
    // And stays there: A's container is gone from the table.
    for _ in 0..5 {
        assert_eq!(
            answered_by(&gw, "/resync").as_deref(),
            Ok("B"),
            "{}",
            context(&fake, &gw)
        );
    }
    let log = gw.log();
    assert!(
        log.matches("docker: connected to unix://").count() >= 2,
        "expected the first connection and a reconnection:\n{log}"
    );
    let lists = fake
        .requests()
        .iter()
        .filter(|r| {
            r.split(['?', ' '])
                .nth(1)
                .is_some_and(|p| p.ends_with("/containers/json"))
        })
        .count();
    assert!(
        lists >= 2,
        "one full list at startup, one after the restart: {:?}",
        fake.requests()
    );
}

/// A daemon that answers but cannot serve at start: rgate serves anyway (its Docker backends
/// 503, fixed addresses work), logs why, retries with growing delays, and finds the container
/// once the daemon works.
#[test]
fn docker_unusable_at_start_is_retried_with_backoff_until_it_answers() {
    let a = Backend::start("A");
    let fixed = Backend::start("fixed");
    let fake = FakeDocker::start(vec![FakeContainer::new(
        0xa1,
        "retry-a",
        a.addr.port(),
        "resync",
    )]);
    fake.set_failing(true);
    let config = format!(
        "routes:\n  - path_prefix: /docker\n    backend: resync\n  - path_prefix: /fixed\n    backend: fixed\n\
         backends:\n  - name: resync\n    match_labels: [app_name=resync]\n  - name: fixed\n    addresses: ['{}']\n",
        fixed.addr
    );
    let gw = rgate_on(&fake, &config);
    assert_eq!(answered_by(&gw, "/fixed/x").as_deref(), Ok("fixed"));
    assert_eq!(
        answered_by(&gw, "/docker/x"),
        Err("503 no_instances".to_string())
    );
    gw.wait_log(limits::CONDITION, "cannot reach Docker at unix://");
    assert!(
        gw.log().contains("Docker backends answer 503"),
        "{}",
        gw.log()
    );

    // Four attempts: the delays between them grow.
    let times = wait_for(
        limits::CONDITION,
        "four attempts to reach the daemon",
        || {
            let t = fake.request_times("/version");
            if t.len() >= 4 {
                Ok(t)
            } else {
                Err(format!("{} attempts", t.len()))
            }
        },
    );
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let slack = Duration::from_millis(50);
    assert!(
        gaps[1] + slack >= gaps[0] && gaps[2] + slack >= gaps[1],
        "no backoff: {gaps:?}"
    );
    assert!(gaps[2] >= gaps[0] * 2, "the delay does not grow: {gaps:?}");

    // The daemon works again: the next attempt finds the container.
    fake.set_failing(false);
    wait_for(limits::CONDITION, "the container to be found", || {
        answered_by(&gw, "/docker/x").and_then(|b| if b == "A" { Ok(()) } else { Err(b) })
    });
    // The line may be written just after the table that answered: wait for it.
    gw.wait_log(limits::CONDITION, "docker: connected to unix://");
}

/// `kill` (with a signal that ends the process) and `destroy` events take the container out of
/// the table as soon as they arrive — while the daemon still lists and inspects it as running,
/// so only the event can have done it.
#[test]
fn kill_and_destroy_events_take_a_container_out_at_once() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let one = FakeContainer::new(0xa1, "events-a", a.addr.port(), "resync");
    let two = FakeContainer::new(0xb2, "events-b", b.addr.port(), "resync");
    let fake = FakeDocker::start(vec![one.clone(), two.clone()]);
    let gw = rgate_on(&fake, CONFIG);
    wait_until(limits::CONDITION, "rgate to subscribe to events", || {
        fake.event_streams() == 1
    });
    let seen = |gw: &Gateway| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            match answered_by(gw, "/x") {
                Ok(name) => seen.insert(name),
                Err(e) => seen.insert(e),
            };
        }
        seen
    };
    assert_eq!(
        seen(&gw),
        ["A", "B"].map(String::from).into(),
        "{}",
        gw.log()
    );

    // A harmless signal changes nothing (rgate inspects: still running).
    assert_eq!(
        fake.send_event(&one, "kill", serde_json::json!({"signal": "1"})),
        1
    );
    // SIGKILL: A leaves the table at once; only B answers.
    assert_eq!(
        fake.send_event(&one, "kill", serde_json::json!({"signal": "9"})),
        1
    );
    wait_until(limits::CONDITION, "A to leave the table", || {
        answered_by(&gw, "/x").is_ok_and(|n| n == "B") && seen(&gw) == ["B".to_string()].into()
    });

    // destroy: B leaves too; nothing is left, the route answers 503.
    assert_eq!(fake.send_event(&two, "destroy", serde_json::json!({})), 1);
    wait_until(limits::CONDITION, "B to leave the table", || {
        answered_by(&gw, "/x").is_err_and(|e| e == "503 no_instances")
    });
    assert_eq!(
        seen(&gw),
        ["503 no_instances".to_string()].into(),
        "{}",
        gw.log()
    );
}

/// A swarm worker's daemon (its `/info`): in `swarm` mode rgate says clearly why it cannot
/// follow services and answers 503 meanwhile; in `auto` (the default) it says it follows the
/// node's containers, and does.
#[test]
fn on_a_swarm_worker_swarm_mode_says_why_and_auto_follows_containers() {
    let a = Backend::start("A");
    let fake = FakeDocker::start(vec![FakeContainer::new(
        0xa1,
        "worker-a",
        a.addr.port(),
        "resync",
    )]);
    fake.set_info(serde_json::json!({
        "Name": "worker-1",
        "Swarm": {"NodeID": "w1", "LocalNodeState": "active", "ControlAvailable": false}
    }));

    let swarm = rgate_on(&fake, &format!("{CONFIG}docker: {{mode: swarm}}\n"));
    let why = "docker.mode is swarm but this node is a swarm worker: only a manager answers /services and /tasks";
    wait_until(limits::CONDITION, "rgate to say why", || {
        swarm.log().contains(why)
    });
    let r = get(swarm.addr, "/resync").unwrap();
    assert_eq!(
        r.gateway_error(503)["error"],
        "no_instances",
        "{}",
        context(&fake, &swarm)
    );
    assert_eq!(
        swarm.log().matches(why).count(),
        1,
        "said once: {}",
        swarm.log()
    );

    let auto = rgate_on(&fake, CONFIG);
    assert_eq!(
        answered_by(&auto, "/resync").as_deref(),
        Ok("A"),
        "{}",
        context(&fake, &auto)
    );
    let log = auto.log();
    assert!(
        log.contains("mode auto: this node is a swarm worker, not a manager (only a manager lists services and tasks); following the containers of this node"),
        "{log}"
    );
}
