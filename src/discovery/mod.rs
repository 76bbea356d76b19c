//! Docker discovery: finds the containers (or, on a swarm manager, the swarm tasks) that are
//! instances of each `match_labels` backend and publishes them into the backend table, on a
//! control-plane thread of its own (docker-api runs on a small tokio runtime there; nothing
//! tokio runs on a core).
//!
//! `docker.mode` chooses: `containers` (this host's containers, labels on the container),
//! `swarm` (the running tasks of swarm services, labels on the service; see `swarm_facts`),
//! or `auto`, the default: swarm when `/info` says this node is an active swarm manager, else
//! containers.
//!
//! A container is an instance of a backend when it is running (not paused, not restarting),
//! its healthcheck (if any) says healthy, and it carries every one of the backend's labels.
//! Its address follows the rules in `container`. Discovery at startup completes before rgate
//! serves; afterwards Docker events keep the table current within a second, and a container
//! told to stop leaves the table before its process dies.
//!
//! Errors: discovery never stops rgate. Its failures are one `DiscoveryError`, logged once per
//! distinct failure while the watch retries with backoff (a setting that cannot be used is
//! logged once and ends discovery); the cores keep the last table meanwhile. A container whose
//! address cannot be decided is skipped with its `container::Ambiguity`, logged once.
//!
//! * `error` — `DiscoveryError`: why Docker could not be used, and whether retrying helps.
//! * `version` — where Docker is (`DOCKER_HOST`) and the API version (negotiated, or
//!   `DOCKER_API_VERSION`).
//! * `container` — inspect data → whether it serves, and at which address (pure).
//! * `events` — a Docker event → what to do about it (pure).
//! * `state` — the tracked containers → the backend table (pure).
//! * `watch` — the async loop: connect, list, follow events, reconnect with backoff.
//! * `engine_api` — plain JSON `GET`s of the Engine API (`/info`, `/services`, `/tasks`).
//! * `swarm_facts` — service and task JSON → whether a task serves, at which address (pure).
//! * `swarm_state` — the followed services and tasks → the backend table (pure).
//! * `swarm_watch` — the swarm loop: check the node is a manager, poll tasks, follow service
//!   events and this node's task containers.

mod container;
mod engine_api;
mod error;
mod events;
pub(crate) mod label_routes;
mod state;
mod swarm_facts;
mod swarm_state;
mod swarm_watch;
mod version;
mod watch;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::TablePublisher;
use crate::config::{Config, DockerMode};
pub use label_routes::RouteKey;

/// How long startup waits for the first discovery before serving anyway (the first attempt
/// itself is bounded well below this; this only guards against a stuck thread).
const FIRST_SYNC_LIMIT: Duration = Duration::from_secs(20);

/// How long listing the containers that declare routes may take at start.
const DECLARED_LIST_LIMIT: Duration = Duration::from_secs(5);

/// The routes running containers declare, listed once at start (bounded in time). Docker
/// unreachable: none (logged); once discovery reaches it, the route set it finds differs and
/// the restart that follows serves them.
pub(crate) fn declared_at_start() -> std::collections::BTreeMap<RouteKey, Vec<String>> {
    let endpoint =
        version::Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref());
    let requested = std::env::var("DOCKER_API_VERSION").ok();
    let list = async {
        let (docker, _) = version::connect(&endpoint, requested.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let opts = docker_api::opts::ContainerListOpts::builder()
            .filter([docker_api::opts::ContainerFilter::LabelKey(
                label_routes::LABEL_PREFIX.to_string(),
            )])
            .build();
        docker
            .containers()
            .list(&opts)
            .await
            .map_err(|e| e.to_string())
    };
    let listed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async { tokio::time::timeout(DECLARED_LIST_LIMIT, list).await })
                .map_err(|_| format!("no answer within {DECLARED_LIST_LIMIT:?}"))?
        });
    match listed {
        Ok(containers) => {
            let declared: Vec<label_routes::Declared> = containers
                .into_iter()
                .map(|c| label_routes::Declared {
                    name: c
                        .names
                        .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
                        .or(c.id.map(|id| state::short(&id).to_string()))
                        .unwrap_or_default(),
                    labels: c.labels.unwrap_or_default(),
                })
                .collect();
            label_routes::declared_routes(&declared)
        }
        Err(e) => {
            log::warn!("docker: cannot list the containers that declare routes at {endpoint} ({e}); none yet");
            Default::default()
        }
    }
}

/// Starts discovery for the Docker backends of `config`, if there are any, and returns once
/// the first discovery is published or has failed with a logged error (it then keeps
/// retrying in the background; Docker backends answer 503 meanwhile).
pub(crate) fn start(config: &Config, publisher: Arc<TablePublisher>) {
    if state::label_backends(config).is_empty() && !config.docker.label_routes {
        return;
    }
    let endpoint =
        version::Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref());
    let requested_version = std::env::var("DOCKER_API_VERSION").ok();
    let watch = watch::Watch {
        endpoint: endpoint.clone(),
        requested_version: requested_version.clone(),
        containers: state::Containers::new(config),
        publisher: publisher.clone(),
        restart_asked: false,
        route_restart: label_routes::RouteRestart::new(std::time::Instant::now()),
    };
    let swarm = (config.docker.mode != DockerMode::Containers).then(|| swarm_watch::SwarmWatch {
        endpoint,
        requested_version,
        services: swarm_state::SwarmServices::new(config),
        publisher,
        poll: config.docker.swarm_poll,
        mode: config.docker.mode,
    });
    if config.docker.label_routes && config.docker.mode == DockerMode::Swarm {
        log::warn!("docker: label_routes declares routes from containers' labels only; in swarm mode the services' tasks are not read for them");
    }
    let (first_tx, first_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("rgate-discovery".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let rt = match runtime {
                Ok(rt) => rt,
                Err(e) => return log::error!("docker: cannot start the discovery runtime: {e}"),
            };
            let first_tx = match swarm {
                None => Some(first_tx),
                Some(swarm) => match rt.block_on(swarm.run(first_tx)) {
                    swarm_watch::SwarmRun::FollowContainers(first) => first,
                    swarm_watch::SwarmRun::Ended => return,
                },
            };
            // After `auto` chose containers, the first discovery may already be reported
            // (as failed, while Docker did not answer); a fresh channel nobody reads then.
            let first_tx = first_tx.unwrap_or_else(|| mpsc::channel().0);
            rt.block_on(watch.run(first_tx));
        });
    if let Err(e) = spawned {
        log::error!("docker: cannot start the discovery thread: {e}; Docker backends answer 503");
        return;
    }
    match first_rx.recv_timeout(FIRST_SYNC_LIMIT) {
        // Success is logged by the watcher with the instance counts; failure with the reason.
        Ok(_) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => log::warn!(
            "docker: first discovery not done after {FIRST_SYNC_LIMIT:?}; serving meanwhile"
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            log::error!("docker: the discovery thread stopped; Docker backends answer 503")
        }
    }
}
