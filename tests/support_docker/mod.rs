//! The harness for the Docker tests: a real Docker daemon, containers of the demo image
//! published on 127.0.0.1 only, and the real `rgate` binary in front of them.
//!
//! * `DockerTest::begin` — checks that Docker answers (else: skipped with a visible message, or
//!   a failure when `RGATE_REQUIRE_DOCKER=1`, as in CI), builds the static binaries and tags the
//!   demo image for this test only. On drop it removes every container carrying the test's run
//!   label and the test's image tags, also when the test panicked.
//! * `Rgate` — one rgate process on `--port 0 --bind 127.0.0.1`, its stderr kept for messages.
//! * `get` — one HTTP/1.1 request on a fresh connection, with timeouts.
//!
//! Each test has its own run label (`rgate.test.run=<unique>`) in every container and in its
//! config's `match_labels`, so tests running in parallel never see each other's containers.
//! Every command and every loop is bounded in time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The label every test container carries; its value is the test's run id.
pub const RUN_LABEL: &str = "rgate.test.run";
/// The target the images' static binaries are built for (Makefile: DOCKER_TARGET).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";
/// How long a docker command may take (image builds and `docker stop` included).
const DOCKER_LIMIT: Duration = Duration::from_secs(60);
/// How long building the static binaries may take (a cold release build with LTO).
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
/// How long one HTTP exchange with rgate may take.
const HTTP_LIMIT: Duration = Duration::from_secs(5);

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
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown}: still running after {limit:?}"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
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
}

impl DockerTest {
    /// `None` (after printing why) when Docker is unreachable outside CI.
    pub fn begin(test: &str) -> Option<DockerTest> {
        if let Err(why) = docker_reachable() {
            if std::env::var("RGATE_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!(
                    "{test}: Docker is required (RGATE_REQUIRE_DOCKER=1) but unreachable: {why}"
                );
            }
            eprintln!("SKIPPED {test}: Docker is unreachable ({why}); set RGATE_REQUIRE_DOCKER=1 to fail instead");
            return None;
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
        };
        t.build_image(
            &t.demo_image,
            "demo-backend.Dockerfile",
            &[(bins.join("demo-backend"), "demo-backend")],
        );
        Some(t)
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

    /// Waits (bounded) until Docker reports this health status for the container.
    pub fn wait_health(&self, c: &Container, status: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            last =
                docker(&["inspect", "-f", "{{.State.Health.Status}}", &c.id]).unwrap_or_default();
            if last == status {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "container {} is {last:?}, not {status:?}, after {limit:?}",
            c.hostname
        );
    }
}

impl Drop for DockerTest {
    fn drop(&mut self) {
        // Every container of this run, even one whose `docker run` did not report back.
        let filter = format!("label={RUN_LABEL}={}", self.run);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                if let Err(e) = docker(&args) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        let _serial = IMAGE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for tag in self.images.lock().unwrap().drain(..) {
            // Only this tag goes; the image itself when no other test still tags it.
            let _ = docker(&["rmi", &tag]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One running rgate; stopped on drop.
pub struct Rgate {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Rgate {
    /// Starts rgate with this config (written into `dir`) and extra environment.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Rgate {
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rgate"));
        cmd.args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--cores",
            "1",
            "--config",
        ])
        .arg(&config_path)
        .arg("--db")
        .arg(dir.join("rgate.db"))
        .arg("--pid-file")
        .arg(dir.join("rgate.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start rgate");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(addr) = rest.split_whitespace().next() {
                        let _ = tx.send(addr.to_string());
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "rgate did not say it was listening; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Rgate { child, addr, log }
    }

    /// `GET path` through rgate.
    pub fn get(&self, path: &str) -> Result<Reply, String> {
        get(self.addr, path)
    }

    /// What rgate logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Asks `GET path` every 20 ms until `want` holds for a reply; the time it took.
    pub fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        want: impl Fn(&Reply) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.get(path) {
                Ok(r) if want(&r) => return Ok(start.elapsed()),
                Ok(r) => last = format!("{} {}", r.status, r.body),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not within {limit:?}; last answer: {last}"))
    }
}

impl Drop for Rgate {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid of our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The demo backend's JSON answer.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The hostname of the demo container that answered, if one did.
    pub fn hostname(&self) -> Option<String> {
        self.json()["hostname"].as_str().map(str::to_string)
    }
}

/// `GET path` on a fresh connection (`Connection: close`), bounded by `HTTP_LIMIT`.
pub fn get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, HTTP_LIMIT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(HTTP_LIMIT)).unwrap();
    s.set_write_timeout(Some(HTTP_LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: rgate.test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete response head in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok(Reply {
        status,
        body: body.to_string(),
    })
}
