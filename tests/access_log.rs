//! The access log and request IDs on the wire: what each line says of a request (json and
//! combined), `X-Request-Id` to the backend and back, USR1 reopening a rotated file, a log
//! that cannot be opened (exit 2), a failing disk (logged once, counted, proxying goes on),
//! and a writer that falls behind (lines dropped and counted, requests never wait).
//! A restart losing or duplicating no line is in `tests/restart.rs`.

mod common;

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{config, dead_port, limits, temp_dir, wait_until, Backend, Gateway};

/// A gateway with `/api` → `b` and `/down` → a port where nothing listens.
fn gateway(b: &Backend, extra: &str, args: &[&str]) -> Gateway {
    let down = dead_port();
    let yaml = config(
        &[("/api", "app"), ("/down", "down")],
        &[("app", &[b.addr]), ("down", &[down.addr])],
        extra,
    );
    Gateway::options(&yaml).args(args).start()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the log at `path` has `n` lines (it is written within a fraction of a second).
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    wait_until(
        limits::CONDITION,
        format!("{n} lines in {}", path.display()),
        || lines(path).len() >= n,
    );
    let all = lines(path);
    assert_eq!(all.len(), n, "{all:#?}");
    all
}

/// The bytes of a `200 OK` response as sent (the test backend writes `Name: value` fields).
fn raw_len(r: &common::Response) -> usize {
    let head: usize = r
        .headers
        .iter()
        .map(|(n, v)| n.len() + 2 + v.len() + 2)
        .sum();
    format!("{} {} OK\r\n", r.version, r.status).len() + head + 2 + r.body.len()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn json_lines_describe_each_request_and_carry_its_id() {
    let b = Backend::start("app");
    let dir = temp_dir("log");
    let path = dir.join("access.json");
    let gw = gateway(&b, "", &["--access-log", path.to_str().unwrap()]);

    // A proxied request with the client's own ID: the backend and the client see it.
    let mut c = gw.client();
    c.send(
        b"GET /api/one?x=1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: t/1\r\nReferer: http://r/\r\n\
X-Forwarded-For: 203.0.113.9\r\nX-Request-Id: client-id-1\r\n\r\n",
    );
    let ok = c.read_response(false);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("X-Request-Id"), Some("client-id-1"));
    let seen = ok.echo();
    let ids: Vec<_> = seen
        .headers()
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(ids, ["client-id-1"]);
    // Without one (or with an invalid one), rgate makes one, sends it on and back.
    c.send(b"GET /api/two HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: has space\r\n\r\n");
    let made = c.read_response(false);
    let made_id = made.header("X-Request-Id").unwrap().to_string();
    assert_ne!(made_id, "has space");
    assert!(made
        .echo()
        .headers()
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("x-request-id") && *v == made_id));
    // rgate's own answers: backend down (503), the default response, a bad request.
    let none = gw.get("/down/x");
    let none_id = none.gateway_error(503)["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.get("/elsewhere").status, 403);
    // rgate's own endpoints are not logged.
    assert_eq!(gw.get("/stats").status, 200);
    assert_eq!(gw.get("/metrics").status, 200);
    let bad = gw.request("GET /x HTTP/1.1\r\n\r\n");
    bad.gateway_error(400);

    // Lines of different cores come in any order: found by target.
    let all: Vec<serde_json::Value> = wait_lines(&path, 5).iter().map(|l| json(l)).collect();
    let by_target = |t: Option<&str>| {
        let found: Vec<_> = all.iter().filter(|v| v["target"].as_str() == t).collect();
        assert_eq!(found.len(), 1, "{t:?}: {all:#?}");
        found[0].clone()
    };
    let first = by_target(Some("/api/one?x=1"));
    assert_eq!(first["method"], "GET");
    assert_eq!(first["target"], "/api/one?x=1");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["host"], "gw.test");
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["x_forwarded_for"], "203.0.113.9");
    assert_eq!(first["user_agent"], "t/1");
    assert_eq!(first["referer"], "http://r/");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["route"], "/api");
    assert_eq!(first["backend"], "app");
    assert_eq!(first["instance"], b.addr.to_string());
    assert_eq!(first["request_id"], "client-id-1");
    assert_eq!(first["retries"], 0);
    assert_eq!(first["cut"], false);
    assert!(first["error"].is_null());
    assert!(first["bytes_in"].as_u64().unwrap() > 100);
    assert_eq!(
        first["bytes_out"].as_u64().unwrap(),
        raw_len(&ok) as u64,
        "bytes out: what the client got"
    );
    let duration = first["duration_ms"].as_f64().unwrap();
    let upstream = first["upstream_ms"].as_f64().unwrap();
    assert!(upstream <= duration, "{upstream} > {duration}");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));

    assert_eq!(by_target(Some("/api/two"))["request_id"], made_id.as_str());
    let none = by_target(Some("/down/x"));
    assert_eq!(none["status"], 503);
    assert_eq!(none["error"], "connect");
    assert_eq!(none["route"], "/down");
    assert_eq!(none["request_id"], none_id.as_str());
    assert!(none["upstream_status"].is_null() && none["upstream_ms"].is_null());
    let default = by_target(Some("/elsewhere"));
    assert_eq!(default["status"], 403);
    assert!(default["route"].is_null());
    let bad = by_target(None);
    assert_eq!(bad["status"], 400);
    assert_eq!(bad["error"], "client");
    assert!(bad["method"].is_null(), "the head did not parse: {bad}");
    // Every line has its own ID.
    let mut ids: Vec<_> = all.iter().map(|v| v["request_id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

#[test]
fn combined_lines_are_nginx_combined_and_usr1_reopens_a_rotated_file() {
    let b = Backend::start("app");
    let dir = temp_dir("log");
    let path = dir.join("access.log");
    let extra = format!(
        "access_log:\n  path: {}\n  format: combined\n",
        path.display()
    );
    let gw = gateway(&b, &extra, &[]);
    let r = gw.get("/api/a");
    let id = r.header("X-Request-Id").unwrap().to_string();
    let line = wait_lines(&path, 1).remove(0);
    let nginx_combined = format!(
        "127.0.0.1 - - [{}] \"GET /api/a HTTP/1.1\" 200 {} \"-\" \"-\" rt=",
        &line[15..41],
        raw_len(&r)
    );
    assert!(
        line.starts_with(&nginx_combined),
        "{line}\n{nginx_combined}"
    );
    assert!(
        line.contains(" us=200 route=\"/api\" backend=\"app\" "),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(" request_id={id} error=- retries=0 cut=0")),
        "{line}"
    );

    // logrotate: move the file away, then USR1; new lines go to a new file at the path.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    gw.get("/api/b"); // still written to the moved file (the descriptor is the same)
    wait_lines(&rotated, 2);
    gw.signal(libc::SIGUSR1);
    gw.wait_log(limits::CONDITION, "access log: reopened");
    gw.get("/api/c");
    let fresh = wait_lines(&path, 1);
    assert!(fresh[0].contains("\"GET /api/c HTTP/1.1\""), "{fresh:?}");
    assert_eq!(lines(&rotated).len(), 2);
}

#[test]
fn a_log_that_cannot_be_opened_stops_the_start_with_exit_2() {
    let dir = temp_dir("log");
    let path = dir.join("no-such-dir").join("access.log");
    let (mut process, _dir) = Gateway::options("routes: []\n")
        .args(&["--access-log", path.to_str().unwrap()])
        .spawn();
    let status = process.wait_exit(limits::EXIT).expect("rgate exits");
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    use std::io::Read as _;
    process
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

/// `/metrics` value of one sample line (`name{labels} value`), whose label set is exactly
/// `sample`'s and the `node` label every series carries (the host name).
fn metric(gw: &Gateway, sample: &str) -> Option<u64> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let node = format!("node=\"{}\"}}", hostname.trim_end());
    let sample = match sample.strip_suffix('}') {
        Some(labels) => format!("{labels},{node}"),
        None => format!("{sample}{{{node}"),
    };
    let text = gw.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&sample)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_failing_write_is_logged_once_counted_and_proxying_goes_on() {
    // /dev/full opens, and every write to it fails with ENOSPC: a full disk.
    let b = Backend::start("app");
    let gw = gateway(&b, "", &["--access-log", "/dev/full"]);
    for i in 0..20 {
        assert_eq!(gw.get(&format!("/api/{i}")).status, 200);
        if i % 5 == 4 {
            // Some batches, not one: each failed write is counted, and logged once.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let dropped = "rgate_access_log_dropped_total{reason=\"write_error\"}";
    wait_until(limits::CONDITION, "20 lines counted as dropped", || {
        metric(&gw, dropped) == Some(20)
    });
    assert_eq!(metric(&gw, "rgate_access_log_lines_total"), Some(0));
    let log = gw.log();
    assert_eq!(
        log.matches("access log: cannot write to /dev/full").count(),
        1,
        "{log}"
    );
    assert!(log.contains("No space left on device"), "{log}");
}

#[test]
fn a_writer_that_falls_behind_drops_and_counts_lines_and_requests_never_wait() {
    // A FIFO that is opened for reading and never read: the writer's first writes fill the
    // pipe and then block, as on a stalled disk. The cores go on; their queues fill; lines
    // are dropped and counted.
    let dir = temp_dir("log");
    let fifo = dir.join("stalled");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Held open (read end, non-blocking) so rgate's open for writing does not wait.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let b = Backend::start("app");
    let gw = gateway(&b, "", &["--access-log", fifo.to_str().unwrap()]);
    let dropped = "rgate_access_log_dropped_total{reason=\"queue_full\"}";
    let started = Instant::now();
    let mut c = gw.client();
    let mut sent = 0;
    // 64 queued batches of 32 KiB per core, and a 64 KiB pipe: a few thousand lines per
    // core fill them. Bounded in count and time.
    while sent < 60_000 && started.elapsed() < Duration::from_secs(60) {
        for _ in 0..500 {
            c.send(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.read_response(false).status, 200);
            sent += 1;
        }
        if metric(&gw, dropped).unwrap_or(0) > 0 {
            break;
        }
    }
    let n = metric(&gw, dropped).unwrap_or(0);
    assert!(n > 0, "nothing dropped after {sent} requests");
    // Requests are still answered at once while the writer is stuck.
    let t = Instant::now();
    for _ in 0..100 {
        c.send(b"GET /api/y HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
    }
    assert!(
        t.elapsed() < limits::IO,
        "100 requests took {:?}",
        t.elapsed()
    );
}
