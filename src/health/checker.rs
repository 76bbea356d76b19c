//! Active health checks: a control-plane thread that asks every instance of the backends
//! with a `health_check` whether it is well, and takes it out of rotation when it is not.
//!
//! Every `interval`, each instance of such a backend (as the last published table has it)
//! gets `GET <path> HTTP/1.1` with `Host`, `Connection: close` and
//! `User-Agent: rgate-health-check`; connecting, writing and reading the status line must all
//! fit in `timeout`. A 2xx or 3xx status is a pass; anything else (refused, timed out, reset,
//! another status, not HTTP) is a failure. `unhealthy_after` failures in a row make the
//! instance unhealthy (`InstanceHealth::set_unhealthy`: no traffic on any core, unless every
//! instance is out, when the picker fails open); `healthy_after` passes in a row bring it
//! back. Each change is logged once, at info. New instances start healthy: an instance is in
//! rotation from the moment discovery finds it, until its checks say otherwise.
//!
//! Concurrency: one short-lived thread per check. The checker thread starts the checks of a
//! backend when its interval comes round and goes back to waiting at once; the check threads
//! send their verdicts on a channel, which the checker applies as they come. A slow or hung
//! instance therefore delays nobody else's check, and costs one thread for at most `timeout`
//! (never longer than `interval`, the config refuses it); an instance whose previous check is
//! still running is skipped for that round. A thread per check rather than a pool: checks are
//! few (instances / interval, a handful per second), blocking std::net with timeouts is the
//! simplest correct thing off the request path, and a pool would need its own queueing to
//! keep one slow instance from holding a worker that another instance's check waits for.
//!
//! The consecutive counts live in this thread, keyed by (backend index, address); they are
//! forgotten when the instance leaves the table. The verdict itself lives in the instance's
//! shared `InstanceHealth`, which a new table keeps for the same address.
//!
//! Docker's own healthcheck is separate and still applies: discovery leaves out containers
//! that Docker calls `unhealthy` or `starting` (`discovery::container::Skip`).
//!
//! Not for: passive health (the circuit breaker, `health`), anything on the request path.
//! The thread runs until the process exits (a draining process keeps checking: harmless).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{InstanceHealth, InstanceName};
use crate::backends::TablePublisher;
use crate::config::{Config, HealthCheck};

/// The most of a check's answer read to find its status line.
const MAX_STATUS_LINE: usize = 1024;
/// Stack of one check thread: it only connects, writes a line and reads a few hundred bytes.
const CHECK_STACK: usize = 128 * 1024;

/// Starts the checker thread, when some backend of `config` has a `health_check`.
pub(crate) fn start(config: &Config, publisher: Arc<TablePublisher>) {
    let checks: Vec<Option<HealthCheck>> = config
        .backends
        .iter()
        .map(|b| b.policy.health_check.clone())
        .collect();
    let checked = checks.iter().filter(|c| c.is_some()).count();
    if checked == 0 {
        return;
    }
    let checker = Checker::new(checks, publisher);
    let spawned = std::thread::Builder::new()
        .name("rgate-health".into())
        .spawn(move || checker.run());
    match spawned {
        Ok(_) => log::info!("health checks: {checked} backend(s) checked"),
        Err(e) => log::error!("health checks: cannot start the checker thread: {e}"),
    }
}

/// Why a check failed.
#[derive(Debug)]
enum CheckFailure {
    Connect(io::Error),
    TimedOut(Duration),
    /// Writing the request or reading the answer failed.
    Io(io::Error),
    /// The connection closed before a whole status line.
    Closed,
    /// The answer does not start with an HTTP/1.x status line.
    NotHttp,
    Status(u16),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Connect(e) => write!(f, "connect: {e}"),
            CheckFailure::TimedOut(t) => write!(f, "no answer within {} ms", t.as_millis()),
            CheckFailure::Io(e) => write!(f, "{e}"),
            CheckFailure::Closed => f.write_str("closed before a status line"),
            CheckFailure::NotHttp => f.write_str("the answer is not HTTP/1.x"),
            CheckFailure::Status(s) => write!(f, "status {s}"),
        }
    }
}

/// One check's verdict, sent back to the checker thread.
struct Verdict {
    backend: usize,
    addr: SocketAddr,
    source: String,
    health: Arc<InstanceHealth>,
    result: Result<(), CheckFailure>,
}

/// Consecutive outcomes of one instance's checks (one of the two is always 0).
#[derive(Debug, Default)]
struct Streak {
    passes: u32,
    failures: u32,
}

struct Checker {
    /// Per backend (index of `Config::backends`): its check, if it has one.
    checks: Vec<Option<HealthCheck>>,
    /// When each checked backend's next round is due.
    due: Vec<Instant>,
    publisher: Arc<TablePublisher>,
    streaks: HashMap<(usize, SocketAddr), Streak>,
    /// Checks started and not yet answered.
    running: HashSet<(usize, SocketAddr)>,
    tx: mpsc::Sender<Verdict>,
    rx: mpsc::Receiver<Verdict>,
}

impl Checker {
    fn new(checks: Vec<Option<HealthCheck>>, publisher: Arc<TablePublisher>) -> Checker {
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        Checker {
            due: vec![now; checks.len()],
            checks,
            publisher,
            streaks: HashMap::new(),
            running: HashSet::new(),
            tx,
            rx,
        }
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            let mut next = now + Duration::from_secs(3600);
            for b in 0..self.checks.len() {
                let Some(interval) = self.checks[b].as_ref().map(|c| c.interval) else {
                    continue;
                };
                if self.due[b] <= now {
                    self.start_round(b);
                    self.due[b] += interval;
                    if self.due[b] <= now {
                        // Fell behind (a suspended process): no burst of rounds to catch up.
                        self.due[b] = now + interval;
                    }
                }
                next = next.min(self.due[b]);
            }
            match self.rx.recv_timeout(next.saturating_duration_since(now)) {
                Ok(verdict) => self.apply(verdict),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // The checker holds a sender: never.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Starts a check of every instance of backend `b` whose last check has ended.
    fn start_round(&mut self, b: usize) {
        let Some(check) = self.checks[b].clone() else {
            return;
        };
        let (name, instances) = self.publisher.with_latest(|table| {
            table
                .backends
                .get(b)
                .map_or((String::new(), Vec::new()), |be| {
                    let list: Vec<(SocketAddr, String, Arc<InstanceHealth>)> = be
                        .instances
                        .iter()
                        .map(|i| (i.addr, i.source.clone(), i.health.clone()))
                        .collect();
                    (be.name.clone(), list)
                })
        });
        // Instances gone from the table are forgotten (a new one at the address starts over).
        self.streaks
            .retain(|(bb, addr), _| *bb != b || instances.iter().any(|(a, _, _)| a == addr));
        for (addr, source, health) in instances {
            if !self.running.insert((b, addr)) {
                continue;
            }
            let tx = self.tx.clone();
            let check = check.clone();
            let spawned = std::thread::Builder::new()
                .name("rgate-health-check".into())
                .stack_size(CHECK_STACK)
                .spawn(move || {
                    let result = probe(addr, &check);
                    let _ = tx.send(Verdict {
                        backend: b,
                        addr,
                        source,
                        health,
                        result,
                    });
                });
            if let Err(e) = spawned {
                self.running.remove(&(b, addr));
                log::warn!("backend {name}, instance {addr}: cannot start its health check: {e}");
            }
        }
    }

    /// Counts a verdict; flips the instance's state when the streak reaches the threshold.
    fn apply(&mut self, v: Verdict) {
        self.running.remove(&(v.backend, v.addr));
        let Some(check) = self.checks[v.backend].as_ref() else {
            return;
        };
        let backend = self
            .publisher
            .with_latest(|t| t.backends.get(v.backend).map(|b| b.name.clone()))
            .unwrap_or_default();
        let name = InstanceName {
            backend: &backend,
            addr: v.addr,
            source: &v.source,
        };
        let streak = self.streaks.entry((v.backend, v.addr)).or_default();
        match v.result {
            Ok(()) => {
                streak.failures = 0;
                streak.passes = streak.passes.saturating_add(1);
                if streak.passes >= check.healthy_after && v.health.set_unhealthy(false) {
                    log::info!(
                        "{name}: healthy again ({} health checks passed in a row)",
                        streak.passes
                    );
                }
            }
            Err(why) => {
                streak.passes = 0;
                streak.failures = streak.failures.saturating_add(1);
                if streak.failures >= check.unhealthy_after && v.health.set_unhealthy(true) {
                    log::info!("{name}: unhealthy (health check: {why})");
                } else {
                    log::debug!("{name}: health check failed: {why}");
                }
            }
        }
    }
}

/// One check of the instance at `addr`: connect, write, read the status line, all within
/// `check.timeout`.
fn probe(addr: SocketAddr, check: &HealthCheck) -> Result<(), CheckFailure> {
    let deadline = Instant::now() + check.timeout;
    let timed_out = || CheckFailure::TimedOut(check.timeout);
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)
    };
    let io_failure = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => CheckFailure::Io(e),
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, check.timeout).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => timed_out(),
            _ => CheckFailure::Connect(e),
        })?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: rgate-health-check\r\n\r\n",
        check.path
    );
    stream
        .set_write_timeout(Some(left()?))
        .map_err(io_failure)?;
    stream.write_all(request.as_bytes()).map_err(io_failure)?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        if answer.len() >= MAX_STATUS_LINE {
            return Err(CheckFailure::NotHttp);
        }
        stream.set_read_timeout(Some(left()?)).map_err(io_failure)?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(CheckFailure::Closed),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(e)),
        }
    }
    match status_of(&answer) {
        Some(200..=399) => Ok(()),
        Some(code) => Err(CheckFailure::Status(code)),
        None => Err(CheckFailure::NotHttp),
    }
}

/// The status code of an answer starting with `HTTP/1.x NNN` (RFC 9112 §4).
fn status_of(answer: &[u8]) -> Option<u16> {
    let rest = answer
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| answer.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit)
        || rest.get(3).is_some_and(|&b| b != b' ' && b != b'\r')
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 302 Found\r\n"), Some(302));
        assert_eq!(status_of(b"HTTP/1.1 503\r\n"), Some(503));
        assert_eq!(status_of(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 20x OK\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_of(b"garbage\r\n"), None);
    }
}
