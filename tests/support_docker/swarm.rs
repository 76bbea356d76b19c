//! A single-node swarm for one test, and what the test puts in it, each removed on drop
//! whatever happens (a panic included), in the reverse order of creation:
//!
//! * `TestSwarm::init` — `docker swarm init --advertise-addr 127.0.0.1` on a daemon that is
//!   in no swarm (a daemon already in one is left alone: the test fails instead); on drop
//!   `docker swarm leave --force`, and `docker_gwbridge` removed when the swarm made it.
//! * `TestSwarm::overlay` — an attachable overlay network (`TestNetwork`: its containers and
//!   itself removed on drop).
//! * `TestSwarm::service` — a replicated service of the demo image on that network, with the
//!   test's labels on the service (`deploy.labels`) and its run label on its containers;
//!   `docker service rm` on drop.
//!
//! Every command is bounded in time (`docker`); waits are bounded by their callers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{docker, run, DockerTest, TestNetwork, RUN_LABEL};

/// How long a `docker service` command that waits for convergence may take.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(120);

/// The bridge Docker creates for swarm containers' outside traffic.
const GWBRIDGE: &str = "docker_gwbridge";

/// The single-node swarm this test made.
pub struct TestSwarm {
    gwbridge_was_there: bool,
}

impl TestSwarm {
    pub fn init() -> TestSwarm {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state, "inactive",
            "this daemon is already in a swarm ({state}); the swarm test makes its own and will not touch another"
        );
        let gwbridge_was_there = docker(&["network", "inspect", GWBRIDGE]).is_ok();
        // Constructed before init, so a half-done init is still left.
        let swarm = TestSwarm { gwbridge_was_there };
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
            .unwrap_or_else(|e| panic!("docker swarm init: {e}"));
        swarm
    }

    /// An attachable overlay network, labelled with the test's run.
    pub fn overlay(&self, t: &DockerTest) -> TestNetwork {
        let name = format!("rgate-swarm-{}-{}", std::process::id(), nanos());
        let label = format!("{RUN_LABEL}={}", t.run);
        docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &label,
            &name,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        TestNetwork { name }
    }

    /// `replicas` tasks of the demo image on `network`, the service labelled `labels`, once
    /// Docker says they run (their healthcheck passed).
    pub fn service(
        &self,
        t: &DockerTest,
        network: &TestNetwork,
        replicas: usize,
        labels: &[String],
    ) -> TestService {
        let name = format!("rgate-test-web-{}", nanos());
        let run_label = format!("{RUN_LABEL}={}", t.run);
        let replicas = replicas.to_string();
        let mut args = vec![
            "service",
            "create",
            "--quiet",
            "--detach=false",
            "--name",
            &name,
            "--replicas",
            &replicas,
            "--network",
            &network.name,
            "--container-label",
            &run_label,
            "--env",
            "SERVICE_NAME=web",
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(&t.demo_image);
        // Recorded before creating, so a half-done create is still removed.
        let service = TestService { name: name.clone() };
        run("docker", &args, CONVERGE_LIMIT).unwrap_or_else(|e| panic!("{e}"));
        service
    }
}

impl Drop for TestSwarm {
    fn drop(&mut self) {
        if let Err(e) = docker(&["swarm", "leave", "--force"]) {
            eprintln!("cleanup: {e}");
        }
        if !self.gwbridge_was_there {
            if let Err(e) = docker(&["network", "rm", GWBRIDGE]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A swarm service one test created.
pub struct TestService {
    pub name: String,
}

impl TestService {
    /// The hostnames of its task containers that Docker says are healthy (the demo backend
    /// answers with its hostname, the container's short id).
    pub fn healthy_hostnames(&self) -> Vec<String> {
        let filter = format!("label=com.docker.swarm.service.name={}", self.name);
        docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "health=healthy",
        ])
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
    }

    /// `docker service scale` without waiting.
    pub fn scale_detached(&self, replicas: usize) {
        let to = format!("{}={replicas}", self.name);
        docker(&["service", "scale", "--detach", &to]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `docker service update --force`: a rolling replacement of every task, waited for.
    pub fn force_update(&self) {
        run(
            "docker",
            &[
                "service",
                "update",
                "--quiet",
                "--detach=false",
                "--force",
                &self.name,
            ],
            CONVERGE_LIMIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn remove(&self) {
        docker(&["service", "rm", &self.name]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        // Already gone when the test removed it: nothing to report then.
        let _ = docker(&["service", "rm", &self.name]);
    }
}

fn nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
