//! What a backend does about failing and busy instances: how requests are spread
//! (`balance`), when a failed attempt goes to another instance (`retries`), when an
//! instance is taken out of rotation (`circuit_breaker`), whether it is probed
//! (`health_check`), and how many requests it may have at once (`max_in_flight`). The raw
//! YAML shapes and their validation; every field has a production default.

use std::time::Duration;

use serde::Deserialize;

// ----- raw -----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetries {
    max: Option<u32>,
    budget_percent: Option<u32>,
    min_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    failures: Option<u32>,
    timeouts: Option<u32>,
    ejection_ms: Option<u64>,
    max_ejection_ms: Option<u64>,
    on_5xx: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    path: String,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    healthy_after: Option<u32>,
    unhealthy_after: Option<u32>,
}

/// The policy fields of one `backends[i]` entry (read with the entry's other fields).
#[derive(Debug, Default)]
pub(super) struct RawPolicy {
    pub(super) balance: Option<String>,
    pub(super) retries: Option<RawRetries>,
    pub(super) circuit_breaker: Option<RawBreaker>,
    pub(super) health_check: Option<RawHealthCheck>,
    pub(super) max_in_flight: Option<u32>,
}

// ----- validated -----

/// How a request picks among a backend's instances in rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// At random, in proportion to the weights (the seed's behaviour).
    #[default]
    Random,
    /// In turn, in proportion to the weights (smooth weighted round robin), per core.
    RoundRobin,
    /// The less busy of two instances drawn at random (in-flight requests per weight).
    LeastRequests,
}

/// When a failed attempt is sent again to another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on other instances after the first, per request.
    pub max: u32,
    /// Retries may be at most this share (in percent) of the requests of the last 10 s, on
    /// each core, so that a backend-wide outage never multiplies its load...
    pub budget_percent: u32,
    /// ...plus a reserve of this many per second of the window, always allowed.
    pub min_per_second: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max: 2,
            budget_percent: 20,
            min_per_second: 10,
        }
    }
}

/// When an instance is taken out of rotation (passive health: what requests saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// Consecutive timeouts (connect or response) that open it sooner: each one cost a
    /// client the whole timeout, where a refusal is retried at once.
    pub timeouts: u32,
    /// How long an instance is out at its first ejection; each ejection that follows a
    /// failed trial doubles it...
    pub ejection: Duration,
    /// ...up to this.
    pub max_ejection: Duration,
    /// Whether a 5xx response counts as a failure (it is relayed to the client all the same).
    pub on_5xx: bool,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 3,
            timeouts: 1,
            ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            on_5xx: false,
        }
    }
}

/// Active health checks: rgate asks each instance itself, off the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Origin-form path asked with GET; a 2xx or 3xx answer is a pass.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy instance back.
    pub healthy_after: u32,
    /// Consecutive failed checks that make an instance unhealthy.
    pub unhealthy_after: u32,
}

/// Everything a backend does about failing and busy instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendPolicy {
    pub balance: Balance,
    pub retries: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub health_check: Option<HealthCheck>,
    /// Requests in flight to the backend (all cores) past which it answers 503 `overloaded`.
    pub max_in_flight: Option<u32>,
}

/// A field's problem: `(field path under the backend, reason)`.
pub(super) type FieldError = (String, String);

fn field_err(field: &str, reason: impl Into<String>) -> FieldError {
    (field.to_string(), reason.into())
}

/// The longest duration any of these settings may have: a day.
const MAX_MS: u64 = 24 * 3600 * 1000;

fn positive_ms(field: &str, ms: u64) -> Result<Duration, FieldError> {
    if ms == 0 {
        Err(field_err(field, "must be greater than 0"))
    } else if ms > MAX_MS {
        Err(field_err(
            field,
            format!("{ms} is more than a day ({MAX_MS})"),
        ))
    } else {
        Ok(Duration::from_millis(ms))
    }
}

fn at_least_one(field: &str, n: u32) -> Result<u32, FieldError> {
    if n == 0 {
        Err(field_err(field, "must be at least 1"))
    } else {
        Ok(n)
    }
}

impl RawPolicy {
    /// The validated policy; an error names the field under the backend (`retries.max`).
    pub(super) fn validate(self) -> Result<BackendPolicy, FieldError> {
        let balance = match self.balance.as_deref() {
            None | Some("random") => Balance::Random,
            Some("round_robin") => Balance::RoundRobin,
            Some("least_requests") => Balance::LeastRequests,
            Some(other) => {
                return Err(field_err(
                    "balance",
                    format!("{other:?} is not one of random, round_robin, least_requests"),
                ))
            }
        };
        let mut retries = RetryPolicy::default();
        if let Some(r) = self.retries {
            if let Some(max) = r.max {
                if max > 10 {
                    return Err(field_err("retries.max", format!("{max} is more than 10")));
                }
                retries.max = max;
            }
            if let Some(p) = r.budget_percent {
                if p > 100 {
                    return Err(field_err(
                        "retries.budget_percent",
                        format!("{p} is not a percentage (0..=100)"),
                    ));
                }
                retries.budget_percent = p;
            }
            if let Some(n) = r.min_per_second {
                retries.min_per_second = n;
            }
        }
        let mut breaker = BreakerPolicy::default();
        if let Some(b) = self.circuit_breaker {
            if let Some(n) = b.failures {
                breaker.failures = at_least_one("circuit_breaker.failures", n)?;
            }
            if let Some(n) = b.timeouts {
                breaker.timeouts = at_least_one("circuit_breaker.timeouts", n)?;
            }
            if let Some(ms) = b.ejection_ms {
                breaker.ejection = positive_ms("circuit_breaker.ejection_ms", ms)?;
            }
            if let Some(ms) = b.max_ejection_ms {
                breaker.max_ejection = positive_ms("circuit_breaker.max_ejection_ms", ms)?;
            }
            if breaker.max_ejection < breaker.ejection {
                return Err(field_err(
                    "circuit_breaker.max_ejection_ms",
                    format!(
                        "{} ms is less than ejection_ms ({} ms)",
                        breaker.max_ejection.as_millis(),
                        breaker.ejection.as_millis()
                    ),
                ));
            }
            breaker.on_5xx = b.on_5xx.unwrap_or(false);
        }
        let health_check = self.health_check.map(validate_check).transpose()?;
        let max_in_flight = self
            .max_in_flight
            .map(|n| at_least_one("max_in_flight", n))
            .transpose()?;
        Ok(BackendPolicy {
            balance,
            retries,
            breaker,
            health_check,
            max_in_flight,
        })
    }
}

fn validate_check(raw: RawHealthCheck) -> Result<HealthCheck, FieldError> {
    let path_ok = raw.path.starts_with('/') && !raw.path.bytes().any(|b| b <= b' ' || b == 0x7f);
    if !path_ok {
        return Err(field_err(
            "health_check.path",
            format!(
                "{:?} must start with '/' and have no whitespace or control characters",
                raw.path
            ),
        ));
    }
    let interval = positive_ms("health_check.interval_ms", raw.interval_ms.unwrap_or(5_000))?;
    let timeout = positive_ms("health_check.timeout_ms", raw.timeout_ms.unwrap_or(2_000))?;
    if timeout > interval {
        return Err(field_err(
            "health_check.timeout_ms",
            format!(
                "{} ms is longer than interval_ms ({} ms)",
                timeout.as_millis(),
                interval.as_millis()
            ),
        ));
    }
    Ok(HealthCheck {
        path: raw.path,
        interval,
        timeout,
        healthy_after: at_least_one("health_check.healthy_after", raw.healthy_after.unwrap_or(2))?,
        unhealthy_after: at_least_one(
            "health_check.unhealthy_after",
            raw.unhealthy_after.unwrap_or(3),
        )?,
    })
}
