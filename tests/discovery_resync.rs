//! Docker discovery across a daemon restart, against a fake Docker daemon: when the event
//! stream breaks and the daemon is gone for a while, rgate keeps serving the last known
//! backends, reconnects with backoff and resynchronises from a full container list — even
//! though no event ever tells it what changed while it was away.
//!
//! `FakeDocker` is a small std-threads HTTP/1.1 server on a unix socket in a temp dir (given
//! to rgate as `DOCKER_HOST=unix://…`). It answers only what discovery asks: `/version`,
//! `/v1.xx/containers/json`, `/v1.xx/containers/{id}/json` (modelled on real Docker output:
//! the inspect answer is the fixture `src/discovery/fixtures/inspect_published.json` with the
//! id, name, labels and published port changed) and `/v1.xx/events`, which it holds open,
//! chunked, sending nothing. `restart` closes every connection (so the event stream breaks),
//! removes the socket for a while (connecting fails), then serves a new state.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{get_once, temp_dir, Backend, Gateway};

const INSPECT_FIXTURE: &str = include_str!("../src/discovery/fixtures/inspect_published.json");
/// The longest the fake daemon lives: a safety bound on its accept loop.
const FAKE_LIFETIME: Duration = Duration::from_secs(120);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One running container of the fake daemon, published on 127.0.0.1:`port`.
#[derive(Clone)]
struct FakeContainer {
    id: String,
    name: String,
    port: u16,
}

impl FakeContainer {
    fn new(n: u8, name: &str, port: u16) -> FakeContainer {
        FakeContainer {
            id: format!("{n:02x}").repeat(32),
            name: name.to_string(),
            port,
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
            "Labels": {"app_name": "resync"},
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
        v["Config"]["Labels"] = serde_json::json!({"app_name": "resync"});
        v["NetworkSettings"]["Ports"] = serde_json::json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": self.port.to_string()}]});
        v
    }
}

struct Shared {
    /// The containers the daemon reports.
    containers: Mutex<Vec<FakeContainer>>,
    /// Listening, or `None` while "restarting".
    listener: Mutex<Option<UnixListener>>,
    /// Every open connection (a clone), so a restart can close them all.
    open: Mutex<Vec<UnixStream>>,
    /// Request lines received, for failure messages.
    requests: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A fake Docker daemon on `<temp dir>/docker.sock`.
struct FakeDocker {
    dir: PathBuf,
    socket: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeDocker {
    fn start(containers: Vec<FakeContainer>) -> FakeDocker {
        let dir = temp_dir("fake-docker");
        let socket = dir.join("docker.sock");
        let shared = Arc::new(Shared {
            containers: Mutex::new(containers),
            listener: Mutex::new(Some(bind(&socket))),
            open: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || accept_loop(&s));
        FakeDocker {
            dir,
            socket,
            shared,
            accept: Some(accept),
        }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A daemon restart: every connection closes (the event stream breaks), then for `down`
    /// nothing listens (connecting fails); it comes back reporting `containers`, and sends
    /// no event about the change.
    fn restart(&self, down: Duration, containers: Vec<FakeContainer>) {
        *self.shared.listener.lock().unwrap() = None;
        let _ = std::fs::remove_file(&self.socket);
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        thread::sleep(down);
        *self.shared.containers.lock().unwrap() = containers;
        *self.shared.listener.lock().unwrap() = Some(bind(&self.socket));
    }

    fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
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
        let _ = std::fs::remove_dir_all(&self.dir);
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
            .push(request_line.trim().to_string());
        let target = request_line.split(' ').nth(1).unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        // `/v1.52/containers/json` → `/containers/json`; `/version` stays.
        let endpoint = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        const HEAD: &str = "Api-Version: 1.52\r\nContent-Type: application/json\r\nServer: Docker/29.0.0 (linux)\r\nOstype: linux";
        if endpoint == "/events" {
            // Headers now; events would follow as chunks. The connection stays open (its
            // clone is in `open`) until a restart closes it.
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\n{HEAD}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let _ = out.flush();
            return;
        }
        let (status, body) = answer(endpoint, &shared.containers.lock().unwrap());
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

/// Which backend answered `GET /resync` through rgate, or why none did.
fn answered_by(gw: &Gateway) -> Result<String, String> {
    let r = get_once(gw.addr, "/resync", REQUEST_TIMEOUT)?;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    Ok(r.echo().backend().to_string())
}

#[test]
fn a_daemon_restart_keeps_the_last_table_then_resynchronises_from_a_full_list() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let fake = FakeDocker::start(vec![FakeContainer::new(0xa1, "resync-a", a.addr.port())]);
    let config = "routes:\n  - path_prefix: /\n    backend: resync\n\
                  backends:\n  - name: resync\n    match_labels: [app_name=resync]\n";
    let gw = Gateway::options(config)
        .env(&[("DOCKER_HOST", &fake.docker_host())])
        .start();
    let context =
        |gw: &Gateway| format!("fake daemon saw {:?}\nlog:\n{}", fake.requests(), gw.log());

    // Startup discovery: the one container, at A.
    for _ in 0..5 {
        assert_eq!(answered_by(&gw).as_deref(), Ok("A"), "{}", context(&gw));
    }
    // Let rgate subscribe to events, so the restart breaks a live stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.requests().iter().any(|r| r.contains("/events")) {
        assert!(
            Instant::now() < deadline,
            "no /events request; {}",
            context(&gw)
        );
        thread::sleep(Duration::from_millis(20));
    }

    // The daemon restarts; while it is away, the last known table keeps serving A.
    let down = Duration::from_millis(1500);
    let new_state = vec![FakeContainer::new(0xb2, "resync-b", b.addr.port())];
    let mut served_while_away = 0;
    thread::scope(|scope| {
        let restart = scope.spawn(|| fake.restart(down, new_state));
        let away_until = Instant::now() + down;
        while Instant::now() + Duration::from_millis(100) < away_until {
            assert_eq!(
                answered_by(&gw).as_deref(),
                Ok("A"),
                "while the daemon is away; {}",
                context(&gw)
            );
            served_while_away += 1;
            thread::sleep(Duration::from_millis(50));
        }
        restart.join().unwrap();
    });
    assert!(served_while_away > 0);

    // Back, with container B only and no event about it: rgate must re-list and find B.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match answered_by(&gw) {
            Ok(name) if name == "B" => break,
            Ok(name) => assert_eq!(name, "A", "{}", context(&gw)),
            // A moment without instances is not expected, but allowed: the list is the truth.
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "still not answered by B 10 s after the daemon came back; {}",
            context(&gw)
        );
        thread::sleep(Duration::from_millis(50));
    }
    // And stays there: A's container is gone from the table.
    for _ in 0..5 {
        assert_eq!(answered_by(&gw).as_deref(), Ok("B"), "{}", context(&gw));
    }

    let log = gw.log();
    assert!(
        log.contains("docker: lost Docker at unix://") && log.contains("reconnecting"),
        "the log does not mention losing the daemon:\n{log}"
    );
    // While away, the retries say what really happens: the last table serves, not 503.
    assert!(
        !log.contains("answer 503"),
        "the log claims 503s while the last table was serving:\n{log}"
    );
    assert!(
        log.matches("docker: connected to unix://").count() >= 2,
        "expected the first connection and a reconnection:\n{log}"
    );
    let lists = fake
        .requests()
        .iter()
        .filter(|r| {
            r.split(['?', ' '])
                .nth(1)
                .is_some_and(|p| p.ends_with("/containers/json"))
        })
        .count();
    assert!(
        lists >= 2,
        "one full list at startup, one after the restart: {:?}",
        fake.requests()
    );
}
