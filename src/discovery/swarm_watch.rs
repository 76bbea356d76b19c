//! The swarm discovery thread's work, on its own tokio runtime: connect, check with `/info`
//! that this node is a swarm manager, list the services that carry some backend's labels and
//! their tasks, publish the table, then follow changes:
//!
//! * every `docker.swarm_poll_ms` (2 s by default), one `GET /tasks` filtered by those
//!   services and by desired state `running` (Docker sends no task events); a poll that finds
//!   the same tasks publishes nothing, and no node or container is inspected per task;
//! * service events (`create`, `update`, `remove`): the services are listed again and the
//!   tasks polled at once;
//! * the container events of this node (a task's container carries its task id): a task
//!   stopping here leaves the table at once; one starting or ending is polled at once.
//!
//! In `auto` mode, a daemon that is not an active manager is followed in container mode
//! instead (`SwarmRun::FollowContainers`), said once in the log with the reason. In `swarm`
//! mode it is a `NotSwarmManager` error, logged once while retrying (a node may be promoted).
//! As in container mode, the cores keep the last table while Docker is away.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use docker_api::opts::{EventFilter, EventsOpts};
use docker_api::Docker;
use futures_util::StreamExt;
use tokio::time::MissedTickBehavior;

use crate::backends::TablePublisher;
use crate::clock::unix_now;
use crate::config::DockerMode;

use super::engine_api::{query_value, EngineApi};
use super::error::DiscoveryError;
use super::events::{SwarmEvent, SWARM_FOLLOWED};
use super::state::short;
use super::swarm_facts::{RawInfo, RawService, RawTask, ServiceFacts, SwarmRole, TaskFacts};
use super::swarm_state::SwarmServices;
use super::version::{self, Endpoint};
use super::watch::{FailureLog, FirstSync, BACKOFF_FIRST, BACKOFF_MAX, EVENTS_OVERLAP_SECS};

/// How long finding rgate's own container may take (it only narrows the networks used).
const OWN_CONTAINER_LIMIT: Duration = Duration::from_secs(5);

/// Why a swarm session ended.
enum SessionEnd {
    /// No usable connection (the daemon, or a request, failed).
    Unreachable(DiscoveryError),
    /// Connected once, then lost.
    Lost(DiscoveryError),
    /// A setting makes connecting impossible; retrying will not help.
    Unusable(DiscoveryError),
    /// The daemon is not an active swarm manager.
    NotManager(SwarmRole),
}

/// How a swarm watch ended.
pub(crate) enum SwarmRun {
    /// `auto` found no swarm manager: follow this node's containers instead (the first
    /// discovery's report, when not sent yet).
    FollowContainers(Option<mpsc::Sender<FirstSync>>),
    /// A setting made Docker unusable (logged).
    Ended,
}

pub(crate) struct SwarmWatch {
    pub(crate) endpoint: Endpoint,
    pub(crate) requested_version: Option<String>,
    pub(crate) services: SwarmServices,
    pub(crate) publisher: Arc<TablePublisher>,
    pub(crate) poll: Duration,
    /// `Swarm`, or `Auto` until a manager was found.
    pub(crate) mode: DockerMode,
}

impl SwarmWatch {
    /// Runs until the process exits, a setting makes Docker unusable, or `auto` decides on
    /// containers.
    pub(crate) async fn run(mut self, first: mpsc::Sender<FirstSync>) -> SwarmRun {
        let mut first = Some(first);
        let mut delay = BACKOFF_FIRST;
        let mut failures = FailureLog::new();
        let mut published = false;
        loop {
            let end = self.session(&mut first, &mut delay).await;
            published |= matches!(end, SessionEnd::Lost(_));
            let kept = if published {
                "serving the last known backends"
            } else {
                "Docker backends answer 503"
            };
            let (message, give_up, error) = match end {
                SessionEnd::NotManager(role) if self.mode == DockerMode::Auto => {
                    let why = match role {
                        SwarmRole::Worker => "a swarm worker, not a manager (only a manager lists services and tasks)".to_string(),
                        SwarmRole::InfoRefused { status, message } => format!("not known to be a swarm manager (/info answered {status}: {message})"),
                        SwarmRole::Outside { node_state } => format!("not in an active swarm (LocalNodeState {node_state:?})"),
                        SwarmRole::Manager { .. } => "a manager".to_string(),
                    };
                    log::info!("docker: mode auto: this node is {why}; following the containers of this node");
                    return SwarmRun::FollowContainers(first);
                }
                SessionEnd::NotManager(role) => {
                    let e = DiscoveryError::NotSwarmManager {
                        worker: role == SwarmRole::Worker,
                        node_state: match role {
                            SwarmRole::Outside { node_state } => node_state,
                            SwarmRole::InfoRefused { status, .. } => format!("unknown: /info answered {status}"),
                            SwarmRole::Worker | SwarmRole::Manager { .. } => "active".into(),
                        },
                    };
                    (format!("docker: {e}; {kept} (retrying)"), false, e)
                }
                SessionEnd::Unusable(e) => (format!("docker: {e}"), true, e),
                SessionEnd::Unreachable(e) => (
                    format!(
                        "docker: cannot {} at {}: {e}; {kept} until it answers (retrying)",
                        if self.mode == DockerMode::Auto {
                            "reach Docker"
                        } else {
                            "use the swarm"
                        },
                        self.endpoint
                    ),
                    false,
                    e,
                ),
                SessionEnd::Lost(e) => (
                    format!(
                        "docker: lost the swarm at {} ({e}); serving the last known backends while reconnecting",
                        self.endpoint
                    ),
                    false,
                    e,
                ),
            };
            failures.log(message);
            if let Some(tx) = first.take() {
                let _ = tx.send(Err(error));
            }
            if give_up {
                return SwarmRun::Ended;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: check the role, sync, then poll and follow events until one fails.
    async fn session(
        &mut self,
        first: &mut Option<mpsc::Sender<FirstSync>>,
        delay: &mut Duration,
    ) -> SessionEnd {
        let (docker, api) =
            match version::connect(&self.endpoint, self.requested_version.as_deref()).await {
                Ok(ok) => ok,
                Err(e) if !e.retry_helps() => return SessionEnd::Unusable(e),
                Err(e) => return SessionEnd::Unreachable(e),
            };
        let engine = match EngineApi::new(&self.endpoint, api) {
            Ok(engine) => engine,
            Err(e) => return SessionEnd::Unusable(e),
        };
        let info: RawInfo = match engine.get_json("/info").await {
            Ok(info) => info,
            // A daemon (or socket proxy) that refuses `/info` cannot say it is a manager: in
            // `auto`, that is an answer; a failure of the daemon itself is retried.
            Err(DiscoveryError::EngineAnswer {
                status, message, ..
            }) if self.mode == DockerMode::Auto && (400..500).contains(&status) => {
                return SessionEnd::NotManager(SwarmRole::InfoRefused { status, message })
            }
            Err(e) => return SessionEnd::Unreachable(e),
        };
        let node = match SwarmRole::from_info(&info) {
            SwarmRole::Manager { node_id } => node_id,
            other => return SessionEnd::NotManager(other),
        };
        if self.mode == DockerMode::Auto {
            log::info!("docker: mode auto: this node is a swarm manager; following swarm services");
            self.mode = DockerMode::Swarm;
        }
        let own = rgate_networks(&docker).await;
        match &own {
            Some(nets) => log::info!(
                "docker: rgate's container is on {}; a service's tasks are reached on the one they share",
                nets.join(", ")
            ),
            None => log::info!("docker: rgate does not run in a container of this daemon; a service's tasks are reached on their only network"),
        }
        self.services.set_rgate_networks(own);
        let since = unix_now() - EVENTS_OVERLAP_SECS;
        if let Err(e) = self.sync_services(&engine).await {
            return SessionEnd::Unreachable(e);
        }
        if let Err(e) = self.poll_tasks(&engine).await {
            return SessionEnd::Unreachable(e);
        }
        self.publish();
        log::info!(
            "docker: connected to the swarm at {} as manager node {} (Engine API {api}, tasks polled every {:?}); {}",
            self.endpoint,
            short(&node),
            self.poll,
            self.services.summary()
        );
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        *delay = BACKOFF_FIRST;

        let opts = EventsOpts::builder()
            .since(since)
            .filter(
                SWARM_FOLLOWED
                    .iter()
                    .map(|a| EventFilter::Event(a.to_string()))
                    .collect(),
            )
            .build();
        let mut stream = docker.events(&opts);
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is now: the sync above was that poll
        loop {
            let result = tokio::select! {
                item = stream.next() => match item {
                    None => return SessionEnd::Lost(DiscoveryError::EventStreamClosed),
                    Some(Err(e)) => return SessionEnd::Lost(DiscoveryError::EventStreamBroke(e.to_string())),
                    Some(Ok(message)) => match SwarmEvent::from_message(&message) {
                        Some(event) => self.apply(&engine, event).await,
                        None => Ok(()),
                    },
                },
                _ = ticker.tick() => self.poll_tasks(&engine).await.map(|changed| {
                    if changed {
                        self.publish();
                    }
                }),
            };
            if let Err(e) = result {
                return SessionEnd::Lost(e);
            }
        }
    }

    async fn apply(&mut self, engine: &EngineApi, event: SwarmEvent) -> Result<(), DiscoveryError> {
        match event {
            SwarmEvent::ServicesChanged => {
                self.sync_services(engine).await?;
                self.poll_tasks(engine).await?;
                self.publish();
            }
            SwarmEvent::TaskStopping { task_id } => {
                if self.services.container_stopping(&task_id) {
                    log::info!(
                        "docker: swarm task {} is stopping on this node; no new requests go to it",
                        short(&task_id)
                    );
                    self.publish();
                }
            }
            SwarmEvent::TaskChanged => {
                if self.poll_tasks(engine).await? {
                    self.publish();
                }
            }
        }
        Ok(())
    }

    /// Lists every service; keeps those some backend takes.
    async fn sync_services(&mut self, engine: &EngineApi) -> Result<(), DiscoveryError> {
        let raw: Vec<RawService> = engine.get_json("/services").await?;
        self.services
            .replace_services(raw.into_iter().map(ServiceFacts::from_raw).collect());
        Ok(())
    }

    /// One `GET /tasks` for the followed services' tasks Docker wants running. True when
    /// they differ from the last poll's.
    async fn poll_tasks(&mut self, engine: &EngineApi) -> Result<bool, DiscoveryError> {
        let ids = self.services.service_ids();
        if ids.is_empty() {
            return Ok(self.services.replace_tasks(Vec::new()));
        }
        let filters = serde_json::json!({"service": ids, "desired-state": ["running"]});
        let path = format!("/tasks?filters={}", query_value(&filters.to_string()));
        let raw: Vec<RawTask> = engine.get_json(&path).await?;
        Ok(self
            .services
            .replace_tasks(raw.into_iter().map(TaskFacts::from_raw).collect()))
    }

    /// Publishes the table (the publisher ignores one equal to the last), and logs once each
    /// service that gets no traffic for a reason its labels can fix.
    fn publish(&mut self) {
        self.services.log_ambiguities();
        if self.publisher.publish(self.services.table()) {
            log::info!("docker: backends now {}", self.services.summary());
        }
    }
}

/// The networks of rgate's own container, when it runs in one of this daemon's containers
/// (found by its id in `/proc/self/mountinfo`); `None` otherwise, or when it cannot be told.
async fn rgate_networks(docker: &Docker) -> Option<Vec<String>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let id = container_id_in_mountinfo(&mountinfo)?;
    let container = docker.containers().get(id);
    let inspect = tokio::time::timeout(OWN_CONTAINER_LIMIT, container.inspect())
        .await
        .ok()?
        .ok()?;
    let mut names: Vec<String> = inspect.network_settings?.networks?.into_keys().collect();
    names.sort();
    Some(names)
}

/// The id of the container whose files Docker mounted into this process's view
/// (`/var/lib/docker/containers/<id>/hostname` and the like).
fn container_id_in_mountinfo(text: &str) -> Option<&str> {
    const ID_LEN: usize = 64;
    text.match_indices("/containers/").find_map(|(at, m)| {
        let rest = &text[at + m.len()..];
        let id = rest.get(..ID_LEN)?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && rest[ID_LEN..].starts_with('/')).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_container_id_is_found_in_mountinfo() {
        let id = "cb94ed0082a19568f3babef87a67e028c6b18d7530be6dcd99f11d8c2aca380c";
        let text = format!(
            "611 590 0:52 / / rw,relatime - fuse.fuse-overlayfs fuse-overlayfs rw\n\
             634 611 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_in_mountinfo(&text), Some(id));
        assert_eq!(
            container_id_in_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n"),
            None
        );
        assert_eq!(
            container_id_in_mountinfo("1 1 0:1 /x/containers/abc/hostname /etc/hostname rw\n"),
            None
        );
    }
}
