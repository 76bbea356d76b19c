//! What discovery knows of the containers that carry some Docker backend's labels, and the
//! backend table that follows from it. Pure bookkeeping: no Docker calls here.
//!
//! The table is recomputed from scratch after every change (it is small) and handed to
//! `TablePublisher::publish`, which ignores a table equal to the last one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;

use crate::backends::{BackendTable, Instance};
use crate::config::{Config, Discovery};

use super::container::{carries_labels, weight_label, Ambiguity, ContainerFacts, Skip};
use super::label_routes::{route_key, RouteKey, LABEL_PREFIX};

/// A Docker backend: its index in `Config::backends` and the containers it wants.
#[derive(Debug, Clone)]
pub(crate) struct LabelBackend {
    pub(crate) index: usize,
    pub(crate) name: String,
    wants: Wants,
}

/// Which containers are a backend's instances.
#[derive(Debug, Clone)]
enum Wants {
    /// Those carrying every one of these labels (`match_labels`).
    Labels(Vec<(String, String)>),
    /// Those declaring exactly this route (`rgate.route.*`).
    Route(RouteKey),
}

impl LabelBackend {
    pub(crate) fn takes(&self, labels: &HashMap<String, String>) -> bool {
        match &self.wants {
            Wants::Labels(wanted) => carries_labels(labels, wanted),
            Wants::Route(key) => route_key(labels).is_some_and(|k| k.as_ref() == Ok(key)),
        }
    }
}

/// The Docker backends of a config.
pub(crate) fn label_backends(config: &Config) -> Vec<LabelBackend> {
    config
        .backends
        .iter()
        .enumerate()
        .filter_map(|(index, b)| {
            let wants = match &b.discovery {
                Discovery::DockerLabels(labels) => Wants::Labels(labels.clone()),
                Discovery::LabelRoute(key) => Wants::Route(key.clone()),
                Discovery::Static(_) => return None,
            };
            Some(LabelBackend {
                index,
                name: b.name.clone(),
                wants,
            })
        })
        .collect()
}

/// One tracked container.
#[derive(Debug, Clone)]
struct Tracked {
    name: String,
    labels: HashMap<String, String>,
    address: Result<SocketAddr, Skip>,
}

/// The containers of interest and the table they make.
pub(crate) struct Containers {
    backends: Vec<LabelBackend>,
    /// The table with static backends filled in and Docker backends empty.
    base: BackendTable,
    /// By container id; a BTreeMap so instances come out in a stable order.
    tracked: BTreeMap<String, Tracked>,
    /// Containers told to stop (`stop`, `kill`): kept out of the table until they start again.
    stopping: HashSet<String>,
    /// `(container id, reason)` already logged, so each ambiguity is logged once.
    logged: HashSet<(String, Ambiguity)>,
    /// With `docker.label_routes`: the routes containers declared when this process
    /// started (its config has them); a different set asks for a restart.
    routes_at_start: Option<BTreeSet<RouteKey>>,
}

impl Containers {
    pub(crate) fn new(config: &Config) -> Containers {
        Containers {
            backends: label_backends(config),
            base: BackendTable::from_config(config),
            tracked: BTreeMap::new(),
            stopping: HashSet::new(),
            logged: HashSet::new(),
            routes_at_start: config
                .docker
                .label_routes
                .then(|| config.docker.declared.iter().cloned().collect()),
        }
    }

    /// With `docker.label_routes`: the routes running containers declare now, when they
    /// are not the set this process started with (added, removed) — time to restart.
    pub(crate) fn route_set_changed(&self) -> Option<(Vec<RouteKey>, Vec<RouteKey>)> {
        let at_start = self.routes_at_start.as_ref()?;
        let now: BTreeSet<RouteKey> = self
            .tracked
            .iter()
            .filter(|(id, _)| !self.stopping.contains(*id))
            .filter_map(|(_, t)| route_key(&t.labels)?.ok())
            .collect();
        if &now == at_start {
            return None;
        }
        Some((
            now.difference(at_start).cloned().collect(),
            at_start.difference(&now).cloned().collect(),
        ))
    }

    /// Whether a container with these labels is an instance candidate of some backend.
    pub(crate) fn wanted(&self, labels: &HashMap<String, String>) -> bool {
        (self.routes_at_start.is_some() && labels.contains_key(LABEL_PREFIX))
            || self.backends.iter().any(|b| b.takes(labels))
    }

    /// Whether discovery already follows this container.
    pub(crate) fn follows(&self, id: &str) -> bool {
        self.tracked.contains_key(id) || self.stopping.contains(id)
    }

    /// Replaces everything known with a full list (after connecting or reconnecting).
    pub(crate) fn replace_all(&mut self, facts: Vec<ContainerFacts>) {
        let ids: HashSet<&str> = facts.iter().map(|f| f.id.as_str()).collect();
        self.stopping.retain(|id| ids.contains(id.as_str()));
        self.tracked.clear();
        for f in facts {
            self.update(f);
        }
    }

    /// Records what one inspect said.
    pub(crate) fn update(&mut self, facts: ContainerFacts) {
        if !self.wanted(&facts.labels) {
            self.tracked.remove(&facts.id);
            return;
        }
        let address = facts.serving_address();
        if let Err(Skip::Ambiguous(why)) = &address {
            if self.logged.insert((facts.id.clone(), why.clone())) {
                let backends: Vec<&str> = self
                    .backends
                    .iter()
                    .filter(|b| b.takes(&facts.labels))
                    .map(|b| b.name.as_str())
                    .collect();
                log::warn!(
                    "docker: container {} ({}) has the labels of backend {} but is skipped: it {why}",
                    facts.name,
                    short(&facts.id),
                    backends.join(", ")
                );
            }
        }
        self.tracked.insert(
            facts.id.clone(),
            Tracked {
                name: facts.name,
                labels: facts.labels,
                address,
            },
        );
    }

    /// The container is being stopped: out of the table now. True the first time.
    pub(crate) fn stopping(&mut self, id: &str) -> bool {
        self.stopping.insert(id.to_string())
    }

    /// The container started again: it may re-enter once inspected.
    pub(crate) fn started(&mut self, id: &str) {
        self.stopping.remove(id);
    }

    /// The container no longer exists.
    pub(crate) fn remove(&mut self, id: &str) {
        self.tracked.remove(id);
        self.stopping.remove(id);
        self.logged.retain(|(logged_id, _)| logged_id != id);
    }

    /// The backend table: static backends as configured, Docker backends with every tracked
    /// container that carries their labels, serves, and is not stopping.
    pub(crate) fn table(&self) -> BackendTable {
        let mut table = self.base.clone();
        for b in &self.backends {
            let Some(slot) = table.backends.get_mut(b.index) else {
                continue;
            };
            slot.instances = self
                .tracked
                .iter()
                .filter(|(id, _)| !self.stopping.contains(*id))
                .filter(|(_, t)| b.takes(&t.labels))
                .filter_map(|(id, t)| {
                    // A bad weight label made the address a `Skip`: this is never 1 by error.
                    let weight = weight_label(&t.labels).unwrap_or(1);
                    Some(Instance::new(
                        *t.address.as_ref().ok()?,
                        short(id).to_string(),
                        weight,
                    ))
                })
                .collect();
        }
        table
    }

    /// A one-line summary for the log: `payment: 2 instances, orders: 0 instances`.
    pub(crate) fn summary(&self) -> String {
        let table = self.table();
        self.backends
            .iter()
            .filter_map(|b| table.backends.get(b.index))
            .map(|b| format!("{}: {} instance(s)", b.name, b.instances.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The name of a tracked container, for messages.
    pub(crate) fn name_of(&self, id: &str) -> String {
        self.tracked
            .get(id)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| short(id).to_string())
    }
}

/// Docker's short id.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::container::{Health, PublishedPort, RunState};
    use std::path::Path;

    fn config() -> Config {
        Config::parse(
            Path::new("test.yml"),
            r#"
routes:
  - {path_prefix: /p, backend: payment}
  - {path_prefix: /s, backend: fixed}
backends:
  - name: payment
    match_labels: [app_name=payment, env=production]
  - name: fixed
    addresses: ["127.0.0.1:9"]
"#,
        )
        .unwrap()
    }

    fn facts(id: &str, labels: &[(&str, &str)], port: u16) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: format!("c-{id}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            run: RunState::Running,
            health: Health::None,
            published: vec![PublishedPort {
                private: 8080,
                host_ip: "127.0.0.1".into(),
                host_port: port,
            }],
            exposed: vec![8080],
            networks: vec![],
            host_network: false,
        }
    }

    const GOOD: &[(&str, &str)] = &[("app_name", "payment"), ("env", "production")];

    fn ports(c: &Containers) -> Vec<u16> {
        c.table().backends[0]
            .instances
            .iter()
            .map(|i| i.addr.port())
            .collect()
    }

    #[test]
    fn table_holds_matching_serving_containers_and_static_backends() {
        let mut c = Containers::new(&config());
        c.replace_all(vec![
            facts("aaa", GOOD, 1001),
            facts("bbb", &[("app_name", "payment")], 1002), // missing env=production
            facts("ccc", GOOD, 1003),
        ]);
        assert_eq!(ports(&c), vec![1001, 1003]);
        let t = c.table();
        assert_eq!(t.backends[1].instances.len(), 1);
        assert_eq!(t.backends[1].instances[0].source, "static");
        assert!(c.follows("aaa") && !c.follows("bbb"));
        assert_eq!(c.summary(), "payment: 2 instance(s)");
    }

    #[test]
    fn an_instance_carries_the_weight_of_its_label() {
        let mut c = Containers::new(&config());
        let heavy: Vec<(&str, &str)> = [GOOD, &[("rgate.weight", "5")]].concat();
        c.replace_all(vec![facts("aaa", GOOD, 1001), facts("bbb", &heavy, 1002)]);
        let weights: Vec<u32> = c.table().backends[0]
            .instances
            .iter()
            .map(|i| i.weight)
            .collect();
        assert_eq!(weights, [1, 5]);
    }

    #[test]
    fn stopping_leaves_at_once_and_start_brings_it_back() {
        let mut c = Containers::new(&config());
        c.replace_all(vec![facts("aaa", GOOD, 1001), facts("bbb", GOOD, 1002)]);
        c.stopping("aaa");
        assert_eq!(ports(&c), vec![1002]);
        // A later inspect while it is still running does not bring it back.
        c.update(facts("aaa", GOOD, 1001));
        assert_eq!(ports(&c), vec![1002]);
        c.started("aaa");
        c.update(facts("aaa", GOOD, 1005));
        assert_eq!(ports(&c), vec![1005, 1002]);
        c.remove("bbb");
        assert_eq!(ports(&c), vec![1005]);
    }

    #[test]
    fn unhealthy_and_paused_containers_are_not_instances() {
        let mut c = Containers::new(&config());
        let mut sick = facts("aaa", GOOD, 1001);
        sick.health = Health::Unhealthy;
        let mut paused = facts("bbb", GOOD, 1002);
        paused.run = RunState::Paused;
        c.replace_all(vec![sick, paused]);
        assert!(ports(&c).is_empty());
        assert!(
            c.follows("aaa"),
            "followed, so a later health event is acted on"
        );
    }

    #[test]
    fn resync_forgets_containers_that_are_gone() {
        let mut c = Containers::new(&config());
        c.replace_all(vec![facts("aaa", GOOD, 1001), facts("bbb", GOOD, 1002)]);
        c.stopping("bbb");
        c.replace_all(vec![facts("ccc", GOOD, 1003)]);
        assert_eq!(ports(&c), vec![1003]);
        assert!(!c.follows("bbb"));
    }
}
