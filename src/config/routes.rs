//! The `routes` section: which requests go where (`host`, `path_prefix`), what the backend
//! sees of the path (`strip_prefix`, `rewrite_prefix`), header edits both ways
//! (`request_headers`, `response_headers`), and a body limit (`max_body_bytes`).
//!
//! ```yaml
//! routes:
//!   - path_prefix: /api/search
//!     host: "*.example.com"        # optional: exact, or one leading label wildcard
//!     backend: search
//!     strip_prefix: true           # the backend sees /q?x=1 for /api/search/q?x=1
//!     request_headers: {set: {X-Team: search}, remove: [Cookie]}
//!     response_headers: {set: {Cache-Control: no-store}, remove: [Server]}
//!     max_body_bytes: 1048576
//! ```
//!
//! Header edits may not touch what rgate frames, routes on or sets itself: validation
//! refuses them by name (`reserved_in_requests`, `reserved_in_responses`).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::BackendSpec;
pub use crate::http::writer::HeaderEdits;
use crate::http::{HOP_BY_HOP, NEVER_HOP_BY_HOP};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    path_prefix: String,
    backend: String,
    host: Option<String>,
    strip_prefix: Option<bool>,
    rewrite_prefix: Option<String>,
    request_headers: Option<RawHeaderEdits>,
    response_headers: Option<RawHeaderEdits>,
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderEdits {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// This host exactly (lower-case, no port).
    Exact(String),
    /// Any host with one more leading label than this suffix (`*.example.com` is stored
    /// as `example.com`: it matches `a.example.com`, not `example.com` nor `a.b.example.com`).
    Wildcard(String),
}

/// What the backend sees of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Keep,
    /// The route's prefix removed (the path still starts with `/`).
    Strip,
    /// The route's prefix replaced by this one.
    Replace(String),
}

/// Where a route was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSource {
    /// The config file.
    File,
    /// The `rgate.route.*` labels of running containers (`docker.label_routes`).
    Labels,
}

impl RouteSource {
    pub fn name(self) -> &'static str {
        match self {
            RouteSource::File => "file",
            RouteSource::Labels => "labels",
        }
    }
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub source: RouteSource,
    pub host: Option<HostPattern>,
    /// Index into `Config::backends`.
    pub backend: usize,
    pub rewrite: Rewrite,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// The largest request body; None: the global `limits.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
}

impl Route {
    /// How `/stats`, `/metrics` and the access log name the route: its prefix, after its
    /// host when it has one (`api.example.com/v1`, `*.example.com/`).
    pub fn name(&self) -> String {
        match &self.host {
            None => self.prefix.clone(),
            Some(HostPattern::Exact(h)) => format!("{h}{}", self.prefix),
            Some(HostPattern::Wildcard(s)) => format!("*.{s}{}", self.prefix),
        }
    }

    /// A route for `prefix` to backend `backend` and nothing else (label routes, tests).
    pub fn plain(prefix: &str, backend: usize) -> Route {
        Route {
            prefix: prefix.to_string(),
            source: RouteSource::File,
            host: None,
            backend,
            rewrite: Rewrite::Keep,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            max_body_bytes: None,
        }
    }
}

/// Whether a route may not set or remove this request field (lower-case): what rgate
/// frames, routes on or sets itself (`http::NEVER_HOP_BY_HOP`), the hop-by-hop fields, and
/// `Expect` (rgate answers it).
fn reserved_in_requests(name: &str) -> bool {
    NEVER_HOP_BY_HOP.contains(&name) || HOP_BY_HOP.contains(&name) || name == "expect"
}

/// Whether a route may not set or remove this response field (lower-case): its framing,
/// the hop-by-hop fields, and the request ID rgate adds.
fn reserved_in_responses(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name == "content-length" || name == "x-request-id"
}

/// A field and why it is refused.
type FieldError = (String, String);

pub(super) fn validate(
    raw: Vec<RawRoute>,
    backends: &[BackendSpec],
) -> Result<Vec<Route>, FieldError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        check_path("path_prefix", &r.path_prefix).map_err(|why| (field("path_prefix"), why))?;
        let host = r
            .host
            .as_deref()
            .map(host_pattern)
            .transpose()
            .map_err(|why| (field("host"), why))?;
        if !seen.insert((host.clone(), r.path_prefix.clone())) {
            return Err((
                field("path_prefix"),
                format!(
                    "duplicate path_prefix {:?}{}",
                    r.path_prefix,
                    r.host
                        .as_deref()
                        .map_or(String::new(), |h| format!(" for host {h:?}"))
                ),
            ));
        }
        let Some(backend) = backends.iter().position(|b| b.name == r.backend) else {
            let known: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
            return Err((
                field("backend"),
                format!(
                    "unknown backend {:?} (backends defined: {})",
                    r.backend,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let rewrite = match (r.strip_prefix.unwrap_or(false), r.rewrite_prefix) {
            (true, Some(_)) => {
                return Err((
                    field("rewrite_prefix"),
                    "strip_prefix and rewrite_prefix exclude each other".into(),
                ))
            }
            (true, None) => Rewrite::Strip,
            (false, Some(p)) => {
                check_path("rewrite_prefix", &p).map_err(|why| (field("rewrite_prefix"), why))?;
                Rewrite::Replace(p)
            }
            (false, None) => Rewrite::Keep,
        };
        let request_headers = edits(r.request_headers, reserved_in_requests)
            .map_err(|(name, why)| (field(&format!("request_headers.{name}")), why))?;
        let response_headers = edits(r.response_headers, reserved_in_responses)
            .map_err(|(name, why)| (field(&format!("response_headers.{name}")), why))?;
        out.push(Route {
            prefix: r.path_prefix,
            source: RouteSource::File,
            host,
            backend,
            rewrite,
            request_headers,
            response_headers,
            max_body_bytes: r.max_body_bytes,
        });
    }
    Ok(out)
}

/// A path prefix: starts with `/`, no whitespace, controls, `?` or `#`.
pub(crate) fn check_path(what: &str, p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{p:?} contains whitespace or control characters"));
    }
    if p.contains(['?', '#']) {
        return Err(format!("{p:?}: a {what} is a path, without '?' or '#'"));
    }
    Ok(())
}

/// `api.example.com` or `*.example.com`, compared case-insensitively without a port.
pub(crate) fn host_pattern(h: &str) -> Result<HostPattern, String> {
    let lower = h.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{h:?} is not a host name (letters, digits, '-' and '.'; a wildcard only as a \
             leading \"*.\"; no port)"
        ));
    }
    Ok(if wild {
        HostPattern::Wildcard(name.to_string())
    } else {
        HostPattern::Exact(name.to_string())
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn edits(
    raw: Option<RawHeaderEdits>,
    reserved: fn(&str) -> bool,
) -> Result<HeaderEdits, (String, String)> {
    let raw = raw.unwrap_or_default();
    let check = |part: &str, name: &str| -> Result<String, (String, String)> {
        let lower = name.to_ascii_lowercase();
        if !is_token(name) {
            return Err((
                part.to_string(),
                format!("{name:?} is not a header field name"),
            ));
        }
        if reserved(&lower) {
            return Err((
                part.to_string(),
                format!("{name:?} is framing, routing or set by rgate itself; it cannot be changed here"),
            ));
        }
        Ok(lower)
    };
    let mut out = HeaderEdits::default();
    for (name, value) in raw.set {
        let lower = check("set", &name)?;
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err((
                format!("set.{name}"),
                "the value contains control characters".into(),
            ));
        }
        out.set.push((lower, name, value.trim().to_string()));
    }
    for name in raw.remove {
        let lower = check("remove", &name)?;
        out.remove.push(lower);
    }
    Ok(out)
}
