//! Docker discovery: finds the containers that are instances of each `match_labels` backend
//! and publishes them into the backend table, on a control-plane thread of its own (docker-api
//! runs on a small tokio runtime there; nothing tokio runs on a core).
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

mod container;
mod error;
mod events;
pub(crate) mod label_routes;
mod state;
mod version;
mod watch;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::TablePublisher;
use crate::config::Config;
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
    let watch = watch::Watch {
        endpoint: version::Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref()),
        requested_version: std::env::var("DOCKER_API_VERSION").ok(),
        containers: state::Containers::new(config),
        publisher,
        restart_asked: false,
    };
    let (first_tx, first_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("rgate-discovery".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(watch.run(first_tx)),
                Err(e) => log::error!("docker: cannot start the discovery runtime: {e}"),
            }
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
