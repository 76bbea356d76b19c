//! The HTTP/1.1 codec: parsing heads, deciding body framing, decoding chunked bodies and
//! writing heads, all on byte buffers. Nothing here knows about sockets or runtimes; the
//! proxy loop (`crate::proxy`) drives it. "Need more input" is an explicit `Ok(None)`.
//!
//! * `request`  — the client's request head: parse, validate, extract what the proxy needs.
//! * `request_id` — `X-Request-Id`: a client's kept when valid, else one made per core.
//! * `response` — the backend's response head.
//! * `framing`  — `BodyFraming`, decided once per message (RFC 9112 §6).
//! * `chunked`  — the chunked coding as a state machine.
//! * `chunked`  — also re-frames a chunked body: rgate writes every chunk line itself.
//! * `trailers` — which trailer fields of a chunked body may be passed on.
//! * `host`     — the Host grammar, and the authority of an absolute-form target.
//! * `writer`   — the heads rgate writes: forwarded requests, relayed responses.
//! * `gateway`  — responses rgate makes itself (errors, the default response).
//!
//! # Framing integrity
//! What a backend parses must be exactly what rgate decided to forward, and what a client
//! parses exactly what the backend answered to it. So rgate never copies a framing field:
//! it decides a message's framing once (`framing`), drops every `Content-Length` and
//! `Transfer-Encoding` the peer sent, and writes its own (`writer`), re-chunking chunked
//! bodies (`chunked::Reframer`). A `Connection` option can remove end-to-end fields, but
//! never one rgate frames, routes on or sets itself (`NEVER_HOP_BY_HOP`).

pub mod chunked;
pub mod framing;
pub mod gateway;
pub mod host;
pub mod request;
pub mod request_id;
pub mod response;
pub mod trailers;
pub mod writer;

/// At most this many header fields in a head (request or response); more → 431 / 502.
pub const MAX_HEADERS: usize = 100;
/// The largest head rgate reads, request line or status line included.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The longest request-target; longer → 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The HTTP/1.x minor version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

/// Says what becomes of the client connection after a response, where it is not what the
/// client's version implies: `close` when rgate closes it, `keep-alive` to an HTTP/1.0
/// client it keeps. Every response head rgate writes to a client ends this way.
pub(crate) fn put_persistence(out: &mut Vec<u8>, client_version: Version, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// What a `Connection` header (or several) says, plus the names it lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Other listed header names: hop-by-hop for this message only (RFC 9110 §7.6.1).
    pub extra: Vec<String>,
}

impl ConnectionTokens {
    fn add(&mut self, value: &[u8]) {
        for token in comma_list(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if let Ok(name) = std::str::from_utf8(token) {
                // RFC 9110 §7.6.1 lets an intermediary refuse to treat a field as hop-by-hop;
                // the fields rgate frames, routes on or sets are never removable this way
                // (`Connection: content-length` would otherwise unframe a relayed body).
                if !NEVER_HOP_BY_HOP
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
                {
                    self.extra.push(name.to_ascii_lowercase());
                }
            }
        }
    }

    /// Whether the connection persists after this message (RFC 9112 §9.3).
    pub fn persistent(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        }
    }

    fn names(&self, name: &str) -> bool {
        self.extra.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Header fields that describe one connection, not the message (RFC 9110 §7.6.1), and so
/// are never forwarded as they are. `Upgrade` is handled apart: kept only while upgrading.
/// `HTTP2-Settings` belongs to an h2c upgrade (RFC 7540 §3.2.1), which rgate never relays.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields a `Connection` option can never remove: the framing rgate writes itself, the
/// Host it routes on and forwards, and the fields it sets on every forwarded request.
pub const NEVER_HOP_BY_HOP: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-request-id",
];

/// What to do with a request header whose name contains `_`. Such names are valid tokens,
/// but CGI-style servers map `_` and `-` to the same variable, so `Content_Length` can reach
/// a backend as its framing; nginx drops them by default, and so does rgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscorePolicy {
    /// Not forwarded (the default).
    #[default]
    Drop,
    /// Forwarded like any other field.
    Forward,
    /// The request is refused with 400.
    Reject,
}

/// Whether `name` must not be forwarded, given the message's `Connection` tokens.
pub fn is_hop_by_hop(name: &str, connection: &ConnectionTokens) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) || connection.names(name)
}

/// The non-empty, trimmed elements of a comma-separated header value.
pub fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
