//! Traffic statistics, seen from outside: the real rgate binary (2 cores) against real
//! backends on 127.0.0.1, asked through `/stats` and `/metrics`, stopped and restarted on the
//! same database, killed with SIGKILL, and started on databases it cannot use.

mod common;
#[path = "stats/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{dead_port, limits, temp_dir, wait_for, Backend, DeadPort, Gateway};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};
use serde_json::Value;
use support::{get, ms, n, spawn, start, stats, stop, wait_exit};

/// The backends of the standard config: `good` echoes, `bad` is only asked for garbage
/// (`?do=garbage`: a line that is not HTTP, then close), `dead` refuses connections.
/// They serve as long as this lives.
struct Backends {
    good: Backend,
    bad: Backend,
    dead: DeadPort,
}

impl Backends {
    fn start() -> Backends {
        Backends {
            good: Backend::start("good"),
            bad: Backend::start("bad"),
            dead: dead_port(),
        }
    }

    fn config(&self, stats: &str) -> String {
        config(
            &self.good.addr.to_string(),
            &self.dead.addr.to_string(),
            &self.bad.addr.to_string(),
            stats,
        )
    }
}

fn config(good: &str, dead: &str, bad: &str, stats: &str) -> String {
    format!(
        "routes:
  - {{path_prefix: /ok, backend: good}}
  - {{path_prefix: /dead, backend: dead}}
  - {{path_prefix: /bad, backend: bad}}
backends:
  - {{name: good, addresses: ['{good}']}}
  - {{name: dead, addresses: ['{dead}']}}
  - {{name: bad, addresses: ['{bad}']}}
default_response: {{body: nothing here, status_code: 404}}
stats: {stats}
"
    )
}

/// Sends `count` GETs of `path` from `threads` client threads, each on its own connection
/// (so both cores take some), and checks every status.
fn send(addr: SocketAddr, path: &str, count: usize, status: u16) {
    let threads = 4.min(count);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let path = path.to_string();
            std::thread::spawn(move || {
                for _ in (t..count).step_by(threads) {
                    let r = get(addr, &path);
                    assert_eq!(r.status, status, "{path}: {}", r.text());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The requests that reach the database (the per-minute history), read from the file itself.
fn db_requests(db: &Path) -> Result<i64, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    conn.query_row("SELECT coalesce(sum(requests), 0) FROM history", [], |r| {
        r.get(0)
    })
    .map_err(|e| e.to_string())
}

/// Waits until the database holds exactly `want` requests: the collector has run.
fn wait_db_requests(db: &Path, want: i64) {
    wait_for(
        limits::CONDITION,
        format!("{want} requests in {}", db.display()),
        || match db_requests(db)? {
            n if n == want => Ok(()),
            n => Err(format!("{n} requests")),
        },
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The bytes of the request `get` sends for `path`.
fn get_len(path: &str) -> u64 {
    format!("GET {path} HTTP/1.1\r\nHost: rgate.test\r\nConnection: close\r\n\r\n").len() as u64
}

/// The known mix: 12 × 200, 5 × 404 (default response), 4 × 503 (connect refused),
/// 3 × 502 (garbage from the backend).
fn send_mix(rgate: &Gateway) {
    send(rgate.addr, "/ok/x", 12, 200);
    send(rgate.addr, "/nowhere", 5, 404);
    send(rgate.addr, "/dead/y", 4, 503);
    send(rgate.addr, "/bad/z?do=garbage", 3, 502);
}

#[test]
fn exact_counts_per_route_and_backend_over_two_cores() {
    let dir = temp_dir("exact");
    // No collection during the test: every count below comes from the live counters.
    let servers = Backends::start();
    let before_start = unix_now();
    let rgate = start(
        &dir,
        &servers.config("{interval_ms: 600000}"),
        &dir.join("s.db"),
    );
    send_mix(&rgate);
    // rgate's own endpoints are not proxied traffic.
    for _ in 0..3 {
        assert_eq!(get(rgate.addr, "/metrics").status, 200);
        stats(&rgate);
    }
    let s = stats(&rgate);
    assert_eq!(n(&s, "requests_count.total"), 24, "{s:#}");
    assert_eq!(n(&s, "requests_count.success"), 17);
    assert_eq!(n(&s, "requests_count.error"), 7);
    assert_eq!(n(&s, "requests_count.aborted"), 0);
    for (code, count) in [("200", 12), ("404", 5), ("503", 4), ("502", 3)] {
        assert_eq!(n(&s, &format!("status_codes.{code}")), count, "{code}");
    }
    assert_eq!(s["status_codes"].as_object().unwrap().len(), 4);
    for (class, count) in [("1xx", 0), ("2xx", 12), ("3xx", 0), ("4xx", 5), ("5xx", 7)] {
        assert_eq!(n(&s, &format!("status_classes.{class}")), count, "{class}");
    }
    for (kind, count) in [
        ("connect", 4),
        ("invalid_response", 3),
        ("no_instance", 0),
        ("timeout", 0),
        ("client", 0),
    ] {
        assert_eq!(n(&s, &format!("errors.{kind}")), count, "{kind}");
    }
    // Every request byte the clients sent, exactly; responses are longer than their heads.
    let sent_in = 12 * get_len("/ok/x")
        + 5 * get_len("/nowhere")
        + 4 * get_len("/dead/y")
        + 3 * get_len("/bad/z?do=garbage");
    assert_eq!(n(&s, "bytes.in"), sent_in, "{s}");
    assert!(
        n(&s, "bytes.out") > 24 * "HTTP/1.1 200 OK\r\n\r\n".len() as u64,
        "{s}"
    );
    let (p50, max) = (ms(&s, "latency_ms.p50"), ms(&s, "latency_ms.max"));
    assert!(0.0 < p50 && p50 <= max, "p50 {p50}, max {max}");
    let test_took_ms = (unix_now() - before_start) * 1000.0;
    assert!(
        max < test_took_ms,
        "max {max} ms, but the test ran {test_took_ms} ms"
    );

    let routes = &s["routes"];
    assert_eq!(n(routes, "/ok.requests_count.total"), 12);
    assert_eq!(n(routes, "/ok.requests_count.error"), 0);
    assert_eq!(n(routes, "/dead.requests_count.error"), 4);
    assert_eq!(n(routes, "/dead.errors.connect"), 4);
    assert_eq!(n(routes, "/bad.status_codes.502"), 3);
    assert_eq!(n(routes, "/bad.errors.invalid_response"), 3);
    // The default response belongs to no route: routes add up to total − 404s.
    let route_bytes: u64 = ["/ok", "/dead", "/bad"]
        .iter()
        .map(|r| n(&routes[*r], "bytes.out"))
        .sum();
    assert!(route_bytes < n(&s, "bytes.out"));

    let backends = &s["backends"];
    assert_eq!(n(backends, "good.requests_count.total"), 12);
    assert_eq!(n(backends, "dead.status_codes.503"), 4);
    assert_eq!(n(backends, "bad.requests_count.error"), 3);
    let good = &backends["good"]["instances"];
    assert_eq!(good.as_array().unwrap().len(), 1, "{good}");
    assert_eq!(good[0]["state"], "up");
    assert_eq!(n(&good[0], "requests_count.total"), 12);
    assert!(good[0]["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(n(&backends["dead"]["instances"][0], "errors.connect"), 4);

    assert!(s["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(s["since"].as_str().unwrap().ends_with('Z'));
    let uptime = n(&s, "uptime_s") as f64;
    assert!(
        uptime <= unix_now() - before_start + 1.0,
        "uptime_s {uptime}"
    );
    let history = s["history"].as_array().unwrap();
    assert_eq!(history.iter().map(|m| n(m, "requests")).sum::<u64>(), 24);
    assert_eq!(history.iter().map(|m| n(m, "errors")).sum::<u64>(), 7);
}

#[test]
fn percentiles_are_within_the_histogram_error_of_known_latencies() {
    let dir = temp_dir("latency");
    let servers = Backends::start();
    let db = dir.join("s.db");
    let rgate = start(&dir, &servers.config("{interval_ms: 200}"), &db);
    // 25 × 20 ms, 20 × 100 ms, 5 × 300 ms: p50 is a 20 ms one; p95 and p99 300 ms ones.
    let groups = [(20u64, 25usize), (100, 20), (300, 5)];
    let mut slowest_seen = Vec::new();
    let mut sum_seen = Duration::ZERO;
    for (sleep, count) in groups {
        let addr = rgate.addr;
        let handles: Vec<_> = (0..5)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut times = Vec::new();
                    for _ in (t..count).step_by(5) {
                        let started = Instant::now();
                        assert_eq!(
                            get(addr, &format!("/ok/sleep?do=sleep&ms={sleep}")).status,
                            200
                        );
                        times.push(started.elapsed());
                    }
                    times
                })
            })
            .collect();
        let times: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(times.len(), count);
        sum_seen += times.iter().sum::<Duration>();
        slowest_seen.push(*times.iter().max().unwrap());
    }
    let s = stats(&rgate);
    let route = &s["routes"]["/ok"];
    assert_eq!(n(route, "requests_count.total"), 50);
    // rgate's latency of each request lies between the backend's sleep and what the client
    // measured, so a percentile's true value lies in [sleep, slowest seen in its group];
    // the histogram may add at most 1.6 % (README), `max` is exact.
    let bounds = |group: usize, error: f64| {
        let low = groups[group].0 as f64 * (1.0 - error);
        let high = slowest_seen[group].as_secs_f64() * 1000.0 * (1.0 + error);
        low..=high
    };
    let within = |name: &str, group: usize| {
        let got = ms(route, &format!("latency_ms.{name}"));
        let range = bounds(group, if name == "max" { 0.0 } else { 0.016 });
        assert!(
            range.contains(&got),
            "{name} = {got} ms, expected within {range:?}"
        );
    };
    within("p50", 0);
    within("p95", 2);
    within("p99", 2);
    within("max", 2);
    let true_mean_low = groups.iter().map(|(s, c)| s * *c as u64).sum::<u64>() as f64 / 50.0;
    let average = ms(route, "latency_ms.average");
    let mean_seen = sum_seen.as_secs_f64() * 1000.0 / 50.0;
    assert!(
        (true_mean_low..=mean_seen).contains(&average),
        "average {average} not in [{true_mean_low}, {mean_seen}]"
    );
    // The same numbers once collected into the database (merged across the two cores).
    wait_db_requests(&db, 50);
    let after = stats(&rgate);
    assert_eq!(after["routes"]["/ok"]["latency_ms"], route["latency_ms"]);
    let history = after["history"].as_array().unwrap();
    assert_eq!(history.iter().map(|m| n(m, "requests")).sum::<u64>(), 50);
}

/// `history[].p50_ms` and `p99_ms` are the percentiles of that minute's requests.
#[test]
fn history_rows_carry_their_minutes_p50_and_p99() {
    let dir = temp_dir("history");
    let servers = Backends::start();
    let db = dir.join("s.db");
    let rgate = start(&dir, &servers.config("{interval_ms: 200}"), &db);
    let groups = [(20u64, 10usize), (300, 1)];
    let mut slowest_seen = Vec::new();
    for (sleep, count) in groups {
        let mut slowest = Duration::ZERO;
        for _ in 0..count {
            let started = Instant::now();
            assert_eq!(
                get(rgate.addr, &format!("/ok/s?do=sleep&ms={sleep}")).status,
                200
            );
            slowest = slowest.max(started.elapsed());
        }
        slowest_seen.push(slowest);
    }
    wait_db_requests(&db, 11);
    let bounds = |group: usize| {
        groups[group].0 as f64 * 0.984..=slowest_seen[group].as_secs_f64() * 1000.0 * 1.016
    };
    let s = stats(&rgate);
    let history = s["history"].as_array().unwrap();
    for row in history {
        for name in ["p50_ms", "p99_ms"] {
            let got = ms(row, name);
            assert!(
                (0..2).any(|g| bounds(g).contains(&got)),
                "history {name} = {got} ms, not the latency of any request: {row}"
            );
        }
    }
    if let [only] = &history[..] {
        // All in one minute: its p99 is the 300 ms one, its p50 a 20 ms one.
        assert!(bounds(1).contains(&ms(only, "p99_ms")), "{only}");
        assert!(bounds(0).contains(&ms(only, "p50_ms")), "{only}");
    }
}

#[test]
fn totals_survive_a_restart_and_history_rows_are_written() {
    let dir = temp_dir("restart");
    let db = dir.join("s.db");
    // Collection only every 10 minutes: what reaches the database is the shutdown flush.
    let servers = Backends::start();
    let cfg = servers.config("{interval_ms: 600000}");
    let first = start(&dir, &cfg, &db);
    send(first.addr, "/ok/a", 7, 200);
    send(first.addr, "/dead/a", 2, 503);
    let since = stats(&first)["since"].clone();
    assert!(stop(first).success());

    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, requests, errors): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(requests), sum(errors) FROM history",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!((1..=2).contains(&rows), "{rows} history rows");
    assert_eq!((requests, errors), (9, 2));
    let minute: i64 = conn
        .query_row("SELECT max(minute) FROM history", [], |r| r.get(0))
        .unwrap();
    let now_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    assert!((now_minute - 2..=now_minute).contains(&minute));
    drop(conn);

    let second = start(&dir, &cfg, &db);
    let s = stats(&second);
    assert_eq!(n(&s, "requests_count.total"), 9, "{s:#}");
    assert_eq!(n(&s, "requests_count.error"), 2);
    assert_eq!(n(&s, "routes./ok.requests_count.total"), 7);
    assert_eq!(n(&s, "backends.dead.errors.connect"), 2);
    assert_eq!(
        s["since"], since,
        "counting began when the database was created"
    );
    let history = s["history"].as_array().unwrap();
    assert_eq!(history.iter().map(|m| n(m, "requests")).sum::<u64>(), 9);
    // (Their p50_ms and p99_ms: history_rows_carry_their_minutes_p50_and_p99.)
    send(second.addr, "/ok/b", 3, 200);
    assert_eq!(n(&stats(&second), "requests_count.total"), 12);
    assert!(stop(second).success());

    let third = start(&dir, &cfg, &db);
    assert_eq!(n(&stats(&third), "routes./ok.requests_count.total"), 10);
}

#[test]
fn kill_9_loses_at_most_one_interval() {
    let dir = temp_dir("kill9");
    let db = dir.join("s.db");
    let interval = Duration::from_millis(300);
    let servers = Backends::start();
    let cfg = servers.config(&format!("{{interval_ms: {}}}", interval.as_millis()));
    let first = start(&dir, &cfg, &db);
    send(first.addr, "/ok/a", 20, 200);
    // Those 20 reach the database within an interval or so.
    wait_db_requests(&db, 20);
    send(first.addr, "/ok/b", 5, 200);
    // SIGKILL: no chance to flush anything.
    first.kill();

    let second = start(&dir, &cfg, &db);
    let total = n(&stats(&second), "requests_count.total");
    assert!(
        (20..=25).contains(&total),
        "{total} requests counted after kill -9"
    );
}

/// The stats thread's writes (SQLite, once an interval) must not delay requests on a CPU
/// it shares with a core: it runs at the lowest priority, the cores at the normal one.
#[test]
fn the_stats_thread_yields_to_the_cores() {
    let dir = temp_dir("nice");
    let servers = Backends::start();
    let rgate = start(
        &dir,
        &servers.config("{interval_ms: 200}"),
        &dir.join("s.db"),
    );
    let nice_of = |name: &str| -> i64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", rgate.pid())).unwrap();
        let stat = tasks
            .filter_map(|t| {
                let t = t.ok()?.path();
                let comm = std::fs::read_to_string(t.join("comm")).ok()?;
                (comm.trim() == name).then(|| std::fs::read_to_string(t.join("stat")).ok())?
            })
            .next()
            .unwrap_or_else(|| panic!("no thread named {name}"));
        // Fields after the command's closing parenthesis; nice is the 19th field of all.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split_whitespace().nth(16).unwrap().parse().unwrap()
    };
    assert_eq!(nice_of("rgate-stats"), 19);
    assert_eq!(nice_of("rgate-core-0"), 0);
    // And it still writes.
    send(rgate.addr, "/ok/a", 3, 200);
    wait_db_requests(&dir.join("s.db"), 3);
}

#[test]
fn an_unusable_database_stops_rgate_with_exit_2() {
    let dir = temp_dir("baddb");
    let servers = Backends::start();
    let cfg = servers.config("{interval_ms: 1000}");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![b'#'; 8192]).unwrap();
    let mut cases = vec![
        ("not a SQLite file", garbage),
        ("a directory", dir.to_path_buf()),
        ("a missing directory", dir.join("missing/s.db")),
        // Nothing can be created in /proc, not even by root.
        (
            "an unwritable place",
            Path::new("/proc/rgate-stats-test.db").to_path_buf(),
        ),
    ];
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("readonly.db");
        drop(rusqlite::Connection::open(&ro).unwrap());
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
        cases.push(("a read-only file", ro));
    }
    for (what, db) in cases {
        let (mut child, _dir) = spawn(&dir, &cfg, &db);
        let status = wait_exit(&mut child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.child.stderr.take().unwrap(), &mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("statistics database") && stderr.contains(&*db.to_string_lossy()),
            "{what}: the message should name the database: {stderr}"
        );
        assert!(!stderr.contains("listening on"), "{what}: {stderr}");
    }
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let dir = temp_dir("metrics");
    let servers = Backends::start();
    let before_start = unix_now();
    let rgate = start(
        &dir,
        &servers.config("{interval_ms: 200}"),
        &dir.join("s.db"),
    );
    let after_start = unix_now();
    send_mix(&rgate);
    let r = get(rgate.addr, "/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    // A real parser, strict: every family, sample and label set must parse, histograms must
    // be whole (buckets, _sum, _count), and no series may appear twice.
    let metrics = parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("the Prometheus parser refused /metrics: {e}\n{text}"));
    let family = |name: &str| {
        metrics
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{text}"))
    };
    let sample = |name: &str, labels: &[(&str, &str)]| {
        family(name)
            .iter_samples()
            .find(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{text}"))
            .value
            .clone()
    };
    let counter = |name: &str, labels: &[(&str, &str)]| match sample(name, labels) {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        other => panic!("{name} {labels:?} is not a counter: {other:?}"),
    };
    assert_eq!(
        family("rgate_requests_total").family_type,
        PrometheusType::Counter
    );
    assert_eq!(
        family("rgate_request_duration_seconds").family_type,
        PrometheusType::Histogram
    );
    let total = [("scope", "total"), ("code", "200")];
    assert_eq!(counter("rgate_requests_total", &total), 12.0);
    let bad = [("scope", "route"), ("route", "/bad"), ("code", "502")];
    assert_eq!(counter("rgate_requests_total", &bad), 3.0);
    let dead = [
        ("scope", "backend"),
        ("backend", "dead"),
        ("kind", "connect"),
    ];
    assert_eq!(counter("rgate_errors_total", &dead), 4.0);
    let PrometheusValue::Histogram(latency) =
        sample("rgate_request_duration_seconds", &[("scope", "total")])
    else {
        panic!("rgate_request_duration_seconds is not a histogram\n{text}");
    };
    assert_eq!(latency.count, Some(24));
    let last = latency.buckets.last().expect("histogram buckets");
    assert_eq!(last.upper_bound, f64::INFINITY, "the last bucket is +Inf");
    assert_eq!(last.count.as_f64(), 24.0);
    // 8 traffic families and the times, 6 of instance and backend health, 10 of
    // connections and descriptors.
    assert_eq!(metrics.families.len(), 24, "{text}");
    for (name, kind) in [
        ("rgate_connections_open", PrometheusType::Gauge),
        ("rgate_connections_parked", PrometheusType::Gauge),
        ("rgate_connections_max", PrometheusType::Gauge),
        ("rgate_connections_refused_total", PrometheusType::Counter),
        (
            "rgate_connections_idle_closed_total",
            PrometheusType::Counter,
        ),
        ("rgate_accept_paused_total", PrometheusType::Counter),
        ("rgate_accept_failed_total", PrometheusType::Counter),
        ("rgate_slow_clients_cut_total", PrometheusType::Counter),
        ("rgate_open_fds", PrometheusType::Gauge),
        ("rgate_max_fds", PrometheusType::Gauge),
        ("rgate_instance_state", PrometheusType::Gauge),
        ("rgate_instance_ejections_total", PrometheusType::Counter),
        ("rgate_instance_retries_total", PrometheusType::Counter),
        ("rgate_backend_retries_total", PrometheusType::Counter),
        (
            "rgate_backend_retries_refused_total",
            PrometheusType::Counter,
        ),
        ("rgate_backend_overloaded_total", PrometheusType::Counter),
    ] {
        assert_eq!(family(name).family_type, kind, "{name}");
    }
    // Three single-instance backends: four states each, one of them (up) at 1.
    assert_eq!(
        family("rgate_instance_state").iter_samples().count(),
        12,
        "{text}"
    );
    // The gauges: one `up` series per current instance, and the two times.
    let gauge = |name: &str, labels: &[(&str, &str)]| match sample(name, labels) {
        PrometheusValue::Gauge(g) => g.as_f64(),
        other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
    };
    for (backend, addr) in [
        ("good", servers.good.addr),
        ("bad", servers.bad.addr),
        ("dead", servers.dead.addr),
    ] {
        let labels = [("backend", backend), ("instance", &addr.to_string())];
        assert_eq!(
            gauge("rgate_backend_instance_up", &labels),
            1.0,
            "{labels:?}"
        );
    }
    assert_eq!(
        family("rgate_backend_instance_up").iter_samples().count(),
        3,
        "{text}"
    );
    let started = gauge("rgate_start_time_seconds", &[]);
    assert!(
        (before_start.floor() - 1.0..=after_start + 1.0).contains(&started),
        "rgate_start_time_seconds {started} not in [{before_start}, {after_start}]"
    );
    // A fresh database: counting began when this process created it.
    let since = gauge("rgate_stats_since_seconds", &[]);
    assert!(
        (before_start.floor() - 1.0..=after_start + 1.0).contains(&since),
        "rgate_stats_since_seconds {since}"
    );
    // The parser is strict enough to matter: the same text with one series twice is refused.
    let first_sample = text.lines().find(|l| !l.starts_with('#')).unwrap();
    let doubled = text.replacen(first_sample, &format!("{first_sample}\n{first_sample}"), 1);
    assert!(parse_prometheus(&doubled).is_err(), "a duplicated series");
}

/// Each node of a cluster keeps its own statistics; one Prometheus sums them by the `node`
/// label, which every series carries and which is the host's name.
#[test]
fn every_metrics_series_carries_the_node_label_of_the_hostname() {
    let dir = temp_dir("metrics-node");
    let servers = Backends::start();
    let rgate = start(
        &dir,
        &servers.config("{interval_ms: 200}"),
        &dir.join("s.db"),
    );
    send_mix(&rgate);
    let text = get(rgate.addr, "/metrics").text();
    let metrics = parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("the Prometheus parser refused /metrics: {e}\n{text}"));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim_end();
    assert!(!hostname.is_empty());
    let mut samples = 0;
    for (name, family) in &metrics.families {
        for s in family.iter_samples() {
            let set = s.get_labelset().unwrap();
            assert_eq!(
                set.get_label_value("node"),
                Some(hostname),
                "{name} {:?}",
                s.value
            );
            samples += 1;
        }
    }
    assert!(samples > 20, "{text}");
    // Histogram buckets are folded into one sample by the parser: the text says it of each.
    let node = format!("node=\"{hostname}\"}} ");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.contains(&node), "{line}");
    }
}

#[test]
fn stats_paths_belong_to_rgate_and_can_move() {
    let dir = temp_dir("paths");
    let backend = Backend::start("good");
    let good = backend.addr;
    let cfg = format!(
        "routes: [{{path_prefix: /, backend: good}}]
backends: [{{name: good, addresses: ['{good}']}}]
stats: {{path: /_rgate/stats, metrics_path: /_rgate/metrics}}
"
    );
    let rgate = start(&dir, &cfg, &dir.join("s.db"));
    // The old paths are now ordinary routed requests, answered by the backend.
    assert_eq!(get(rgate.addr, "/stats").echo().target(), "/stats");
    assert_eq!(get(rgate.addr, "/metrics").echo().target(), "/metrics");
    let r = get(rgate.addr, "/_rgate/stats");
    assert_eq!(r.status, 200);
    let s: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(n(&s, "requests_count.total"), 2);
    assert_eq!(n(&s, "routes./.requests_count.total"), 2);
    assert!(get(rgate.addr, "/_rgate/metrics")
        .text()
        .contains("rgate_requests_total{scope=\"total\""));
    let again: Value = serde_json::from_slice(&get(rgate.addr, "/_rgate/stats").body).unwrap();
    assert_eq!(n(&again, "requests_count.total"), 2);
}

/// Each error kind the mix above leaves at zero, made to happen once: a backend too slow for
/// `response_header_ms` (504, `timeout`), a route whose backend has no instance (503,
/// `no_instance`), a malformed request (400, `client`), and a client that leaves mid-body
/// (no status: `aborted`, and `client`).
#[test]
fn timeout_no_instance_client_and_aborted_are_counted() {
    let dir = temp_dir("kinds");
    let good = Backend::start("good");
    let cfg = format!(
        "routes:
  - {{path_prefix: /ok, backend: good}}
  - {{path_prefix: /none, backend: docker}}
backends:
  - {{name: good, addresses: ['{}']}}
  - {{name: docker, match_labels: [rgate_test=nothing-has-this]}}
timeouts: {{response_header_ms: 300}}
stats: {{interval_ms: 600000}}
",
        good.addr
    );
    let rgate = Gateway::options(&cfg)
        .in_dir(&dir)
        .env(&[("DOCKER_HOST", "unix:///nonexistent/rgate-test/docker.sock")])
        .start();
    assert_eq!(get(rgate.addr, "/ok/fine").status, 200);
    let v = get(rgate.addr, "/ok/slow?do=sleep&ms=2000").gateway_error(504);
    assert_eq!(v["error"], "gateway_timeout");
    let v = get(rgate.addr, "/none/x").gateway_error(503);
    assert_eq!(v["error"], "no_instances");
    let v = rgate
        .request("GET /ok/bad HTTP/1.1\r\nHost : a\r\n\r\n")
        .gateway_error(400);
    assert_eq!(v["error"], "bad_request");
    // 10 bytes of the 1000 announced, then the client is gone.
    let mut c = rgate.client();
    c.send(b"POST /ok/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789");
    common::wait_until(limits::CONDITION, "the upload to reach the backend", || {
        good.requests() == 3
    });
    drop(c);
    let s = wait_for(
        limits::CONDITION,
        "the aborted request to be counted",
        || {
            let s = stats(&rgate);
            match n(&s, "requests_count.aborted") {
                1 => Ok(s),
                k => Err(format!("{k} aborted")),
            }
        },
    );
    assert_eq!(n(&s, "requests_count.total"), 5, "{s:#}");
    assert_eq!(n(&s, "requests_count.success"), 2, "200 and 400: {s:#}");
    assert_eq!(n(&s, "requests_count.error"), 2, "504 and 503: {s:#}");
    for (kind, count) in [
        ("timeout", 1),
        ("no_instance", 1),
        ("client", 2),
        ("connect", 0),
        ("invalid_response", 0),
    ] {
        assert_eq!(n(&s, &format!("errors.{kind}")), count, "{kind}: {s:#}");
    }
    assert_eq!(n(&s, "status_codes.none"), 1, "{s:#}");
    assert_eq!(n(&s, "status_classes.none"), 1, "{s:#}");
    assert_eq!(n(&s, "routes./none.errors.no_instance"), 1, "{s:#}");
    assert_eq!(n(&s, "routes./ok.errors.timeout"), 1, "{s:#}");
}

/// A write that fails while running (here: the database locked by another writer for longer
/// than rgate's busy timeout) is logged; proxying and the endpoints go on; the counts are
/// kept and written once the database is writable again — none lost, none twice.
#[test]
fn a_failed_stats_write_is_logged_and_retried_at_the_next_interval() {
    let dir = temp_dir("locked");
    let db = dir.join("s.db");
    let servers = Backends::start();
    let rgate = start(&dir, &servers.config("{interval_ms: 200}"), &db);
    send(rgate.addr, "/ok/a", 3, 200);
    wait_db_requests(&db, 3);

    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    send(rgate.addr, "/ok/b", 4, 200);
    rgate.wait_log(limits::CONDITION, "cannot write to the statistics database");
    // Proxying goes on, and /stats shows every request while the database is locked.
    send(rgate.addr, "/ok/c", 1, 200);
    assert_eq!(n(&stats(&rgate), "requests_count.total"), 8);
    assert_eq!(db_requests(&db), Ok(3), "nothing new can have been written");

    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    rgate.wait_log(limits::CONDITION, "database writes work again");
    wait_db_requests(&db, 8);
    assert_eq!(n(&stats(&rgate), "requests_count.total"), 8);
}

/// `stats.retention_days`: history rows older than that are pruned from the database at the
/// next write; younger ones are kept.
#[test]
fn history_older_than_retention_days_is_pruned() {
    let dir = temp_dir("retention");
    let db = dir.join("s.db");
    let servers = Backends::start();
    let cfg = servers.config("{interval_ms: 200, retention_days: 1}");
    // A first run creates the database; then rows from the past are put in it.
    assert!(stop(start(&dir, &cfg, &db)).success());
    let minute = (unix_now() / 60.0) as i64;
    let (old, recent) = (minute - 2 * 24 * 60, minute - 20 * 60);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for m in [old, recent] {
        conn.execute(
            "INSERT INTO history (minute, requests, errors) VALUES (?1, 5, 0)",
            [m],
        )
        .unwrap();
    }
    drop(conn);

    let rgate = start(&dir, &cfg, &db);
    send(rgate.addr, "/ok/a", 1, 200);
    let minutes = |db: &Path| -> Vec<i64> {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut q = conn
            .prepare("SELECT minute FROM history ORDER BY minute")
            .unwrap();
        let rows = q.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    wait_for(limits::CONDITION, "the old row to be pruned", || {
        let m = minutes(&db);
        if m.contains(&old) {
            Err(format!("{m:?}"))
        } else {
            Ok(())
        }
    });
    let left = minutes(&db);
    assert!(
        left.contains(&recent),
        "a row within retention_days was pruned: {left:?}"
    );
    assert!(
        left.iter().any(|&m| m >= minute),
        "this minute's row: {left:?}"
    );
}

/// A backend of two fixed addresses, one refusing connections: after `circuit_breaker.failures`
/// (3) failed attempts there, each retried on the live one (no client sees an error), the
/// refusing instance is ejected, and `/stats` and `/metrics` say so.
#[test]
fn an_instance_refusing_connections_is_ejected_and_shown_in_stats_and_metrics() {
    let dir = temp_dir("ejection");
    let live = Backend::start("live");
    let dead = dead_port();
    let cfg = format!(
        "routes:
  - {{path_prefix: /flaky, backend: flaky}}
backends:
  - name: flaky
    addresses: ['{}', '{}']
    circuit_breaker: {{failures: 3, ejection_ms: 300000}}
stats: {{interval_ms: 600000}}
",
        live.addr, dead.addr
    );
    let rgate = start(&dir, &cfg, &dir.join("s.db"));
    let (live_addr, dead_addr) = (live.addr.to_string(), dead.addr.to_string());
    let find = |s: &Value, addr: &str| -> Value {
        s["backends"]["flaky"]["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["address"] == addr).cloned())
            .unwrap_or_else(|| panic!("no instance {addr} in {s:#}"))
    };
    // Random balancing sends about half the first attempts to the refusing instance: bounded
    // by a number of requests far beyond what 3 failures need.
    let mut sent = 0;
    let s = loop {
        assert!(
            sent < 200,
            "not ejected after {sent} requests: {:#}",
            stats(&rgate)
        );
        for _ in 0..5 {
            let r = get(rgate.addr, "/flaky/x");
            assert_eq!(
                r.status,
                200,
                "request {sent}: {}\n{}",
                r.text(),
                rgate.log()
            );
            assert_eq!(r.echo().backend(), "live");
            sent += 1;
        }
        let s = stats(&rgate);
        if find(&s, &dead_addr)["state"] == "ejected" {
            break s;
        }
    };
    let d = find(&s, &dead_addr);
    assert_eq!(d["ejections"], 1, "{d:#}");
    assert_eq!(
        d["retries"], 3,
        "each of its 3 failures went elsewhere: {d:#}"
    );
    assert_eq!(d["weight"], 1, "{d:#}");
    let until = d["ejected_until"]
        .as_str()
        .unwrap_or_else(|| panic!("{d:#}"));
    assert!(
        until.len() == 24 && until.ends_with('Z') && until.contains('T'),
        "ejected_until {until:?} is not RFC 3339 UTC with milliseconds"
    );
    let l = find(&s, &live_addr);
    assert_eq!(l["state"], "up", "{l:#}");
    assert!(l.get("ejected_until").is_none(), "{l:#}");
    assert_eq!(
        (l["ejections"].clone(), l["retries"].clone()),
        (0.into(), 0.into())
    );
    let b = &s["backends"]["flaky"];
    assert_eq!(n(b, "retries"), 3, "{b:#}");
    assert_eq!(n(b, "retries_refused_by_budget"), 0, "{b:#}");
    assert_eq!(n(b, "overloaded"), 0, "{b:#}");
    assert!(
        b.get("in_flight").is_none(),
        "no max_in_flight, no in_flight: {b:#}"
    );
    assert_eq!(n(&s, "requests_count.success"), sent, "{s:#}");
    rgate.wait_log(
        limits::CONDITION,
        &format!("backend flaky, instance {dead_addr} (static): ejected for 300 s after 3 consecutive failures"),
    );

    // Ejected, it gets no attempt: more requests add no retry.
    for _ in 0..10 {
        assert_eq!(get(rgate.addr, "/flaky/x").status, 200);
    }
    let r = get(rgate.addr, "/metrics");
    let text = r.text();
    let metrics = parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("the Prometheus parser refused /metrics: {e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let family = metrics
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{text}"));
        let sample = family
            .iter_samples()
            .find(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{text}"));
        match &sample.value {
            PrometheusValue::Gauge(g) => g.as_f64(),
            PrometheusValue::Counter(c) => c.value.as_f64(),
            other => panic!("{name}: {other:?}"),
        }
    };
    for (addr, now) in [(&dead_addr, "ejected"), (&live_addr, "up")] {
        for state in ["up", "ejected", "probing", "unhealthy"] {
            let labels = [
                ("backend", "flaky"),
                ("instance", addr.as_str()),
                ("state", state),
            ];
            let want = if state == now { 1.0 } else { 0.0 };
            assert_eq!(
                value("rgate_instance_state", &labels),
                want,
                "{labels:?}\n{text}"
            );
        }
    }
    let dead_labels = [("backend", "flaky"), ("instance", dead_addr.as_str())];
    assert_eq!(value("rgate_instance_ejections_total", &dead_labels), 1.0);
    assert_eq!(value("rgate_instance_retries_total", &dead_labels), 3.0);
    let live_labels = [("backend", "flaky"), ("instance", live_addr.as_str())];
    assert_eq!(value("rgate_instance_ejections_total", &live_labels), 0.0);
    let flaky = [("backend", "flaky")];
    assert_eq!(value("rgate_backend_retries_total", &flaky), 3.0);
    assert_eq!(value("rgate_backend_retries_refused_total", &flaky), 0.0);
    assert_eq!(value("rgate_backend_overloaded_total", &flaky), 0.0);
}
