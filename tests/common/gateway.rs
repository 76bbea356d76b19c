//! rgate as a child process: the real binary (or a private copy of it) started on
//! `--port 0 --bind 127.0.0.1`, the address read from its `listening on` line, its stderr read
//! to the end and kept, its pid, its pid file, and signals.
//!
//! * `Gateway::start` / `start_with_env` — the usual case; `Gateway::options` — a `Launch` for
//!   the variants (another directory or database, extra arguments, one core, a longer start,
//!   a private copy of the binary that a test may replace on disk).
//! * `StderrLog` — a process's stderr as lines; successors that inherit the pipe (restarts)
//!   write into the same log.
//!
//! Not for: talking HTTP (`client.rs`), backends (`backend.rs`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{send_signal, ProcessGroup};
use super::{get, limits, temp_dir, wait_until, Client, Response, TempDir};

/// A process's stderr, read to the end on its own thread (so the pipe never fills), kept
/// whole for messages and handed out line by line to whoever waits for one.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct StderrLog {
    text: Arc<Mutex<String>>,
    lines: Mutex<mpsc::Receiver<String>>,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl StderrLog {
    pub fn follow(stderr: impl Read + Send + 'static) -> StderrLog {
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = text.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    // Before the line is handed out, so a waiter that got it finds it here too.
                    let mut text = sink.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        StderrLog {
            text,
            lines: Mutex::new(rx),
        }
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the next line (not yet handed to an earlier wait) for which
    /// `found` says something; `None` at the timeout or when the pipe closed first.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait_line<T>(
        &self,
        limit: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        let lines = self.lines.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).ok()?;
            if let Some(v) = found(&line) {
                return Some(v);
            }
        }
    }
}

/// How to start one rgate; `Gateway::options(config)` gives the usual settings.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct Launch {
    config: String,
    dir: Option<PathBuf>,
    db: Option<PathBuf>,
    cores: u32,
    args: Vec<String>,
    env: Vec<(String, String)>,
    private_binary: bool,
    start_timeout: Duration,
    /// `(soft, hard)` RLIMIT_NOFILE for rgate.
    nofile: Option<(u64, u64)>,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl Launch {
    /// Writes the config (and, by default, the database and pid file) into `dir`, which the
    /// test owns: it is kept when the gateway goes, so a later gateway can start on it.
    pub fn in_dir(mut self, dir: &Path) -> Launch {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// The statistics database, instead of `rgate.db` in the gateway's directory.
    pub fn db(mut self, db: &Path) -> Launch {
        self.db = Some(db.to_path_buf());
        self
    }

    /// `--cores` (2 unless said).
    pub fn cores(mut self, cores: u32) -> Launch {
        self.cores = cores;
        self
    }

    /// More command-line arguments, after the usual ones.
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// More environment variables (`RGATE_DRIVER` is removed unless given here).
    pub fn env(mut self, env: &[(&str, &str)]) -> Launch {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Runs a copy of the binary in the gateway's directory, which the test may replace on
    /// disk (`Gateway::binary`) without touching other tests' gateways.
    pub fn private_binary(mut self) -> Launch {
        self.private_binary = true;
        self
    }

    /// Starts rgate with this open-files limit (soft, hard).
    pub fn nofile(mut self, soft: u64, hard: u64) -> Launch {
        self.nofile = Some((soft, hard));
        self
    }

    /// How long rgate may take to say it is listening.
    pub fn start_timeout(mut self, limit: Duration) -> Launch {
        self.start_timeout = limit;
        self
    }

    /// Starts rgate and waits for its `listening on` line; panics with its stderr if none comes.
    pub fn start(self) -> Gateway {
        let start_timeout = self.start_timeout;
        let (mut process, parts) = self.spawn_inner();
        let log = StderrLog::follow(process.child.stderr.take().expect("stderr piped"));
        match log.wait_line(start_timeout, listening_addr) {
            Some(addr) => Gateway {
                addr,
                dir: parts.dir,
                binary: parts.binary,
                config_path: parts.config_path,
                pid_file: parts.pid_file,
                process,
                log,
                _owned_dir: parts.owned_dir,
            },
            None => {
                process.kill_all();
                // The pipe closes once every process of the group is gone: the log is whole.
                let _ = log.wait_line(limits::EXIT, |_| None::<()>);
                panic!("rgate did not report listening; stderr:\n{}", log.text());
            }
        }
    }

    /// Only spawns rgate (stderr piped, nothing read): for a test that expects it to exit.
    /// The returned group is killed when dropped; its directory is removed then too.
    #[allow(dead_code)] // not every test binary uses it
    pub fn spawn(self) -> (ProcessGroup, Option<TempDir>) {
        let (process, parts) = self.spawn_inner();
        (process, parts.owned_dir)
    }

    fn spawn_inner(self) -> (ProcessGroup, Paths) {
        let (dir, owned_dir) = match self.dir {
            Some(dir) => (dir, None),
            None => {
                let owned = temp_dir("gw");
                (owned.to_path_buf(), Some(owned))
            }
        };
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, &self.config).expect("write config");
        let binary = if self.private_binary {
            let copy = dir.join("rgate");
            std::fs::copy(env!("CARGO_BIN_EXE_rgate"), &copy).expect("copy rgate");
            copy
        } else {
            PathBuf::from(env!("CARGO_BIN_EXE_rgate"))
        };
        let pid_file = dir.join("rgate.pid");
        let mut cmd = Command::new(&binary);
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--cores"])
            .arg(self.cores.to_string())
            .arg("--config")
            .arg(&config_path)
            .arg("--db")
            .arg(self.db.unwrap_or_else(|| dir.join("rgate.db")))
            .arg("--pid-file")
            .arg(&pid_file)
            .args(&self.args)
            .env_remove("RGATE_DRIVER")
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = self.nofile {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: between fork and exec the closure only calls setrlimit(2), which is
            // async-signal-safe, on a struct it owns.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let process = ProcessGroup::spawn(&mut cmd);
        let paths = Paths {
            dir,
            binary,
            config_path,
            pid_file,
            owned_dir,
        };
        (process, paths)
    }
}

/// Where one gateway's files are.
struct Paths {
    dir: PathBuf,
    binary: PathBuf,
    config_path: PathBuf,
    pid_file: PathBuf,
    owned_dir: Option<TempDir>,
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// One rgate process, with its own directory, config, db and pid file. It leads a process
/// group of its own, which its successors join: on drop the whole group is killed (the first
/// process, every successor, ready or not) and the directory, if the gateway made it, removed.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The binary the first process runs (and successors run after a restart).
    pub binary: PathBuf,
    pub config_path: PathBuf,
    pub pid_file: PathBuf,
    process: ProcessGroup,
    log: StderrLog,
    /// Removed on drop, after the processes are gone.
    _owned_dir: Option<TempDir>,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl Gateway {
    pub fn start(config: &str) -> Gateway {
        Gateway::options(config).start()
    }

    /// Starts rgate with `config` and extra environment variables; waits for "listening on".
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::options(config).env(env).start()
    }

    /// The usual settings (own temp dir, 2 cores, the build's binary), to change before `start`.
    pub fn options(config: &str) -> Launch {
        Launch {
            config: config.to_string(),
            dir: None,
            db: None,
            cores: 2,
            args: Vec::new(),
            env: Vec::new(),
            private_binary: false,
            start_timeout: limits::START,
            nofile: None,
        }
    }

    /// Everything rgate (every generation of it) wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The pid of the process this test started.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The pid the pid file names now (after a restart, the successor's).
    pub fn pid_in_file(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits up to `limit` for `cond`; fails the test with rgate's stderr otherwise.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait_until(&self, limit: Duration, cond: impl Fn(&Gateway) -> bool, what: &str) {
        wait_until(limit, format_args!("{what}; log:\n{}", LogOf(self)), || {
            cond(self)
        });
    }

    /// Waits (up to `limit`) for a line of the log containing `text`, which may already have
    /// been written.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait_log(&self, limit: Duration, text: &str) {
        self.wait_until(
            limit,
            |g| g.log().contains(text),
            &format!("{text:?} in the log"),
        );
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut c = self.client();
        c.send(raw.as_bytes());
        c.read_response(raw.starts_with("HEAD "))
    }

    /// `GET path` on a new connection (`Connection: close`); fails the test if no complete
    /// response comes, or bytes follow it. See `common::get`.
    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}\nlog:\n{}", self.log()))
    }

    /// A `/proc/<pid>/status` field in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Sends `sig` to the process this test started.
    pub fn signal(&self, sig: libc::c_int) {
        send_signal(self.pid(), sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", self.pid()));
    }

    /// Waits up to `timeout` for the process to exit.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// SIGKILL to every process of the gateway, and waits: nothing gets a chance to flush.
    #[allow(dead_code)] // not every test binary uses it
    pub fn kill(mut self) {
        self.process.kill_all();
    }
}

/// Shows a gateway's log lazily, in a failure message.
struct LogOf<'a>(&'a Gateway);

impl std::fmt::Display for LogOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.log())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Every process of the group: the first, and every successor, ready or not.
        self.process.kill_all();
        if thread::panicking() {
            eprintln!("---- rgate stderr ----\n{}", self.log());
        }
    }
}
