//! Zero-downtime restart: handing the listening sockets to a successor process.
//!
//! The old process (on SIGHUP) starts the same executable path with the same arguments and
//! passes it, by fd inheritance:
//! * its listening sockets as fds 3, 4, … with `LISTEN_FDS=n` (systemd's convention, so the
//!   same code path serves socket activation — see `inherited_listeners`);
//! * a pipe on which the successor writes one `ready` line once it has started completely;
//! * its own stderr, while the successor's stderr is a pipe that the old process relays
//!   (prefixed) and remembers: if the successor fails, the old process can say what it
//!   printed. Once ready, the successor moves its stderr back to the real one.
//!
//! The sockets are never closed by anyone while they may hold queued connections: both
//! processes hold them during the overlap, and the kernel's accept queue is shared.
//! If the successor exits, says nothing within the timeout, or cannot be started, the old
//! process kills it if needed, logs why, and keeps serving.
//!
//! The same handover starts every serving process under the supervisor (`supervisor`):
//! `Successor` is the started process and its readiness pipe, without the waiting, so the
//! supervisor can watch it alongside signals and its other children.
//!
//! SIGHUP is also how a new configuration is taken into use: the successor loads the config
//! file afresh, so an invalid one makes it exit 2 before it is ready, and the restart fails
//! with what it printed while the old process keeps serving with its own.
//!
//! Errors: a restart that fails is not an error of the process. `UpgradeOutcome::Failed`
//! carries the reason as the text the log shows (with the successor's last output); the
//! caller logs it and keeps serving. Only the successor's side (`inherited_listeners`,
//! `ReadyNotifier::notify`) returns `io::Error`, which start-up turns into exit 1.
//!
//! Not for: which signal means what (the caller's `signals::SignalSet`), the pid file.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod inherit;

pub(crate) use inherit::{
    forget_environment, inherited_listeners, supervisor_from_env, ReadyNotifier,
};

use crate::clock;
use crate::signals::SignalSet;

/// The first inherited fd (after stdin, stdout, stderr), as systemd does.
const LISTEN_FDS_START: RawFd = 3;
const ENV_LISTEN_FDS: &str = "LISTEN_FDS";
const ENV_LISTEN_PID: &str = "LISTEN_PID";
const ENV_LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// The fd the successor writes its `ready` line to.
const ENV_READY_FD: &str = "RGATE_READY_FD";
/// The fd of the real stderr, which the successor takes back once ready.
const ENV_STDERR_FD: &str = "RGATE_STDERR_FD";
/// Set by the supervisor in the serving processes it starts: its pid. A supervised process
/// leaves restarts (and the pid file) to the supervisor.
pub(crate) const ENV_SUPERVISOR_PID: &str = "RGATE_SUPERVISOR_PID";
/// Lines of the successor's output kept for the failure message.
const REMEMBERED_LINES: usize = 20;
/// How long a failed restart waits for the successor's last output to be read.
const RELAY_FINISH_LIMIT: Duration = Duration::from_secs(1);
/// How often the old process looks at the successor while waiting.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// Attempts, and the pause between them, when the executable is busy (ETXTBSY).
const SPAWN_BUSY_RETRIES: u32 = 25;
const SPAWN_BUSY_PAUSE: Duration = Duration::from_millis(40);
/// Fds are moved above this before the fork, so no dup2 target overwrites a source.
const SCRATCH_FD_FLOOR: RawFd = 100;

/// What the process was started as; a restart runs the same again.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl Invocation {
    /// The path this process was started from (resolved now, so a binary replaced on disk
    /// later is the one the successor runs) and its arguments.
    pub(crate) fn current() -> io::Result<Invocation> {
        let mut args = std::env::args_os();
        let argv0 = PathBuf::from(args.next().unwrap_or_default());
        let program = if argv0.components().count() > 1 {
            std::fs::canonicalize(&argv0).or_else(|_| std::env::current_exe())?
        } else {
            // Found through PATH: /proc/self/exe names the file.
            std::env::current_exe()?
        };
        Ok(Invocation {
            program,
            args: args.collect(),
        })
    }
}

/// How a restart attempt ended.
#[derive(Debug)]
pub(crate) enum UpgradeOutcome {
    /// The successor is serving; this process should drain and exit.
    Ready { pid: u32, announced: String },
    /// The successor failed; this process keeps serving.
    Failed { reason: String },
    /// A stop signal arrived while waiting; the successor was stopped.
    Interrupted { signal: libc::c_int },
}

/// Starts a successor on `listeners` and waits (up to `timeout`) for it to say it is ready.
/// Signals in `signals` that arrive meanwhile are handled: SIGHUP is ignored (a restart is
/// already under way), SIGTERM/SIGINT abort the attempt.
pub(crate) fn start_successor(
    invocation: &Invocation,
    listeners: &[TcpListener],
    timeout: Duration,
    signals: &SignalSet,
) -> UpgradeOutcome {
    let mut successor = match Successor::start(invocation, listeners, &[]) {
        Ok(s) => s,
        Err(reason) => return failed(reason),
    };
    log::info!(
        "restart: successor pid {} started from {}",
        successor.pid(),
        invocation.program.display()
    );
    let outcome = wait_ready(&mut successor, timeout, signals);
    match &outcome {
        // Once this process exits, the successor is re-parented; nothing to wait for.
        UpgradeOutcome::Ready { .. } => {}
        UpgradeOutcome::Failed { .. } | UpgradeOutcome::Interrupted { .. } => {
            let _ = successor.child.kill();
            let _ = successor.child.wait();
        }
    }
    match outcome {
        UpgradeOutcome::Failed { reason } => UpgradeOutcome::Failed {
            reason: successor.failure_report(&reason),
        },
        other => other,
    }
}

fn failed(reason: String) -> UpgradeOutcome {
    UpgradeOutcome::Failed { reason }
}

fn wait_ready(successor: &mut Successor, timeout: Duration, signals: &SignalSet) -> UpgradeOutcome {
    let deadline = Instant::now() + timeout;
    loop {
        match poll_readable(successor.ready_fd(), POLL_SLICE) {
            Ok(true) => match successor.read_readiness() {
                Readiness::Waiting => {}
                Readiness::Ready { announced } => {
                    return UpgradeOutcome::Ready {
                        pid: successor.pid(),
                        announced,
                    }
                }
                Readiness::Closed => {
                    return failed(match successor.child.wait() {
                        Ok(status) => format!("exited before it was ready ({status})"),
                        Err(_) => "closed its readiness pipe before it was ready".into(),
                    })
                }
                Readiness::Refused { reason } => return failed(reason),
            },
            Ok(false) => {}
            Err(e) => return failed(format!("readiness pipe: {e}")),
        }
        if let Ok(Some(status)) = successor.child.try_wait() {
            return failed(format!("exited before it was ready ({status})"));
        }
        match signals.wait(Duration::ZERO) {
            Ok(Some(libc::SIGHUP)) => log::warn!("SIGHUP: a restart is already under way; ignored"),
            Ok(Some(signal)) => return UpgradeOutcome::Interrupted { signal },
            _ => {}
        }
        if Instant::now() >= deadline {
            return failed(not_ready_in_time(timeout));
        }
    }
}

/// The reason given for a successor that did not say ready within `timeout`.
pub(crate) fn not_ready_in_time(timeout: Duration) -> String {
    format!(
        "not ready within {} s (--upgrade-timeout); killed",
        timeout.as_secs_f64()
    )
}

/// What a started process has said on its readiness pipe so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing yet, or not a whole line.
    Waiting,
    /// It said `ready …`; the rest of the line is what it announced (version, pid).
    Ready { announced: String },
    /// It closed the pipe without a word: it has exited, or is exiting.
    Closed,
    /// It said something else, or the pipe failed: it will not become ready.
    Refused { reason: String },
}

/// A process started on the listening sockets (the LISTEN_FDS handover) that has not yet
/// said it is ready: its pid, its readiness pipe, and the last lines it printed. A
/// restarting rgate waits on one (`start_successor`); the supervisor keeps one for each
/// serving process it starts and reaps them itself (so it never calls `wait` through here).
pub(crate) struct Successor {
    child: Child,
    ready: File,
    said: Vec<u8>,
    printed: Arc<Mutex<VecDeque<String>>>,
    relay: Option<std::thread::JoinHandle<()>>,
}

impl Successor {
    /// Starts `invocation` with `listeners` as fds 3, 4, … and `env` added to its
    /// environment; its stderr is relayed (prefixed) until it says it is ready.
    pub(crate) fn start(
        invocation: &Invocation,
        listeners: &[TcpListener],
        env: &[(&str, String)],
    ) -> Result<Successor, String> {
        let (ready_read, ready_write) =
            pipe().map_err(|e| format!("cannot create the readiness pipe: {e}"))?;
        let (log_read, log_write) =
            pipe().map_err(|e| format!("cannot create the log pipe: {e}"))?;
        let child = spawn(invocation, listeners, env, &ready_write, &log_write)
            .map_err(|e| format!("cannot start {}: {e}", invocation.program.display()))?;
        // Only the child holds the write ends now: EOF on them means it is gone (or done).
        drop(ready_write);
        drop(log_write);
        let (printed, relay) = relay_output(child.id(), log_read);
        Ok(Successor {
            child,
            ready: File::from(ready_read),
            said: Vec::new(),
            printed,
            relay,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The readiness pipe, to poll for input.
    pub(crate) fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Reads what the pipe holds (call when it polls readable; it does not block then).
    pub(crate) fn read_readiness(&mut self) -> Readiness {
        let mut chunk = [0u8; 256];
        match self.ready.read(&mut chunk) {
            Ok(0) => Readiness::Closed,
            Ok(n) => {
                self.said.extend_from_slice(&chunk[..n]);
                let Some(end) = self.said.iter().position(|&b| b == b'\n') else {
                    return Readiness::Waiting;
                };
                let line = String::from_utf8_lossy(&self.said[..end]).into_owned();
                match line.strip_prefix("ready") {
                    Some(rest) => Readiness::Ready {
                        announced: rest.trim().to_string(),
                    },
                    None => Readiness::Refused {
                        reason: format!("said {line:?} instead of ready"),
                    },
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Readiness::Waiting,
            Err(e) => Readiness::Refused {
                reason: format!("readiness pipe: {e}"),
            },
        }
    }

    /// `reason`, with what the successor printed last. Called once it is gone (or killed):
    /// the relay is given a moment (bounded, in case something it started still holds the
    /// pipe) to read its last output.
    pub(crate) fn failure_report(&self, reason: &str) -> String {
        if let Some(relay) = &self.relay {
            clock::finished_by(relay, Instant::now() + RELAY_FINISH_LIMIT);
        }
        let lines = self
            .printed
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let said = if lines.is_empty() {
            "it printed nothing".to_string()
        } else {
            format!("it printed:\n    {}", lines.join("\n    "))
        };
        format!("successor pid {}: {reason}; {said}", self.pid())
    }
}

/// Copies the successor's stderr to ours, line by line with a prefix, and keeps the last
/// lines for a failure message. Ends when the successor closes it (ready, or gone).
fn relay_output(
    pid: u32,
    log_read: OwnedFd,
) -> (
    Arc<Mutex<VecDeque<String>>>,
    Option<std::thread::JoinHandle<()>>,
) {
    let printed = Arc::new(Mutex::new(VecDeque::with_capacity(REMEMBERED_LINES)));
    let kept = printed.clone();
    let spawned = std::thread::Builder::new()
        .name("rgate-successor-log".into())
        .spawn(move || {
            let reader = BufReader::new(File::from(log_read));
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(io::stderr().lock(), "[successor {pid}] {line}");
                if let Ok(mut kept) = kept.lock() {
                    if kept.len() == REMEMBERED_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        });
    match spawned {
        Ok(handle) => (printed, Some(handle)),
        Err(e) => {
            log::warn!("restart: cannot relay the successor's output: {e}");
            (printed, None)
        }
    }
}

fn spawn(
    invocation: &Invocation,
    listeners: &[TcpListener],
    env: &[(&str, String)],
    ready_write: &OwnedFd,
    log_write: &OwnedFd,
) -> io::Result<Child> {
    // Everything the child needs, moved to high close-on-exec fds first.
    let mut sources = Vec::with_capacity(listeners.len() + 2);
    for l in listeners {
        sources.push(dup_high(l.as_raw_fd())?);
    }
    let n = listeners.len() as RawFd;
    let ready_fd = LISTEN_FDS_START + n;
    let stderr_fd = ready_fd + 1;
    sources.push(dup_high(ready_write.as_raw_fd())?);
    sources.push(dup_high(libc::STDERR_FILENO)?);
    let log_source = dup_high(log_write.as_raw_fd())?;
    let raw_sources: Vec<RawFd> = sources.iter().map(AsRawFd::as_raw_fd).collect();
    let raw_log = log_source.as_raw_fd();
    // Everything above what the child keeps is closed by its exec (see `close_on_exec_from`).
    let inherited_end = LISTEN_FDS_START + raw_sources.len() as RawFd;
    let fd_ceiling = open_files_ceiling();

    let mut cmd = Command::new(&invocation.program);
    cmd.args(&invocation.args)
        .stdin(Stdio::null())
        .env_remove(ENV_LISTEN_PID)
        .env_remove(ENV_LISTEN_FDNAMES)
        .env(ENV_LISTEN_FDS, n.to_string())
        .env(ENV_READY_FD, ready_fd.to_string())
        .env(ENV_STDERR_FD, stderr_fd.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (dup2, close_range, fcntl), which are async-signal-safe; it allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &src) in raw_sources.iter().enumerate() {
                // dup2 leaves the new fd without close-on-exec: it survives exec.
                if libc::dup2(src, LISTEN_FDS_START + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::dup2(raw_log, libc::STDERR_FILENO) < 0 {
                return Err(io::Error::last_os_error());
            }
            close_on_exec_from(inherited_end, fd_ceiling);
            Ok(())
        });
    }
    let mut child = cmd.spawn();
    // A binary just written by a deploy (or by any process that forked meanwhile) can be
    // briefly held open for writing, and exec then fails with ETXTBSY: try a little longer.
    for _ in 0..SPAWN_BUSY_RETRIES {
        match &child {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(SPAWN_BUSY_PAUSE);
                child = cmd.spawn();
            }
            _ => break,
        }
    }
    drop(sources);
    drop(log_source);
    child
}

/// In the forked child: marks every descriptor from `first` on close-on-exec, so that the
/// successor inherits only what it was handed. A client connection accepted through
/// io_uring carries no close-on-exec flag (the accept operation sets none); without this,
/// every connection open at a restart would live on in the successor — never closed there,
/// and closing it in the old process would send no FIN. Marked rather than closed: the
/// standard library's own pipe that reports a failed exec must stay open until the exec.
/// `ceiling` bounds the fallback loop for kernels without `close_range` (before 5.11).
fn close_on_exec_from(first: RawFd, ceiling: RawFd) {
    // SAFETY: close_range and fcntl(F_SETFD) only change descriptor flags of this process.
    unsafe {
        let marked = libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if marked != 0 {
            for fd in first..ceiling {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

/// One above the highest descriptor this process can hold (its open-files limit).
fn open_files_ceiling() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok {
        limit.rlim_cur.min(RawFd::MAX as libc::rlim_t) as RawFd
    } else {
        RawFd::from(u16::MAX)
    }
}

fn dup_high(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd we own (checked).
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, SCRATCH_FD_FLOOR) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by us from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    match rc {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}
