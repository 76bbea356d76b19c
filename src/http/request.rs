//! The client's request head: httparse does the tokenising; this module enforces rgate's
//! limits and RFC 9112's rules and extracts what the proxy needs (framing, persistence,
//! `Expect`, `Upgrade`, the effective Host). The head stays borrowed from the connection's
//! buffer.

use std::fmt;

use super::framing::{BodyFraming, FramingError, FramingHeaders};
use super::gateway::ErrorCode;
use super::host::{absolute_form_host, check_host, HostError};
use super::request_id::is_request_id_header;
use super::{ConnectionTokens, UnderscorePolicy, Version, MAX_HEAD_BYTES, MAX_TARGET_BYTES};

/// The only protocol rgate tunnels after `101 Switching Protocols`. Others (h2c above all)
/// would hand the client a raw connection to the backend that rgate's routing no longer
/// sees, so an `Upgrade` asking for them is dropped and the request forwarded as a plain one.
const TUNNELED_PROTOCOL: &[u8] = b"websocket";

/// The longest request line we wait for: target plus method, version and spaces.
const MAX_REQUEST_LINE_BYTES: usize = MAX_TARGET_BYTES + 64;

/// A parsed, validated request head.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, including the final CRLF; the body (if any) starts here.
    pub head_len: usize,
    pub framing: BodyFraming,
    pub connection: ConnectionTokens,
    pub expect_continue: bool,
    /// The `Upgrade` value, when `Connection: upgrade` asks for a WebSocket.
    pub upgrade: Option<&'b [u8]>,
    /// The validated Host the request is for: the authority of an absolute-form target, or
    /// else the `Host` field (RFC 9112 §3.2.2). None only for HTTP/1.0 without Host.
    pub host: Option<&'b [u8]>,
    /// Some field name contains `_` (see `UnderscorePolicy`).
    pub underscore_names: bool,
    /// The client's `X-Request-Id` when it sent exactly one (not validated yet: see
    /// `request_id::RequestIds::for_request`).
    pub request_id: Option<&'b [u8]>,
}

impl RequestHead<'_, '_> {
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Methods whose repetition has no further effect (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }

    /// Whether the client wants the connection kept after this exchange.
    pub fn wants_keep_alive(&self) -> bool {
        self.connection.persistent(self.version)
    }

    /// Refuses the request when a field name has `_` and the policy says so.
    pub fn check_underscores(&self, policy: UnderscorePolicy) -> Result<(), RequestError> {
        if self.underscore_names && policy == UnderscorePolicy::Reject {
            Err(RequestError::Malformed("header field name contains '_'"))
        } else {
            Ok(())
        }
    }
}

/// Why a request head was refused. Each maps to the status the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not HTTP/1.x, bad tokens, obs-fold, whitespace before a colon… (400)
    Malformed(&'static str),
    /// Request line or target over the limit (414).
    TargetTooLong,
    /// Head over `MAX_HEAD_BYTES` (431).
    HeadTooLarge,
    /// More than `MAX_HEADERS` fields (431).
    TooManyHeaders,
    /// Ambiguous or unsupported body framing (400, or 501 for an unknown coding).
    Framing(FramingError),
    /// An `Expect` other than 100-continue (417).
    UnsupportedExpectation,
    /// A Host field or absolute-form authority that is not a valid host (400).
    Host(HostError),
}

impl RequestError {
    /// The JSON `error` code the client gets with `status`.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Framing(FramingError::UnsupportedCoding) => ErrorCode::NotImplemented,
            RequestError::Malformed(_) | RequestError::Framing(_) | RequestError::Host(_) => {
                ErrorCode::BadRequest
            }
            RequestError::TargetTooLong => ErrorCode::UriTooLong,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => ErrorCode::HeadersTooLarge,
            RequestError::UnsupportedExpectation => ErrorCode::ExpectationFailed,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::TargetTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::Framing(FramingError::UnsupportedCoding) => 501,
            RequestError::Framing(_) | RequestError::Host(_) => 400,
            RequestError::UnsupportedExpectation => 417,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Malformed(why) => write!(f, "malformed request: {why}"),
            RequestError::TargetTooLong => {
                write!(f, "request target longer than {MAX_TARGET_BYTES} bytes")
            }
            RequestError::HeadTooLarge => {
                write!(f, "request head larger than {MAX_HEAD_BYTES} bytes")
            }
            RequestError::TooManyHeaders => {
                write!(f, "more than {} header fields", super::MAX_HEADERS)
            }
            RequestError::Framing(e) => write!(f, "{}", e.reason()),
            RequestError::UnsupportedExpectation => {
                write!(f, "only the 100-continue expectation is supported")
            }
            RequestError::Host(e) => write!(f, "invalid Host: {e}"),
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: need more input.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<RequestHead<'h, 'b>>, RequestError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_partial(buf)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => {
            // A head over the limit is reported as such even when httparse also dislikes it.
            check_partial(buf)?;
            return Err(RequestError::Malformed(httparse_reason(e)));
        }
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(RequestError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    if target.len() > MAX_TARGET_BYTES {
        return Err(RequestError::TargetTooLong);
    }
    let version = Version::from_minor(minor);
    let headers: &'h [httparse::Header<'b>] = req.headers;

    let mut framing = FramingHeaders::default();
    let mut connection = ConnectionTokens::default();
    let mut expect_continue = false;
    let mut upgrade = None;
    let mut host = None;
    let mut underscore_names = false;
    let mut request_id = None;
    let mut request_ids = 0;
    for h in headers {
        underscore_names |= h.name.as_bytes().contains(&b'_');
        if framing.observe(h.name, h.value) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        } else if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(RequestError::Malformed("more than one Host header"));
            }
            check_host(h.value).map_err(RequestError::Host)?;
            host = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("expect") {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(RequestError::UnsupportedExpectation);
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = Some(h.value);
        } else if is_request_id_header(h.name) {
            request_id = Some(h.value);
            request_ids += 1;
        }
    }
    if request_ids > 1 {
        request_id = None;
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
    if version == Version::Http11 && host.is_none() {
        return Err(RequestError::Malformed("missing Host header"));
    }
    // §3.2.2: the authority of an absolute-form target replaces Host.
    if let Some(authority) = absolute_form_host(target) {
        host = Some(authority.map_err(RequestError::Host)?.as_bytes());
    }
    let framing = framing
        .request_framing(version)
        .map_err(RequestError::Framing)?;
    let tunnelable = upgrade.is_some_and(|u: &[u8]| u.eq_ignore_ascii_case(TUNNELED_PROTOCOL));
    if !connection.upgrade || version == Version::Http10 || !tunnelable {
        upgrade = None;
    }
    // 100-continue only means something for a request with a body from an HTTP/1.1 client.
    let expect_continue =
        expect_continue && version == Version::Http11 && framing != BodyFraming::None;
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        head_len,
        framing,
        connection,
        expect_continue,
        upgrade,
        host,
        underscore_names,
        request_id,
    }))
}

/// Limits that apply while a head is still incomplete.
fn check_partial(buf: &[u8]) -> Result<(), RequestError> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        None if buf.len() > MAX_REQUEST_LINE_BYTES => Err(RequestError::TargetTooLong),
        Some(n) if n > MAX_REQUEST_LINE_BYTES => Err(RequestError::TargetTooLong),
        _ if buf.len() > MAX_HEAD_BYTES => Err(RequestError::HeadTooLarge),
        _ => Ok(()),
    }
}

pub(crate) fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (whitespace before ':' or obs-fold?)",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
