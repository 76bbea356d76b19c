//! What only the statistics tests need on top of the common harness: rgate started on a
//! database of the test's choosing (so a second rgate can start on the first one's), stopped
//! by SIGTERM with its exit status, `/stats` read as JSON, and numbers picked out of it.
//! Every wait is bounded in time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;

use serde_json::Value;

use crate::common::{limits, Gateway, Launch, ProcessGroup, Response, TempDir};

/// rgate with `config` (YAML) written into `dir`, on the database `db`.
fn launch(dir: &Path, config: &str, db: &Path) -> Launch {
    Gateway::options(config)
        .in_dir(dir)
        .db(db)
        .args(&["--drain-timeout", "5"])
}

/// A running rgate; killed (SIGKILL) when dropped, `dir` kept for the next one.
pub fn start(dir: &Path, config: &str, db: &Path) -> Gateway {
    launch(dir, config, db).start()
}

/// Spawns rgate without waiting for it to listen (for a start that must fail).
pub fn spawn(dir: &Path, config: &str, db: &Path) -> (ProcessGroup, Option<TempDir>) {
    launch(dir, config, db).spawn()
}

/// SIGTERM, then wait (bounded) for the exit status.
pub fn stop(mut rgate: Gateway) -> ExitStatus {
    rgate.signal(libc::SIGTERM);
    rgate
        .wait_exit(limits::EXIT)
        .unwrap_or_else(|| panic!("rgate did not exit in time"))
}

/// Waits up to `limits::EXIT` for a process to exit; fails otherwise (the group is killed
/// when dropped).
pub fn wait_exit(process: &mut ProcessGroup) -> ExitStatus {
    process
        .wait_exit(limits::EXIT)
        .unwrap_or_else(|| panic!("rgate did not exit in time"))
}

/// One request on a new connection (`Connection: close`); the response read to the end.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    crate::common::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `/stats` as JSON.
pub fn stats(rgate: &Gateway) -> Value {
    let r = get(rgate.addr, "/stats");
    assert_eq!(r.status, 200, "/stats: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/stats JSON: {e}: {}", r.text()))
}

/// The value at a dotted `path` ("routes./ok.requests_count.total").
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |cur, part| &cur[part])
}

/// The count at a dotted `path`.
pub fn n(v: &Value, path: &str) -> u64 {
    let cur = at(v, path);
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a count: {cur}"))
}

/// The number at a dotted `path` ("latency_ms.p50").
pub fn ms(v: &Value, path: &str) -> f64 {
    let cur = at(v, path);
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}
