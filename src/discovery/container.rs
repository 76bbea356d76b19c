//! One container, as discovery sees it: the few facts taken from `docker inspect`, whether it
//! may receive traffic now, and the address to send it to. Pure functions over inspect data
//! (no I/O), so every rule is unit-tested from JSON fixtures.
//!
//! Address rules, in order:
//! 1. It publishes ports: the published port to use is the only one, or the one named by the
//!    label `rgate.port=<private port>`. The host side is the address it is published on;
//!    `0.0.0.0`, `::` and an empty host IP (every interface) mean `127.0.0.1`.
//! 2. It publishes none: its single exposed port (or `rgate.port`) at its IP on its network
//!    (the label `rgate.network=<name>` picks the network when there are several); with host
//!    networking, `127.0.0.1`.
//!
//! Anything else is ambiguous: the container is skipped with an `Ambiguity`, which says what
//! label would settle it and which the caller logs once. An ambiguity is not a discovery
//! error (`DiscoveryError`): discovery goes on; only that container gets no traffic.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use docker_api::models::ContainerInspect200Response;

use crate::config::MAX_WEIGHT;

/// Label naming the private port to use when a container has several.
pub(crate) const LABEL_PORT: &str = "rgate.port";
/// Label naming the network whose IP to use when a container publishes no port.
pub(crate) const LABEL_NETWORK: &str = "rgate.network";
/// Label giving a container's share of its backend's traffic (1 when absent).
pub(crate) const LABEL_WEIGHT: &str = "rgate.weight";

/// What rgate needs to know of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerFacts {
    pub(crate) id: String,
    /// The name without Docker's leading `/`.
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) run: RunState,
    pub(crate) health: Health,
    /// TCP ports published on the host.
    pub(crate) published: Vec<PublishedPort>,
    /// Exposed TCP ports (image `EXPOSE` and `--expose`), sorted.
    pub(crate) exposed: Vec<u16>,
    /// `(network name, IP)` of each network the container has an IP on, sorted by name.
    pub(crate) networks: Vec<(String, IpAddr)>,
    pub(crate) host_network: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    Paused,
    Restarting,
    NotRunning,
}

/// The Docker healthcheck's verdict; `None` when the container has no healthcheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedPort {
    pub(crate) private: u16,
    pub(crate) host_ip: String,
    pub(crate) host_port: u16,
}

/// Why a container that carries a backend's labels gets no traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    NotRunning,
    Paused,
    Restarting,
    HealthStarting,
    Unhealthy,
    /// Its address cannot be decided.
    Ambiguous(Ambiguity),
}

/// Why a container's address cannot be decided by the rules of the module doc. Its text
/// reads after "it" ("it publishes several ports …") and names the label that settles it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Ambiguity {
    /// The `rgate.port` label is not a port number (its value).
    PortLabel(String),
    /// The `rgate.weight` label is not a weight (its value).
    WeightLabel(String),
    /// Publishes no port and exposes none.
    NothingExposed,
    /// Publishes no port and exposes several.
    SeveralExposed(Vec<u16>),
    /// `rgate.network` names a network the container has no IP on.
    NotOnNetwork {
        wanted: String,
        networks: Vec<(String, IpAddr)>,
    },
    /// Publishes no port and has no IP on any network.
    NoNetwork,
    /// Publishes no port and is on several networks.
    SeveralNetworks(Vec<(String, IpAddr)>),
    /// Publishes several private ports and no `rgate.port` picks one.
    SeveralPublished(Vec<u16>),
    /// `rgate.port` names a private port that is not published.
    PortNotPublished { wanted: u16, published: Vec<u16> },
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ambiguity::PortLabel(v) => {
                write!(f, "label {LABEL_PORT}={v:?} is not a port number (1-65535)")
            }
            Ambiguity::WeightLabel(v) => write!(
                f,
                "label {LABEL_WEIGHT}={v:?} is not a weight (1-{MAX_WEIGHT})"
            ),
            Ambiguity::NothingExposed => write!(
                f,
                "publishes no port and exposes none; publish one, or label it {LABEL_PORT}=<port>"
            ),
            Ambiguity::SeveralExposed(ports) => write!(
                f,
                "publishes no port and exposes several ({}); label it {LABEL_PORT}=<port>",
                port_list(ports)
            ),
            Ambiguity::NotOnNetwork { wanted, networks } => write!(
                f,
                "label {LABEL_NETWORK}={wanted:?} names a network it has no IP on (it is on: {})",
                network_list(networks)
            ),
            Ambiguity::NoNetwork => f.write_str("publishes no port and has no IP on any network"),
            Ambiguity::SeveralNetworks(networks) => write!(
                f,
                "publishes no port and is on several networks ({}); label it {LABEL_NETWORK}=<network>",
                network_list(networks)
            ),
            Ambiguity::SeveralPublished(ports) => write!(
                f,
                "publishes several ports ({}); label it {LABEL_PORT}=<private port>",
                port_list(ports)
            ),
            Ambiguity::PortNotPublished { wanted, published } => write!(
                f,
                "label {LABEL_PORT}={wanted} names a port it does not publish (it publishes {})",
                port_list(published)
            ),
        }
    }
}

impl ContainerFacts {
    /// The facts of an inspect answer.
    pub(crate) fn from_inspect(c: &ContainerInspect200Response) -> ContainerFacts {
        let config = c.config.as_ref();
        let labels = config.and_then(|c| c.labels.clone()).unwrap_or_default();
        let state = c.state.as_ref();
        let flag = |f: Option<bool>| f.unwrap_or(false);
        let run = match state {
            Some(s) if flag(s.paused) => RunState::Paused,
            Some(s) if flag(s.restarting) => RunState::Restarting,
            Some(s) if flag(s.running) => RunState::Running,
            _ => RunState::NotRunning,
        };
        let health = match state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status.as_deref())
        {
            Some("starting") => Health::Starting,
            Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Unhealthy,
            _ => Health::None,
        };
        let settings = c.network_settings.as_ref();
        let mut published: Vec<PublishedPort> = settings
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|(key, bindings)| Some((tcp_port(key)?, bindings.as_ref()?)))
            .flat_map(|(private, bindings)| {
                bindings.iter().filter_map(move |b| {
                    Some(PublishedPort {
                        private,
                        host_ip: b.host_ip.clone().unwrap_or_default(),
                        host_port: b.host_port.as_deref()?.parse().ok()?,
                    })
                })
            })
            .collect();
        published.sort_by_key(|p| (p.private, p.host_port));
        let mut exposed: Vec<u16> = config
            .and_then(|c| c.exposed_ports.as_ref())
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| tcp_port(k))
            .collect();
        exposed.sort_unstable();
        exposed.dedup();
        let mut networks: Vec<(String, IpAddr)> = settings
            .and_then(|s| s.networks.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|(name, ep)| Some((name.clone(), ep.ip_address.as_deref()?.parse().ok()?)))
            .collect();
        networks.sort();
        let host_network = c
            .host_config
            .as_ref()
            .and_then(|h| h.get("NetworkMode"))
            .and_then(|m| m.as_str())
            == Some("host");
        ContainerFacts {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .name
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels,
            run,
            health,
            published,
            exposed,
            networks,
            host_network,
        }
    }

    /// Whether the container carries every one of `wanted` labels.
    #[cfg(test)]
    pub(crate) fn carries(&self, wanted: &[(String, String)]) -> bool {
        carries_labels(&self.labels, wanted)
    }

    /// The container's weight: its `rgate.weight` label, or 1.
    pub(crate) fn weight(&self) -> Result<u32, Ambiguity> {
        weight_label(&self.labels)
    }

    /// Where to send this container's traffic now, or why not.
    pub(crate) fn serving_address(&self) -> Result<SocketAddr, Skip> {
        match self.run {
            RunState::Running => {}
            RunState::Paused => return Err(Skip::Paused),
            RunState::Restarting => return Err(Skip::Restarting),
            RunState::NotRunning => return Err(Skip::NotRunning),
        }
        match self.health {
            Health::None | Health::Healthy => {}
            Health::Starting => return Err(Skip::HealthStarting),
            Health::Unhealthy => return Err(Skip::Unhealthy),
        }
        self.weight().map_err(Skip::Ambiguous)?;
        self.address().map_err(Skip::Ambiguous)
    }

    /// The address rules of the module doc.
    fn address(&self) -> Result<SocketAddr, Ambiguity> {
        let wanted_port = match self.labels.get(LABEL_PORT) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u16>()
                    .map_err(|_| Ambiguity::PortLabel(v.clone()))?,
            ),
        };
        if !self.published.is_empty() {
            return self.published_address(wanted_port);
        }
        let port = match (wanted_port, self.exposed.as_slice()) {
            (Some(p), _) => p,
            (None, [p]) => *p,
            (None, []) => return Err(Ambiguity::NothingExposed),
            (None, several) => return Err(Ambiguity::SeveralExposed(several.to_vec())),
        };
        if self.host_network {
            return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        }
        let ip = match (self.labels.get(LABEL_NETWORK), self.networks.as_slice()) {
            (Some(wanted), nets) => {
                nets.iter()
                    .find(|(name, _)| name == wanted)
                    .ok_or_else(|| Ambiguity::NotOnNetwork {
                        wanted: wanted.clone(),
                        networks: nets.to_vec(),
                    })?
                    .1
            }
            (None, [(_, ip)]) => *ip,
            (None, []) => return Err(Ambiguity::NoNetwork),
            (None, nets) => return Err(Ambiguity::SeveralNetworks(nets.to_vec())),
        };
        Ok(SocketAddr::new(ip, port))
    }

    fn published_address(&self, wanted_port: Option<u16>) -> Result<SocketAddr, Ambiguity> {
        let mut privates: Vec<u16> = self.published.iter().map(|p| p.private).collect();
        privates.dedup(); // `published` is sorted by private port
        let private = match (wanted_port, privates.as_slice()) {
            (Some(p), _) => p,
            (None, [p]) => *p,
            (None, several) => return Err(Ambiguity::SeveralPublished(several.to_vec())),
        };
        // The same private port may be published on IPv4 and IPv6 (Docker does both for
        // `-p 8080:80`): prefer IPv4, then the lowest host port.
        let candidates = self.published.iter().filter(|p| p.private == private);
        let addrs =
            candidates.filter_map(|p| Some(SocketAddr::new(host_ip(&p.host_ip)?, p.host_port)));
        let best = addrs.min_by_key(|a| (a.is_ipv6(), a.port()));
        best.ok_or_else(|| Ambiguity::PortNotPublished {
            wanted: private,
            published: privates.clone(),
        })
    }
}

/// The weight a container's labels give it: `rgate.weight`, or 1.
pub(crate) fn weight_label(labels: &HashMap<String, String>) -> Result<u32, Ambiguity> {
    match labels.get(LABEL_WEIGHT) {
        None => Ok(1),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
            _ => Err(Ambiguity::WeightLabel(v.clone())),
        },
    }
}

/// Whether `labels` hold every one of `wanted`.
pub(crate) fn carries_labels(
    labels: &HashMap<String, String>,
    wanted: &[(String, String)],
) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
}

/// `"8080/tcp"` → 8080; other protocols → `None`.
fn tcp_port(key: &str) -> Option<u16> {
    match key.split_once('/') {
        Some((port, "tcp")) => port.parse().ok(),
        None => key.parse().ok(),
        Some(_) => None,
    }
}

/// The host side of a binding: every interface means loopback.
fn host_ip(text: &str) -> Option<IpAddr> {
    if text.is_empty() {
        return Some(Ipv4Addr::LOCALHOST.into());
    }
    let ip: IpAddr = text.parse().ok()?;
    Some(if ip.is_unspecified() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        ip
    })
}

fn port_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("{p}/tcp"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn network_list(nets: &[(String, IpAddr)]) -> String {
    if nets.is_empty() {
        return "none".into();
    }
    nets.iter()
        .map(|(n, ip)| format!("{n} {ip}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
