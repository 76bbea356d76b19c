//! The client's request head: httparse does the tokenising; this module enforces rgate's
//! limits and RFC 9112's rules and extracts what the proxy needs (framing, persistence,
//! `Expect`, `Upgrade`, the effective Host). The head stays borrowed from the connection's
//! buffer.

use std::fmt;

use super::framing::{BodyFraming, FramingError, FramingHeaders};
use super::gateway::ErrorCode;
use super::host::{absolute_form_host, check_host, HostError};
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
        }
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
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    /// Parses `input` presented whole and cut at every byte offset: every prefix must ask
    /// for more input (or fail the same way), and the whole must give the same result.
    fn parse_all_ways(input: &[u8]) -> Result<(String, usize, BodyFraming), RequestError> {
        let summary = |buf: &[u8]| {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parse_request(buf, &mut storage)
                .map(|o| o.map(|h| (format!("{} {}", h.method, h.target), h.head_len, h.framing)))
        };
        let whole = summary(input);
        for cut in 0..input.len() {
            match summary(&input[..cut]) {
                Ok(None) => {}
                Ok(Some(h)) => assert_eq!(Ok(Some(h.clone())), whole, "prefix {cut} complete"),
                Err(e) => assert_eq!(Some(e), whole.clone().err(), "prefix {cut}"),
            }
        }
        whole.map(|o| o.expect("complete"))
    }

    #[test]
    fn parses_a_simple_get_at_every_split() {
        let input = b"GET /api/x?q=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\nNEXT";
        let (line, len, framing) = parse_all_ways(input).unwrap();
        assert_eq!(line, "GET /api/x?q=1");
        assert_eq!(len, input.len() - 4);
        assert_eq!(framing, BodyFraming::None);
    }

    #[test]
    fn post_with_length_and_chunked() {
        let (_, _, f) =
            parse_all_ways(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(f, BodyFraming::Length(12));
        let (_, _, f) =
            parse_all_ways(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
        assert_eq!(f, BodyFraming::Chunked);
    }

    fn parse(input: &[u8]) -> Result<(), RequestError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_request(input, &mut storage).map(|h| {
            h.expect("complete");
        })
    }

    #[test]
    fn refuses_malformed_heads() {
        // obs-fold
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        // whitespace before the colon
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(RequestError::Malformed("missing Host header"))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(RequestError::Framing(FramingError::LengthAndTransferEncoding))
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n").map_err(|e| e.status()),
            Err(417)
        );
    }

    /// Host is validated whole, however the head arrives: every prefix asks for more input
    /// (or fails the same way), and the whole gives the same verdict.
    #[test]
    fn host_is_validated_at_every_split() {
        for host in ["a, b", "a/b@c", "a b", "a:99999", "[::1", "", "a?b"] {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-A: b\r\n\r\n");
            let got = parse_all_ways(input.as_bytes());
            assert!(
                matches!(got, Err(RequestError::Host(_))),
                "{host:?}: {got:?}"
            );
            assert_eq!(got.unwrap_err().status(), 400);
        }
        for host in ["a", "a.example:8080", "[::1]:80", "10.0.0.1"] {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse_all_ways(input.as_bytes()).is_ok(), "{host:?}");
        }
    }

    fn effective_host(input: &[u8]) -> Result<Option<Vec<u8>>, RequestError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_request(input, &mut storage).map(|h| h.expect("complete").host.map(<[u8]>::to_vec))
    }

    #[test]
    fn absolute_form_authority_is_the_host() {
        assert_eq!(
            effective_host(b"GET http://good:81/x HTTP/1.1\r\nHost: evil\r\n\r\n"),
            Ok(Some(b"good:81".to_vec()))
        );
        assert_eq!(
            effective_host(b"GET http://u:p@good/x HTTP/1.1\r\nHost: good\r\n\r\n"),
            Err(RequestError::Host(HostError::Userinfo))
        );
        assert_eq!(
            effective_host(b"GET http:///x HTTP/1.1\r\nHost: good\r\n\r\n"),
            Err(RequestError::Host(HostError::Empty))
        );
        // The Host field must still be there, and valid, in HTTP/1.1.
        assert!(effective_host(b"GET http://good/x HTTP/1.1\r\n\r\n").is_err());
        assert!(effective_host(b"GET http://good/x HTTP/1.1\r\nHost: a b\r\n\r\n").is_err());
        assert_eq!(
            effective_host(b"GET http://good/x HTTP/1.0\r\n\r\n"),
            Ok(Some(b"good".to_vec()))
        );
        assert_eq!(effective_host(b"GET /x HTTP/1.0\r\n\r\n"), Ok(None));
    }

    #[test]
    fn only_websocket_upgrades_and_underscores_are_noticed() {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let h = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            &mut storage,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.upgrade, None);
        assert!(!h.underscore_names);
        assert_eq!(h.check_underscores(UnderscorePolicy::Reject), Ok(()));
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let h = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nX_A: 1\r\n\r\n",
            &mut storage,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.upgrade, Some(&b"WebSocket"[..]));
        assert!(h.underscore_names);
        assert_eq!(h.check_underscores(UnderscorePolicy::Drop), Ok(()));
        assert_eq!(h.check_underscores(UnderscorePolicy::Forward), Ok(()));
        assert_eq!(
            h.check_underscores(UnderscorePolicy::Reject)
                .map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn enforces_size_limits() {
        let mut long_target = b"GET /".to_vec();
        long_target.extend(std::iter::repeat_n(b'a', MAX_TARGET_BYTES + 100));
        assert_eq!(
            parse(&long_target).map_err(|e| e.status()),
            Err(414),
            "incomplete long line"
        );
        long_target.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&long_target).map_err(|e| e.status()), Err(414));

        let mut big_head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while big_head.len() <= MAX_HEAD_BYTES {
            big_head.extend_from_slice(b"X-Filler: ");
            big_head.extend(std::iter::repeat_n(b'v', 1000));
            big_head.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse(&big_head).map_err(|e| e.status()), Err(431));

        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).map_err(|e| e.status()), Err(431));
    }

    /// A response to HEAD has no body, whatever its head says; methods are case-sensitive.
    #[test]
    fn head_requests_are_told_apart() {
        let is_head = |method: &str| {
            let input = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let h = parse_request(input.as_bytes(), &mut storage)
                .unwrap()
                .unwrap();
            h.is_head()
        };
        assert!(is_head("HEAD"));
        assert!(!is_head("GET"));
        assert!(!is_head("head"));
    }

    /// `100-continue` is acted on only for an HTTP/1.1 request that has a body.
    #[test]
    fn expect_continue_only_for_an_http11_body() {
        let expects = |input: &[u8]| {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let h = parse_request(input, &mut storage).unwrap().unwrap();
            h.expect_continue
        };
        let body = "Content-Length: 3\r\nExpect: 100-Continue\r\n\r\n";
        assert!(expects(
            format!("POST / HTTP/1.1\r\nHost: a\r\n{body}").as_bytes()
        ));
        assert!(!expects(
            format!("POST / HTTP/1.0\r\nHost: a\r\n{body}").as_bytes()
        ));
        assert!(!expects(
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"
        ));
        assert!(!expects(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        ));
    }

    /// A WebSocket upgrade needs `Connection: upgrade` and HTTP/1.1 (RFC 9110 §7.8).
    #[test]
    fn upgrade_needs_connection_upgrade_and_http11() {
        let upgrade = |input: &[u8]| {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let h = parse_request(input, &mut storage).unwrap().unwrap();
            h.upgrade.map(<[u8]>::to_vec)
        };
        let ws = "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            upgrade(format!("GET / HTTP/1.1\r\nHost: a\r\n{ws}").as_bytes()),
            Some(b"websocket".to_vec())
        );
        assert_eq!(
            upgrade(format!("GET / HTTP/1.0\r\nHost: a\r\n{ws}").as_bytes()),
            None
        );
        assert_eq!(
            upgrade(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"),
            None
        );
    }

    /// The message reaches the client in the error's JSON body.
    #[test]
    fn every_request_error_says_why() {
        for (err, why) in [
            (
                RequestError::Malformed("missing Host header"),
                "malformed request: missing Host header",
            ),
            (
                RequestError::TargetTooLong,
                "request target longer than 8192 bytes",
            ),
            (
                RequestError::HeadTooLarge,
                "request head larger than 32768 bytes",
            ),
            (RequestError::TooManyHeaders, "more than 100 header fields"),
            (
                RequestError::Framing(FramingError::UnsupportedCoding),
                FramingError::UnsupportedCoding.reason(),
            ),
            (
                RequestError::UnsupportedExpectation,
                "only the 100-continue expectation is supported",
            ),
            (
                RequestError::Host(HostError::Comma),
                "invalid Host: host is a list",
            ),
        ] {
            assert_eq!(err.to_string(), why);
        }
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            Err(RequestError::Malformed(
                "invalid header name (whitespace before ':' or obs-fold?)"
            ))
        );
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Err(RequestError::Malformed("unsupported HTTP version"))
        );
    }

    /// A request whose head is `len` bytes long, with a target of `target_len` bytes.
    fn request_of(target_len: usize, len: usize) -> Vec<u8> {
        let mut head = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n",
            "t".repeat(target_len - 1)
        );
        let pad = len - head.len() - b"X-Filler: \r\n\r\n".len();
        head.push_str(&format!("X-Filler: {}\r\n\r\n", "v".repeat(pad)));
        head.into_bytes()
    }

    /// The limits are inclusive: a target of `MAX_TARGET_BYTES` in a head of `MAX_HEAD_BYTES`
    /// is served, whole or still arriving; one byte more of either is refused.
    #[test]
    fn limits_admit_exactly_their_size() {
        let biggest = request_of(MAX_TARGET_BYTES, MAX_HEAD_BYTES);
        assert_eq!(biggest.len(), MAX_HEAD_BYTES);
        assert_eq!(parse(&biggest), Ok(()));
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        for cut in [MAX_TARGET_BYTES, MAX_TARGET_BYTES + 13, MAX_HEAD_BYTES - 1] {
            let got = parse_request(&biggest[..cut], &mut storage).map(|h| h.is_none());
            assert_eq!(got, Ok(true), "cut at {cut}");
        }
        assert_eq!(
            parse(&request_of(MAX_TARGET_BYTES + 1, MAX_HEAD_BYTES)),
            Err(RequestError::TargetTooLong)
        );
        assert_eq!(
            parse(&request_of(MAX_TARGET_BYTES, MAX_HEAD_BYTES + 1)),
            Err(RequestError::HeadTooLarge)
        );
    }

    /// While a head is incomplete: the request line may run to `MAX_REQUEST_LINE_BYTES`
    /// before its LF, and the head to `MAX_HEAD_BYTES`; past either, rgate stops waiting.
    #[test]
    fn partial_limits_admit_exactly_their_size() {
        let line = MAX_REQUEST_LINE_BYTES;
        assert_eq!(check_partial(&vec![b'a'; line]), Ok(()));
        assert_eq!(
            check_partial(&vec![b'a'; line + 1]),
            Err(RequestError::TargetTooLong)
        );
        let ends_at = |n: usize| {
            let mut buf = vec![b'a'; n + 1];
            buf[n] = b'\n';
            check_partial(&buf)
        };
        assert_eq!(ends_at(line), Ok(()));
        assert_eq!(ends_at(line + 1), Err(RequestError::TargetTooLong));
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        head.resize(MAX_HEAD_BYTES, b'h');
        assert_eq!(check_partial(&head), Ok(()));
        head.push(b'h');
        assert_eq!(check_partial(&head), Err(RequestError::HeadTooLarge));
    }

    #[test]
    fn http10_and_connection_tokens() {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let h = parse_request(b"GET / HTTP/1.0\r\n\r\n", &mut storage)
            .unwrap()
            .unwrap();
        assert!(!h.wants_keep_alive());
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let h = parse_request(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            &mut storage,
        )
        .unwrap()
        .unwrap();
        assert!(h.wants_keep_alive());
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let h = parse_request(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Gone\r\nUpgrade: websocket\r\n\r\n",
            &mut storage,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.upgrade, Some(&b"websocket"[..]));
        assert_eq!(h.connection.extra, vec!["x-gone".to_string()]);
    }
}
