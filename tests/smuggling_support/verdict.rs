//! Verdicts on what crossed rgate: whether a response is one rgate made itself (its JSON
//! error shape), and what is wrong with a request as the backend received it or a response
//! as the client received it, judged against the spec the smuggling tests hold rgate to.

use super::corpus::{self, Forwarded};
use super::wire::Message;

/// Trailer fields that frame, route or describe a connection: never forwarded.
pub const FORBIDDEN_TRAILERS: [&str; 19] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "content-type",
    "content-encoding",
    "content-range",
    "authorization",
    "expect",
    "cookie",
    "set-cookie",
];

pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
    format!("{s:?}")
}

pub fn brief(m: &Message) -> String {
    format!("{} {} {}", m.start[1], m.start[2], show(&m.body))
}

/// The status of `m` when it is an error rgate made itself (its JSON shape).
pub fn rgate_error(m: &Message) -> Option<u16> {
    if m.header("content-type") != Some("application/json") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&m.body).ok()?;
    let status = u16::try_from(v["status"].as_u64()?).ok()?;
    let named = |k: &str| v[k].as_str().is_some_and(|s| !s.is_empty());
    (status == m.status() && named("error") && named("message")).then_some(status)
}

/// What is wrong with a request as the backend received it from rgate.
pub fn forwarded_faults(m: &Message, want: &Forwarded, tag: &str) -> Vec<String> {
    let mut f = Vec::new();
    let body = corpus::replace(&want.body, b"{ID}", tag.as_bytes());
    let target = m.target();
    if m.start[2] != "HTTP/1.1" {
        f.push(format!("forwarded as {}", m.start[2]));
    }
    if !target.starts_with('/') {
        f.push(format!("target {target:?} is not origin-form"));
    }
    if m.body != body {
        f.push(format!(
            "backend got body {} for {target}, expected {}",
            show(&m.body),
            show(&body)
        ));
    }
    for (name, _) in &m.headers {
        if name.contains('_') {
            f.push(format!("field name with '_' forwarded: {name}"));
        }
    }
    let hosts = m.all("host");
    if let Some(host) = want.host {
        if hosts.len() != 1 || !hosts[0].eq_ignore_ascii_case(host) {
            f.push(format!("backend got Host {hosts:?}, expected {host:?}"));
        }
    }
    for hop in ["keep-alive", "te", "trailer", "proxy-connection"] {
        if !m.all(hop).is_empty() {
            f.push(format!("hop-by-hop {hop} forwarded"));
        }
    }
    let upgrading = m.header("upgrade").is_some();
    for c in m.all("connection") {
        if !(upgrading && c.eq_ignore_ascii_case("upgrade")) {
            f.push(format!("Connection: {c} forwarded"));
        }
    }
    if upgrading && !m.connection_has("upgrade") {
        f.push("Upgrade forwarded without Connection: upgrade".into());
    }
    let cl = m.all("content-length");
    if let Some(n) = cl.first() {
        if n.parse::<usize>().ok() != Some(m.body.len()) {
            f.push(format!("Content-Length {n} for a body of {}", m.body.len()));
        }
    }
    let xff = m.all("x-forwarded-for");
    if xff.len() != 1 || xff[0].rsplit(',').next().map(str::trim) != Some("127.0.0.1") {
        f.push(format!(
            "X-Forwarded-For {xff:?}, expected one ending in 127.0.0.1"
        ));
    }
    if m.all("x-forwarded-proto") != ["http"] {
        f.push(format!(
            "X-Forwarded-Proto {:?}, expected [\"http\"]",
            m.all("x-forwarded-proto")
        ));
    }
    if m.all("x-forwarded-host").len() > 1 {
        f.push(format!("X-Forwarded-Host {:?}", m.all("x-forwarded-host")));
    }
    for (name, value) in &want.has {
        if m.all(name) != [*value] {
            f.push(format!(
                "backend got {name} {:?}, expected [{value:?}]",
                m.all(name)
            ));
        }
    }
    if !m.extensions.is_empty() {
        f.push(format!("chunk extensions forwarded: {:?}", m.extensions));
    }
    f.extend(trailer_faults(&m.trailers));
    f
}

pub fn trailer_faults(trailers: &[(String, String)]) -> Vec<String> {
    trailers
        .iter()
        .filter(|(n, _)| FORBIDDEN_TRAILERS.iter().any(|t| t.eq_ignore_ascii_case(n)))
        .map(|(n, v)| format!("trailer {n}: {v} passed on"))
        .collect()
}

/// What is wrong with a response as rgate relayed it.
pub fn relayed_faults(m: &Message) -> Vec<String> {
    let mut f = Vec::new();
    for hop in ["keep-alive", "te", "trailer", "proxy-connection", "upgrade"] {
        if !m.all(hop).is_empty() {
            f.push(format!("hop-by-hop {hop} relayed"));
        }
    }
    if !m.extensions.is_empty() {
        f.push(format!("chunk extensions relayed: {:?}", m.extensions));
    }
    f.extend(trailer_faults(&m.trailers));
    f
}
