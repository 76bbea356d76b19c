//! Differential fuzzing of rgate's HTTP/1.1 codec, in memory: bytes that a client (or a
//! backend) sends go through rgate's own parse → decide → write → relay steps, and what
//! rgate would put on the other socket is read back by an independent strict parser. The
//! two must agree on one message: same method, target, Host, status and body bytes, one
//! framing field, nothing left over. Otherwise rgate must have refused the input.
//!
//! # Layout
//! * `strict`   — the oracle: a strict HTTP/1.1 parser sharing no code with rgate or httparse.
//! * `request`  — a client's bytes through rgate's request path; `check_request`.
//! * `response` — a backend's bytes through rgate's response path; `check_response`.
//! * `relay`    — how the proxy relays a chunked body, mirrored from `src/proxy/body.rs`
//!   (that code is socket-bound and crate-private, so it is restated here).
//!
//! The fuzz targets in `fuzz_targets/` are one call each; `cargo test` replays the corpus in
//! `corpus/` through the same checks, on stable Rust and without a fuzzer.

pub mod relay;
pub mod request;
pub mod response;
pub mod strict;

pub use request::check_request;
pub use response::check_response;

use std::panic;

/// Which fuzz target an input is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Request,
    Response,
}

/// What the checks make of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// rgate refused it, or it ends before a whole message: nothing to compare.
    RefusedOrIncomplete,
    /// rgate's output and the strict parser agree.
    Agrees,
    /// The failure message (what the fuzz target would crash with).
    Differs(String),
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Request, Target::Response];

    /// The fuzz target's name, also its corpus directory's.
    pub fn name(self) -> &'static str {
        match self {
            Target::Request => "request",
            Target::Response => "response",
        }
    }

    pub fn check(self, data: &[u8]) {
        match self {
            Target::Request => check_request(data),
            Target::Response => check_response(data),
        }
    }

    /// Runs the check, catching its panic. The panic hook still runs: callers replaying
    /// many inputs may want to silence it (`std::panic::set_hook`).
    pub fn verdict(self, data: &[u8]) -> Verdict {
        match panic::catch_unwind(|| self.check(data)) {
            Err(payload) => Verdict::Differs(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic without a message".into()),
            ),
            Ok(()) => {
                let reached = match self {
                    Target::Request => request::forward(data).is_some(),
                    Target::Response => response::relay(data).is_some(),
                };
                if reached {
                    Verdict::Agrees
                } else {
                    Verdict::RefusedOrIncomplete
                }
            }
        }
    }
}

/// Trailer fields that must never reach a peer that might merge trailers into the head:
/// framing, routing and connection control (RFC 9110 §6.5.1).
const FORBIDDEN_TRAILERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The first trailer field whose name is forbidden, if any.
fn forbidden_trailer<'a>(trailers: &'a [strict::Field<'a>]) -> Option<&'a strict::Field<'a>> {
    trailers.iter().find(|t| {
        FORBIDDEN_TRAILERS
            .iter()
            .any(|n| t.name.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// Bytes as an escaped string for failure messages, cut to a readable length.
pub fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let text = bytes[..bytes.len().min(SHOWN)].escape_ascii().to_string();
    if bytes.len() > SHOWN {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}
