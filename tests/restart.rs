//! Zero-downtime restart, on the wire: SIGHUP under load loses nothing; a successor that
//! fails (bad config, hangs) leaves the old process serving; a binary replaced on disk is
//! the one the successor runs. Every rgate here is started from a private copy of the
//! binary (`Launch::private_binary`), so a test can replace it without touching the others.
//! The backend is the harness's echo `Backend`: a response names the path and body length
//! it answers, so a client can tell that its own request was answered, whole.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{exited, send_signal, temp_dir, Backend, Client, Gateway, Response, StderrLog};

const STARTUP_LIMIT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ----- rgate, started from a private copy of the binary -----

fn config_text(backend: &Backend) -> String {
    common::config(&[("/api", "app")], &[("app", &[backend.addr])], "")
}

/// rgate on a private copy of the binary, with its pid file written.
fn start(backend: &Backend, extra: &[&str]) -> Gateway {
    let gw = Gateway::options(&config_text(backend))
        .private_binary()
        .args(extra)
        .start_timeout(STARTUP_LIMIT)
        .start();
    gw.wait_until(STARTUP_LIMIT, |g| g.pid_in_file().is_some(), "pid file");
    gw
}

/// Sends SIGHUP to the current process and waits for the pid file to name a new one.
fn restart(gw: &Gateway) -> (u32, u32) {
    let old = gw.pid_in_file().expect("pid");
    send_signal(old, libc::SIGHUP).expect("SIGHUP");
    gw.wait_until(
        Duration::from_secs(20),
        |g| g.pid_in_file().is_some_and(|p| p != old),
        "a new pid",
    );
    (old, gw.pid_in_file().unwrap())
}

// ----- clients -----

fn connect(addr: SocketAddr) -> Result<Client, String> {
    Client::try_connect(addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: rgate\r\n\r\n").into_bytes()
}

/// Whether `r` is the backend's 200 answer to a request for `path` with `body_len` body bytes.
fn answers(r: &Response, path: &str, body_len: u64) -> bool {
    r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|echo| echo["target"] == path && echo["body_len"] == body_len)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn check(&self, path: &str, result: Result<Response, String>) -> Option<Response> {
        match result {
            Ok(r) if answers(&r, path, 0) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            Ok(r) => {
                self.fail(format!("{path}: status {} body {:?}", r.status, r.text()));
                None
            }
            Err(e) => {
                self.fail(format!("{path}: {e}"));
                None
            }
        }
    }

    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(what);
        }
    }
}

/// A keep-alive client: requests back to back; reconnects when told `Connection: close`.
fn keep_alive_client(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut conn = None;
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(addr) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.fail(e);
                    continue;
                }
            },
        };
        n += 1;
        let path = format!("/api/ka/{id}/{n}");
        match tally.check(&path, c.try_exchange(&get(&path))) {
            Some(r) if !r.closes_connection() => {}
            _ => conn = None,
        }
    }
}

/// A client that opens a new connection for every request.
fn new_connection_client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        n += 1;
        let path = format!("/api/new/{n}");
        let result = connect(addr).and_then(|mut c| {
            c.try_exchange(
                format!("GET {path} HTTP/1.1\r\nHost: rgate\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
        });
        tally.check(&path, result);
    }
}

fn stats_total(addr: SocketAddr) -> Option<u64> {
    let mut c = connect(addr).ok()?;
    let r = c.try_exchange(&get("/stats")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["requests_count"]["total"].as_u64()
}

#[test]
fn ten_restarts_under_load_lose_nothing() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for id in 0..4 {
        let (stop, tally) = (stop.clone(), tally.clone());
        let addr = gw.addr;
        clients.push(thread::spawn(move || {
            keep_alive_client(addr, id, stop, tally)
        }));
    }
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        let addr = gw.addr;
        clients.push(thread::spawn(move || {
            new_connection_client(addr, stop, tally)
        }));
    }
    let mut pids = vec![gw.pid_in_file().unwrap()];
    for _ in 0..10 {
        thread::sleep(Duration::from_millis(300));
        let (old, new) = restart(&gw);
        assert!(!pids.contains(&new), "pid {new} reused");
        assert_eq!(old, *pids.last().unwrap());
        pids.push(new);
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "failures: {:?}", tally.failures.lock().unwrap());
    assert!(ok > 100, "only {ok} requests went through");

    // Every old process drains, flushes its counters and exits.
    let deadline = Instant::now() + Duration::from_secs(40);
    for &pid in &pids[..pids.len() - 1] {
        let left = deadline.saturating_duration_since(Instant::now());
        gw.wait_until(left, |_| exited(pid), &format!("pid {pid} to exit"));
    }
    // /stats totals equal the requests sent: nothing lost, nothing counted twice. What the
    // old processes flushed on exit reaches the newest one's totals at its next collection.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut total = stats_total(gw.addr);
    while total != Some(ok) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        total = stats_total(gw.addr);
    }
    assert_eq!(total, Some(ok), "log:\n{}", gw.log());
}

#[test]
fn requests_in_flight_complete_across_a_restart() {
    let backend = Backend::start("app");
    let gw = start(&backend, &[]);
    let addr = gw.addr;
    const SLOW: &str = "/api/slow?do=sleep&ms=3000";
    let slow = thread::spawn(move || {
        let mut c = connect(addr)?;
        c.try_exchange(&get(SLOW))
    });
    const UPLOAD: u64 = 200 * 1024 * 1024;
    let upload = thread::spawn(move || {
        let mut c = connect(addr)?;
        let head =
            format!("POST /api/upload HTTP/1.1\r\nHost: rgate\r\nContent-Length: {UPLOAD}\r\n\r\n");
        c.try_send(head.as_bytes()).map_err(|e| e.to_string())?;
        let chunk = vec![b'x'; 1024 * 1024];
        for i in 0..UPLOAD / chunk.len() as u64 {
            c.try_send(&chunk)
                .map_err(|e| format!("upload write {i}: {e}"))?;
            if i % 16 == 0 {
                thread::sleep(Duration::from_millis(100));
            }
        }
        c.try_read_response(false).map_err(|e| e.to_string())
    });
    thread::sleep(Duration::from_millis(500));
    restart(&gw);
    let slow = slow.join().unwrap().expect("slow response");
    assert!(answers(&slow, SLOW, 0), "{slow:?}");
    let upload = upload.join().unwrap().expect("upload");
    assert!(answers(&upload, "/api/upload", UPLOAD), "{upload:?}");
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
    gw.wait_until(
        Duration::from_secs(20),
        |g| g.log().contains("restart failed"),
        "the failure to be logged",
    );
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
    gw.wait_until(
        Duration::from_secs(20),
        |g| g.log().contains("restart failed"),
        "the failure to be logged",
    );
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
    let mut child = cmd.spawn().unwrap();
    let stderr = StderrLog::follow(child.stderr.take().unwrap());
    if stderr
        .wait_line(STARTUP_LIMIT, |line| {
            line.contains("ready (pid").then_some(())
        })
        .is_none()
    {
        let _ = child.kill();
        let _ = child.wait();
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
    // Many connections on each socket: accepted whichever core takes them.
    for addr in &addrs {
        for n in 0..30 {
            let path = format!("/api/sd/{}/{n}", addr.port());
            let mut c = connect(*addr).unwrap();
            let r = c.try_exchange(&get(&path)).unwrap();
            assert!(answers(&r, &path, 0), "{r:?}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
