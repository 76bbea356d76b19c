//! The supervisor on real processes: rgate as PID 1 of its own PID namespace (`unshare
//! --pid --fork --mount-proc`, as in its container), and rgate `--supervise` as a plain
//! child. SIGHUPs under load lose nothing and leave exactly one serving process, no zombie;
//! SIGTERM drains what is in flight and exits 0; a config change is picked up on SIGHUP and
//! a bad one leaves the running process serving; a hung successor is killed; a serving
//! process that dies ends the supervisor with its status; without `--supervise` (and not
//! PID 1) rgate stays one process.
//!
//! The PID namespace needs root (or CAP_SYS_ADMIN), so the test that uses one is `#[ignore]`d:
//! plain `cargo test` lists it as ignored; `make test` (scripts/test.sh) runs it when
//! `unshare` works, and always with `RGATE_REQUIRE_PID_NAMESPACE=1` (set by .ci/run), where
//! it fails without one. The process tree is read from /proc: every rgate started here is killed, with
//! everything it started, when its test ends, pass or fail.

mod common;
mod support_load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    limits, poll, send_signal, temp_dir, wait_until, Backend, ProcessGroup, Response, StderrLog,
    TempDir,
};
use support_load::{connect, get, wait_stats_total, Load};

const STARTUP_LIMIT: Duration = limits::START;
/// How long one restart may take, SIGHUP to "ready".
const RESTART_LIMIT: Duration = limits::CONDITION;
/// The drain timeout given to rgate here; a stop may take `limits::EXIT` on top of it.
const DRAIN_TIMEOUT_S: u64 = 10;
const STOP_SLACK: Duration = limits::EXIT;

/// How the supervisor is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `unshare --pid --fork --mount-proc rgate …`: rgate is PID 1 of a new PID namespace.
    Pid1,
    /// `rgate --supervise …` as a plain child of the test.
    Flag,
}

/// A supervised rgate: the supervisor's host pid, its address, its stderr (every serving
/// process's too). On drop, the supervisor and everything under it are killed.
struct Supervised {
    /// `unshare` (Mode::Pid1) or the supervisor itself (Mode::Flag), leading a process group
    /// that every serving process joins.
    child: ProcessGroup,
    supervisor: u32,
    addr: SocketAddr,
    log: StderrLog,
    dir: TempDir,
    binary: PathBuf,
    config_path: PathBuf,
}

impl Supervised {
    fn start(mode: Mode, config: &str, extra: &[&str]) -> Supervised {
        let dir = temp_dir("supervised");
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        // A private copy, which a test may replace on disk.
        let binary = dir.join("rgate");
        std::fs::copy(env!("CARGO_BIN_EXE_rgate"), &binary).unwrap();
        let mut cmd = match mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc"]).arg(&binary);
                c
            }
            Mode::Flag => {
                let mut c = Command::new(&binary);
                c.arg("--supervise");
                c
            }
        };
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--cores", "2"])
            .arg("--config")
            .arg(&config_path)
            .arg("--db")
            .arg(dir.join("rgate.db"))
            .arg("--pid-file")
            .arg(dir.join("rgate.pid"))
            .args(["--drain-timeout", &DRAIN_TIMEOUT_S.to_string()])
            .args(extra)
            .env_remove("RGATE_DRIVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ProcessGroup::spawn(&mut cmd);
        let log = StderrLog::follow(child.child.stderr.take().unwrap());
        let addr = log.wait_line(STARTUP_LIMIT, |line| {
            let rest = &line[line.find("listening on ")? + "listening on ".len()..];
            rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
        });
        let supervisor = match mode {
            Mode::Flag => Some(child.id()),
            Mode::Pid1 => children_of(child.id()).first().copied(),
        };
        let (Some(addr), Some(supervisor)) = (addr, supervisor) else {
            child.kill_all();
            // The pipe closes once every process of the group is gone: the log is whole.
            let _ = log.wait_line(limits::EXIT, |_| None::<()>);
            panic!("supervised rgate did not start; stderr:\n{}", log.text());
        };
        Supervised {
            child,
            supervisor,
            addr,
            log,
            dir,
            binary,
            config_path,
        }
    }

    fn log(&self) -> String {
        self.log.text()
    }

    fn signal(&self, signal: libc::c_int) {
        send_signal(self.supervisor, signal).expect("signal the supervisor");
    }

    /// Waits up to `limit` for `cond`; fails the test with the log otherwise.
    fn wait_until(&self, limit: Duration, what: &str, cond: impl Fn(&Supervised) -> bool) {
        wait_until(limit, format_args!("{what}; log:\n{}", LogOf(self)), || {
            cond(self)
        });
    }

    /// How many restarts have handed over so far.
    fn handovers(&self) -> usize {
        self.log()
            .matches("supervisor: restart: successor pid")
            .count()
    }

    /// SIGHUP, then waits for the handover.
    fn restart(&self) {
        let before = self.handovers();
        self.signal(libc::SIGHUP);
        self.wait_until(RESTART_LIMIT, "the successor to be ready", |s| {
            s.handovers() > before
        });
    }

    /// The processes under the supervisor, with their state letter from /proc.
    fn serving_processes(&self) -> Vec<(u32, char)> {
        descendants(self.supervisor)
    }

    /// Waits until exactly one serving process (alive, not a zombie) is left.
    fn wait_single_serving_process(&self, limit: Duration) -> u32 {
        self.wait_until(
            limit,
            "exactly one serving process",
            |s| matches!(s.serving_processes()[..], [(_, state)] if state != 'Z'),
        );
        self.serving_processes()[0].0
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(limit)
    }
}

/// A supervised rgate's log, shown lazily in a failure message.
struct LogOf<'a>(&'a Supervised);

impl std::fmt::Display for LogOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.log())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The whole process group: supervisor, serving processes, successors.
        self.child.kill_all();
        if thread::panicking() {
            eprintln!("---- supervised rgate stderr ----\n{}", self.log());
        }
    }
}

// ----- the process tree, from /proc -----

/// (pid, parent pid, state) of every process.
fn processes() -> Vec<(u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) S ppid …": comm may hold spaces, so split after the last ')'.
        let mut rest = stat.rsplit_once(") ")?.1.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        Some((pid, ppid, state))
    })
    .collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    poll(STARTUP_LIMIT, || {
        let found: Vec<u32> = processes()
            .into_iter()
            .filter(|&(_, ppid, _)| ppid == pid)
            .map(|(p, _, _)| p)
            .collect();
        if found.is_empty() {
            Err(format!("no child of {pid}"))
        } else {
            Ok(found)
        }
    })
    .unwrap_or_default()
}

/// Every process below `root`, at any depth, with its state.
fn descendants(root: u32) -> Vec<(u32, char)> {
    let all = processes();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, state) in &all {
            if ppid == parent {
                found.push((pid, state));
                frontier.push(pid);
            }
        }
    }
    found
}

/// Whether a PID namespace can be made here; the reason when not.
fn pid_namespace_available() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Checks that the test that needs a PID namespace can make one. That test is `#[ignore]`d
/// and runs only when asked for (`make test` asks when `unshare` works here, or when
/// `RGATE_REQUIRE_PID_NAMESPACE=1`), so without one it fails: it never passes untried.
fn begin_pid1(test: &str) {
    if let Err(why) = pid_namespace_available() {
        panic!("{test}: this test needs a PID namespace (root or CAP_SYS_ADMIN): {why}");
    }
}

// ----- configs and answers -----

fn config_for(backend: &Backend) -> String {
    common::config(&[("/api", "app")], &[("app", &[backend.addr])], "")
}

/// Whether `r` is the echo backend's 200 answer to `GET path`.
fn answers(r: &Response, path: &str) -> bool {
    r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|echo| echo["target"] == path && echo["body_len"] == 0)
}

fn get_once(addr: SocketAddr, path: &str) -> Response {
    common::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// ----- the tests -----

/// Ten SIGHUPs to PID 1 (what `docker kill -s HUP` does) under keep-alive and
/// new-connection load: nothing fails, the namespace lives on, /stats counts exactly what
/// was sent, and the namespace's own /proc shows the supervisor and one serving process.
#[test]
#[ignore = "needs a PID namespace (root): `make test` runs it when unshare works"]
fn ten_sighups_to_rgate_as_pid_1_lose_nothing_and_leave_no_zombie() {
    begin_pid1("pid1");
    let backend = Backend::start("app");
    let mut sup = Supervised::start(Mode::Pid1, &config_for(&backend), &[]);
    assert!(
        sup.log().contains("supervisor: rgate"),
        "PID 1 supervises without being asked: {}",
        sup.log()
    );
    let load = Load::start(sup.addr, 4, "/api", answers);
    for _ in 0..10 {
        load.wait_answered(20);
        sup.restart();
        assert!(
            sup.wait_exit(Duration::ZERO).is_none(),
            "the namespace ended; log:\n{}",
            sup.log()
        );
    }
    load.wait_answered(20);
    let outcome = load.finish();
    assert_eq!(outcome.failed, 0, "failures: {:?}", outcome.failures);
    assert!(
        outcome.ok > 100,
        "only {} requests went through",
        outcome.ok
    );

    // Every old process drains and is reaped: one serving process left, no zombie.
    let serving = sup.wait_single_serving_process(Duration::from_secs(40));
    assert_eq!(
        sup.log()
            .matches("drained and exited (exit status: 0)")
            .count(),
        10
    );
    // The namespace's own view: PID 1 (the supervisor) and the serving process, nothing else.
    let ns_pids = namespace_pids(sup.supervisor);
    assert_eq!(ns_pids.len(), 2, "/proc in the namespace: {ns_pids:?}");
    assert!(ns_pids.contains(&1), "{ns_pids:?}");
    assert!(sup.wait_exit(Duration::ZERO).is_none());

    let total = wait_stats_total(sup.addr, outcome.ok, limits::CONDITION);
    assert_eq!(total, Some(outcome.ok), "log:\n{}", sup.log());

    // `docker stop`: SIGTERM to PID 1 ends the namespace with status 0 within the drain time.
    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(Duration::from_secs(DRAIN_TIMEOUT_S) + STOP_SLACK);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "log:\n{}",
        sup.log()
    );
    assert!(common::exited(serving));
}

/// The pids the namespace of `pid` sees in its own /proc (mounted by `--mount-proc`).
fn namespace_pids(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/root/proc"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// SIGTERM (what `docker stop` sends) during traffic: the requests in flight complete (on
/// fresh and on keep-alive connections), the supervisor exits 0 within the drain time, and
/// nothing it started is left.
#[test]
fn sigterm_during_traffic_completes_requests_in_flight_and_exits_0() {
    let backend = Backend::start("app");
    let slow_backend = Backend::start("slow");
    let config = common::config(
        &[("/api", "app"), ("/slow", "slow")],
        &[("app", &[backend.addr]), ("slow", &[slow_backend.addr])],
        "",
    );
    let mut sup = Supervised::start(Mode::Flag, &config, &[]);
    let serving = sup.wait_single_serving_process(STARTUP_LIMIT);
    let load = Load::start(sup.addr, 2, "/api", answers);
    let addr = sup.addr;
    let mut in_flight = Vec::new();
    for n in 0..4 {
        in_flight.push(thread::spawn(move || {
            let mut c = connect(addr)?;
            if n % 2 == 1 {
                // A keep-alive connection that has served a request already.
                let path = format!("/api/before/{n}");
                let r = c.try_exchange(&get(&path))?;
                if !answers(&r, &path) || r.closes_connection() {
                    return Err(format!("{path}: {r:?}"));
                }
            }
            let path = format!("/slow/{n}?do=sleep&ms=2000");
            let r = c.try_exchange(&get(&path))?;
            answers(&r, &path)
                .then_some(())
                .ok_or(format!("{path}: {r:?}"))
        }));
    }
    // The slow requests are with the backend before the stop.
    sup.wait_until(limits::CONDITION, "the slow requests and traffic", |_| {
        slow_backend.requests() >= 4 && load.answered() >= 20
    });
    assert_eq!(load.failed(), 0);
    let stopped = Instant::now();
    sup.signal(libc::SIGTERM);
    for (n, request) in in_flight.into_iter().enumerate() {
        let result = request.join().unwrap();
        assert!(
            result.is_ok(),
            "request {n} in flight: {result:?}\nlog:\n{}",
            sup.log()
        );
    }
    let status = sup.wait_exit(Duration::from_secs(DRAIN_TIMEOUT_S) + STOP_SLACK);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "log:\n{}",
        sup.log()
    );
    assert!(stopped.elapsed() < Duration::from_secs(DRAIN_TIMEOUT_S) + STOP_SLACK);
    assert!(common::exited(serving), "the serving process is gone");
    assert!(sup.log().contains("supervisor: exiting with status 0"));
    // Requests sent after the stop began may be refused (the gateway is going away).
    let outcome = load.finish();
    assert!(outcome.ok > 20, "{outcome:?}");
}

/// The config is read again on SIGHUP; a bad one leaves the running process serving. A
/// SIGHUP sent to the serving process itself is passed up to the supervisor.
#[test]
fn sighup_picks_up_a_new_config_and_a_bad_one_leaves_the_running_process_serving() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let sup = Supervised::start(Mode::Flag, &config_for(&a), &[]);
    assert_eq!(get_once(sup.addr, "/api/x").echo().backend(), "a");

    std::fs::write(&sup.config_path, config_for(&b)).unwrap();
    let first = sup.wait_single_serving_process(STARTUP_LIMIT);
    // To the serving process, not the supervisor: it passes the SIGHUP up.
    send_signal(first, libc::SIGHUP).unwrap();
    sup.wait_until(RESTART_LIMIT, "the restart", |s| s.handovers() == 1);
    assert!(sup.log().contains("asking the supervisor"), "{}", sup.log());
    // Once the old process has drained, only the new config answers.
    let second = sup.wait_single_serving_process(Duration::from_secs(DRAIN_TIMEOUT_S));
    assert_ne!(first, second);
    assert_eq!(get_once(sup.addr, "/api/x").echo().backend(), "b");

    std::fs::write(
        &sup.config_path,
        "routes:\n  - path_prefix: nope\n    backend: app\n",
    )
    .unwrap();
    sup.signal(libc::SIGHUP);
    sup.wait_until(RESTART_LIMIT, "the failure to be logged", |s| {
        s.log().contains("restart failed, still serving")
    });
    let log = sup.log();
    assert!(
        log.contains("exited before it was ready (exit status: 2)"),
        "{log}"
    );
    assert!(
        log.contains("routes[0].path_prefix"),
        "the reason is logged: {log}"
    );
    assert_eq!(sup.handovers(), 1);
    assert_eq!(sup.wait_single_serving_process(STARTUP_LIMIT), second);
    assert_eq!(get_once(sup.addr, "/api/still").echo().backend(), "b");
    // The pid file names the supervisor: the process to signal.
    let pid_file = std::fs::read_to_string(sup.dir.join("rgate.pid")).unwrap();
    assert_eq!(pid_file.trim(), sup.supervisor.to_string());
}

/// A successor that never says ready is killed at `--upgrade-timeout`; the serving one stays.
#[test]
fn a_successor_that_hangs_is_killed_and_the_serving_process_stays() {
    let backend = Backend::start("app");
    let sup = Supervised::start(
        Mode::Flag,
        &config_for(&backend),
        &["--upgrade-timeout", "2"],
    );
    let serving = sup.wait_single_serving_process(STARTUP_LIMIT);
    // The supervisor writes its pid file once it has seen the serving process ready; a
    // SIGHUP before that is ignored ("nothing serves yet"), which is not what this tests.
    sup.wait_until(STARTUP_LIMIT, "the supervisor to see it ready", |s| {
        s.dir.join("rgate.pid").exists()
    });
    replace_binary(
        &sup.binary,
        b"#!/bin/sh\necho 'starting slowly' >&2\nexec sleep 60\n",
    );
    let started = Instant::now();
    sup.signal(libc::SIGHUP);
    sup.wait_until(RESTART_LIMIT, "the failure to be logged", |s| {
        s.log().contains("restart failed, still serving")
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "gave up early"
    );
    let log = sup.log();
    assert!(log.contains("not ready within 2 s"), "{log}");
    assert!(
        log.contains("starting slowly"),
        "what it printed is logged: {log}"
    );
    // The hung one is killed and reaped: only the serving process is left.
    assert_eq!(
        sup.wait_single_serving_process(Duration::from_secs(5)),
        serving
    );
    assert!(answers(&get_once(sup.addr, "/api/after"), "/api/after"));
}

fn replace_binary(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    let mut perms = std::fs::metadata(&tmp).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&tmp, perms).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The serving process dying on its own ends the supervisor with its status, so that the
/// container's restart policy acts.
#[test]
fn a_serving_process_that_dies_ends_the_supervisor_with_its_status() {
    let backend = Backend::start("app");
    let mut sup = Supervised::start(Mode::Flag, &config_for(&backend), &[]);
    let serving = sup.wait_single_serving_process(STARTUP_LIMIT);
    // Killed while it serves (not while the supervisor still waits for it to be ready).
    sup.wait_until(STARTUP_LIMIT, "the supervisor to see it ready", |s| {
        s.dir.join("rgate.pid").exists()
    });
    send_signal(serving, libc::SIGKILL).unwrap();
    let status = sup.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(128 + 9),
        "log:\n{}",
        sup.log()
    );
    // The thread that copies the supervisor's stderr may still be behind its exit.
    sup.wait_until(limits::CONDITION, "the death to be logged", |s| {
        s.log().contains("exited unexpectedly (signal: 9)")
    });
}

/// Outside PID 1 and without `--supervise`, nothing changes: one process, which writes its
/// own pid file and restarts itself on SIGHUP (tests/restart.rs).
#[test]
fn without_supervise_rgate_is_a_single_process() {
    let backend = Backend::start("app");
    let gw = common::Gateway::start(&config_for(&backend));
    gw.wait_until(STARTUP_LIMIT, |g| g.pid_in_file().is_some(), "pid file");
    assert_eq!(gw.pid_in_file(), Some(gw.pid()));
    assert_eq!(descendants(gw.pid()), vec![]);
    assert!(!gw.log().contains("supervisor"), "{}", gw.log());
}
