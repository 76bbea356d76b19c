//! The config file: raw serde types that mirror the YAML, and their validation into the
//! `Config` the rest of rgate uses. Nothing outside this module sees an unvalidated value.
//!
//! Every error names the file, the field (as a path such as `routes[1].backend`) and why;
//! the binary turns a `ConfigError` into exit code 2.

use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::UnderscorePolicy;

mod access_log;
mod backend_policy;
mod routes;

pub use backend_policy::{BackendPolicy, Balance, BreakerPolicy, HealthCheck, RetryPolicy};
use backend_policy::{RawBreaker, RawHealthCheck, RawPolicy, RawRetries};
use routes::RawRoute;
pub(crate) use routes::{check_path, host_pattern};
pub use routes::{HeaderEdits, HostPattern, Rewrite, Route, RouteSource};

// ----- raw: exactly what the YAML may say -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_response: Option<RawDefaultResponse>,
    #[serde(default)]
    backends: Vec<RawBackend>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    stats: Option<RawStats>,
    #[serde(default)]
    headers: Option<RawHeaders>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    access_log: Option<access_log::RawAccessLog>,
    #[serde(default)]
    docker: Option<RawDocker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    label_routes: Option<bool>,
    mode: Option<String>,
    swarm_poll_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    min_request_body_rate: Option<u64>,
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    underscores: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaultResponse {
    body: String,
    status_code: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    #[serde(default)]
    match_labels: Vec<String>,
    #[serde(default)]
    addresses: Vec<RawAddress>,
    #[serde(default)]
    balance: Option<String>,
    #[serde(default)]
    retries: Option<RawRetries>,
    #[serde(default)]
    circuit_breaker: Option<RawBreaker>,
    #[serde(default)]
    health_check: Option<RawHealthCheck>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

/// A fixed address: `"host:port"`, or `{address: "host:port", weight: 3}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAddress {
    Plain(String),
    Weighted(RawWeightedAddress),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeightedAddress {
    address: String,
    weight: u32,
}

/// All in milliseconds; each has a production default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_ms: Option<u64>,
    response_header_ms: Option<u64>,
    body_idle_ms: Option<u64>,
    client_head_ms: Option<u64>,
    keepalive_idle_ms: Option<u64>,
    pool_idle_ms: Option<u64>,
    client_write_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    interval_ms: Option<u64>,
    retention_days: Option<u64>,
    path: Option<String>,
    metrics_path: Option<String>,
}

// ----- validated -----

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub routes: Vec<Route>,
    pub default_response: DefaultResponse,
    pub backends: Vec<BackendSpec>,
    pub timeouts: Timeouts,
    pub stats: StatsSettings,
    pub headers: HeaderSettings,
    pub limits: LimitSettings,
    /// None: no access log.
    pub access_log: Option<crate::access_log::AccessLogSettings>,
    pub docker: DockerSettings,
}

/// What rgate takes from Docker beyond `match_labels` backends.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// Containers' `rgate.route.*` labels declare routes (`discovery::label_routes`).
    pub label_routes: bool,
    /// The routes running containers declared when this process started (filled in at
    /// start, not from the file); their routes and backends follow the file's.
    pub declared: Vec<crate::discovery::RouteKey>,
    /// Where instances come from: containers of this host, or swarm services' tasks.
    pub mode: DockerMode,
    /// How often swarm mode lists the tasks of the matching services (Docker sends no task
    /// events).
    pub swarm_poll: Duration,
}

/// `docker.mode`: which Docker objects are a `match_labels` backend's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerMode {
    /// The running containers of this Docker host (labels on the container).
    Containers,
    /// The running tasks of swarm services (labels on the service); needs a manager.
    Swarm,
    /// Swarm when the daemon is an active swarm manager, else containers.
    #[default]
    Auto,
}

/// The default `docker.swarm_poll_ms`.
pub const DEFAULT_SWARM_POLL: Duration = Duration::from_secs(2);
/// Polling the manager more often than this only loads it; less often than the ceiling
/// leaves stopped tasks in the table too long.
const SWARM_POLL_MIN_MS: u64 = 100;
const SWARM_POLL_MAX_MS: u64 = 60_000;

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            label_routes: false,
            declared: Vec::new(),
            mode: DockerMode::default(),
            swarm_poll: DEFAULT_SWARM_POLL,
        }
    }
}

/// The highest `limits.min_request_body_rate` (bytes/s): 1 GB/s.
const MAX_BODY_RATE: u64 = 1_000_000_000;

/// Connection caps the config sets; unset, they are derived from the open-files limit
/// (`limits::ConnectionLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    /// Bytes per second a request body must keep up, over each 10 s (0: no minimum).
    pub min_request_body_rate: u64,
    /// The largest request body, unless a route says otherwise (None: no limit).
    pub max_body_bytes: Option<u64>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_connections: None,
            max_connections_per_ip: None,
            min_request_body_rate: 512,
            max_body_bytes: None,
        }
    }
}

/// How request header fields are treated beyond what HTTP requires.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderSettings {
    /// Field names with `_` (`Content_Length`…): dropped, forwarded or refused.
    pub underscores: UnderscorePolicy,
}

#[derive(Debug, Clone)]
pub struct DefaultResponse {
    pub body: String,
    pub status: u16,
}

/// How a backend's instances are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Running Docker containers carrying every one of these `(key, value)` labels.
    DockerLabels(Vec<(String, String)>),
    /// Fixed addresses, for services outside Docker.
    Static(Vec<StaticAddress>),
    /// Running containers whose `rgate.route.*` labels declare this route.
    LabelRoute(crate::discovery::RouteKey),
}

/// A configured instance address and its share of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticAddress {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// The largest weight an instance may have (a label or a configured address).
pub const MAX_WEIGHT: u32 = 1_000;

#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub name: String,
    pub discovery: Discovery,
    pub policy: BackendPolicy,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting to a backend; past it the backend counts as unreachable (503).
    pub connect: Duration,
    /// From the request sent to the backend's response head; past it, 504.
    pub response_header: Duration,
    /// Longest silence while a body streams, either way; past it the exchange is abandoned.
    pub body_idle: Duration,
    /// From a request's first byte to its complete head; past it, 408.
    pub client_head: Duration,
    /// How long an idle keep-alive client connection is kept open.
    pub keepalive_idle: Duration,
    /// How long an idle pooled backend connection is kept.
    pub pool_idle: Duration,
    /// The longest a response waits for a client that reads nothing; past it, cut.
    pub client_write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            response_header: Duration::from_secs(60),
            body_idle: Duration::from_secs(60),
            client_head: Duration::from_secs(30),
            keepalive_idle: Duration::from_secs(60),
            pool_idle: Duration::from_secs(30),
            client_write: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// How often the stats thread collects the cores' counters into SQLite.
    pub interval: Duration,
    /// How long per-minute history rows are kept.
    pub retention: Duration,
    /// The path answered with the JSON statistics.
    pub path: String,
    /// The path answered with Prometheus text.
    pub metrics_path: String,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            path: "/stats".into(),
            metrics_path: "/metrics".into(),
        }
    }
}

/// A config that cannot be used: which file, which field, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.reason
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            field: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            // serde_yaml reports "field.path: reason at line L column C"; split the path off
            // so the message reads like every other config error.
            let msg = e.to_string();
            let (field, reason) = match msg.split_once(": ") {
                Some((f, r)) if !f.contains(' ') => (f.to_string(), r.to_string()),
                _ => (String::new(), msg),
            };
            ConfigError {
                file: path.to_path_buf(),
                field,
                reason,
            }
        })?;
        Validator { file: path }.validate(raw)
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let backends = self.backends(raw.backends)?;
        let routes = self.routes(raw.routes, &backends)?;
        let default_response = match raw.default_response {
            None => DefaultResponse {
                body: "Not Found".into(),
                status: 404,
            },
            Some(d) => DefaultResponse {
                body: d.body,
                status: self.status_code("default_response.status_code", d.status_code)?,
            },
        };
        let timeouts = self.timeouts(raw.timeouts)?;
        let stats = self.stats(raw.stats)?;
        let headers = self.headers(raw.headers)?;
        let limits = self.limits(raw.limits)?;
        let access_log = raw
            .access_log
            .map(access_log::validate)
            .transpose()
            .map_err(|(field, reason)| self.err(field, reason))?;
        Ok(Config {
            access_log,
            docker: self.docker(raw.docker)?,
            routes,
            default_response,
            backends,
            timeouts,
            stats,
            headers,
            limits,
        })
    }

    fn docker(&self, raw: Option<RawDocker>) -> Result<DockerSettings, ConfigError> {
        let Some(raw) = raw else {
            return Ok(DockerSettings::default());
        };
        let mode = match raw.mode.as_deref().map(str::trim) {
            None | Some("auto") => DockerMode::Auto,
            Some("containers") => DockerMode::Containers,
            Some("swarm") => DockerMode::Swarm,
            Some(other) => {
                return Err(self.err(
                    "docker.mode",
                    format!("{other:?} is not one of containers, swarm, auto"),
                ))
            }
        };
        let swarm_poll = match raw.swarm_poll_ms {
            None => DEFAULT_SWARM_POLL,
            Some(ms) if (SWARM_POLL_MIN_MS..=SWARM_POLL_MAX_MS).contains(&ms) => {
                Duration::from_millis(ms)
            }
            Some(ms) => {
                return Err(self.err(
                    "docker.swarm_poll_ms",
                    format!(
                        "{ms} ms is outside {SWARM_POLL_MIN_MS}..={SWARM_POLL_MAX_MS} (a swarm is polled for its tasks at this interval)"
                    ),
                ))
            }
        };
        Ok(DockerSettings {
            label_routes: raw.label_routes.unwrap_or(false),
            declared: Vec::new(),
            mode,
            swarm_poll,
        })
    }

    fn limits(&self, raw: Option<RawLimits>) -> Result<LimitSettings, ConfigError> {
        let Some(raw) = raw else {
            return Ok(LimitSettings::default());
        };
        for (name, value) in [
            ("limits.max_connections", raw.max_connections),
            ("limits.max_connections_per_ip", raw.max_connections_per_ip),
        ] {
            if value == Some(0) {
                return Err(self.err(name, "must be at least 1"));
            }
        }
        if let Some(rate) = raw.min_request_body_rate.filter(|&r| r > MAX_BODY_RATE) {
            return Err(self.err(
                "limits.min_request_body_rate",
                format!("{rate} bytes/s is more than {MAX_BODY_RATE}"),
            ));
        }
        Ok(LimitSettings {
            max_connections: raw.max_connections,
            max_connections_per_ip: raw.max_connections_per_ip,
            min_request_body_rate: raw
                .min_request_body_rate
                .unwrap_or(LimitSettings::default().min_request_body_rate),
            max_body_bytes: raw.max_body_bytes,
        })
    }

    fn headers(&self, raw: Option<RawHeaders>) -> Result<HeaderSettings, ConfigError> {
        let mut h = HeaderSettings::default();
        if let Some(value) = raw.and_then(|r| r.underscores) {
            h.underscores = match value.as_str() {
                "drop" => UnderscorePolicy::Drop,
                "forward" => UnderscorePolicy::Forward,
                "reject" => UnderscorePolicy::Reject,
                other => {
                    return Err(self.err(
                        "headers.underscores",
                        format!("{other:?} is not one of drop, forward, reject"),
                    ))
                }
            };
        }
        Ok(h)
    }

    fn backends(&self, raw: Vec<RawBackend>) -> Result<Vec<BackendSpec>, ConfigError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, b) in raw.into_iter().enumerate() {
            let field = format!("backends[{i}]");
            if b.name.trim().is_empty() {
                return Err(self.err(format!("{field}.name"), "must not be empty"));
            }
            if !seen.insert(b.name.clone()) {
                return Err(self.err(
                    format!("{field}.name"),
                    format!("duplicate backend name {:?}", b.name),
                ));
            }
            let discovery = match (b.match_labels.is_empty(), b.addresses.is_empty()) {
                (true, true) => {
                    return Err(self.err(
                        field,
                        format!(
                            "backend {:?} has neither match_labels nor addresses",
                            b.name
                        ),
                    ))
                }
                (false, false) => {
                    return Err(self.err(
                        field,
                        format!(
                            "backend {:?} has both match_labels and addresses; give one",
                            b.name
                        ),
                    ))
                }
                (false, true) => Discovery::DockerLabels(self.labels(&field, &b.match_labels)?),
                (true, false) => Discovery::Static(self.addresses(&field, &b.addresses)?),
            };
            let policy = RawPolicy {
                balance: b.balance,
                retries: b.retries,
                circuit_breaker: b.circuit_breaker,
                health_check: b.health_check,
                max_in_flight: b.max_in_flight,
            }
            .validate()
            .map_err(|(f, reason)| self.err(format!("{field}.{f}"), reason))?;
            out.push(BackendSpec {
                name: b.name,
                discovery,
                policy,
            });
        }
        Ok(out)
    }

    fn labels(&self, field: &str, raw: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(j, label)| match label.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(self.err(
                    format!("{field}.match_labels[{j}]"),
                    format!("{label:?} is not of the form key=value"),
                )),
            })
            .collect()
    }

    fn addresses(
        &self,
        field: &str,
        raw: &[RawAddress],
    ) -> Result<Vec<StaticAddress>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(j, a)| {
                let field = format!("{field}.addresses[{j}]");
                let (a, weight) = match a {
                    RawAddress::Plain(a) => (a, 1),
                    RawAddress::Weighted(w) => (&w.address, w.weight),
                };
                if !(1..=MAX_WEIGHT).contains(&weight) {
                    return Err(self.err(
                        format!("{field}.weight"),
                        format!("{weight} is not a weight (1..={MAX_WEIGHT})"),
                    ));
                }
                let addr = match a.parse::<SocketAddr>() {
                    Ok(addr) => addr,
                    Err(_) => a
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut it| it.next())
                        .ok_or_else(|| {
                            self.err(&field, format!("{a:?} is not a host:port address"))
                        })?,
                };
                Ok(StaticAddress { addr, weight })
            })
            .collect()
    }

    fn routes(
        &self,
        raw: Vec<RawRoute>,
        backends: &[BackendSpec],
    ) -> Result<Vec<Route>, ConfigError> {
        routes::validate(raw, backends).map_err(|(field, why)| self.err(field, why))
    }

    fn status_code(&self, field: &str, code: u32) -> Result<u16, ConfigError> {
        if (100..=599).contains(&code) {
            Ok(code as u16)
        } else {
            Err(self.err(
                field,
                format!("{code} is not an HTTP status code (100..=599)"),
            ))
        }
    }

    fn timeouts(&self, raw: Option<RawTimeouts>) -> Result<Timeouts, ConfigError> {
        let mut t = Timeouts::default();
        let Some(raw) = raw else { return Ok(t) };
        let fields = [
            ("connect_ms", raw.connect_ms, &mut t.connect),
            (
                "response_header_ms",
                raw.response_header_ms,
                &mut t.response_header,
            ),
            ("body_idle_ms", raw.body_idle_ms, &mut t.body_idle),
            ("client_head_ms", raw.client_head_ms, &mut t.client_head),
            (
                "keepalive_idle_ms",
                raw.keepalive_idle_ms,
                &mut t.keepalive_idle,
            ),
            ("pool_idle_ms", raw.pool_idle_ms, &mut t.pool_idle),
            ("client_write_ms", raw.client_write_ms, &mut t.client_write),
        ];
        for (name, value, slot) in fields {
            if let Some(ms) = value {
                *slot = self.positive_ms(&format!("timeouts.{name}"), ms)?;
            }
        }
        Ok(t)
    }

    fn stats(&self, raw: Option<RawStats>) -> Result<StatsSettings, ConfigError> {
        let mut s = StatsSettings::default();
        let Some(raw) = raw else { return Ok(s) };
        if let Some(ms) = raw.interval_ms {
            s.interval = self.positive_ms("stats.interval_ms", ms)?;
        }
        if let Some(days) = raw.retention_days {
            if days == 0 {
                return Err(self.err("stats.retention_days", "must be at least 1"));
            }
            s.retention = Duration::from_secs(days.saturating_mul(24 * 3600));
        }
        for (name, value, slot) in [
            ("stats.path", raw.path, &mut s.path),
            ("stats.metrics_path", raw.metrics_path, &mut s.metrics_path),
        ] {
            if let Some(p) = value {
                if !p.starts_with('/') {
                    return Err(self.err(name, format!("{p:?} must start with '/'")));
                }
                *slot = p;
            }
        }
        Ok(s)
    }

    fn positive_ms(&self, field: &str, ms: u64) -> Result<Duration, ConfigError> {
        if ms == 0 {
            Err(self.err(field, "must be greater than 0"))
        } else {
            Ok(Duration::from_millis(ms))
        }
    }
}

#[cfg(test)]
mod tests;
