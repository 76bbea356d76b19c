//! Swarm services and tasks, as discovery sees them: the few facts taken from the Engine
//! API's `/info`, `/services` and `/tasks`, whether a task may receive traffic now, and the
//! address to send it to. Pure functions over that JSON (no I/O), unit-tested from fixtures
//! captured from a real engine (`fixtures/swarm_*.json`).
//!
//! A service's labels are its own (`deploy.labels` in a compose file), not its containers':
//! they decide which backend its tasks serve, and carry the rules below. A task serves while
//! Docker says it is `running` and wants it running; a task with a healthcheck is `starting`
//! until healthy, so health is included.
//!
//! Address rules, for each task of a service:
//! 1. The port is the service's `rgate.port` label: a task carries no exposed-port data.
//! 2. The IP is the task's on the network the service's `rgate.network` label names, else on
//!    the only network it shares with rgate (when rgate runs in a container and knows its
//!    own networks), else on its only network. The ingress network is never used.
//! 3. With `rgate.lb=vip`, the service's virtual IP on that network stands for all its tasks,
//!    as one instance (swarm balances), while at least one task serves. A service in `dnsrr`
//!    endpoint mode has no virtual IP.
//!
//! Anything else is a `ServiceAmbiguity`, which names the label that settles it and which the
//! caller logs once per service: that service gets no traffic, discovery goes on.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::container::{weight_label, LABEL_NETWORK, LABEL_PORT, LABEL_WEIGHT};
use crate::config::MAX_WEIGHT;

/// Label choosing how a service's tasks are balanced: `tasks` (default, rgate balances over
/// each task) or `vip` (the service's virtual IP, swarm balances).
pub(crate) const LABEL_LB: &str = "rgate.lb";

// ----- raw: the fields read from the Engine API's JSON -----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInfo {
    #[serde(default)]
    swarm: Option<RawSwarmInfo>,
}

#[derive(Debug, Deserialize)]
struct RawSwarmInfo {
    #[serde(rename = "LocalNodeState", default)]
    local_node_state: String,
    #[serde(rename = "ControlAvailable", default)]
    control_available: bool,
    #[serde(rename = "NodeID", default)]
    node_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Spec")]
    spec: RawServiceSpec,
    #[serde(rename = "Endpoint", default)]
    endpoint: Option<RawServiceEndpoint>,
}

#[derive(Debug, Deserialize)]
struct RawServiceSpec {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
    #[serde(rename = "EndpointSpec", default)]
    endpoint_spec: Option<RawEndpointSpec>,
}

#[derive(Debug, Deserialize)]
struct RawEndpointSpec {
    #[serde(rename = "Mode", default)]
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawServiceEndpoint {
    #[serde(rename = "Spec", default)]
    spec: Option<RawEndpointSpec>,
    #[serde(rename = "VirtualIPs", default)]
    virtual_ips: Option<Vec<RawVirtualIp>>,
}

#[derive(Debug, Deserialize)]
struct RawVirtualIp {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    /// `10.0.1.2/24`
    #[serde(rename = "Addr", default)]
    addr: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(rename = "DesiredState", default)]
    desired_state: String,
    #[serde(rename = "Status", default)]
    status: Option<RawTaskStatus>,
    #[serde(rename = "NetworksAttachments", default)]
    networks_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Deserialize)]
struct RawTaskStatus {
    #[serde(rename = "State", default)]
    state: String,
}

#[derive(Debug, Deserialize)]
struct RawAttachment {
    #[serde(rename = "Network")]
    network: RawNetwork,
    #[serde(rename = "Addresses", default)]
    addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawNetwork {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Spec", default)]
    spec: Option<RawNetworkSpec>,
}

#[derive(Debug, Deserialize)]
struct RawNetworkSpec {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Ingress", default)]
    ingress: bool,
}

// ----- facts -----

/// What `/info` says of this node's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SwarmRole {
    /// An active manager: `/services` and `/tasks` answer here.
    Manager { node_id: String },
    /// A worker of an active swarm: they do not.
    Worker,
    /// Not in an active swarm (`inactive`, `pending`, `error`, `locked`).
    Outside { node_state: String },
    /// The daemon (or a socket proxy in front of it) refused `/info`: its status, message.
    InfoRefused { status: u16, message: String },
}

impl SwarmRole {
    pub(crate) fn from_info(info: &RawInfo) -> SwarmRole {
        match &info.swarm {
            Some(s) if s.local_node_state == "active" && s.control_available => {
                SwarmRole::Manager {
                    node_id: s.node_id.clone(),
                }
            }
            Some(s) if s.local_node_state == "active" => SwarmRole::Worker,
            Some(s) => SwarmRole::Outside {
                node_state: s.local_node_state.clone(),
            },
            None => SwarmRole::Outside {
                node_state: "absent".into(),
            },
        }
    }
}

/// How a service is reached on its networks (`EndpointSpec.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EndpointMode {
    /// A virtual IP per network, balanced by swarm (the default).
    Vip,
    /// DNS round robin: no virtual IP.
    Dnsrr,
}

/// How rgate balances a service (`rgate.lb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Balancing {
    /// Each serving task is an instance.
    Tasks,
    /// The virtual IP is the one instance.
    VirtualIp,
}

/// What rgate needs to know of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceFacts {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) endpoint_mode: EndpointMode,
    /// `(network id, virtual IP)`.
    pub(crate) virtual_ips: Vec<(String, IpAddr)>,
}

/// A task's state as discovery needs it (Docker's: new … starting, running, complete …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Scheduled, preparing, or starting (a healthcheck not yet healthy included).
    Starting,
    Running,
    /// complete, shutdown, failed, rejected, remove, orphaned.
    Ended,
}

impl TaskState {
    fn parse(text: &str) -> TaskState {
        match text {
            "running" => TaskState::Running,
            "new" | "allocated" | "pending" | "assigned" | "accepted" | "preparing" | "ready"
            | "starting" => TaskState::Starting,
            _ => TaskState::Ended,
        }
    }
}

/// A task's IP on one network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TaskNetwork {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) ip: IpAddr,
}

/// What rgate needs to know of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskFacts {
    pub(crate) id: String,
    pub(crate) service_id: String,
    pub(crate) state: TaskState,
    /// Docker still wants it running (`DesiredState`); a task being stopped does not.
    pub(crate) wanted_running: bool,
    /// Its networks, ingress excepted, sorted by name.
    pub(crate) networks: Vec<TaskNetwork>,
}

/// Why a service's tasks get no traffic. Its text reads after "it" and names the label that
/// settles it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServiceAmbiguity {
    /// No `rgate.port` label.
    NoPortLabel,
    /// `rgate.port` is not a port number (its value).
    PortLabel(String),
    /// `rgate.weight` is not a weight (its value).
    WeightLabel(String),
    /// `rgate.lb` is neither `tasks` nor `vip` (its value).
    LbLabel(String),
    /// `rgate.lb=vip` on a service in `dnsrr` endpoint mode.
    NoVirtualIp,
    /// `rgate.network` names a network its tasks are not on (the ones they are on).
    NotOnNetwork {
        wanted: String,
        networks: Vec<String>,
    },
    /// Its tasks are on no network (ingress aside).
    NoNetwork,
    /// Its tasks share no network with rgate (theirs, rgate's).
    NoSharedNetwork {
        networks: Vec<String>,
        rgate: Vec<String>,
    },
    /// Its tasks are on several networks (shared with rgate, when rgate knows its own).
    SeveralNetworks(Vec<String>),
}

impl fmt::Display for ServiceAmbiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceAmbiguity::NoPortLabel => write!(
                f,
                "has no {LABEL_PORT} label, and swarm tasks carry no port: label the service {LABEL_PORT}=<port> (deploy.labels)"
            ),
            ServiceAmbiguity::PortLabel(v) => {
                write!(f, "has label {LABEL_PORT}={v:?}, not a port number (1-65535)")
            }
            ServiceAmbiguity::WeightLabel(v) => {
                write!(f, "has label {LABEL_WEIGHT}={v:?}, not a weight (1-{MAX_WEIGHT})")
            }
            ServiceAmbiguity::LbLabel(v) => {
                write!(f, "has label {LABEL_LB}={v:?}; it may be tasks or vip")
            }
            ServiceAmbiguity::NoVirtualIp => write!(
                f,
                "has label {LABEL_LB}=vip but endpoint mode dnsrr, which has no virtual IP; remove the label or use endpoint mode vip"
            ),
            ServiceAmbiguity::NotOnNetwork { wanted, networks } => write!(
                f,
                "has label {LABEL_NETWORK}={wanted:?}, a network its tasks are not on (they are on: {})",
                list(networks)
            ),
            ServiceAmbiguity::NoNetwork => f.write_str(
                "has tasks on no network but ingress; attach the service to a network rgate is on",
            ),
            ServiceAmbiguity::NoSharedNetwork { networks, rgate } => write!(
                f,
                "shares no network with rgate (its tasks are on: {}; rgate on: {}); attach both to one network",
                list(networks),
                list(rgate)
            ),
            ServiceAmbiguity::SeveralNetworks(networks) => write!(
                f,
                "has tasks on several networks rgate can use ({}); label the service {LABEL_NETWORK}=<network>",
                list(networks)
            ),
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl ServiceFacts {
    pub(crate) fn from_raw(raw: RawService) -> ServiceFacts {
        let endpoint = raw.endpoint.as_ref();
        // The effective spec is the endpoint's; a service just created may only have its own.
        // The service's own spec first: Docker 20.10 leaves `Endpoint.Spec` empty in dnsrr mode.
        let mode = raw
            .spec
            .endpoint_spec
            .as_ref()
            .and_then(|s| s.mode.as_deref())
            .or_else(|| endpoint.and_then(|e| e.spec.as_ref())?.mode.as_deref());
        let virtual_ips = endpoint
            .and_then(|e| e.virtual_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v.network_id.clone(), ip_of_cidr(&v.addr)?)))
            .collect();
        ServiceFacts {
            id: raw.id,
            name: raw.spec.name,
            labels: raw.spec.labels.unwrap_or_default(),
            endpoint_mode: if mode == Some("dnsrr") {
                EndpointMode::Dnsrr
            } else {
                EndpointMode::Vip
            },
            virtual_ips,
        }
    }

    /// How rgate balances this service, or why its label cannot say.
    pub(crate) fn balancing(&self) -> Result<Balancing, ServiceAmbiguity> {
        match self.labels.get(LABEL_LB).map(|v| v.trim()) {
            None | Some("tasks") => Ok(Balancing::Tasks),
            Some("vip") if self.endpoint_mode == EndpointMode::Dnsrr => {
                Err(ServiceAmbiguity::NoVirtualIp)
            }
            Some("vip") => Ok(Balancing::VirtualIp),
            Some(other) => Err(ServiceAmbiguity::LbLabel(other.to_string())),
        }
    }

    /// The port its tasks serve on (`rgate.port`).
    pub(crate) fn port(&self) -> Result<u16, ServiceAmbiguity> {
        let v = self
            .labels
            .get(LABEL_PORT)
            .ok_or(ServiceAmbiguity::NoPortLabel)?;
        match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(ServiceAmbiguity::PortLabel(v.clone())),
        }
    }

    /// Its share of the backend's traffic per instance (`rgate.weight`, or 1).
    pub(crate) fn weight(&self) -> Result<u32, ServiceAmbiguity> {
        weight_label(&self.labels)
            .map_err(|_| ServiceAmbiguity::WeightLabel(self.labels[LABEL_WEIGHT].clone()))
    }

    /// Which of a task's networks to use, by rule 2 of the module doc. `rgate_networks`:
    /// the networks rgate itself is on, when it runs in a container.
    pub(crate) fn network<'t>(
        &self,
        task: &'t TaskFacts,
        rgate_networks: Option<&[String]>,
    ) -> Result<&'t TaskNetwork, ServiceAmbiguity> {
        let names = || {
            task.networks
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
        };
        if let Some(wanted) = self.labels.get(LABEL_NETWORK) {
            return task
                .networks
                .iter()
                .find(|n| &n.name == wanted)
                .ok_or_else(|| ServiceAmbiguity::NotOnNetwork {
                    wanted: wanted.clone(),
                    networks: names(),
                });
        }
        if task.networks.is_empty() {
            return Err(ServiceAmbiguity::NoNetwork);
        }
        let usable: Vec<&TaskNetwork> = match rgate_networks {
            Some(own) => task
                .networks
                .iter()
                .filter(|n| own.contains(&n.name))
                .collect(),
            None => task.networks.iter().collect(),
        };
        match usable.as_slice() {
            [one] => Ok(one),
            [] => Err(ServiceAmbiguity::NoSharedNetwork {
                networks: names(),
                rgate: rgate_networks.unwrap_or_default().to_vec(),
            }),
            several => Err(ServiceAmbiguity::SeveralNetworks(
                several.iter().map(|n| n.name.clone()).collect(),
            )),
        }
    }

    /// Where to send a serving task's share of the traffic (`None` when it does not serve),
    /// or why nothing of this service can be decided.
    pub(crate) fn task_address(
        &self,
        task: &TaskFacts,
        rgate_networks: Option<&[String]>,
    ) -> Result<Option<SocketAddr>, ServiceAmbiguity> {
        let port = self.port()?;
        self.weight()?;
        let balancing = self.balancing()?;
        if !task.serves() {
            return Ok(None);
        }
        let network = self.network(task, rgate_networks)?;
        let ip = match balancing {
            Balancing::Tasks => network.ip,
            Balancing::VirtualIp => {
                match self.virtual_ips.iter().find(|(id, _)| id == &network.id) {
                    Some((_, vip)) => *vip,
                    // No VIP on that network (yet): swarm allocates them with the service.
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(SocketAddr::new(ip, port)))
    }
}

impl TaskFacts {
    pub(crate) fn from_raw(raw: RawTask) -> TaskFacts {
        let status = raw.status.as_ref();
        let mut networks: Vec<TaskNetwork> = raw
            .networks_attachments
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !a.network.spec.as_ref().is_some_and(|s| s.ingress))
            .filter_map(|a| {
                let ip = a.addresses.as_deref()?.iter().find_map(|c| ip_of_cidr(c))?;
                Some(TaskNetwork {
                    name: a.network.spec.map(|s| s.name).unwrap_or_default(),
                    id: a.network.id,
                    ip,
                })
            })
            .collect();
        networks.sort();
        TaskFacts {
            id: raw.id,
            service_id: raw.service_id,
            state: TaskState::parse(status.map_or("", |s| s.state.as_str())),
            wanted_running: raw.desired_state == "running",
            networks,
        }
    }

    /// Running, and Docker wants it so.
    pub(crate) fn serves(&self) -> bool {
        self.state == TaskState::Running && self.wanted_running
    }
}

/// `10.0.1.5/24` → 10.0.1.5.
fn ip_of_cidr(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.parse().ok()
}

#[cfg(test)]
#[path = "swarm_facts_tests.rs"]
mod tests;
