//! Tests of `discovery/container.rs`.

use super::*;

/// A real inspect answer of Docker 20.10 (a demo-backend run with `-p 127.0.0.1::8080`).
const PUBLISHED: &str = include_str!("fixtures/inspect_published.json");

fn fixture(edit: impl FnOnce(&mut serde_json::Value)) -> ContainerFacts {
    let mut v: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
    edit(&mut v);
    ContainerFacts::from_inspect(&serde_json::from_value(v).unwrap())
}

fn label(v: &mut serde_json::Value, k: &str, val: &str) {
    v["Config"]["Labels"][k] = val.into();
}

fn ports(v: &mut serde_json::Value, ports: serde_json::Value) {
    v["NetworkSettings"]["Ports"] = ports;
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn reads_a_real_inspect_answer() {
    let f = fixture(|_| {});
    assert_eq!(f.name, "rgate-fixture");
    assert!(f.id.starts_with("cb94ed0082a1"));
    assert_eq!(f.run, RunState::Running);
    assert_eq!(f.health, Health::None);
    assert_eq!(f.exposed, vec![8080]);
    assert!(f.carries(&[("app_name".into(), "payment".into())]));
    assert!(f.carries(&[
        ("app_name".into(), "payment".into()),
        ("env".into(), "production".into())
    ]));
    assert!(!f.carries(&[("app_name".into(), "orders".into())]));
    assert!(!f.carries(&[("tier".into(), "gold".into())]));
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:32768")));
}

#[test]
fn every_interface_means_loopback_and_ipv4_is_preferred() {
    let f = fixture(|v| {
        ports(
            v,
            serde_json::json!({"8080/tcp": [
                {"HostIp": "::", "HostPort": "40001"},
                {"HostIp": "0.0.0.0", "HostPort": "40001"}
            ]}),
        )
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:40001")));
    let f = fixture(|v| {
        ports(
            v,
            serde_json::json!({"8080/tcp": [{"HostIp": "::", "HostPort": "40002"}]}),
        )
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:40002")));
    let f = fixture(|v| {
        ports(
            v,
            serde_json::json!({"8080/tcp": [{"HostIp": "", "HostPort": "40003"}]}),
        )
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:40003")));
    let f = fixture(|v| {
        ports(
            v,
            serde_json::json!({"8080/tcp": [{"HostIp": "127.0.0.2", "HostPort": "40004"}]}),
        )
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.2:40004")));
}

#[test]
fn several_published_ports_need_the_port_label() {
    let two = serde_json::json!({
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}],
        "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40002"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "40003"}],
        "7070/tcp": null
    });
    let f = fixture(|v| ports(v, two.clone()));
    match f.serving_address() {
        Err(Skip::Ambiguous(why)) => {
            let why = why.to_string();
            assert!(why.contains("8080/tcp, 9090/tcp"), "{why}");
            assert!(why.contains("rgate.port"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let f = fixture(|v| {
        ports(v, two.clone());
        label(v, "rgate.port", "9090");
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:40002")));
    let f = fixture(|v| {
        ports(v, two.clone());
        label(v, "rgate.port", "7070");
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("does not publish"))
    );
    let f = fixture(|v| {
        ports(v, two);
        label(v, "rgate.port", "http");
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("not a port number"))
    );
}

#[test]
fn unpublished_container_is_reached_on_its_network() {
    let nets = serde_json::json!({
        "bridge": {"IPAddress": "172.17.0.5"},
        "backend_net": {"IPAddress": "10.5.0.7"},
        "none_yet": {"IPAddress": ""}
    });
    // One network with an IP, one exposed port.
    let f = fixture(|v| {
        ports(v, serde_json::json!({"8080/tcp": null}));
        v["NetworkSettings"]["Networks"] =
            serde_json::json!({"backend_net": {"IPAddress": "10.5.0.7"}});
    });
    assert_eq!(f.serving_address(), Ok(addr("10.5.0.7:8080")));
    // Several networks: ambiguous until labelled.
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["NetworkSettings"]["Networks"] = nets.clone();
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("rgate.network") && w.to_string().contains("backend_net 10.5.0.7"))
    );
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["NetworkSettings"]["Networks"] = nets.clone();
        label(v, "rgate.network", "backend_net");
    });
    assert_eq!(f.serving_address(), Ok(addr("10.5.0.7:8080")));
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["NetworkSettings"]["Networks"] = nets.clone();
        label(v, "rgate.network", "elsewhere");
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("elsewhere"))
    );
    // Several exposed ports: rgate.port picks one.
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["NetworkSettings"]["Networks"] =
            serde_json::json!({"backend_net": {"IPAddress": "10.5.0.7"}});
        v["Config"]["ExposedPorts"] = serde_json::json!({"8080/tcp": {}, "9000/tcp": {}});
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("8080/tcp, 9000/tcp"))
    );
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["NetworkSettings"]["Networks"] =
            serde_json::json!({"backend_net": {"IPAddress": "10.5.0.7"}});
        v["Config"]["ExposedPorts"] = serde_json::json!({"8080/tcp": {}, "9000/tcp": {}});
        label(v, "rgate.port", "9000");
    });
    assert_eq!(f.serving_address(), Ok(addr("10.5.0.7:9000")));
    // Nothing exposed at all.
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["Config"]["ExposedPorts"] = serde_json::Value::Null;
    });
    assert!(
        matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("exposes none"))
    );
}

#[test]
fn host_network_container_is_reached_on_loopback() {
    let f = fixture(|v| {
        ports(v, serde_json::json!({}));
        v["HostConfig"]["NetworkMode"] = "host".into();
        v["NetworkSettings"]["Networks"] = serde_json::json!({"host": {"IPAddress": ""}});
    });
    assert_eq!(f.serving_address(), Ok(addr("127.0.0.1:8080")));
}

#[test]
fn only_running_healthy_containers_serve() {
    let state = |paused: bool, running: bool, restarting: bool, health: Option<&str>| {
        fixture(|v| {
            v["State"]["Paused"] = paused.into();
            v["State"]["Running"] = running.into();
            v["State"]["Restarting"] = restarting.into();
            if let Some(h) = health {
                v["State"]["Health"] =
                    serde_json::json!({"Status": h, "FailingStreak": 0, "Log": []});
            }
        })
        .serving_address()
    };
    assert!(state(false, true, false, None).is_ok());
    assert!(state(false, true, false, Some("healthy")).is_ok());
    assert_eq!(state(true, true, false, None), Err(Skip::Paused));
    assert_eq!(state(false, false, false, None), Err(Skip::NotRunning));
    assert_eq!(state(false, true, true, None), Err(Skip::Restarting));
    assert_eq!(
        state(false, true, false, Some("starting")),
        Err(Skip::HealthStarting)
    );
    assert_eq!(
        state(false, true, false, Some("unhealthy")),
        Err(Skip::Unhealthy)
    );
}

#[test]
fn the_weight_label_sets_the_share_and_a_bad_one_keeps_the_container_out() {
    assert_eq!(fixture(|_| {}).weight(), Ok(1));
    let f = fixture(|v| label(v, "rgate.weight", " 3 "));
    assert_eq!(f.weight(), Ok(3));
    assert!(f.serving_address().is_ok());
    for bad in ["0", "1001", "-1", "heavy", ""] {
        let f = fixture(|v| label(v, "rgate.weight", bad));
        assert_eq!(
            f.weight(),
            Err(Ambiguity::WeightLabel(bad.into())),
            "{bad:?}"
        );
        assert!(
            matches!(f.serving_address(), Err(Skip::Ambiguous(w)) if w.to_string().contains("rgate.weight")),
            "{bad:?}"
        );
    }
}
