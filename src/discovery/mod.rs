//! Docker discovery (issue 3 builds this out): finds the running containers that carry a
//! backend's labels and publishes them into the backend table. Until then, Docker backends
//! have no instance and answer 503.

use std::sync::Arc;

use crate::backends::TablePublisher;
use crate::config::{Config, Discovery};

/// Starts discovery for the Docker backends of `config`, if there are any.
pub fn start(config: &Config, _publisher: Arc<TablePublisher>) {
    let docker_backends = config
        .backends
        .iter()
        .filter(|b| matches!(b.discovery, Discovery::DockerLabels(_)))
        .count();
    if docker_backends > 0 {
        log::warn!(
            "docker discovery is not built yet: {docker_backends} backend(s) will answer 503"
        );
    }
}
