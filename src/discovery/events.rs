//! Docker events, reduced to what discovery does about each one. Pure: the stream itself is
//! read in `watch` (containers) and `swarm_watch` (swarm services).
//!
//! A `stop` or a `kill` with a signal that ends a process takes the container out of the table
//! at once, before its process exits: that is what lets a backend with two or more instances
//! restart one at a time without a client seeing an error. Every other event is answered by
//! inspecting that one container — also a network `connect` or `disconnect` of a container
//! (its address may depend on that network: a container cut off from it leaves the table).

use std::collections::HashMap;

use docker_api::models::EventMessage;

/// The container actions discovery follows (the `event` filter of the stream).
pub(crate) const FOLLOWED: &[&str] = &[
    "start",
    "die",
    "stop",
    "kill",
    "pause",
    "unpause",
    "health_status",
    "destroy",
];

/// The network actions discovery follows: about the container named in the event.
pub(crate) const FOLLOWED_NETWORK: &[&str] = &["connect", "disconnect"];

/// One container event, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerEvent {
    pub(crate) id: String,
    /// The container's labels, as the event carries them.
    pub(crate) labels: HashMap<String, String>,
    pub(crate) change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The container is going away: out of the table now, before it dies.
    Stopping,
    /// It came back (`start`): forget any earlier stop, then inspect.
    Started,
    /// It is gone for good.
    Destroyed,
    /// Something else changed (health, pause, death, a harmless signal): inspect.
    Inspect,
}

impl ContainerEvent {
    /// The decision for one event; `None` for events that are not about a container.
    pub(crate) fn from_message(m: &EventMessage) -> Option<ContainerEvent> {
        let actor = m.actor.as_ref()?;
        if m.type_.as_deref() == Some("network") {
            // The actor is the network; the container is an attribute. No labels come with
            // it: only a container discovery already follows is inspected.
            let action = m.action.as_deref()?;
            let attributes = actor.attributes.as_ref()?;
            let id = attributes.get("container").filter(|id| !id.is_empty())?;
            return FOLLOWED_NETWORK.contains(&action).then(|| ContainerEvent {
                id: id.clone(),
                labels: HashMap::new(),
                change: Change::Inspect,
            });
        }
        if m.type_.as_deref() != Some("container") {
            return None;
        }
        let id = actor.id.clone().filter(|id| !id.is_empty())?;
        let attributes = actor.attributes.clone().unwrap_or_default();
        // Docker writes health events as "health_status: healthy".
        let action = m.action.as_deref()?;
        let verb = action.split(':').next().unwrap_or(action).trim();
        let change = match verb {
            "stop" => Change::Stopping,
            "kill" if ends_process(attributes.get("signal").map(String::as_str)) => {
                Change::Stopping
            }
            "start" => Change::Started,
            "destroy" => Change::Destroyed,
            v if FOLLOWED.contains(&v) => Change::Inspect,
            _ => return None,
        };
        // Besides labels, attributes hold "image", "name", "signal", "exitCode"; a label of the
        // same name cannot be told apart, and does not matter for matching.
        Some(ContainerEvent {
            id,
            labels: attributes,
            change,
        })
    }
}

/// The actions swarm discovery follows: a service's `create`, `update`, `remove`, and the
/// actions of this node's task containers that change whether a task serves.
pub(crate) const SWARM_FOLLOWED: &[&str] = &[
    "create", "update", "remove", "start", "die", "stop", "kill", "destroy",
];

/// The label Docker puts on a task's container: the task's id.
pub(crate) const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";

/// One event in swarm mode, decided. Docker sends no task events: besides the service
/// events, only the containers of rgate's own node are seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SwarmEvent {
    /// A service was created, updated or removed: list the services again, poll the tasks.
    ServicesChanged,
    /// A task's container on this node is being stopped: out of the table now.
    TaskStopping { task_id: String },
    /// A task's container on this node started or ended: poll the tasks now.
    TaskChanged,
}

impl SwarmEvent {
    /// The decision for one event; `None` for events that change nothing of the table.
    pub(crate) fn from_message(m: &EventMessage) -> Option<SwarmEvent> {
        let action = m.action.as_deref()?;
        match m.type_.as_deref()? {
            "service" => ["create", "update", "remove"]
                .contains(&action)
                .then_some(SwarmEvent::ServicesChanged),
            "container" => {
                let attributes = m.actor.as_ref()?.attributes.as_ref()?;
                let task_id = attributes.get(LABEL_TASK_ID).filter(|id| !id.is_empty())?;
                match action {
                    "stop" => Some(SwarmEvent::TaskStopping {
                        task_id: task_id.clone(),
                    }),
                    "kill" if ends_process(attributes.get("signal").map(String::as_str)) => {
                        Some(SwarmEvent::TaskStopping {
                            task_id: task_id.clone(),
                        })
                    }
                    "start" | "die" | "destroy" => Some(SwarmEvent::TaskChanged),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Whether a `kill` signal (a number, or a name as some versions write it) ends the process
/// by default. Signals sent to ask for a reload or a log rotation do not.
fn ends_process(signal: Option<&str>) -> bool {
    let Some(s) = signal.map(str::trim) else {
        return true;
    };
    let name = s.trim_start_matches("SIG");
    let harmless_numbers = [1, 10, 12, 17, 18, 23, 28]; // HUP USR1 USR2 CHLD CONT URG WINCH
    let harmless_names = ["HUP", "USR1", "USR2", "CHLD", "CONT", "URG", "WINCH"];
    match s.parse::<i32>() {
        Ok(n) => !harmless_numbers.contains(&n),
        Err(_) => !harmless_names.contains(&name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, attrs: serde_json::Value) -> Option<ContainerEvent> {
        let m: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container",
            "Action": action,
            "Actor": {"ID": "abc123", "Attributes": attrs},
            "scope": "local",
            "time": 1,
            "timeNano": 1
        }))
        .unwrap();
        ContainerEvent::from_message(&m)
    }

    fn change(action: &str, attrs: serde_json::Value) -> Option<Change> {
        event(action, attrs).map(|e| e.change)
    }

    #[test]
    fn stop_and_terminating_kills_remove_at_once() {
        let none = serde_json::json!({});
        assert_eq!(change("stop", none.clone()), Some(Change::Stopping));
        assert_eq!(
            change("kill", serde_json::json!({"signal": "15"})),
            Some(Change::Stopping)
        );
        assert_eq!(
            change("kill", serde_json::json!({"signal": "9"})),
            Some(Change::Stopping)
        );
        assert_eq!(
            change("kill", serde_json::json!({"signal": "SIGTERM"})),
            Some(Change::Stopping)
        );
        assert_eq!(
            change("kill", serde_json::json!({"signal": "1"})),
            Some(Change::Inspect)
        );
        assert_eq!(
            change("kill", serde_json::json!({"signal": "SIGHUP"})),
            Some(Change::Inspect)
        );
        assert_eq!(change("kill", none.clone()), Some(Change::Stopping));
    }

    #[test]
    fn other_followed_actions_inspect() {
        let none = serde_json::json!({});
        assert_eq!(change("start", none.clone()), Some(Change::Started));
        assert_eq!(change("destroy", none.clone()), Some(Change::Destroyed));
        for action in [
            "die",
            "pause",
            "unpause",
            "health_status: unhealthy",
            "health_status",
        ] {
            assert_eq!(
                change(action, none.clone()),
                Some(Change::Inspect),
                "{action}"
            );
        }
        assert_eq!(change("exec_start: sh", none.clone()), None);
        assert_eq!(change("attach", none), None);
    }

    #[test]
    fn carries_the_labels_and_ignores_other_types() {
        let e = event(
            "start",
            serde_json::json!({"app_name": "payment", "image": "x"}),
        )
        .unwrap();
        assert_eq!(e.id, "abc123");
        assert_eq!(
            e.labels.get("app_name").map(String::as_str),
            Some("payment")
        );
        let m: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "image", "Action": "pull", "Actor": {"ID": "i1", "Attributes": {}}
        }))
        .unwrap();
        assert_eq!(ContainerEvent::from_message(&m), None);
    }

    fn swarm(type_: &str, action: &str, attrs: serde_json::Value) -> Option<SwarmEvent> {
        let m: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": type_, "Action": action, "Actor": {"ID": "x1", "Attributes": attrs}
        }))
        .unwrap();
        SwarmEvent::from_message(&m)
    }

    #[test]
    fn swarm_service_events_relist_and_task_container_stops_leave_at_once() {
        let name = serde_json::json!({"name": "web"});
        for action in ["create", "update", "remove"] {
            assert_eq!(
                swarm("service", action, name.clone()),
                Some(SwarmEvent::ServicesChanged)
            );
        }
        let task = serde_json::json!({"com.docker.swarm.task.id": "t1", "signal": "15"});
        let stopping = Some(SwarmEvent::TaskStopping {
            task_id: "t1".into(),
        });
        assert_eq!(swarm("container", "kill", task.clone()), stopping);
        assert_eq!(swarm("container", "stop", task.clone()), stopping);
        let hup = serde_json::json!({"com.docker.swarm.task.id": "t1", "signal": "1"});
        assert_eq!(swarm("container", "kill", hup), None);
        for action in ["start", "die", "destroy"] {
            assert_eq!(
                swarm("container", action, task.clone()),
                Some(SwarmEvent::TaskChanged)
            );
        }
        // Not a task's container; a container create; a network event.
        assert_eq!(swarm("container", "stop", serde_json::json!({})), None);
        assert_eq!(swarm("container", "create", task.clone()), None);
        assert_eq!(swarm("network", "create", name), None);
    }

    #[test]
    fn a_container_connected_to_or_cut_from_a_network_is_inspected() {
        let network = |action: &str, attrs: serde_json::Value| {
            let m: EventMessage = serde_json::from_value(serde_json::json!({
                "Type": "network", "Action": action, "Actor": {"ID": "net1", "Attributes": attrs}
            }))
            .unwrap();
            ContainerEvent::from_message(&m)
        };
        let attrs =
            serde_json::json!({"container": "abc123", "name": "backends", "type": "bridge"});
        for action in ["connect", "disconnect"] {
            let e = network(action, attrs.clone()).unwrap();
            assert_eq!((e.id.as_str(), e.change), ("abc123", Change::Inspect));
            assert!(e.labels.is_empty());
        }
        assert_eq!(network("create", attrs), None);
        assert_eq!(
            network("disconnect", serde_json::json!({"name": "x"})),
            None
        );
    }
}
