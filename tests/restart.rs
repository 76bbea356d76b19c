//! Zero-downtime restart, on the wire: SIGHUP under load loses nothing; a successor that
//! fails (bad config, hangs) leaves the old process serving; a binary replaced on disk is
//! the one the successor runs. Every rgate here is started from a private copy of the
//! binary (`Launch::private_binary`), so a test can replace it without touching the others.
//! The backend is the harness's echo `Backend`: a response names the path and body length
//! it answers, so a client can tell that its own request was answered, whole.

mod common;
mod support_load;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    exited, get_request as get, limits, send_signal, temp_dir, wait_until, Backend, Client,
    Gateway, ProcessGroup, Response, StderrLog,
};
use support_load::{wait_stats_total, Load};

// ----- rgate, started from a private copy of the binary -----

fn config_text(backend: &Backend) -> String {
    common::config(&[("/api", "app")], &[("app", &[backend.addr])], "")
}

/// rgate on a private copy of the binary, with its pid file written.
fn start(backend: &Backend, extra: &[&str]) -> Gateway {
    start_on(backend, extra, 2)
}

fn start_on(backend: &Backend, extra: &[&str], cores: u32) -> Gateway {
    let gw = Gateway::options(&config_text(backend))
        .private_binary()
        .cores(cores)
        .args(extra)
        .start();
    gw.wait_until(limits::START, |g| g.pid_in_file().is_some(), "pid file");
    gw
}

/// Sends SIGHUP to the current process and waits for the pid file to name a new one.
fn restart(gw: &Gateway) -> (u32, u32) {
    let old = gw.pid_in_file().expect("pid");
    let failures = gw.log().matches("restart failed").count();
    send_signal(old, libc::SIGHUP).expect("SIGHUP");
    gw.wait_until(
        limits::CONDITION,
        |g| {
            let log = g.log();
            assert_eq!(
                log.matches("restart failed").count(),
                failures,
                "the restart failed; log:\n{log}"
            );
            g.pid_in_file().is_some_and(|p| p != old)
        },
        "a new pid",
    );
    let new = gw.pid_in_file().unwrap();
    // Ready in every sense the README gives: it said so on the pipe, wrote the pid file and
    // accepts (it logs `ready` last).
    gw.wait_log(limits::CONDITION, &format!("ready (pid {new})"));
    (old, new)
}

// ----- clients -----

fn connect(addr: SocketAddr) -> Result<Client, String> {
    support_load::connect(addr)
}

/// Whether `r` is the backend's 200 answer to a request for `path` with `body_len` body bytes.
fn answers(r: &Response, path: &str, body_len: u64) -> bool {
    r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|echo| echo["target"] == path && echo["body_len"] == body_len)
}

fn answers_get(r: &Response, path: &str) -> bool {
    answers(r, path, 0)
}

#[test]
fn ten_restarts_under_load_lose_nothing() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let load = Load::start(gw.addr, 4, "/api", answers_get);
    let mut pids = vec![gw.pid_in_file().unwrap()];
    for _ in 0..10 {
        // Traffic between restarts (not a pause: 20 more answers).
        load.wait_answered(20);
        let (old, new) = restart(&gw);
        assert!(!pids.contains(&new), "pid {new} reused");
        assert_eq!(old, *pids.last().unwrap());
        pids.push(new);
    }
    load.wait_answered(20);
    let outcome = load.finish();
    assert_eq!(outcome.failed, 0, "failures: {:?}", outcome.failures);
    assert!(
        outcome.ok > 100,
        "only {} requests went through",
        outcome.ok
    );

    // Every old process drains, flushes its counters and exits.
    for &pid in &pids[..pids.len() - 1] {
        gw.wait_until(
            limits::CONDITION * 2,
            |_| exited(pid),
            &format!("pid {pid} to exit"),
        );
    }
    // /stats totals equal the requests sent: nothing lost, nothing counted twice. What the
    // old processes flushed on exit reaches the newest one's totals at its next collection.
    let total = wait_stats_total(gw.addr, outcome.ok, limits::CONDITION);
    assert_eq!(total, Some(outcome.ok), "log:\n{}", gw.log());
}

#[test]
fn restarts_under_load_lose_and_duplicate_no_access_log_line() {
    // Each process logs exactly the requests it answered; the old one writes its last lines
    // before it exits. Every answered request has one line, by its request ID.
    let backend = Backend::start("app");
    let dir = common::temp_dir("log");
    let path = dir.join("access.json");
    let gw = start(&backend, &["--access-log", path.to_str().unwrap()]);
    let load = Load::start(gw.addr, 4, "/api", answers_get);
    let mut pids = vec![gw.pid_in_file().unwrap()];
    for _ in 0..3 {
        load.wait_answered(50);
        let (_, new) = restart(&gw);
        pids.push(new);
    }
    load.wait_answered(50);
    let outcome = load.finish();
    assert_eq!(outcome.failed, 0, "failures: {:?}", outcome.failures);
    for &pid in &pids[..pids.len() - 1] {
        gw.wait_until(
            limits::CONDITION * 2,
            |_| exited(pid),
            &format!("pid {pid} to exit"),
        );
    }
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    common::wait_until(limits::CONDITION, "a line per answered request", || {
        lines().len() as u64 >= outcome.ok
    });
    let all = lines();
    assert_eq!(all.len() as u64, outcome.ok, "lines for answered requests");
    let mut ids: Vec<String> = all
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("whole JSON lines");
            assert_eq!(v["status"], 200, "{l}");
            v["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, outcome.ok, "no line twice");
}

#[test]
fn watch_config_applies_a_valid_edit_under_load_and_ignores_a_broken_one() {
    let backend = Backend::start("app");
    let gw = start(&backend, &["--watch-config"]);
    let load = Load::start(gw.addr, 4, "/api", answers_get);
    load.wait_answered(50);
    let old = gw.pid_in_file().unwrap();
    assert_eq!(gw.get("/new/x").status, 403, "no route yet");
    // An edit that adds a route, written as editors do (a new file renamed over the old).
    let edit = |text: &str| {
        let tmp = gw.config_path.with_extension("yml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &gw.config_path).unwrap();
    };
    edit(&common::config(
        &[("/api", "app"), ("/new", "app")],
        &[("app", &[backend.addr])],
        "",
    ));
    gw.wait_until(
        limits::CONDITION,
        |g| g.pid_in_file().is_some_and(|p| p != old),
        "a restart for the edit",
    );
    let new = gw.pid_in_file().unwrap();
    gw.wait_log(limits::CONDITION, &format!("ready (pid {new})"));
    assert!(answers_get(&gw.get("/new/x"), "/new/x"));
    load.wait_answered(50);
    // A broken edit: logged, nothing restarts, everything keeps working.
    edit("routes:\n  - path_prefix: /api\n    backend: missing\n");
    gw.wait_log(limits::CONDITION, "--watch-config: the change is not used");
    assert!(
        gw.log().contains("unknown backend \"missing\""),
        "{}",
        gw.log()
    );
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(gw.pid_in_file(), Some(new), "no restart for a broken edit");
    assert!(answers_get(&gw.get("/new/y"), "/new/y"));
    load.wait_answered(50);
    let outcome = load.finish();
    assert_eq!(outcome.failed, 0, "failures: {:?}", outcome.failures);
    gw.wait_until(
        limits::CONDITION,
        |_| exited(old),
        "the old process to exit",
    );
}

#[test]
fn requests_in_flight_complete_across_a_restart() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let addr = gw.addr;
    // A response the backend holds until the restart is done.
    const SLOW: &str = "/api/slow?do=hold";
    let slow = thread::spawn(move || {
        let mut c = connect(addr)?;
        c.try_exchange(&get(SLOW))
    });
    // An upload sent half before the restart and half after it.
    const UPLOAD: u64 = 200 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let (halfway_tx, halfway) = mpsc::channel();
    let (go_on, go_on_rx) = mpsc::channel::<()>();
    let upload = thread::spawn(move || {
        let mut c = connect(addr)?;
        let head =
            format!("POST /api/upload HTTP/1.1\r\nHost: rgate\r\nContent-Length: {UPLOAD}\r\n\r\n");
        c.try_send(head.as_bytes()).map_err(|e| e.to_string())?;
        let chunk = vec![b'x'; CHUNK];
        let chunks = UPLOAD / CHUNK as u64;
        for i in 0..chunks {
            if i == chunks / 2 {
                let _ = halfway_tx.send(());
                go_on_rx
                    .recv_timeout(limits::CONDITION)
                    .map_err(|e| e.to_string())?;
            }
            c.try_send(&chunk)
                .map_err(|e| format!("upload write {i}: {e}"))?;
        }
        c.try_read_response(false).map_err(|e| e.to_string())
    });
    halfway
        .recv_timeout(limits::CONDITION)
        .expect("the upload to be halfway");
    wait_until(limits::CONDITION, "the slow request at the backend", || {
        backend.held() == 1
    });
    let (old, _new) = restart(&gw);
    assert!(
        !exited(old),
        "the old process is still draining its requests"
    );
    backend.release();
    go_on.send(()).unwrap();
    let slow = slow.join().unwrap().expect("slow response");
    assert!(answers(&slow, SLOW, 0), "{slow:?}");
    let upload = upload.join().unwrap().expect("upload");
    assert!(answers(&upload, "/api/upload", UPLOAD), "{upload:?}");
}

/// During a restart the old process finishes what is in flight on a keep-alive connection
/// and tells the client `Connection: close`, then closes it; the client's next connection
/// reaches the new process. (One core, so both connections below are on the same one.)
#[test]
fn a_keep_alive_connection_is_told_connection_close_during_a_restart() {
    let backend = Backend::start("app");
    let gw = start_on(&backend, &[], 1);
    let mut c = connect(gw.addr).unwrap();
    let r = c.try_exchange(&get("/api/before")).unwrap();
    assert!(
        answers(&r, "/api/before", 0) && !r.closes_connection(),
        "{r:?}"
    );
    let mut idle = connect(gw.addr).unwrap();
    let r = idle.try_exchange(&get("/api/idle")).unwrap();
    assert!(!r.closes_connection(), "{r:?}");
    // The keep-alive connection's next request is in flight when the restart comes.
    c.send(&get("/api/during?do=hold"));
    wait_until(limits::CONDITION, "the request at the backend", || {
        backend.held() == 1
    });
    let (old, new) = restart(&gw);
    // The old core drains: it closes the idle connection (after a second idle).
    idle.expect_closed();
    backend.release();
    let r = c.read_response(false);
    assert!(answers(&r, "/api/during?do=hold", 0), "{r:?}");
    assert!(
        r.closes_connection(),
        "no Connection: close while draining: {r:?}"
    );
    c.expect_closed();
    // A new connection is served by the new process (the old one stopped accepting).
    let mut fresh = connect(gw.addr).unwrap();
    let r = fresh.try_exchange(&get("/api/after")).unwrap();
    assert!(
        answers(&r, "/api/after", 0) && !r.closes_connection(),
        "{r:?}"
    );
    assert_eq!(gw.pid_in_file(), Some(new));
    gw.wait_until(
        limits::CONDITION,
        |_| exited(old),
        "the old process to exit",
    );
}

/// A restart hands the successor its listening sockets and nothing else: the client
/// connections the old process still holds (accepted through io_uring, which sets no
/// close-on-exec flag) must not live on in the successor, where nothing would close them
/// and where they would keep the old process's closes from sending a FIN.
#[test]
fn the_successor_inherits_no_client_connection() {
    let backend = Backend::start("app");
    let gw = start_on(&backend, &[], 1);
    let mut clients: Vec<Client> = (0..5)
        .map(|i| {
            let mut c = connect(gw.addr).unwrap();
            let path = format!("/api/open{i}");
            let r = c.try_exchange(&get(&path)).unwrap();
            assert!(answers(&r, &path, 0) && !r.closes_connection(), "{r:?}");
            c
        })
        .collect();
    let old_sockets = sockets_of(gw.pid_in_file().unwrap());
    assert!(old_sockets.len() >= 5, "{old_sockets:?}");
    let (_, new) = restart(&gw);
    let listening = listening_sockets(gw.addr.port());
    assert!(!listening.is_empty(), "no listening socket on {}", gw.addr);
    let successor = sockets_of(new);
    let inherited: Vec<&u64> = successor
        .intersection(&old_sockets)
        .filter(|inode| !listening.contains(inode))
        .collect();
    assert!(
        inherited.is_empty(),
        "the successor holds {} socket(s) of the old process besides the listening ones",
        inherited.len()
    );
    // Drained by the old process, each connection is closed with a FIN.
    for c in &mut clients {
        c.expect_closed();
    }
}

/// The inodes of the sockets process `pid` holds.
fn sockets_of(pid: u32) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the fd table")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The inodes of the IPv4 TCP sockets listening on `port` (from /proc/net/tcp).
fn listening_sockets(port: u16) -> std::collections::BTreeSet<u64> {
    const LISTEN: &str = "0A";
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *f.get(3)? == LISTEN).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The successor is started with exactly the arguments the old process had.
#[test]
fn the_successor_runs_with_the_same_arguments() {
    let backend = Backend::start("app");
    let gw = start(&backend, &["--drain-timeout", "7", "--log-level", "debug"]);
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let first = gw.pid_in_file().unwrap();
    let before = cmdline(first);
    let (_, new) = restart(&gw);
    let after = cmdline(new);
    let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\0', " ");
    assert_eq!(show(&after), show(&before));
    assert!(
        show(&after).contains("--drain-timeout 7 --log-level debug"),
        "{}",
        show(&after)
    );
}

/// A SIGHUP while a restart is under way is logged and ignored: one successor, not two.
#[test]
fn a_second_sighup_during_a_restart_is_ignored() {
    let backend = Backend::start("app");
    let gw = start(&backend, &["--upgrade-timeout", "3"]);
    let pid = gw.pid_in_file().unwrap();
    // A successor that never says ready keeps the restart under way for 3 s.
    replace_binary(&gw, b"#!/bin/sh\nexec sleep 60\n");
    send_signal(pid, libc::SIGHUP).expect("SIGHUP");
    gw.wait_log(limits::CONDITION, "restart: successor pid");
    send_signal(pid, libc::SIGHUP).expect("the second SIGHUP");
    gw.wait_log(limits::CONDITION, "a restart is already under way; ignored");
    gw.wait_log(limits::CONDITION, "restart failed");
    let log = gw.log();
    assert_eq!(log.matches("restart: successor pid").count(), 1, "{log}");
    assert_eq!(gw.pid_in_file(), Some(pid));
    let r = connect(gw.addr)
        .unwrap()
        .try_exchange(&get("/api/still"))
        .unwrap();
    assert!(answers(&r, "/api/still", 0), "{r:?}");
}

#[test]
fn a_successor_with_a_bad_config_leaves_the_old_process_serving() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let pid = gw.pid_in_file().unwrap();
    std::fs::write(
        &gw.config_path,
        "routes:\n  - path_prefix: nope\n    backend: app\n",
    )
    .unwrap();
    send_signal(pid, libc::SIGHUP).expect("SIGHUP");
    gw.wait_log(limits::CONDITION, "restart failed");
    let log = gw.log();
    assert!(log.contains("exited before it was ready"), "{log}");
    assert!(
        log.contains("routes[0].path_prefix"),
        "the successor's reason is logged: {log}"
    );
    assert_eq!(gw.pid_in_file(), Some(pid));
    assert!(!exited(pid));
    let mut c = connect(gw.addr).unwrap();
    let r = c.try_exchange(&get("/api/still")).unwrap();
    assert!(answers(&r, "/api/still", 0), "{r:?}");
}

fn replace_binary(gw: &Gateway, contents: &[u8]) {
    let tmp = gw.dir.join("rgate.new");
    std::fs::write(&tmp, contents).unwrap();
    let mut perms = std::fs::metadata(&tmp).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&tmp, perms).unwrap();
    std::fs::rename(&tmp, &gw.binary).unwrap();
}

#[test]
fn a_successor_that_hangs_is_killed_at_the_timeout() {
    let backend = Backend::start("app");
    let gw = start(&backend, &["--upgrade-timeout", "2"]);
    let pid = gw.pid_in_file().unwrap();
    replace_binary(
        &gw,
        b"#!/bin/sh\necho 'starting slowly' >&2\nexec sleep 60\n",
    );
    let started = Instant::now();
    send_signal(pid, libc::SIGHUP).expect("SIGHUP");
    gw.wait_log(limits::CONDITION, "restart failed");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "gave up before the timeout"
    );
    let log = gw.log();
    assert!(log.contains("not ready within 2 s"), "{log}");
    assert!(
        log.contains("starting slowly"),
        "what the successor printed is logged: {log}"
    );
    let hung: u32 = log
        .split("restart: successor pid ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("successor pid logged");
    assert!(exited(hung), "the hung successor was killed");
    assert_eq!(gw.pid_in_file(), Some(pid));
    let mut c = connect(gw.addr).unwrap();
    let r = c.try_exchange(&get("/api/after-hang")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_binary_replaced_on_disk_is_the_one_the_successor_runs() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let old_inode = inode(&gw.binary);
    replace_binary(&gw, &std::fs::read(env!("CARGO_BIN_EXE_rgate")).unwrap());
    assert_ne!(inode(&gw.binary), old_inode);
    let (old, new) = restart(&gw);
    // The old process runs the unlinked file; the new one runs what is now on disk.
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe"));
    assert_eq!(exe(new).unwrap(), gw.binary);
    // The old one may already have drained and exited; if not, it runs the old file.
    if let Ok(old_exe) = exe(old) {
        assert!(
            old_exe.to_string_lossy().ends_with("(deleted)"),
            "{old_exe:?}"
        );
    }
    let version = Command::new(&gw.binary).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let version = version.trim();
    assert!(
        gw.log()
            .contains(&format!("is ready ({version} pid {new})")),
        "the restart reports the successor's version {version:?}; log:\n{}",
        gw.log()
    );
    let mut c = connect(gw.addr).unwrap();
    assert_eq!(c.try_exchange(&get("/api/new-binary")).unwrap().status, 200);
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// systemd socket activation: sockets passed as fds 3, 4 with LISTEN_FDS and LISTEN_PID.
/// rgate serves every passed socket on every core, whatever `--cores` says.
#[test]
fn serves_sockets_passed_by_systemd_on_every_core() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let backend = Backend::start("app");
    let dir = temp_dir("systemd");
    let config = dir.join("config.yml");
    std::fs::write(&config, config_text(&backend)).unwrap();
    let sockets = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut cmd = Command::new("/bin/sh");
    // `exec` keeps the shell's pid, so $$ is rgate's pid, as systemd's LISTEN_PID would be.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rgate"))
        .args(["--port", "1", "--cores", "3", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.join("rgate.db"))
        .arg("--pid-file")
        .arg(dir.join("rgate.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only dup2 between the fork and the exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in fds.iter().enumerate() {
                if libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = ProcessGroup::spawn(&mut cmd);
    let stderr = StderrLog::follow(child.child.stderr.take().unwrap());
    if stderr
        .wait_line(limits::START, |line| {
            line.contains("ready (pid").then_some(())
        })
        .is_none()
    {
        child.kill_all();
        panic!(
            "rgate did not start on the passed sockets; log:\n{}",
            stderr.text()
        );
    }
    let log = stderr.text();
    drop(sockets);
    assert!(
        log.contains("using 2 inherited listening socket(s)"),
        "{log}"
    );
    assert!(log.contains("(3 cores,"), "{log}");
    // Both sockets answer, on every core.
    for addr in &addrs {
        for n in 0..30 {
            let path = format!("/api/sd/{}/{n}", addr.port());
            let mut c = connect(*addr).unwrap();
            let r = c.try_exchange(&get(&path)).unwrap();
            assert!(answers(&r, &path, 0), "{r:?}");
        }
    }
}
