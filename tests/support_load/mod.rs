//! Traffic during restarts, for the supervisor tests (a process tree, or the rgate image in
//! Docker): keep-alive clients sending requests back to back (reconnecting when told
//! `Connection: close`) and a client opening a new connection per request, each request on
//! its own path so a client can tell its own answer, whole. Every failure is counted and the
//! first are kept; `/stats` totals are read to compare with what was sent.
//!
//! Bounded: each client stops when told, or after `CLIENT_LIMIT`; each exchange has a timeout.
//! Used by tests/restart.rs, tests/supervisor.rs and tests/docker.rs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use crate::common::get_request as get;
use crate::common::{limits, poll, wait_until, Client, Response};

/// The longest a client runs, told to stop or not.
const CLIENT_LIMIT: Duration = Duration::from_secs(180);
/// Failures kept for the message.
const KEPT_FAILURES: usize = 20;

/// Whether a response is the right answer to a request for this path.
pub type Answers = fn(&Response, &str) -> bool;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn check(
        &self,
        path: &str,
        result: Result<Response, String>,
        answers: Answers,
    ) -> Option<Response> {
        match result {
            Ok(r) if answers(&r, path) => {
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
        if f.len() < KEPT_FAILURES {
            f.push(what);
        }
    }
}

/// What the clients saw.
#[derive(Debug)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    pub failures: Vec<String>,
}

/// Clients running against one address until `finish`.
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// `keep_alive` keep-alive clients and one new-connection client, on paths under `prefix`.
    pub fn start(
        addr: SocketAddr,
        keep_alive: usize,
        prefix: &'static str,
        answers: Answers,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut clients = Vec::new();
        for id in 0..keep_alive {
            let (stop, tally) = (stop.clone(), tally.clone());
            clients.push(thread::spawn(move || {
                keep_alive_client(addr, prefix, id, &stop, &tally, answers)
            }));
        }
        let (stop2, tally2) = (stop.clone(), tally.clone());
        clients.push(thread::spawn(move || {
            new_connection_client(addr, prefix, &stop2, &tally2, answers)
        }));
        Load {
            stop,
            tally,
            clients,
        }
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.tally.ok.load(Ordering::Relaxed)
    }

    /// Requests failed so far.
    #[allow(dead_code)] // not every test binary uses it
    pub fn failed(&self) -> u64 {
        self.tally.failed.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests were answered than now: traffic between two events of a
    /// test, instead of a pause.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait_answered(&self, n: u64) {
        let from = self.answered();
        wait_until(limits::CONDITION, format!("{n} more answers"), || {
            self.answered() >= from + n
        });
    }

    /// Stops the clients and says what they saw.
    pub fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        Outcome {
            ok: self.tally.ok.load(Ordering::Relaxed),
            failed: self.tally.failed.load(Ordering::Relaxed),
            failures: self.tally.failures.lock().unwrap().clone(),
        }
    }
}

pub fn connect(addr: SocketAddr) -> Result<Client, String> {
    Client::try_connect(addr, limits::IO).map_err(|e| format!("connect: {e}"))
}

fn keep_alive_client(
    addr: SocketAddr,
    prefix: &str,
    id: usize,
    stop: &AtomicBool,
    tally: &Tally,
    answers: Answers,
) {
    let mut conn = None;
    let mut n = 0u64;
    let deadline = Instant::now() + CLIENT_LIMIT;
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
        let path = format!("{prefix}/ka/{id}/{n}");
        match tally.check(&path, c.try_exchange(&get(&path)), answers) {
            Some(r) if !r.closes_connection() => {}
            _ => conn = None,
        }
    }
}

fn new_connection_client(
    addr: SocketAddr,
    prefix: &str,
    stop: &AtomicBool,
    tally: &Tally,
    answers: Answers,
) {
    let mut n = 0u64;
    let deadline = Instant::now() + CLIENT_LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        n += 1;
        let path = format!("{prefix}/new/{n}");
        let result = connect(addr).and_then(|mut c| {
            c.try_exchange(
                format!("GET {path} HTTP/1.1\r\nHost: rgate\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
        });
        tally.check(&path, result, answers);
    }
}

/// `requests_count.total` from `/stats`.
pub fn stats_total(addr: SocketAddr) -> Result<u64, String> {
    let r = crate::common::get(addr, "/stats")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    v["requests_count"]["total"]
        .as_u64()
        .ok_or_else(|| format!("no total in {v}"))
}

/// Polls `/stats` (up to `limit`) until its total is `want`; the last total seen.
pub fn wait_stats_total(addr: SocketAddr, want: u64, limit: Duration) -> Option<u64> {
    let mut last = None;
    let _ = poll(limit, || {
        let total = stats_total(addr)?;
        last = Some(total);
        if total == want {
            Ok(())
        } else {
            Err(format!("total {total}"))
        }
    });
    last
}
