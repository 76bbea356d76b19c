//! What swarm discovery knows of the services that carry some Docker backend's labels and
//! of their tasks, and the backend table that follows from it. Pure bookkeeping: no Docker
//! calls here (`swarm_watch` makes them).
//!
//! Services change by events (create, update, remove: the list is read again); tasks by
//! polling, since Docker sends no task events. A poll that finds the same tasks as the last
//! one changes nothing, and nothing is published. A task whose container this node saw
//! stopping leaves the table at once, before the next poll says so.

use std::collections::{BTreeMap, HashSet};

use crate::backends::{BackendTable, Instance};
use crate::config::Config;

use super::state::{label_backends, short, LabelBackend};
use super::swarm_facts::{Balancing, ServiceAmbiguity, ServiceFacts, TaskFacts};

/// The services of interest, their tasks, and the table they make.
pub(crate) struct SwarmServices {
    backends: Vec<LabelBackend>,
    /// The table with static backends filled in and Docker backends empty.
    base: BackendTable,
    /// By service id (stable order), only those some backend takes.
    services: BTreeMap<String, ServiceFacts>,
    /// The tasks of those services Docker wants running, by task id, as last polled.
    tasks: BTreeMap<String, TaskFacts>,
    /// Tasks whose container this node saw stopping: out of the table until a poll no longer
    /// lists them.
    stopping: HashSet<String>,
    /// The networks rgate's own container is on; `None` when rgate runs outside a container.
    rgate_networks: Option<Vec<String>>,
    /// `(service id, reason)` already logged, so each ambiguity is logged once.
    logged: HashSet<(String, ServiceAmbiguity)>,
}

impl SwarmServices {
    pub(crate) fn new(config: &Config) -> SwarmServices {
        SwarmServices {
            backends: label_backends(config),
            base: BackendTable::from_config(config),
            services: BTreeMap::new(),
            tasks: BTreeMap::new(),
            stopping: HashSet::new(),
            rgate_networks: None,
            logged: HashSet::new(),
        }
    }

    pub(crate) fn set_rgate_networks(&mut self, networks: Option<Vec<String>>) {
        self.rgate_networks = networks;
    }

    /// Replaces the services with a full list; only those some backend takes are kept.
    pub(crate) fn replace_services(&mut self, all: Vec<ServiceFacts>) {
        self.services = all
            .into_iter()
            .filter(|s| self.backends.iter().any(|b| b.takes(&s.labels)))
            .map(|s| (s.id.clone(), s))
            .collect();
        let services = &self.services;
        self.tasks
            .retain(|_, t| services.contains_key(&t.service_id));
        self.logged.retain(|(id, _)| services.contains_key(id));
    }

    /// The ids of the services whose tasks to poll.
    pub(crate) fn service_ids(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Replaces the tasks with a poll's list. False when it is the same as the last one:
    /// nothing to publish.
    pub(crate) fn replace_tasks(&mut self, tasks: Vec<TaskFacts>) -> bool {
        let tasks: BTreeMap<String, TaskFacts> = tasks
            .into_iter()
            .filter(|t| self.services.contains_key(&t.service_id))
            .map(|t| (t.id.clone(), t))
            .collect();
        // A stopping task stays out until the poll no longer lists it as serving.
        self.stopping
            .retain(|id| tasks.get(id).is_some_and(TaskFacts::serves));
        if tasks == self.tasks {
            return false;
        }
        self.tasks = tasks;
        true
    }

    /// The container of task `task_id` is stopping on this node: if the task is followed, out
    /// of the table now. True the first time.
    pub(crate) fn container_stopping(&mut self, task_id: &str) -> bool {
        self.tasks.contains_key(task_id) && self.stopping.insert(task_id.to_string())
    }

    /// Logs, once per service and reason, why a service gets no traffic.
    pub(crate) fn log_ambiguities(&mut self) {
        let mut found = Vec::new();
        for (id, service) in &self.services {
            let tasks = self.tasks.values().filter(|t| &t.service_id == id);
            for task in tasks.filter(|t| t.serves()) {
                if let Err(why) = service.task_address(task, self.rgate_networks.as_deref()) {
                    found.push((id.clone(), why));
                    break;
                }
            }
        }
        for (id, why) in found {
            if self.logged.insert((id.clone(), why.clone())) {
                let service = &self.services[&id];
                let backends: Vec<&str> = self
                    .backends
                    .iter()
                    .filter(|b| b.takes(&service.labels))
                    .map(|b| b.name.as_str())
                    .collect();
                log::warn!(
                    "docker: swarm service {} ({}) has the labels of backend {} but gets no traffic: it {why}",
                    service.name,
                    short(&id),
                    backends.join(", ")
                );
            }
        }
    }

    /// The backend table: static backends as configured, Docker backends with every serving
    /// task (or virtual IP) of the services that carry their labels.
    pub(crate) fn table(&self) -> BackendTable {
        let mut table = self.base.clone();
        for b in &self.backends {
            let Some(slot) = table.backends.get_mut(b.index) else {
                continue;
            };
            slot.instances = self
                .services
                .values()
                .filter(|s| b.takes(&s.labels))
                .flat_map(|s| self.instances_of(s))
                .collect();
        }
        table
    }

    /// One service's instances: each serving task's, or its virtual IP once.
    fn instances_of(&self, service: &ServiceFacts) -> Vec<Instance> {
        let (Ok(weight), Ok(balancing)) = (service.weight(), service.balancing()) else {
            return Vec::new();
        };
        let mut instances: Vec<Instance> = self
            .tasks
            .values()
            .filter(|t| t.service_id == service.id && !self.stopping.contains(&t.id))
            .filter_map(|t| {
                let addr = service
                    .task_address(t, self.rgate_networks.as_deref())
                    .ok()??;
                let source = match balancing {
                    Balancing::Tasks => short(&t.id).to_string(),
                    Balancing::VirtualIp => format!("vip:{}", service.name),
                };
                Some(Instance::new(addr, source, weight))
            })
            .collect();
        if balancing == Balancing::VirtualIp {
            instances.truncate(1);
        }
        instances
    }

    /// A one-line summary for the log: `payment: 2 instance(s), orders: 0 instance(s)`.
    pub(crate) fn summary(&self) -> String {
        let table = self.table();
        self.backends
            .iter()
            .filter_map(|b| table.backends.get(b.index))
            .map(|b| format!("{}: {} instance(s)", b.name, b.instances.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::swarm_facts::{EndpointMode, TaskNetwork, TaskState};
    use std::path::Path;

    fn config() -> Config {
        Config::parse(
            Path::new("test.yml"),
            "routes:\n  - {path_prefix: /w, backend: web}\nbackends:\n  - name: web\n    match_labels: [app_name=web]\n",
        )
        .unwrap()
    }

    fn service(id: &str, labels: &[(&str, &str)]) -> ServiceFacts {
        ServiceFacts {
            id: id.into(),
            name: format!("svc-{id}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            endpoint_mode: EndpointMode::Vip,
            virtual_ips: vec![("net1".into(), "10.0.1.2".parse().unwrap())],
        }
    }

    fn task(id: &str, service: &str, ip: &str, state: TaskState) -> TaskFacts {
        TaskFacts {
            id: id.into(),
            service_id: service.into(),
            state,
            wanted_running: true,
            networks: vec![TaskNetwork {
                name: "front".into(),
                id: "net1".into(),
                ip: ip.parse().unwrap(),
            }],
        }
    }

    const WEB: &[(&str, &str)] = &[("app_name", "web"), ("rgate.port", "8080")];

    fn addrs(s: &SwarmServices) -> Vec<String> {
        s.table().backends[0]
            .instances
            .iter()
            .map(|i| i.addr.to_string())
            .collect()
    }

    #[test]
    fn serving_tasks_of_matching_services_are_instances() {
        let mut s = SwarmServices::new(&config());
        s.replace_services(vec![
            service("s1", WEB),
            service("s2", &[("app_name", "other"), ("rgate.port", "80")]),
        ]);
        assert_eq!(s.service_ids(), ["s1"]);
        assert!(s.replace_tasks(vec![
            task("t1", "s1", "10.0.1.5", TaskState::Running),
            task("t2", "s1", "10.0.1.6", TaskState::Starting),
            task("t3", "s2", "10.0.1.7", TaskState::Running),
        ]));
        assert_eq!(addrs(&s), ["10.0.1.5:8080"]);
        assert_eq!(s.summary(), "web: 1 instance(s)");
    }

    #[test]
    fn the_same_poll_again_changes_nothing() {
        let mut s = SwarmServices::new(&config());
        s.replace_services(vec![service("s1", WEB)]);
        let poll = || vec![task("t1", "s1", "10.0.1.5", TaskState::Running)];
        assert!(s.replace_tasks(poll()));
        assert!(!s.replace_tasks(poll()));
        let mut started = poll();
        started.push(task("t2", "s1", "10.0.1.6", TaskState::Running));
        assert!(s.replace_tasks(started));
        assert_eq!(addrs(&s), ["10.0.1.5:8080", "10.0.1.6:8080"]);
    }

    #[test]
    fn a_task_stopping_on_this_node_leaves_at_once_until_polled_gone() {
        let mut s = SwarmServices::new(&config());
        s.replace_services(vec![service("s1", WEB)]);
        let both = || {
            vec![
                task("t1", "s1", "10.0.1.5", TaskState::Running),
                task("t2", "s1", "10.0.1.6", TaskState::Running),
            ]
        };
        s.replace_tasks(both());
        assert!(s.container_stopping("t1"));
        assert!(!s.container_stopping("t1"));
        assert!(!s.container_stopping("unknown"));
        assert_eq!(addrs(&s), ["10.0.1.6:8080"]);
        // A poll that still lists it running (the stop is not seen yet) keeps it out.
        s.replace_tasks(both());
        assert_eq!(addrs(&s), ["10.0.1.6:8080"]);
        // Gone from the poll: forgotten.
        s.replace_tasks(vec![task("t2", "s1", "10.0.1.6", TaskState::Running)]);
        s.replace_tasks(both());
        assert_eq!(addrs(&s), ["10.0.1.5:8080", "10.0.1.6:8080"]);
    }

    #[test]
    fn a_vip_service_is_one_instance_while_a_task_serves() {
        let mut s = SwarmServices::new(&config());
        let vip: Vec<(&str, &str)> = [WEB, &[("rgate.lb", "vip")]].concat();
        s.replace_services(vec![service("s1", &vip)]);
        s.replace_tasks(vec![task("t1", "s1", "10.0.1.5", TaskState::Starting)]);
        assert!(addrs(&s).is_empty());
        s.replace_tasks(vec![
            task("t1", "s1", "10.0.1.5", TaskState::Running),
            task("t2", "s1", "10.0.1.6", TaskState::Running),
        ]);
        assert_eq!(addrs(&s), ["10.0.1.2:8080"]);
        assert_eq!(s.table().backends[0].instances[0].source, "vip:svc-s1");
    }

    #[test]
    fn a_removed_service_takes_its_tasks_along() {
        let mut s = SwarmServices::new(&config());
        s.replace_services(vec![service("s1", WEB)]);
        s.replace_tasks(vec![task("t1", "s1", "10.0.1.5", TaskState::Running)]);
        s.replace_services(vec![]);
        assert!(addrs(&s).is_empty());
        assert!(s.service_ids().is_empty());
    }
}
