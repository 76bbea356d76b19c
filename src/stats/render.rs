//! Rendering of a statistics view: the `/stats` JSON document and the `/metrics`
//! Prometheus text (exposition format 0.0.4). Both show the same numbers: the totals since
//! the database was created, this process's unwritten counts included.
//!
//! Both also show each current instance's health (`state`: `up`, `ejected`, `probing`,
//! `unhealthy`; its weight, ejections and retries) and each backend's retries, retries
//! refused by the budget, and requests refused as overloaded. Those come from the shared
//! health state of the backend table (`health`), not from the database: they count since
//! this process started, and a restart (SIGHUP) starts them again at 0 (Prometheus counters
//! take that as a reset). An ejection's end is shown as an RFC 3339 UTC time with
//! milliseconds (`ejected_until`).
//!
//! Not for: gathering the numbers (see `StatsHub::view`).

use super::connections::ConnectionsView;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::histogram::{bucket_of, bucket_range, Histogram};
use super::store::MinuteRow;
use super::traffic::{code_name, Key, Scope, Totals, Traffic};
use super::ErrorKind;
use crate::access_log::LogCounters;
use crate::backends::{BackendInstances, BackendTable, Instance};
use crate::health::Shown;

/// Everything a rendering shows.
pub(crate) struct View<'a> {
    pub(crate) totals: Totals,
    pub(crate) history: Vec<MinuteRow>,
    /// Unix seconds: this process's start, and when counting began (database creation).
    pub(crate) started_at: i64,
    pub(crate) since: i64,
    /// This host's name, the `node` label of every `/metrics` series.
    pub(crate) node: &'a str,
    pub(crate) uptime: Duration,
    pub(crate) route_names: &'a [String],
    /// Where each of `route_names` was declared.
    pub(crate) route_sources: &'a [&'static str],
    /// Per backend of the table (same index): its `max_in_flight`.
    pub(crate) max_in_flight: &'a [Option<u32>],
    pub(crate) table: &'a BackendTable,
    pub(crate) connections: ConnectionsView,
    /// The access log's counts, when there is one.
    pub(crate) access_log: Option<&'a LogCounters>,
}

impl View<'_> {
    fn traffic(&self, key: &Key) -> Traffic {
        self.totals.get(key).cloned().unwrap_or_default()
    }

    /// Route prefixes: the configured ones, then any others the database remembers.
    fn route_keys(&self) -> Vec<String> {
        let mut names: Vec<String> = self.route_names.to_vec();
        for key in self.totals.scopes.keys() {
            if key.scope == Scope::Route && !names.contains(&key.name) {
                names.push(key.name.clone());
            }
        }
        names
    }

    fn backend_keys(&self) -> Vec<String> {
        let mut names: Vec<String> = self.table.backends.iter().map(|b| b.name.clone()).collect();
        for key in self.totals.scopes.keys() {
            if key.scope == Scope::Backend && !names.contains(&key.name) {
                names.push(key.name.clone());
            }
        }
        names
    }
}

fn ms(d: Option<Duration>) -> Value {
    match d {
        // Microsecond precision is all the histogram has.
        Some(d) => json!((d.as_secs_f64() * 1_000_000.0).round() / 1000.0),
        None => Value::Null,
    }
}

/// The shape shared by the total, each route, each backend and each instance.
fn traffic_json(t: &Traffic) -> Map<String, Value> {
    let r = t.requests();
    let mut classes = Map::new();
    for class in 1..=5 {
        let n: u64 = t.codes.0[class * 100..(class + 1) * 100].iter().sum();
        classes.insert(format!("{class}xx"), json!(n));
    }
    let mut codes = Map::new();
    for (slot, &n) in t.codes.0.iter().enumerate().filter(|(_, &n)| n > 0) {
        codes.insert(code_name(slot), json!(n));
    }
    for (slot, label) in [(0, "none"), (super::traffic::OTHER_CODE_SLOT, "other")] {
        if t.codes.0[slot] > 0 {
            classes.insert(label.into(), json!(t.codes.0[slot]));
        }
    }
    let mut errors = Map::new();
    for kind in ErrorKind::ALL {
        errors.insert(kind.name().into(), json!(t.errors[kind.index()]));
    }
    let h = &t.latency;
    let max = (h.count() > 0).then(|| Duration::from_nanos(h.max_ns));
    let mut m = Map::new();
    m.insert(
        "requests_count".into(),
        json!({"total": r.total, "success": r.success, "error": r.error, "aborted": r.aborted}),
    );
    m.insert("status_classes".into(), Value::Object(classes));
    m.insert("status_codes".into(), Value::Object(codes));
    m.insert("errors".into(), Value::Object(errors));
    m.insert(
        "latency_ms".into(),
        json!({
            "average": ms(h.mean()),
            "p50": ms(h.quantile(0.50)),
            "p95": ms(h.quantile(0.95)),
            "p99": ms(h.quantile(0.99)),
            "max": ms(max),
        }),
    );
    m.insert(
        "bytes".into(),
        json!({"in": t.bytes_in, "out": t.bytes_out}),
    );
    m
}

/// The `/stats` document.
pub(crate) fn json(view: &View<'_>) -> Vec<u8> {
    let mut doc = traffic_json(&view.traffic(&Key::total()));
    let mut routes = Map::new();
    for name in view.route_keys() {
        let t = view.traffic(&Key::new(Scope::Route, &name, ""));
        let mut route = traffic_json(&t);
        // Routes of this process's config say where they come from; older ones the database
        // remembers do not.
        if let Some(i) = view.route_names.iter().position(|n| *n == name) {
            route.insert("source".into(), json!(view.route_sources.get(i)));
        }
        routes.insert(name, Value::Object(route));
    }
    let mut backends = Map::new();
    for name in view.backend_keys() {
        let mut b = traffic_json(&view.traffic(&Key::new(Scope::Backend, &name, "")));
        let index = view.table.backends.iter().position(|b| b.name == name);
        let current = index.map(|i| &view.table.backends[i]);
        if let Some(c) = current {
            let limit = index.and_then(|i| view.max_in_flight.get(i).copied().flatten());
            b.extend(backend_health_json(c, limit));
        }
        let instances: Vec<Value> = current
            .map(|c| c.instances.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|i| {
                let address = i.addr.to_string();
                let t = view.traffic(&Key::new(Scope::Instance, &name, &address));
                let mut obj = Map::new();
                obj.insert("address".into(), json!(address));
                obj.insert("source".into(), json!(i.source));
                obj.extend(instance_health_json(i));
                obj.extend(traffic_json(&t));
                Value::Object(obj)
            })
            .collect();
        b.insert("instances".into(), Value::Array(instances));
        backends.insert(name, Value::Object(b));
    }
    doc.insert("routes".into(), Value::Object(routes));
    doc.insert("backends".into(), Value::Object(backends));
    doc.insert("connections".into(), view.connections.json());
    if let Some(log) = view.access_log {
        let (written, full, failed) = log.read();
        doc.insert(
            "access_log".into(),
            json!({"lines_written": written, "dropped": {"queue_full": full, "write_error": failed}}),
        );
    }
    doc.insert("started_at".into(), json!(rfc3339(view.started_at)));
    doc.insert("uptime_s".into(), json!(view.uptime.as_secs()));
    doc.insert("since".into(), json!(rfc3339(view.since)));
    let history: Vec<Value> = view
        .history
        .iter()
        .map(|m| {
            json!({
                "minute": rfc3339(m.minute * 60),
                "requests": m.requests,
                "errors": m.errors,
                "p50_ms": ms(m.latency.quantile(0.50)),
                "p99_ms": ms(m.latency.quantile(0.99)),
            })
        })
        .collect();
    doc.insert("history".into(), Value::Array(history));
    let mut out = serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A backend's shared counts (since this process started), and its in-flight requests when
/// it has a `max_in_flight`.
fn backend_health_json(b: &BackendInstances, max_in_flight: Option<u32>) -> Map<String, Value> {
    let (retries, refused, overloaded) = b.health.counts();
    let mut m = Map::new();
    m.insert("retries".into(), json!(retries));
    m.insert("retries_refused_by_budget".into(), json!(refused));
    m.insert("overloaded".into(), json!(overloaded));
    if let Some(max) = max_in_flight {
        m.insert("in_flight".into(), json!(b.health.in_flight()));
        m.insert("max_in_flight".into(), json!(max));
    }
    m
}

/// An instance's health: its state (with the ejection's end when ejected), weight,
/// ejections and retries (attempts that failed there and went to another instance).
fn instance_health_json(i: &Instance) -> Map<String, Value> {
    let shown = i.health.shown();
    let mut m = Map::new();
    m.insert("state".into(), json!(shown.name()));
    if let Shown::Ejected { until_unix_ms } = shown {
        m.insert("ejected_until".into(), json!(rfc3339_ms(until_unix_ms)));
    }
    m.insert("weight".into(), json!(i.weight));
    m.insert("ejections".into(), json!(i.health.ejections()));
    m.insert("retries".into(), json!(i.health.retries()));
    m
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    let seconds = rfc3339((unix_ms / 1000) as i64);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), unix_ms % 1000)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC; days to a civil date by the usual
/// era-of-400-years arithmetic).
pub(crate) fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Where `/metrics` draws its histogram buckets: the bucket edges just below these
/// durations (in seconds), so every cumulative count is exact.
const LE_TARGETS_S: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Nanoseconds as decimal seconds, exactly.
fn seconds(ns: u64) -> String {
    let s = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn labels(key: &Key) -> String {
    let (route, backend) = match key.scope {
        Scope::Route => (key.name.as_str(), ""),
        Scope::Backend | Scope::Instance => ("", key.name.as_str()),
        Scope::Total => ("", ""),
    };
    format!(
        "scope=\"{}\",route=\"{}\",backend=\"{}\",instance=\"{}\"",
        key.scope.as_str(),
        label(route),
        label(backend),
        label(&key.instance)
    )
}

/// The `/metrics` text.
pub(crate) fn prometheus(view: &View<'_>) -> Vec<u8> {
    let mut keys: Vec<Key> = vec![Key::total()];
    keys.extend(
        view.route_keys()
            .iter()
            .map(|n| Key::new(Scope::Route, n, "")),
    );
    keys.extend(
        view.backend_keys()
            .iter()
            .map(|n| Key::new(Scope::Backend, n, "")),
    );
    keys.extend(
        view.totals
            .scopes
            .keys()
            .filter(|k| k.scope == Scope::Instance)
            .cloned(),
    );
    let scopes: Vec<(String, Traffic)> =
        keys.iter().map(|k| (labels(k), view.traffic(k))).collect();

    let mut out = String::new();
    let section = |out: &mut String, name: &str, kind: &str, help: &str, lines: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        out.push_str(&lines);
    };
    let mut lines = String::new();
    for (l, t) in &scopes {
        for (slot, &n) in t.codes.0.iter().enumerate().filter(|(_, &n)| n > 0) {
            let _ = writeln!(
                lines,
                "rgate_requests_total{{{l},code=\"{}\"}} {n}",
                code_name(slot)
            );
        }
    }
    section(
        &mut out,
        "rgate_requests_total",
        "counter",
        "Requests answered, by status code (code=\"none\": cut before any response).",
        lines,
    );
    let mut lines = String::new();
    for (l, t) in &scopes {
        for kind in ErrorKind::ALL {
            let _ = writeln!(
                lines,
                "rgate_errors_total{{{l},kind=\"{}\"}} {}",
                kind.name(),
                t.errors[kind.index()]
            );
        }
    }
    section(
        &mut out,
        "rgate_errors_total",
        "counter",
        "Requests that met an error, by kind.",
        lines,
    );
    for (name, help, pick) in [
        (
            "rgate_received_bytes_total",
            "Request bytes received from clients (head and body).",
            (|t: &Traffic| t.bytes_in) as fn(&Traffic) -> u64,
        ),
        (
            "rgate_sent_bytes_total",
            "Response bytes sent to clients (head and body).",
            |t: &Traffic| t.bytes_out,
        ),
    ] {
        let mut lines = String::new();
        for (l, t) in &scopes {
            let _ = writeln!(lines, "{name}{{{l}}} {}", pick(t));
        }
        section(&mut out, name, "counter", help, lines);
    }
    let mut lines = String::new();
    for (l, t) in &scopes {
        histogram_lines(&mut lines, l, &t.latency);
    }
    section(
        &mut out,
        "rgate_request_duration_seconds",
        "histogram",
        "From the request head received to the response fully sent.",
        lines,
    );
    let mut lines = String::new();
    for b in &view.table.backends {
        for i in &b.instances {
            let _ = writeln!(
                lines,
                "rgate_backend_instance_up{{backend=\"{}\",instance=\"{}\"}} 1",
                label(&b.name),
                label(&i.addr.to_string())
            );
        }
    }
    section(
        &mut out,
        "rgate_backend_instance_up",
        "gauge",
        "The backend instances in rgate's current table (rgate_instance_state says whether each gets traffic).",
        lines,
    );
    health_metrics(&mut out, view.table);
    view.connections.prometheus(&mut out);
    if let Some(log) = view.access_log {
        let (written, full, failed) = log.read();
        section(
            &mut out,
            "rgate_access_log_lines_total",
            "counter",
            "Access-log lines written since this process started.",
            format!("rgate_access_log_lines_total {written}\n"),
        );
        section(
            &mut out,
            "rgate_access_log_dropped_total",
            "counter",
            "Access-log lines dropped since this process started: the writer was behind (queue_full) or writing failed (write_error).",
            format!(
                "rgate_access_log_dropped_total{{reason=\"queue_full\"}} {full}\n\
                 rgate_access_log_dropped_total{{reason=\"write_error\"}} {failed}\n"
            ),
        );
    }
    section(
        &mut out,
        "rgate_start_time_seconds",
        "gauge",
        "When this rgate process started (unix seconds).",
        format!("rgate_start_time_seconds {}\n", view.started_at),
    );
    section(
        &mut out,
        "rgate_stats_since_seconds",
        "gauge",
        "When counting began: the statistics database's creation (unix seconds).",
        format!("rgate_stats_since_seconds {}\n", view.since),
    );
    super::node::with_node_label(&out, &label(view.node)).into_bytes()
}

/// The instances' states (one-hot) and the health counters, since this process started.
fn health_metrics(out: &mut String, table: &BackendTable) {
    let section = |out: &mut String, name: &str, kind: &str, help: &str, lines: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        out.push_str(&lines);
    };
    let instance = |backend: &str, i: &Instance| {
        format!(
            "backend=\"{}\",instance=\"{}\"",
            label(backend),
            label(&i.addr.to_string())
        )
    };
    let mut lines = String::new();
    for (backend, i) in table.instances() {
        let now = i.health.shown().name();
        for state in STATES {
            let on = u8::from(state == now);
            let _ = writeln!(
                lines,
                "rgate_instance_state{{{},state=\"{state}\"}} {on}",
                instance(backend, i)
            );
        }
    }
    section(
        out,
        "rgate_instance_state",
        "gauge",
        "Each instance's state: 1 for the current one of up, ejected (circuit open), probing (half-open trial), unhealthy (active health check).",
        lines,
    );
    for (name, help, pick) in [
        (
            "rgate_instance_ejections_total",
            "Times the instance was taken out of rotation by the circuit breaker, since this process started.",
            (|i: &Instance| i.health.ejections()) as fn(&Instance) -> u64,
        ),
        (
            "rgate_instance_retries_total",
            "Attempts that failed on the instance and were sent to another one, since this process started.",
            |i: &Instance| i.health.retries(),
        ),
    ] {
        let mut lines = String::new();
        for (backend, i) in table.instances() {
            let _ = writeln!(lines, "{name}{{{}}} {}", instance(backend, i), pick(i));
        }
        section(out, name, "counter", help, lines);
    }
    for (name, help, pick) in [
        (
            "rgate_backend_retries_total",
            "Attempts sent to another instance after a failure, since this process started.",
            (|c: (u64, u64, u64)| c.0) as fn((u64, u64, u64)) -> u64,
        ),
        (
            "rgate_backend_retries_refused_total",
            "Retries not made because the retry budget was spent, since this process started.",
            |c| c.1,
        ),
        (
            "rgate_backend_overloaded_total",
            "Requests answered 503 overloaded (max_in_flight reached), since this process started.",
            |c| c.2,
        ),
    ] {
        let mut lines = String::new();
        for b in &table.backends {
            let _ = writeln!(
                lines,
                "{name}{{backend=\"{}\"}} {}",
                label(&b.name),
                pick(b.health.counts())
            );
        }
        section(out, name, "counter", help, lines);
    }
}

/// Every state `rgate_instance_state` has a series for.
const STATES: [&str; 4] = ["up", "ejected", "probing", "unhealthy"];

fn histogram_lines(out: &mut String, l: &str, h: &Histogram) {
    let name = "rgate_request_duration_seconds";
    let mut cumulative = 0u64;
    let mut next_bucket = 0;
    for target in LE_TARGETS_S {
        let edge = bucket_of((target * 1e9) as u64);
        let (edge_ns, _) = bucket_range(edge);
        cumulative += h.buckets[next_bucket..edge].iter().sum::<u64>();
        next_bucket = edge;
        // Buckets below `edge` hold durations <= edge_ns - 1.
        let _ = writeln!(
            out,
            "{name}_bucket{{{l},le=\"{}\"}} {cumulative}",
            seconds(edge_ns - 1)
        );
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{l}}} {}", seconds(h.sum_ns));
    let _ = writeln!(out, "{name}_count{{{l}}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ejection_ends_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_700_000_000_042), "2023-11-14T22:13:20.042Z");
        assert_eq!(rfc3339_ms(999), "1970-01-01T00:00:00.999Z");
    }

    #[test]
    fn seconds_are_exact_and_labels_escaped() {
        assert_eq!(seconds(1_500_000_000), "1.5");
        assert_eq!(seconds(999_423), "0.000999423");
        assert_eq!(seconds(0), "0");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut h = Histogram::default();
        for ms in [1u64, 2, 3, 50, 70_000] {
            h.record(ms * 1_000_000);
        }
        let mut out = String::new();
        histogram_lines(&mut out, "scope=\"total\"", &h);
        let counts: Vec<u64> = out
            .lines()
            .filter(|l| l.contains("_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*counts.last().unwrap(), 5);
        // le just below 60 s holds all but the 70 s one; le just below 2.5 ms holds 1 and 2.
        assert_eq!(counts[counts.len() - 2], 4);
        assert!(out.contains("le=\"0.002490367\"} 2"), "{out}");
    }
}
