//! Zero-downtime restart, on the wire: SIGHUP under load loses nothing; a successor that
//! fails (bad config, hangs) leaves the old process serving; a binary replaced on disk is
//! the one the successor runs. Every rgate here is started from a private copy of the
//! binary, so a test can replace it without touching the others.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const STARTUP_LIMIT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ----- a backend: keep-alive HTTP/1.1, answers with the path; /slow sleeps; bodies counted -----

fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || serve_backend_conn(conn));
        }
    });
    addr
}

fn serve_backend_conn(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    loop {
        let Some((path, length, head_len)) = read_head(&mut conn, &mut buf) else {
            return;
        };
        buf.drain(..head_len);
        // Count (and drop) the body as it arrives.
        let mut remaining = length;
        let take = remaining.min(buf.len() as u64) as usize;
        buf.drain(..take);
        remaining -= take as u64;
        let mut chunk = vec![0u8; 64 * 1024];
        while remaining > 0 {
            match conn.read(&mut chunk[..remaining.min(64 * 1024) as usize]) {
                Ok(0) | Err(_) => return,
                Ok(n) => remaining -= n as u64,
            }
        }
        if let Some(ms) = path.strip_prefix("/api/slow/") {
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        let body = format!("{path} {length}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads one request head into `buf`; returns (path, content length, head length).
fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, u64, usize)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let path = head.split(' ').nth(1)?.to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            return Some((path, length, end + 4));
        }
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ----- rgate, started from a private copy of the binary -----

struct Gateway {
    dir: PathBuf,
    binary: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    addr: SocketAddr,
    first: Child,
    log: Arc<Mutex<String>>,
}

fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rgate-restart-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config_text(backend: SocketAddr) -> String {
    format!(
        "routes:\n  - path_prefix: /api\n    backend: app\n\
default_response:\n  body: not here\n  status_code: 404\n\
backends:\n  - name: app\n    addresses: [\"{backend}\"]\n"
    )
}

impl Gateway {
    fn start(name: &str, backend: SocketAddr, extra: &[&str]) -> Gateway {
        let dir = temp_dir(name);
        let binary = dir.join("rgate");
        std::fs::copy(env!("CARGO_BIN_EXE_rgate"), &binary).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(&config, config_text(backend)).unwrap();
        let pid_file = dir.join("rgate.pid");
        let mut cmd = Command::new(&binary);
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--cores", "2"])
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(dir.join("rgate.db"))
            .arg("--pid-file")
            .arg(&pid_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_fresh_binary(&mut cmd);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        // Every generation writes to this pipe (successors take the original stderr back).
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(addr) = rest
                        .split(' ')
                        .next()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(STARTUP_LIMIT)
            .unwrap_or_else(|_| panic!("rgate did not start; log:\n{}", log.lock().unwrap()));
        let gw = Gateway {
            dir,
            binary,
            config,
            pid_file,
            addr,
            first: child,
            log,
        };
        gw.wait_for(STARTUP_LIMIT, |g| g.pid().is_some(), "pid file");
        gw
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_for(&self, limit: Duration, cond: impl Fn(&Gateway) -> bool, what: &str) {
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

    /// Sends SIGHUP to the current process and waits for the pid file to name a new one.
    fn restart(&self) -> (u32, u32) {
        let old = self.pid().expect("pid");
        signal(old, libc::SIGHUP);
        self.wait_for(
            Duration::from_secs(20),
            |g| g.pid().is_some_and(|p| p != old),
            "a new pid",
        );
        (old, self.pid().unwrap())
    }
}

/// Spawns a binary this process has just written. Another test thread forking at the same
/// moment briefly holds the file open for writing, which makes exec fail with ETXTBSY.
fn spawn_fresh_binary(cmd: &mut Command) -> Child {
    for _ in 0..50 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                thread::sleep(Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("the copied binary stayed busy for a second");
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.first.kill();
        let _ = self.first.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we started; at worst ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Whether a process has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

// ----- a raw HTTP/1.1 client -----

struct Response {
    status: u16,
    body: String,
    close: bool,
}

fn send(conn: &mut TcpStream, request: &[u8]) -> Result<Response, String> {
    conn.write_all(request).map_err(|e| format!("write: {e}"))?;
    read_response(conn)
}

fn read_response(conn: &mut TcpStream) -> Result<Response, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or("no content-length")?;
    let close = head.lines().any(|l| l == "connection: close");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) => return Err("closed inside the body".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read body: {e}")),
        }
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        close,
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let conn =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    Ok(conn)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: rgate\r\n\r\n").into_bytes()
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
            Ok(r) if r.status == 200 && r.body == format!("{path} 0") => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            Ok(r) => {
                self.fail(format!("{path}: status {} body {:?}", r.status, r.body));
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
        match tally.check(&path, send(c, &get(&path))) {
            Some(r) if !r.close => {}
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
            send(
                &mut c,
                format!("GET {path} HTTP/1.1\r\nHost: rgate\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
        });
        tally.check(&path, result);
    }
}

fn stats_total(addr: SocketAddr) -> Option<u64> {
    let mut c = connect(addr).ok()?;
    let r = send(&mut c, &get("/stats")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["requests_count"]["total"].as_u64()
}

#[test]
fn ten_restarts_under_load_lose_nothing() {
    let backend = start_backend();
    let gw = Gateway::start("load", backend, &[]);
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
    let mut pids = vec![gw.pid().unwrap()];
    for _ in 0..10 {
        thread::sleep(Duration::from_millis(300));
        let (old, new) = gw.restart();
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
        while !exited(pid) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} did not exit; log:\n{}",
                gw.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
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
    let backend = start_backend();
    let gw = Gateway::start("inflight", backend, &[]);
    let addr = gw.addr;
    let slow = thread::spawn(move || {
        let mut c = connect(addr)?;
        send(&mut c, &get("/api/slow/3000"))
    });
    const UPLOAD: u64 = 200 * 1024 * 1024;
    let upload = thread::spawn(move || {
        let mut c = connect(addr)?;
        let head =
            format!("POST /api/upload HTTP/1.1\r\nHost: rgate\r\nContent-Length: {UPLOAD}\r\n\r\n");
        c.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let chunk = vec![b'x'; 1024 * 1024];
        for i in 0..UPLOAD / chunk.len() as u64 {
            c.write_all(&chunk)
                .map_err(|e| format!("upload write {i}: {e}"))?;
            if i % 16 == 0 {
                thread::sleep(Duration::from_millis(100));
            }
        }
        read_response(&mut c)
    });
    thread::sleep(Duration::from_millis(500));
    gw.restart();
    let slow = slow.join().unwrap().expect("slow response");
    assert_eq!((slow.status, slow.body.as_str()), (200, "/api/slow/3000 0"));
    let upload = upload.join().unwrap().expect("upload");
    assert_eq!(
        (upload.status, upload.body),
        (200, format!("/api/upload {UPLOAD}"))
    );
}

#[test]
fn a_successor_with_a_bad_config_leaves_the_old_process_serving() {
    let backend = start_backend();
    let gw = Gateway::start("badconfig", backend, &[]);
    let pid = gw.pid().unwrap();
    std::fs::write(
        &gw.config,
        "routes:\n  - path_prefix: nope\n    backend: app\n",
    )
    .unwrap();
    signal(pid, libc::SIGHUP);
    gw.wait_for(
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
    assert_eq!(gw.pid(), Some(pid));
    assert!(!exited(pid));
    let mut c = connect(gw.addr).unwrap();
    let r = send(&mut c, &get("/api/still")).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "/api/still 0"));
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
    let backend = start_backend();
    let gw = Gateway::start("hang", backend, &["--upgrade-timeout", "2"]);
    let pid = gw.pid().unwrap();
    replace_binary(
        &gw,
        b"#!/bin/sh\necho 'starting slowly' >&2\nexec sleep 60\n",
    );
    let started = Instant::now();
    signal(pid, libc::SIGHUP);
    gw.wait_for(
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
    assert_eq!(gw.pid(), Some(pid));
    let mut c = connect(gw.addr).unwrap();
    let r = send(&mut c, &get("/api/after-hang")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_binary_replaced_on_disk_is_the_one_the_successor_runs() {
    let backend = start_backend();
    let gw = Gateway::start("replace", backend, &[]);
    let old_inode = inode(&gw.binary);
    replace_binary(&gw, &std::fs::read(env!("CARGO_BIN_EXE_rgate")).unwrap());
    assert_ne!(inode(&gw.binary), old_inode);
    let (old, new) = gw.restart();
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
    assert_eq!(send(&mut c, &get("/api/new-binary")).unwrap().status, 200);
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
    let backend = start_backend();
    let dir = temp_dir("systemd");
    let config = dir.join("config.yml");
    std::fs::write(&config, config_text(backend)).unwrap();
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
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP_LIMIT;
    let mut log = String::new();
    while !log.contains("ready (pid") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => panic!("rgate did not start on the passed sockets; log:\n{log}"),
        }
    }
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
            let r = send(&mut c, &get(&path)).unwrap();
            assert_eq!((r.status, r.body), (200, format!("{path} 0")));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
