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
mod state;
mod version;
mod watch;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::TablePublisher;
use crate::config::Config;

/// How long startup waits for the first discovery before serving anyway (the first attempt
/// itself is bounded well below this; this only guards against a stuck thread).
const FIRST_SYNC_LIMIT: Duration = Duration::from_secs(20);

/// Starts discovery for the Docker backends of `config`, if there are any, and returns once
/// the first discovery is published or has failed with a logged error (it then keeps
/// retrying in the background; Docker backends answer 503 meanwhile).
pub(crate) fn start(config: &Config, publisher: Arc<TablePublisher>) {
    if state::label_backends(config).is_empty() {
        return;
    }
    let watch = watch::Watch {
        endpoint: version::Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref()),
        requested_version: std::env::var("DOCKER_API_VERSION").ok(),
        containers: state::Containers::new(config),
        publisher,
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
