//! The discovery thread's work, on its own tokio runtime: connect (negotiating the API
//! version), list the running containers, publish the table, then follow container events,
//! inspecting only the container an event is about. When the daemon cannot be reached or the
//! event stream breaks, the cores keep the last table while this reconnects with backoff and
//! resynchronises from a full list.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docker_api::opts::{ContainerListOpts, EventFilter, EventFilterType, EventsOpts};
use docker_api::Docker;
use futures_util::StreamExt;

use crate::backends::TablePublisher;
use crate::clock::unix_now;
use crate::throttle::{Throttle, WARNING_INTERVAL};

use super::container::ContainerFacts;
use super::error::DiscoveryError;
use super::events::{Change, ContainerEvent, FOLLOWED, FOLLOWED_NETWORK};
use super::label_routes::{RouteRestart, ROUTES_SETTLE};
use super::state::{short, Containers};
use super::version::{self, Endpoint};

/// How long listing and inspecting every candidate container may take.
const SYNC_LIMIT: Duration = Duration::from_secs(10);
/// How long inspecting one container may take.
const INSPECT_LIMIT: Duration = Duration::from_secs(5);
/// Reconnection delays: the first, and the ceiling of the doubling.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The event stream starts this far before the full list, so no change between the list and
/// the subscription is missed (replayed events only cause a harmless re-inspect).
pub(crate) const EVENTS_OVERLAP_SECS: i64 = 2;

/// The result of the first connection attempt, for `discovery::start`.
pub(crate) type FirstSync = Result<(), DiscoveryError>;

/// Why a session with the daemon ended.
enum SessionEnd {
    /// No usable connection.
    Unreachable(DiscoveryError),
    /// Connected once, then lost (event stream broke or ended).
    Lost(DiscoveryError),
    /// A setting makes connecting impossible; retrying will not help.
    Unusable(DiscoveryError),
}

pub(crate) struct Watch {
    pub(crate) endpoint: Endpoint,
    pub(crate) requested_version: Option<String>,
    pub(crate) containers: Containers,
    pub(crate) publisher: Arc<TablePublisher>,
    /// A restart for a changed route set was asked already (asked once per process).
    pub(crate) restart_asked: bool,
    /// When that restart is due (`label_routes::RouteRestart`).
    pub(crate) route_restart: RouteRestart,
}

impl Watch {
    /// Runs until the process exits (or a setting makes Docker unusable).
    pub(crate) async fn run(mut self, first: mpsc::Sender<FirstSync>) {
        let mut first = Some(first);
        let mut delay = BACKOFF_FIRST;
        let mut failures = FailureLog::new();
        // Once a table was published, the cores keep it while Docker is away.
        let mut published = false;
        loop {
            let end = self.session(&mut first, &mut delay).await;
            published |= matches!(end, SessionEnd::Lost(_));
            let (message, give_up, error) = match end {
                SessionEnd::Unusable(e) => (format!("docker: {e}"), true, e),
                SessionEnd::Unreachable(e) => (
                    format!(
                        "docker: cannot reach Docker at {}: {e}; {} until it answers (retrying)",
                        self.endpoint,
                        if published {
                            "serving the last known backends"
                        } else {
                            "Docker backends answer 503"
                        }
                    ),
                    false,
                    e,
                ),
                SessionEnd::Lost(e) => (
                    format!(
                        "docker: lost Docker at {} ({e}); serving the last known backends while reconnecting",
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
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: sync, then follow events until the stream ends.
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
        let since = unix_now() - EVENTS_OVERLAP_SECS;
        let facts = match tokio::time::timeout(SYNC_LIMIT, self.list_candidates(&docker)).await {
            Ok(Ok(facts)) => facts,
            Ok(Err(e)) => return SessionEnd::Unreachable(e),
            Err(_) => {
                return SessionEnd::Unreachable(DiscoveryError::ListingTooSlow {
                    limit: SYNC_LIMIT,
                })
            }
        };
        self.containers.replace_all(facts);
        self.publish();
        log::info!(
            "docker: connected to {} (Engine API {api}); {}",
            self.endpoint,
            self.containers.summary()
        );
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        *delay = BACKOFF_FIRST;

        let opts = EventsOpts::builder()
            .since(since)
            .filter(
                [
                    EventFilter::Type(EventFilterType::Container),
                    EventFilter::Type(EventFilterType::Network),
                ]
                .into_iter()
                .chain(
                    FOLLOWED
                        .iter()
                        .chain(FOLLOWED_NETWORK)
                        .map(|a| EventFilter::Event(a.to_string())),
                )
                .collect(),
            )
            .build();
        let mut stream = docker.events(&opts);
        loop {
            let due = (!self.restart_asked)
                .then(|| self.route_restart.due())
                .flatten();
            let item = tokio::select! {
                item = stream.next() => item,
                () = until(due) => {
                    self.restart_if_due();
                    continue;
                }
            };
            let Some(item) = item else { break };
            match item {
                Ok(message) => {
                    if let Some(event) = ContainerEvent::from_message(&message) {
                        self.apply(&docker, event).await;
                    }
                }
                Err(e) => return SessionEnd::Lost(DiscoveryError::EventStreamBroke(e.to_string())),
            }
        }
        SessionEnd::Lost(DiscoveryError::EventStreamClosed)
    }

    /// The facts of every running container that carries some backend's labels.
    async fn list_candidates(
        &self,
        docker: &Docker,
    ) -> Result<Vec<ContainerFacts>, DiscoveryError> {
        let listed = docker
            .containers()
            .list(&ContainerListOpts::builder().build())
            .await
            .map_err(|e| DiscoveryError::Listing(e.to_string()))?;
        let mut facts = Vec::new();
        for summary in listed {
            let (Some(id), Some(labels)) = (summary.id, summary.labels) else {
                continue;
            };
            if !self.containers.wanted(&labels) {
                continue;
            }
            match docker.containers().get(id.as_str()).inspect().await {
                Ok(c) => facts.push(ContainerFacts::from_inspect(&c)),
                // Removed between the list and the inspect.
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(DiscoveryError::Inspecting {
                        id: short(&id).to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(facts)
    }

    async fn apply(&mut self, docker: &Docker, event: ContainerEvent) {
        let id = event.id.as_str();
        if !self.containers.follows(id) && !self.containers.wanted(&event.labels) {
            return;
        }
        match event.change {
            Change::Stopping => {
                if self.containers.stopping(id) {
                    log::info!(
                        "docker: container {} is stopping; no new requests go to it",
                        self.containers.name_of(id)
                    );
                }
            }
            Change::Destroyed => self.containers.remove(id),
            Change::Started => {
                self.containers.started(id);
                self.inspect(docker, id).await;
            }
            Change::Inspect => self.inspect(docker, id).await,
        }
        self.publish();
    }

    async fn inspect(&mut self, docker: &Docker, id: &str) {
        let container = docker.containers().get(id);
        match tokio::time::timeout(INSPECT_LIMIT, container.inspect()).await {
            Ok(Ok(c)) => self.containers.update(ContainerFacts::from_inspect(&c)),
            Ok(Err(e)) if is_not_found(&e) => self.containers.remove(id),
            Ok(Err(e)) => log::warn!("docker: inspecting container {}: {e}", short(id)),
            Err(_) => log::warn!(
                "docker: inspecting container {} took over {INSPECT_LIMIT:?}",
                short(id)
            ),
        }
    }

    fn publish(&mut self) {
        if self.publisher.publish(self.containers.table()) {
            log::info!("docker: backends now {}", self.containers.summary());
        }
        if self.restart_asked {
            return;
        }
        let differs = self.containers.route_set_changed().is_some();
        if self.route_restart.observe(differs, Instant::now()) {
            log::debug!(
                "docker: the declared routes are back to those served (a change that did not \
                 hold {ROUTES_SETTLE:?}); no restart"
            );
        }
        self.restart_if_due();
    }

    /// Restarts (SIGHUP to this process) when a change of the declared routes has held long
    /// enough (`RouteRestart`).
    fn restart_if_due(&mut self) {
        if self.restart_asked || !self.route_restart.is_due(Instant::now()) {
            return;
        }
        if let Some((added, removed)) = self.containers.route_set_changed() {
            let names = |keys: &[super::RouteKey]| -> String {
                keys.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            };
            log::info!(
                "docker: declared routes changed (new: [{}], gone: [{}]); restarting to serve them",
                names(&added),
                names(&removed)
            );
            self.restart_asked = true;
            // The zero-downtime restart SIGHUP gives (passed to the supervisor when there is
            // one); the successor lists the declared routes afresh.
            // SAFETY: kill(2) on our own pid touches no memory of ours.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGHUP);
            }
        }
    }
}

/// Until `due`, or for ever when nothing is due.
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Logs each distinct failure of a watch once; the same one again only as a count, at most
/// once per interval.
pub(crate) struct FailureLog {
    last: Option<String>,
    repeats: Throttle,
}

impl FailureLog {
    pub(crate) fn new() -> FailureLog {
        FailureLog {
            last: None,
            repeats: Throttle::new(WARNING_INTERVAL),
        }
    }

    pub(crate) fn log(&mut self, message: String) {
        if self.last.as_deref() != Some(message.as_str()) {
            log::error!("{message}");
            self.last = Some(message);
            self.repeats.allow();
        } else if let Some(more) = self.repeats.allow() {
            log::warn!(
                "docker: still failing, {} attempts since the last line: {message}",
                more + 1
            );
        } else {
            log::debug!("{message}");
        }
    }
}

pub(crate) fn is_not_found(e: &docker_api::Error) -> bool {
    matches!(e, docker_api::Error::Fault { code, .. } if code.as_u16() == 404)
}
