//! What the statistics tests need: the real rgate binary started on port 0 with its own
//! database, raw HTTP/1.1 requests on 127.0.0.1, and small backend servers (one that
//! answers after sleeping the milliseconds named in the path, one that answers garbage).
//! Every wait is bounded in time; every accept loop ends after `BACKEND_LIFETIME`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const BACKEND_LIFETIME: Duration = Duration::from_secs(120);

/// A fresh directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rgate-stats-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running rgate; killed (SIGKILL) when dropped.
pub struct Rgate {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
}

/// Spawns rgate with `config` (YAML) in `dir`, on the database `db`.
pub fn spawn(dir: &Path, config: &str, db: &Path) -> Child {
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rgate"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--cores", "2"])
        .arg("--config")
        .arg(&config_path)
        .arg("--db")
        .arg(db)
        .arg("--pid-file")
        .arg(dir.join("rgate.pid"))
        .args(["--drain-timeout", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rgate")
}

impl Rgate {
    pub fn start(dir: &Path, config: &str, db: &Path) -> Rgate {
        let mut child = spawn(dir, config, db);
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  rgate: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rgate did not say where it listens");
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return Rgate {
                    child: Some(child),
                    addr,
                    stderr: rx,
                };
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        wait_exit(self.child.as_mut().unwrap())
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    pub fn stats(&self) -> serde_json::Value {
        let r = self.get("/stats");
        assert_eq!(r.status, 200, "/stats: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/stats JSON: {e}: {}", r.body))
    }
}

impl Drop for Rgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits up to `EXIT_TIMEOUT` for `child` to exit; kills it and fails otherwise.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("rgate did not exit in time");
}

pub struct Response {
    pub status: u16,
    pub body: String,
}

/// One request on a new connection (`Connection: close`); the response read to the end.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head for {path}: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    Response {
        status,
        body: body.to_string(),
    }
}

/// How a test backend answers a request for `path`.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// 200 "ok", after sleeping the milliseconds in a `/sleep/<ms>` path segment if any.
    Ok,
    /// Bytes that are not an HTTP response, then close.
    Garbage,
}

/// Starts a backend on 127.0.0.1; it accepts for `BACKEND_LIFETIME`, one thread per
/// connection, one request per connection.
pub fn backend(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + BACKEND_LIFETIME;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || answer(s, behaviour));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    addr
}

fn answer(mut s: TcpStream, behaviour: Behaviour) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
    match behaviour {
        Behaviour::Ok => {
            let mut parts = path.split('/');
            while let Some(p) = parts.next() {
                if p == "sleep" {
                    if let Some(ms) = parts.next().and_then(|m| m.parse().ok()) {
                        std::thread::sleep(Duration::from_millis(ms));
                    }
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
        Behaviour::Garbage => {
            let _ = s.write_all(b"this is not HTTP at all\r\n\r\n");
        }
    }
}

/// An address with nothing listening on it (connecting is refused).
pub fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
