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

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{temp_dir, Client, Response};

/// How long rgate may take to say it is listening, unless the test says otherwise.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a binary just written may stay busy (ETXTBSY) before spawning it fails the test.
const BUSY_BINARY_LIMIT: Duration = Duration::from_secs(1);

/// A process's stderr, read to the end on its own thread (so the pipe never fills), kept
/// whole for messages and handed out line by line to whoever waits for one.
pub struct StderrLog {
    text: Arc<Mutex<String>>,
    lines: Mutex<mpsc::Receiver<String>>,
}

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
pub struct Launch {
    config: String,
    dir: Option<PathBuf>,
    db: Option<PathBuf>,
    cores: u32,
    args: Vec<String>,
    env: Vec<(String, String)>,
    private_binary: bool,
    start_timeout: Duration,
}

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

    /// How long rgate may take to say it is listening.
    pub fn start_timeout(mut self, limit: Duration) -> Launch {
        self.start_timeout = limit;
        self
    }

    /// Starts rgate and waits for its `listening on` line; panics with its stderr if none comes.
    pub fn start(self) -> Gateway {
        let start_timeout = self.start_timeout;
        let (mut child, gw_parts) = self.spawn_inner();
        let log = StderrLog::follow(child.stderr.take().expect("stderr piped"));
        match log.wait_line(start_timeout, listening_addr) {
            Some(addr) => Gateway {
                addr,
                dir: gw_parts.dir,
                binary: gw_parts.binary,
                config_path: gw_parts.config_path,
                pid_file: gw_parts.pid_file,
                child,
                log,
                owns_dir: gw_parts.owns_dir,
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                // Lets the reader take in what the process wrote last.
                thread::sleep(Duration::from_millis(100));
                if gw_parts.owns_dir {
                    let _ = std::fs::remove_dir_all(&gw_parts.dir);
                }
                panic!("rgate did not report listening; stderr:\n{}", log.text());
            }
        }
    }

    /// Only spawns rgate (stderr piped, nothing read): for a test that expects it to exit.
    pub fn spawn(self) -> Child {
        self.spawn_inner().0
    }

    fn spawn_inner(self) -> (Child, Paths) {
        let (dir, owns_dir) = match self.dir {
            Some(dir) => (dir, false),
            None => (temp_dir("gw"), true),
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
        let child = spawn_fresh_binary(&mut cmd);
        let paths = Paths {
            dir,
            binary,
            config_path,
            pid_file,
            owns_dir,
        };
        (child, paths)
    }
}

/// Where one gateway's files are.
struct Paths {
    dir: PathBuf,
    binary: PathBuf,
    config_path: PathBuf,
    pid_file: PathBuf,
    owns_dir: bool,
}

/// Spawns a binary this process may have just written. Another test thread forking at the
/// same moment briefly holds the file open for writing, which makes exec fail with ETXTBSY.
fn spawn_fresh_binary(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + BUSY_BINARY_LIMIT;
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(20))
            }
            other => return other.expect("start rgate"),
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// One rgate process, with its own directory, config, db and pid file; killed on drop,
/// together with the process its pid file names if a restart replaced the first one.
pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The binary the first process runs (and successors run after a restart).
    pub binary: PathBuf,
    pub config_path: PathBuf,
    pub pid_file: PathBuf,
    child: Child,
    log: StderrLog,
    owns_dir: bool,
}

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
            start_timeout: START_TIMEOUT,
        }
    }

    /// Everything rgate (every generation of it) wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The pid of the process this test started.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
    pub fn wait_until(&self, limit: Duration, cond: impl Fn(&Gateway) -> bool, what: &str) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
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

    /// `GET path` on a new connection.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n"))
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
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child_exit(&mut self.child, timeout)
    }

    /// SIGKILL, and waits for it: the process gets no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill rgate");
        self.child.wait().expect("wait for rgate");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // The pid file is read before the first process is reaped, so its pid is not reused yet.
        if let Some(pid) = self.pid_in_file().filter(|&p| p != self.child.id()) {
            let _ = send_signal(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- rgate stderr ----\n{}", self.log());
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// kill(2).
pub fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) touches no memory of ours; the worst outcome is ESRCH.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process has exited (gone, or a zombie waiting to be reaped).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_child_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}
