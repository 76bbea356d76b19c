//! The suite's one fake Docker daemon: a small std-threads HTTP/1.1 server on a unix socket
//! in a temp dir (given to rgate as `DOCKER_HOST=unix://…`). It answers only what discovery
//! asks: `/version`, `/v1.xx/info` (only once a test set it, `set_info`: 404 before, as a
//! socket proxy that forbids it would answer), `/v1.xx/containers/json`, `/v1.xx/containers/{id}/json` (modelled on real
//! Docker output: the inspect answer is the fixture `src/discovery/fixtures/inspect_published.json`
//! with the id, name, labels and published port changed) and `/v1.xx/events`, which it holds
//! open, chunked, sending only the events a test sends (`send_event`).
//!
//! A test drives it: `go_down` closes every connection (the event stream breaks) and removes
//! the socket (connecting fails); `come_back` serves again, with a new state and no event about
//! the change; `set_failing` answers every request 500 (a daemon that is up but unusable);
//! `start_down` begins with nothing listening. Every request is recorded, with when it came.
//! Not for: real Docker (tests/docker.rs), anything but GET.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::{temp_dir, TempDir};

const INSPECT_FIXTURE: &str = include_str!("../../src/discovery/fixtures/inspect_published.json");
/// The longest the fake daemon lives: a safety bound on its accept loop.
const FAKE_LIFETIME: Duration = Duration::from_secs(120);

/// One running container of the fake daemon, published on 127.0.0.1:`port`.
#[derive(Clone)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub port: u16,
    pub labels: serde_json::Value,
}

impl FakeContainer {
    /// A running container `name` with id `n` repeated, published on 127.0.0.1:`port`,
    /// labelled `app_name=<app>`.
    pub fn new(n: u8, name: &str, port: u16, app: &str) -> FakeContainer {
        FakeContainer {
            id: format!("{n:02x}").repeat(32),
            name: name.to_string(),
            port,
            labels: serde_json::json!({ "app_name": app }),
        }
    }

    /// The `GET /containers/json` entry, as Docker 29 writes it.
    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": "rgate-demo-backend:dev",
            "ImageID": "sha256:a34efe9d9698d6aa6e9ff5af8c45a2f09f7877958c51825250c5b8b796309e32",
            "Command": "/demo-backend",
            "Created": 1_700_000_000,
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": self.port, "Type": "tcp"}],
            "Labels": self.labels,
            "State": "running",
            "Status": "Up 2 seconds",
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"Networks": {"bridge": {
                "NetworkID": "86d352388d787e0ee84cc13c1aba37c2ad3bed82daa734e983c0659a8b31b19b",
                "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2", "IPPrefixLen": 16,
                "MacAddress": "02:42:ac:11:00:02"
            }}},
            "Mounts": []
        })
    }

    /// The `GET /containers/{id}/json` answer: the real fixture, made this container.
    fn inspect(&self) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(INSPECT_FIXTURE).unwrap();
        v["Id"] = self.id.clone().into();
        v["Name"] = format!("/{}", self.name).into();
        v["Config"]["Hostname"] = self.id[..12].into();
        v["Config"]["Labels"] = self.labels.clone();
        v["NetworkSettings"]["Ports"] = serde_json::json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": self.port.to_string()}]});
        v
    }
}

struct Shared {
    /// The containers the daemon reports.
    containers: Mutex<Vec<FakeContainer>>,
    /// Listening, or `None` while "down".
    listener: Mutex<Option<UnixListener>>,
    /// Every open connection (a clone), so `go_down` can close them all.
    open: Mutex<Vec<UnixStream>>,
    /// The open event streams (clones), for `send_event`.
    events: Mutex<Vec<UnixStream>>,
    /// Request lines received, with when.
    requests: Mutex<Vec<(Instant, String)>>,
    /// Answer every request 500.
    failing: AtomicBool,
    /// The `/info` answer, once set.
    info: Mutex<Option<serde_json::Value>>,
    stop: AtomicBool,
}

/// A fake Docker daemon on `<temp dir>/docker.sock`.
pub struct FakeDocker {
    socket: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl FakeDocker {
    /// A daemon serving `containers`.
    pub fn start(containers: Vec<FakeContainer>) -> FakeDocker {
        let fake = FakeDocker::start_down();
        fake.come_back(containers);
        fake
    }

    /// A daemon not listening yet (its socket does not exist): `come_back` starts it.
    pub fn start_down() -> FakeDocker {
        let dir = temp_dir("fake-docker");
        let socket = dir.join("docker.sock");
        let shared = Arc::new(Shared {
            containers: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            open: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
            info: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || accept_loop(&s));
        FakeDocker {
            socket,
            shared,
            accept: Some(accept),
            _dir: dir,
        }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The daemon goes away: every connection closes (the event stream breaks), and nothing
    /// listens (connecting fails) until `come_back`.
    pub fn go_down(&self) {
        *self.shared.listener.lock().unwrap() = None;
        let _ = std::fs::remove_file(&self.socket);
        self.shared.events.lock().unwrap().clear();
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// The daemon listens (again), reporting `containers`, and sends no event about them.
    pub fn come_back(&self, containers: Vec<FakeContainer>) {
        *self.shared.containers.lock().unwrap() = containers;
        *self.shared.listener.lock().unwrap() = Some(bind(&self.socket));
    }

    /// What `/info` answers from now on.
    pub fn set_info(&self, info: serde_json::Value) {
        *self.shared.info.lock().unwrap() = Some(info);
    }

    /// Whether every request is answered 500 (a daemon that answers but cannot serve).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Sends a container event (`action`, e.g. `kill`, with `attributes` besides the labels)
    /// about `c` on every open event stream; how many streams it went to.
    pub fn send_event(
        &self,
        c: &FakeContainer,
        action: &str,
        attributes: serde_json::Value,
    ) -> usize {
        let mut attrs = c.labels.clone();
        attrs["name"] = c.name.clone().into();
        attrs["image"] = "rgate-demo-backend:dev".into();
        if let (Some(a), Some(extra)) = (attrs.as_object_mut(), attributes.as_object()) {
            a.extend(extra.clone());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let event = serde_json::json!({
            "status": action, "id": c.id, "from": "rgate-demo-backend:dev",
            "Type": "container", "Action": action,
            "Actor": {"ID": c.id, "Attributes": attrs},
            "scope": "local", "time": now.as_secs(), "timeNano": now.as_nanos() as u64,
        })
        .to_string()
            + "\n";
        let mut sent = 0;
        let mut streams = self.shared.events.lock().unwrap();
        streams.retain_mut(|s| {
            let ok = write!(s, "{:x}\r\n{event}\r\n", event.len()).is_ok() && s.flush().is_ok();
            sent += usize::from(ok);
            ok
        });
        sent
    }

    /// Event streams open now.
    pub fn event_streams(&self) -> usize {
        self.shared.events.lock().unwrap().len()
    }

    /// Request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// When each request whose line contains `part` came.
    pub fn request_times(&self, part: &str) -> Vec<Instant> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.contains(part))
            .map(|(t, _)| *t)
            .collect()
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn bind(socket: &Path) -> UnixListener {
    let l = UnixListener::bind(socket).expect("bind the fake Docker socket");
    l.set_nonblocking(true).unwrap();
    l
}

/// Accepts until stopped (or `FAKE_LIFETIME`), one thread per connection.
fn accept_loop(shared: &Arc<Shared>) {
    let deadline = Instant::now() + FAKE_LIFETIME;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let accepted = match shared.listener.lock().unwrap().as_ref() {
            Some(l) => l.accept().ok(),
            None => None,
        };
        let Some((stream, _)) = accepted else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        shared
            .open
            .lock()
            .unwrap()
            .push(stream.try_clone().unwrap());
        let s = shared.clone();
        thread::spawn(move || serve(stream, &s));
    }
}

/// Serves the requests of one keep-alive connection, until it closes or asks for events.
fn serve(stream: UnixStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    // Bounded: hyper sends a handful of requests per connection at most here.
    for _ in 0..1000 {
        let mut request_line = String::new();
        if !matches!(reader.read_line(&mut request_line), Ok(n) if n > 0) {
            return;
        }
        // GET only: no body to read.
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 && !line.trim().is_empty() => {}
                Ok(n) if n > 0 => break,
                _ => return,
            }
        }
        shared
            .requests
            .lock()
            .unwrap()
            .push((Instant::now(), request_line.trim().to_string()));
        let target = request_line.split(' ').nth(1).unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        // `/v1.52/containers/json` → `/containers/json`; `/version` stays.
        let endpoint = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        const HEAD: &str = "Api-Version: 1.52\r\nContent-Type: application/json\r\nServer: Docker/29.0.0 (linux)\r\nOstype: linux";
        if endpoint == "/events" && !shared.failing.load(Ordering::SeqCst) {
            // Headers now; events follow as chunks (`send_event`). The connection stays open
            // until `go_down` or the end.
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\n{HEAD}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let _ = out.flush();
            shared.events.lock().unwrap().push(out);
            return;
        }
        let (status, body) = if shared.failing.load(Ordering::SeqCst) {
            (
                "500 Internal Server Error",
                r#"{"message":"the daemon is not ready"}"#.to_string(),
            )
        } else if let (Some(info), "/info") = (&*shared.info.lock().unwrap(), endpoint) {
            ("200 OK", info.to_string())
        } else {
            answer(endpoint, &shared.containers.lock().unwrap())
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\n{HEAD}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(endpoint: &str, containers: &[FakeContainer]) -> (&'static str, String) {
    if endpoint == "/version" {
        let v = serde_json::json!({
            "Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44",
            "Os": "linux", "Arch": "amd64", "KernelVersion": "6.8.0"
        });
        return ("200 OK", v.to_string());
    }
    if endpoint == "/containers/json" {
        let list: Vec<_> = containers.iter().map(FakeContainer::summary).collect();
        return ("200 OK", serde_json::Value::from(list).to_string());
    }
    if let Some(id) = endpoint
        .strip_prefix("/containers/")
        .and_then(|r| r.strip_suffix("/json"))
    {
        return match containers.iter().find(|c| c.id == id || c.name == id) {
            Some(c) => ("200 OK", c.inspect().to_string()),
            None => (
                "404 Not Found",
                serde_json::json!({ "message": format!("No such container: {id}") }).to_string(),
            ),
        };
    }
    (
        "404 Not Found",
        r#"{"message":"page not found"}"#.to_string(),
    )
}
