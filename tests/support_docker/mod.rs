//! The harness for the Docker tests: a real Docker daemon, containers of the demo image
//! published on 127.0.0.1 only, and the real `rgate` binary in front of them.
//!
//! * `DockerTest::begin` — checks that Docker answers (else the test fails: Docker tests are
//!   `#[ignore]`d and run only when asked for, see tests/docker.rs), builds the static binaries and tags the
//!   demo image for this test only. On drop it removes every container carrying the test's run
//!   label and the test's image tags, also when the test panicked.
//! * `DockerTest::network` — a bridge network for this test only (`TestNetwork`, removed on
//!   drop with the containers on it); `start_on_network` — a demo container on it that
//!   publishes no port, so rgate reaches it at its IP there (`rgate.network`);
//!   `published_addr` — a container's published 127.0.0.1 port, to talk to it directly.
//! * `start_rgate` — the common harness's `Gateway` as these tests run it (one core); `get` —
//!   the harness's one `GET`; `wait_answer` — polls a path until the answer is the one wanted;
//!   `hostname` — which demo container answered.
//!
//! * `swarm` — a single-node swarm for one test (`TestSwarm`), its overlay network and
//!   services, all removed on drop; the swarm test runs alone (`DockerTest::begin_swarm`).
//!
//! Each test has its own run label (`rgate.test.run=<unique>`) in every container and in its
//! config's `match_labels`, so tests running in parallel never see each other's containers.
//! Every command and every loop is bounded in time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{limits, poll, wait_child_exit, Gateway, Response};

pub mod swarm;

/// The label every test container carries; its value is the test's run id.
pub const RUN_LABEL: &str = "rgate.test.run";
/// The target the images' static binaries are built for (Makefile: DOCKER_TARGET).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";
/// How long a docker command may take (image builds and `docker stop` included).
const DOCKER_LIMIT: Duration = Duration::from_secs(60);
/// How long building the static binaries may take (a cold release build with LTO).
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Output of a command that ran to completion with status 0.
pub fn run(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    run_with_env(program, args, &[], None, limit)
}

fn run_with_env(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    dir: Option<&Path>,
    limit: Duration,
) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let shown = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let Some(status) = wait_child_exit(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{shown}: still running after {limit:?}"));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out.trim().to_string())
    } else {
        Err(format!("{shown}: {status}: {}", err.trim()))
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// `docker …`, bounded.
pub fn docker(args: &[&str]) -> Result<String, String> {
    run("docker", args, DOCKER_LIMIT)
}

/// Whether Docker answers; the reason when not.
fn docker_reachable() -> &'static Result<String, String> {
    static REACHABLE: OnceLock<Result<String, String>> = OnceLock::new();
    REACHABLE.get_or_init(|| {
        run(
            "docker",
            &["info", "--format", "{{.ServerVersion}}"],
            Duration::from_secs(20),
        )
    })
}

/// The directory holding the static `rgate` and `demo-backend`, built once per test process
/// with the same settings as `make static`.
fn static_binaries() -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        // CARGO_BIN_EXE_rgate is <target dir>/<profile>/rgate.
        let target_dir = Path::new(env!("CARGO_BIN_EXE_rgate"))
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot find the target directory")?
            .to_path_buf();
        let target_dir_text = target_dir.to_string_lossy().into_owned();
        run_with_env(
            env!("CARGO"),
            &[
                "build",
                "--release",
                "--target",
                STATIC_TARGET,
                "--target-dir",
                &target_dir_text,
                "--bin",
                "rgate",
                "--bin",
                "demo-backend",
            ],
            &[
                ("RUSTFLAGS", "-C target-feature=+crt-static"),
                ("CARGO_PROFILE_RELEASE_DEBUG", "0"),
                ("CARGO_PROFILE_RELEASE_STRIP", "symbols"),
            ],
            Some(Path::new(env!("CARGO_MANIFEST_DIR"))),
            BUILD_LIMIT,
        )
        .map_err(|e| format!("building the static binaries: {e}"))?;
        Ok(target_dir.join(STATIC_TARGET).join("release"))
    })
}

/// Held around `docker build` and `docker rmi`: with the legacy builder, removing one test's
/// tag can delete the cached intermediate images another test's build is using.
static IMAGE_LOCK: Mutex<()> = Mutex::new(());

/// Held by every Docker test (shared) and by the swarm test alone (exclusive): while this
/// daemon is a swarm manager, rgate's `docker.mode: auto` follows swarm services, not
/// containers, so no container test may run meanwhile.
static SWARM_EXCLUSIVE: RwLock<()> = RwLock::new(());

/// How a test holds the daemon.
#[allow(dead_code)] // held for its drop
enum DaemonUse {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// The directory of the static `rgate` and `demo-backend` (built once per test process).
pub fn static_dir() -> PathBuf {
    static_binaries()
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
        .clone()
}

/// A unique id for one test run: test name, process, time.
fn run_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{test}-{}-{nanos}", std::process::id())
}

/// A running container of the demo image.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    /// Docker's default hostname: the short id. The demo backend reports it.
    pub hostname: String,
}

/// One Docker test: its run label, its image tags, its temp dir; all removed on drop.
pub struct DockerTest {
    pub run: String,
    pub demo_image: String,
    images: Mutex<Vec<String>>,
    pub dir: PathBuf,
    /// Released after the cleanup of `drop`.
    _daemon: DaemonUse,
}

impl DockerTest {
    /// Starts a Docker test. Docker tests are `#[ignore]`d and run only when asked for
    /// (`make test` asks when Docker answers, or when `RGATE_REQUIRE_DOCKER=1`), so a daemon
    /// that does not answer fails the test: it never passes untried.
    pub fn begin(test: &str) -> DockerTest {
        let shared = SWARM_EXCLUSIVE.read().unwrap_or_else(|p| p.into_inner());
        DockerTest::begin_holding(test, DaemonUse::Shared(shared))
    }

    /// `begin` for the swarm test: no other Docker test of this process runs meanwhile.
    pub fn begin_swarm(test: &str) -> DockerTest {
        let exclusive = SWARM_EXCLUSIVE.write().unwrap_or_else(|p| p.into_inner());
        DockerTest::begin_holding(test, DaemonUse::Exclusive(exclusive))
    }

    fn begin_holding(test: &str, daemon: DaemonUse) -> DockerTest {
        if let Err(why) = docker_reachable() {
            panic!("{test}: this test needs Docker, which does not answer: {why}");
        }
        let bins = static_binaries().as_ref().unwrap_or_else(|e| panic!("{e}"));
        let run = run_id(test);
        let dir = std::env::temp_dir().join(format!("rgate-docker-{run}"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let t = DockerTest {
            demo_image: format!("rgate-test-demo:{run}"),
            run,
            images: Mutex::new(Vec::new()),
            dir,
            _daemon: daemon,
        };
        t.build_image(
            &t.demo_image,
            "demo-backend.Dockerfile",
            &[(bins.join("demo-backend"), "demo-backend")],
        );
        t
    }

    /// Builds an image from a docker/ Dockerfile and a context of the given files.
    pub fn build_image(&self, tag: &str, dockerfile: &str, files: &[(PathBuf, &str)]) {
        let context = self
            .dir
            .join(format!("context-{}", tag.replace([':', '/'], "-")));
        std::fs::create_dir_all(&context).unwrap();
        for (from, name) in files {
            std::fs::copy(from, context.join(name))
                .unwrap_or_else(|e| panic!("copy {} into the context: {e}", from.display()));
        }
        let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docker")
            .join(dockerfile);
        // Recorded before building, so a half-done build is still cleaned up.
        self.images.lock().unwrap().push(tag.to_string());
        let _serial = IMAGE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        docker(&[
            "build",
            "-q",
            "--force-rm",
            "-t",
            tag,
            "-f",
            &dockerfile.to_string_lossy(),
            &context.to_string_lossy(),
        ])
        .unwrap_or_else(|e| panic!("docker build {tag}: {e}"));
    }

    /// The labels of backend `app` for this test.
    pub fn labels(&self, app: &str) -> Vec<String> {
        vec![
            format!("app_name={app}"),
            "env=production".into(),
            format!("{RUN_LABEL}={}", self.run),
        ]
    }

    /// The `match_labels` YAML list of backend `app` for this test.
    pub fn match_labels(&self, app: &str) -> String {
        format!("[{}]", self.labels(app).join(", "))
    }

    /// A config routing /api/payment and /api/orders to this test's payment and orders.
    pub fn demo_config(&self) -> String {
        format!(
            "routes:\n  - {{path_prefix: /api/payment, backend: payment}}\n  - {{path_prefix: /api/orders, backend: orders}}\n\
             backends:\n  - name: payment\n    match_labels: {}\n  - name: orders\n    match_labels: {}\n",
            self.match_labels("payment"),
            self.match_labels("orders")
        )
    }

    /// Starts a demo container with these labels (the run label is always added), publishing
    /// its port 8080 on a random 127.0.0.1 port. `extra` goes before the image name.
    pub fn start(&self, service: &str, labels: &[String], extra: &[&str]) -> Container {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--label".into(),
            format!("{RUN_LABEL}={}", self.run),
            "-e".into(),
            format!("SERVICE_NAME={service}"),
            "-p".into(),
            "127.0.0.1::8080".into(),
        ];
        for l in labels {
            args.push("--label".into());
            args.push(l.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.run_demo(args)
    }

    /// `docker run` of the demo image with `args` before it; the container started.
    fn run_demo(&self, mut args: Vec<String>) -> Container {
        args.push(self.demo_image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&args).unwrap_or_else(|e| panic!("{e}"));
        Container {
            hostname: id.get(..12).unwrap_or(&id).to_string(),
            id,
        }
    }

    /// A demo container of backend `app` without a healthcheck.
    pub fn start_plain(&self, app: &str) -> Container {
        self.start(app, &self.labels(app), &["--no-healthcheck"])
    }

    /// A demo container of backend `app` whose image healthcheck runs every 300 ms.
    pub fn start_checked(&self, app: &str, extra: &[&str]) -> Container {
        let mut args = vec![
            "--health-interval",
            "300ms",
            "--health-timeout",
            "2s",
            "--health-retries",
            "1",
        ];
        args.extend_from_slice(extra);
        self.start(app, &self.labels(app), &args)
    }

    /// A bridge network for this test only, labelled with its run; removed when dropped.
    pub fn network(&self) -> TestNetwork {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("rgate-test-{}-{nanos}", std::process::id());
        let label = format!("{RUN_LABEL}={}", self.run);
        docker(&["network", "create", "--label", &label, &name]).unwrap_or_else(|e| panic!("{e}"));
        TestNetwork { name }
    }

    /// A demo container of backend `app` (no healthcheck) on `network` only, publishing no
    /// port: rgate reaches it at its IP on that network (label `rgate.network`).
    pub fn start_on_network(&self, app: &str, network: &TestNetwork) -> Container {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--no-healthcheck".into(),
            "--network".into(),
            network.name.clone(),
            "-e".into(),
            format!("SERVICE_NAME={app}"),
            "--label".into(),
            format!("rgate.network={}", network.name),
        ];
        for l in self.labels(app) {
            args.push("--label".into());
            args.push(l);
        }
        self.run_demo(args)
    }

    /// Waits (bounded) until Docker reports this health status for the container.
    pub fn wait_health(&self, c: &Container, status: &str, limit: Duration) {
        crate::common::wait_for(
            limit,
            format!("container {} to be {status}", c.hostname),
            || match docker(&["inspect", "-f", "{{.State.Health.Status}}", &c.id]) {
                Ok(s) if s == status => Ok(()),
                Ok(s) => Err(s),
                Err(e) => Err(e),
            },
        )
    }
}

impl Drop for DockerTest {
    fn drop(&mut self) {
        // Every container of this run, even one whose `docker run` did not report back.
        remove_containers(&format!("label={RUN_LABEL}={}", self.run));
        let _serial = IMAGE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for tag in self.images.lock().unwrap().drain(..) {
            // Only this tag goes; the image itself when no other test still tags it.
            let _ = docker(&["rmi", &tag]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes (with their volumes) every container `docker ps --filter` finds for `filter`.
fn remove_containers(filter: &str) {
    if let Ok(ids) = docker(&["ps", "-aq", "--filter", filter]) {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            if let Err(e) = docker(&args) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A Docker network one test created; on drop, the containers still on it are removed
/// (those of its test anyway, `DockerTest` removes them too), then the network.
pub struct TestNetwork {
    pub name: String,
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        remove_containers(&format!("network={}", self.name));
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// The 127.0.0.1 address Docker published the container's port 8080 on.
pub fn published_addr(c: &Container) -> std::net::SocketAddr {
    let out = docker(&["port", &c.id, "8080/tcp"]).unwrap_or_else(|e| panic!("{e}"));
    out.lines()
        .find_map(|l| {
            l.trim()
                .parse()
                .ok()
                .filter(|a: &std::net::SocketAddr| a.is_ipv4())
        })
        .unwrap_or_else(|| panic!("no published IPv4 port for {}: {out:?}", c.hostname))
}

/// rgate with this config and extra environment, on one core.
pub fn start_rgate(config: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::options(config).cores(1).env(env).start()
}

pub use crate::common::get;

/// Polls `GET path` (the suite's `poll`) until `want` holds for a reply; the time it took.
pub fn wait_answer(
    rgate: &Gateway,
    path: &str,
    limit: Duration,
    want: impl Fn(&Response) -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    poll(limit, || match get(rgate.addr, path) {
        Ok(r) if want(&r) => Ok(start.elapsed()),
        Ok(r) => Err(format!("{} {}", r.status, r.text())),
        Err(e) => Err(e),
    })
}

/// How long a Docker event may take to reach rgate's table, seen from the test: Docker's own
/// latency (a `docker stop` or `start` on a loaded machine) counts too. The README's "within
/// a second" is rgate's part; the time each test saw is printed.
pub const EVENT_LIMIT: Duration = limits::CONDITION;

/// The hostname of the demo container that answered, if one did.
pub fn hostname(r: &Response) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    json["hostname"].as_str().map(str::to_string)
}
