//! Why discovery could not talk to Docker: one `DiscoveryError` for the whole layer.
//!
//! Discovery never stops rgate: every error here is logged (each distinct one once) and the
//! cores keep the last table — or, before the first sync, Docker backends answer 503 — while
//! the watch reconnects with backoff. The one distinction that changes what happens is
//! `retry_helps`: a setting that cannot be used (`DOCKER_HOST`, `DOCKER_API_VERSION`) ends
//! discovery for the life of the process; anything the daemon did is retried.
//!
//! Swarm mode on a daemon that is not a swarm manager is `NotSwarmManager`: retried like a
//! daemon failure (the node may be promoted), and logged once with what to do.
//!
//! A container whose address cannot be decided is not a discovery error: discovery goes on,
//! and the container is skipped with its `container::Ambiguity`.
//!
//! Texts from docker-api are kept as their text: they are only ever shown.

use std::fmt;
use std::time::Duration;

use docker_api::ApiVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiscoveryError {
    /// `DOCKER_API_VERSION` is not a version (the value given).
    ApiVersionSetting(String),
    /// `DOCKER_HOST` cannot be used (docker-api's reason).
    DockerHostSetting { endpoint: String, reason: String },
    /// The daemon did not answer `/version` in time.
    NoVersionAnswer { within: Duration },
    /// Asking the daemon for `/version` failed (docker-api's reason).
    VersionRequest(String),
    /// A field of the daemon's `/version` is not a version.
    VersionField { field: &'static str, value: String },
    /// The daemon's `/version` has no `ApiVersion`.
    NoApiVersion,
    /// The daemon speaks no API version rgate knows.
    DaemonTooOld {
        speaks: ApiVersion,
        needed: ApiVersion,
    },
    /// Listing the containers failed (docker-api's reason).
    Listing(String),
    /// Listing and inspecting the candidates took too long.
    ListingTooSlow { limit: Duration },
    /// Inspecting a listed container failed (its short id, docker-api's reason).
    Inspecting { id: String, reason: String },
    /// The event stream failed (docker-api's reason).
    EventStreamBroke(String),
    /// The daemon ended the event stream.
    EventStreamClosed,
    /// A plain Engine API request (`engine_api`) failed: its path, why.
    EngineRequest { path: String, reason: String },
    /// The daemon answered a plain request with an error status: its path, the status, the
    /// daemon's message.
    EngineAnswer {
        path: String,
        status: u16,
        message: String,
    },
    /// Swarm discovery needs a swarm manager; this daemon is not one (`/info`'s
    /// `LocalNodeState`, and whether the node is a worker of an active swarm).
    NotSwarmManager { node_state: String, worker: bool },
}

impl DiscoveryError {
    /// False for a setting that cannot be used: no retry will make it work.
    pub(crate) fn retry_helps(&self) -> bool {
        !matches!(
            self,
            DiscoveryError::ApiVersionSetting(_) | DiscoveryError::DockerHostSetting { .. }
        )
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::ApiVersionSetting(text) => write!(
                f,
                "DOCKER_API_VERSION={text:?} is not a version such as 1.44"
            ),
            DiscoveryError::DockerHostSetting { endpoint, reason } => write!(
                f,
                "DOCKER_HOST={endpoint} cannot be used ({reason}); rgate supports unix:// and tcp://"
            ),
            DiscoveryError::NoVersionAnswer { within } => {
                write!(f, "no answer to /version within {within:?}")
            }
            DiscoveryError::VersionRequest(reason) => f.write_str(reason),
            DiscoveryError::VersionField { field, value } => write!(
                f,
                "the daemon's /version has {field} {value:?}, not a version"
            ),
            DiscoveryError::NoApiVersion => f.write_str("the daemon's /version has no ApiVersion"),
            DiscoveryError::DaemonTooOld { speaks, needed } => write!(
                f,
                "the daemon speaks Engine API {speaks} at most; rgate needs {needed} or newer"
            ),
            DiscoveryError::Listing(reason) => write!(f, "listing containers failed: {reason}"),
            DiscoveryError::ListingTooSlow { limit } => {
                write!(f, "listing containers took over {limit:?}")
            }
            DiscoveryError::Inspecting { id, reason } => {
                write!(f, "inspecting container {id}: {reason}")
            }
            DiscoveryError::EventStreamBroke(reason) => write!(f, "event stream broke: {reason}"),
            DiscoveryError::EventStreamClosed => f.write_str("the daemon closed the event stream"),
            DiscoveryError::EngineRequest { path, reason } => write!(f, "GET {path}: {reason}"),
            DiscoveryError::EngineAnswer {
                path,
                status,
                message,
            } => write!(f, "GET {path} answered {status}: {message}"),
            DiscoveryError::NotSwarmManager { worker: true, .. } => f.write_str(
                "docker.mode is swarm but this node is a swarm worker: only a manager answers \
                 /services and /tasks; mount a manager's Docker socket (or a socket proxy to one), \
                 or set docker.mode: containers to follow this node's containers",
            ),
            DiscoveryError::NotSwarmManager { node_state, .. } => write!(
                f,
                "docker.mode is swarm but this node is not in an active swarm (LocalNodeState \
                 {node_state:?}); run docker swarm init or join, or set docker.mode: containers"
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {}
