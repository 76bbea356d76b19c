//! Tests of `http/request.rs`: parsing, limits at their exact size, framing, Host, upgrades.
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
