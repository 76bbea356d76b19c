//! `swarm_facts` on JSON captured from a real engine (Docker 20.10, API 1.41, a single-node
//! swarm): `fixtures/swarm_services.json` is `GET /services` with three services,
//! `fixtures/swarm_tasks.json` is `GET /tasks` taken during a `docker service update --force`
//! of `rgfx-web`:
//!
//! * `rgfx-web` — replicated (2), VIP endpoint mode, on two overlay networks (`rgfx-front`,
//!   `rgfx-back`), labels `app_name=web`, `rgate.port=8080`, `rgate.network=rgfx-front`.
//!   Tasks: `y0wjrq…` running; `y6wmp8…` still running but desired shutdown (being
//!   replaced); `ha8jsc…` shut down; `qi4ezu…` assigned (desired ready).
//! * `rgfx-edge` — global, dnsrr endpoint mode, on `rgfx-front` only. Task `au9smy…` running.
//! * `rgfx-slow` — replicated (1), VIP, `rgate.lb=vip`, a healthcheck not yet run: task
//!   `r41eb9…` starting.
//!
//! `/info` as a manager (`swarm_info_manager.json`) and after `docker swarm leave`
//! (`swarm_info_inactive.json`) are captured too; a worker's is written by hand below.

use super::*;

fn services() -> Vec<ServiceFacts> {
    let raw: Vec<RawService> =
        serde_json::from_str(include_str!("fixtures/swarm_services.json")).unwrap();
    raw.into_iter().map(ServiceFacts::from_raw).collect()
}

fn service(name: &str) -> ServiceFacts {
    services().into_iter().find(|s| s.name == name).unwrap()
}

fn tasks() -> Vec<TaskFacts> {
    let raw: Vec<RawTask> =
        serde_json::from_str(include_str!("fixtures/swarm_tasks.json")).unwrap();
    raw.into_iter().map(TaskFacts::from_raw).collect()
}

fn task(prefix: &str) -> TaskFacts {
    tasks()
        .into_iter()
        .find(|t| t.id.starts_with(prefix))
        .unwrap()
}

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn services_carry_their_labels_endpoint_mode_and_virtual_ips() {
    let web = service("rgfx-web");
    assert_eq!(web.labels["app_name"], "web");
    assert_eq!(web.endpoint_mode, EndpointMode::Vip);
    let vips: Vec<String> = web
        .virtual_ips
        .iter()
        .map(|(_, ip)| ip.to_string())
        .collect();
    assert_eq!(vips, ["10.0.2.2", "10.0.1.2"]);
    let edge = service("rgfx-edge");
    assert_eq!(edge.endpoint_mode, EndpointMode::Dnsrr);
    assert!(edge.virtual_ips.is_empty());
    assert_eq!(service("rgfx-slow").balancing(), Ok(Balancing::VirtualIp));
    assert_eq!(services().len(), 3);
}

#[test]
fn task_states_come_from_status_and_desired_state() {
    let states: Vec<(String, TaskState, bool)> = tasks()
        .into_iter()
        .map(|t| (t.id[..6].to_string(), t.state, t.wanted_running))
        .collect();
    let want = [
        ("ha8jsc", TaskState::Ended, false),
        ("y0wjrq", TaskState::Running, true),
        ("qi4ezu", TaskState::Starting, false),
        ("y6wmp8", TaskState::Running, false),
        ("r41eb9", TaskState::Starting, true),
        ("au9smy", TaskState::Running, true),
    ]
    .map(|(id, state, wanted)| (id.to_string(), state, wanted));
    assert_eq!(states, want);
    assert!(task("y0wjrq").serves());
    for not_serving in ["ha8jsc", "qi4ezu", "y6wmp8", "r41eb9"] {
        assert!(!task(not_serving).serves(), "{not_serving}");
    }
}

#[test]
fn a_task_on_two_networks_is_reached_on_the_one_its_label_names() {
    let web = service("rgfx-web");
    let running = task("y0wjrq");
    let names: Vec<&str> = running.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["rgfx-back", "rgfx-front"]);
    assert_eq!(web.task_address(&running, None), Ok(addr("10.0.1.9:8080")));
    // Not serving: no address, and no error either.
    assert_eq!(web.task_address(&task("y6wmp8"), None), Ok(None));
    assert_eq!(web.task_address(&task("ha8jsc"), None), Ok(None));
    // Without the label, two networks are ambiguous, unless rgate shares only one.
    let mut unlabelled = web.clone();
    unlabelled.labels.remove(LABEL_NETWORK);
    assert_eq!(
        unlabelled.task_address(&running, None),
        Err(ServiceAmbiguity::SeveralNetworks(vec![
            "rgfx-back".into(),
            "rgfx-front".into()
        ]))
    );
    let own = ["rgfx-back".to_string(), "bridge".to_string()];
    assert_eq!(
        unlabelled.task_address(&running, Some(&own)),
        Ok(addr("10.0.2.6:8080"))
    );
    let elsewhere = ["other".to_string()];
    assert_eq!(
        unlabelled.task_address(&running, Some(&elsewhere)),
        Err(ServiceAmbiguity::NoSharedNetwork {
            networks: vec!["rgfx-back".into(), "rgfx-front".into()],
            rgate: vec!["other".into()],
        })
    );
    let mut wrong = web.clone();
    wrong.labels.insert(LABEL_NETWORK.into(), "nope".into());
    assert!(matches!(
        wrong.task_address(&running, None),
        Err(ServiceAmbiguity::NotOnNetwork { .. })
    ));
}

#[test]
fn a_global_dnsrr_task_is_reached_on_its_only_network() {
    let edge = service("rgfx-edge");
    assert_eq!(
        edge.task_address(&task("au9smy"), None),
        Ok(addr("10.0.1.5:8080"))
    );
    let mut vip = edge.clone();
    vip.labels.insert(LABEL_LB.into(), "vip".into());
    assert_eq!(
        vip.task_address(&task("au9smy"), None),
        Err(ServiceAmbiguity::NoVirtualIp)
    );
}

#[test]
fn a_vip_service_is_reached_at_its_virtual_ip_on_the_tasks_network() {
    let slow = service("rgfx-slow");
    let starting = task("r41eb9");
    assert_eq!(slow.task_address(&starting, None), Ok(None));
    let mut running = starting.clone();
    running.state = TaskState::Running;
    assert_eq!(slow.task_address(&running, None), Ok(addr("10.0.1.7:8080")));
    let mut web = service("rgfx-web");
    web.labels.insert(LABEL_LB.into(), "vip".into());
    assert_eq!(
        web.task_address(&task("y0wjrq"), None),
        Ok(addr("10.0.1.2:8080"))
    );
}

#[test]
fn labels_that_cannot_be_used_name_the_fix() {
    let running = task("y0wjrq");
    for (key, value, want) in [
        (LABEL_PORT, None, ServiceAmbiguity::NoPortLabel),
        (
            LABEL_PORT,
            Some("http"),
            ServiceAmbiguity::PortLabel("http".into()),
        ),
        (
            LABEL_WEIGHT,
            Some("0"),
            ServiceAmbiguity::WeightLabel("0".into()),
        ),
        (
            LABEL_LB,
            Some("dns"),
            ServiceAmbiguity::LbLabel("dns".into()),
        ),
    ] {
        let mut web = service("rgfx-web");
        match value {
            Some(v) => web.labels.insert(key.into(), v.into()),
            None => web.labels.remove(key),
        };
        assert_eq!(web.task_address(&running, None), Err(want.clone()));
    }
    let text = ServiceAmbiguity::NoPortLabel.to_string();
    assert!(text.contains("rgate.port=<port>"), "{text}");
    let text = ServiceAmbiguity::SeveralNetworks(vec!["a".into(), "b".into()]).to_string();
    assert!(text.contains("rgate.network=<network>"), "{text}");
}

#[test]
fn the_role_comes_from_info() {
    let manager: RawInfo =
        serde_json::from_str(include_str!("fixtures/swarm_info_manager.json")).unwrap();
    assert_eq!(
        SwarmRole::from_info(&manager),
        SwarmRole::Manager {
            node_id: "ozkms3rw143iqvnkl0zimbwor".into()
        }
    );
    let inactive: RawInfo =
        serde_json::from_str(include_str!("fixtures/swarm_info_inactive.json")).unwrap();
    assert_eq!(
        SwarmRole::from_info(&inactive),
        SwarmRole::Outside {
            node_state: "inactive".into()
        }
    );
    // A worker's /info, written by hand (this engine cannot be a worker of itself).
    let worker: RawInfo = serde_json::from_str(
        r#"{"Swarm": {"NodeID": "w1", "LocalNodeState": "active", "ControlAvailable": false}}"#,
    )
    .unwrap();
    assert_eq!(SwarmRole::from_info(&worker), SwarmRole::Worker);
}
