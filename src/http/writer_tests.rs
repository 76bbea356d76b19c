//! Tests of `http/writer.rs`.

use super::*;

#[test]
fn numbers_and_addresses_are_written_as_display_writes_them() {
    for n in [0u64, 7, 10, 99, 100, 65_535, 1 << 32, u64::MAX] {
        let mut out = Vec::new();
        put_decimal(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
    }
    let ips: [IpAddr; 6] = [
        "0.0.0.0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        "10.200.3.255".parse().unwrap(),
        "255.255.255.255".parse().unwrap(),
        "::1".parse().unwrap(),
        "2001:db8::8a2e:370:7334".parse().unwrap(),
    ];
    for ip in ips {
        let mut out = Vec::new();
        put_ip(&mut out, ip);
        assert_eq!(out, ip.to_string().into_bytes());
    }
    // Every octet value, in every position.
    for n in 0..=255u8 {
        let ip = IpAddr::from([n, 255 - n, n / 3, n.wrapping_mul(7)]);
        let mut out = Vec::new();
        put_ip(&mut out, ip);
        assert_eq!(out, ip.to_string().into_bytes());
    }
}
use crate::http::request::parse_request;
use crate::http::request_id::RequestIds;
use crate::http::response::parse_response;
use crate::http::MAX_HEADERS;

fn forwarded_with(input: &[u8], underscores: UnderscorePolicy) -> String {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_request(input, &mut storage).unwrap().unwrap();
    let target = crate::router::normalize_target(head.target).unwrap();
    let mut out = Vec::new();
    let id = RequestIds::new(0xfeed, 0).for_request(head.request_id);
    write_request_head(
        &mut out,
        &head,
        &Forwarding {
            target: &target,
            client_ip: "10.0.0.7".parse().unwrap(),
            fallback_host: "127.0.0.1:9".parse().unwrap(),
            underscores,
            request_id: id.as_bytes(),
            stripped_prefix: None,
            edits: &NO_EDITS,
        },
    );
    String::from_utf8(out).unwrap()
}

fn forwarded(input: &[u8]) -> String {
    forwarded_with(input, UnderscorePolicy::Drop)
}

/// The fields of a head, lower-cased names, in order (the request or status line apart).
fn fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("field line");
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect()
}

fn count(head: &str, name: &str) -> usize {
    fields(head).iter().filter(|(n, _)| n == name).count()
}

#[test]
fn request_drops_hop_by_hop_and_adds_forwarded() {
    let out = forwarded(
        b"POST /a HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
Keep-Alive: 5\r\nTE: trailers\r\nUser-Agent: t\r\nTransfer-Encoding: chunked\r\n\
Proxy-Connection: x\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(
        out,
        "POST /a HTTP/1.1\r\nHost: gw\r\nUser-Agent: t\r\nAccept: */*\r\n\
Transfer-Encoding: chunked\r\nX-Forwarded-Host: gw\r\nX-Forwarded-For: 10.0.0.7\r\n\
X-Request-Id: 000000000000feed-0-1\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
}

#[test]
fn request_appends_to_existing_forwarded_for() {
    let out = forwarded(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: gw\r\nX-Forwarded-Proto: https\r\n\r\n",
        );
    assert_eq!(
        out,
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7\r\n\
X-Forwarded-Host: gw\r\nX-Request-Id: 000000000000feed-0-1\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
}

/// One `X-Request-Id` reaches the backend: the client's own when it sent one valid one,
/// else a made one; a `Connection` option cannot remove it.
#[test]
fn request_carries_exactly_one_request_id() {
    let id = |input: &[u8]| {
        let out = forwarded(input);
        let ids: Vec<String> = fields(&out)
            .into_iter()
            .filter(|(n, _)| n == "x-request-id")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(ids.len(), 1, "{out}");
        ids[0].clone()
    };
    let made = "000000000000feed-0-1";
    assert_eq!(
        id(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: abc-123\r\n\r\n"),
        "abc-123"
    );
    assert_eq!(
        id(b"GET / HTTP/1.1\r\nHost: gw\r\nx-request-id: abc\r\nConnection: x-request-id\r\n\r\n"),
        "abc"
    );
    assert_eq!(id(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"), made);
    assert_eq!(
        id(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: a b\r\n\r\n"),
        made
    );
    let long = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: {}\r\n\r\n",
        "a".repeat(129)
    );
    assert_eq!(id(long.as_bytes()), made);
    assert_eq!(
        id(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n"),
        made
    );
}

/// The client gets the request's ID back, unless the backend answered with its own.
#[test]
fn response_gets_the_request_id_unless_the_backend_sent_one() {
    let relay = |input: &[u8], relay: RelayFraming| {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response(input, &mut storage, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &resp,
            relay,
            Version::Http11,
            true,
            Some(b"rid-1"),
            &NO_EDITS,
        );
        String::from_utf8(out).unwrap()
    };
    let out = relay(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        RelayFraming::AsIs,
    );
    assert_eq!(count(&out, "x-request-id"), 1, "{out}");
    assert!(out.contains("\r\nX-Request-Id: rid-1\r\n"), "{out}");
    let out = relay(
        b"HTTP/1.1 200 OK\r\nx-request-id: theirs\r\nContent-Length: 0\r\n\r\n",
        RelayFraming::AsIs,
    );
    assert_eq!(count(&out, "x-request-id"), 1, "{out}");
    assert!(out.contains("\r\nx-request-id: theirs\r\n"), "{out}");
}

/// A `Connection` option naming any field rgate frames, routes on or sets changes
/// nothing of what the backend gets: the framing, Host and X-Forwarded-* stay.
#[test]
fn connection_options_cannot_remove_what_rgate_frames_or_sets() {
    let names = [
        "content-length",
        "Content-Length",
        "transfer-encoding",
        "host",
        "HOST",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
        "connection",
        "keep-alive",
    ];
    for name in names {
        let length = forwarded(
            format!(
                "POST /x HTTP/1.1\r\nHost: a\r\nConnection: {name}\r\nX-Forwarded-For: 1.1.1.1\r\n\
X-Request-Id: r1\r\nContent-Length: 41\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(count(&length, "content-length"), 1, "{name}: {length}");
        assert!(
            length.contains("\r\nContent-Length: 41\r\n"),
            "{name}: {length}"
        );
        assert_eq!(count(&length, "transfer-encoding"), 0, "{name}: {length}");
        assert!(length.contains("\r\nHost: a\r\n"), "{name}: {length}");
        assert!(
            length.contains("\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\n"),
            "{name}: {length}"
        );
        assert!(
            length.contains("\r\nX-Forwarded-Host: a\r\n"),
            "{name}: {length}"
        );
        assert!(
            length.contains("\r\nX-Request-Id: r1\r\n"),
            "{name}: {length}"
        );
        assert_eq!(count(&length, "x-forwarded-proto"), 1, "{name}: {length}");
        let chunked = forwarded(
            format!(
                "POST /x HTTP/1.1\r\nHost: a\r\nConnection: close, {name}\r\n\
Transfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(count(&chunked, "transfer-encoding"), 1, "{name}: {chunked}");
        assert!(chunked.contains("Transfer-Encoding: chunked\r\n"), "{name}");
        assert_eq!(count(&chunked, "content-length"), 0, "{name}: {chunked}");
        assert_eq!(count(&chunked, "host"), 1, "{name}: {chunked}");
    }
}

#[test]
fn request_framing_is_rgates_own() {
    // Duplicate identical lengths become one; a zero length stays a zero length.
    let out =
        forwarded(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
    assert_eq!(count(&out, "content-length"), 1, "{out}");
    let out = forwarded(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n");
    assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out}");
    let out = forwarded(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(count(&out, "content-length"), 0, "{out}");
    assert_eq!(count(&out, "transfer-encoding"), 0, "{out}");
    // The length written is the number rgate parsed, not the client's spelling.
    let out = forwarded(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0007\r\n\r\n");
    assert!(out.contains("\r\nContent-Length: 7\r\n"), "{out}");
}

#[test]
fn absolute_form_authority_replaces_host() {
    let out = forwarded(b"GET http://good:8080/x?q HTTP/1.1\r\nHost: evil\r\n\r\n");
    assert!(
        out.starts_with("GET /x?q HTTP/1.1\r\nHost: good:8080\r\n"),
        "{out}"
    );
    assert_eq!(count(&out, "host"), 1, "{out}");
    assert!(out.contains("X-Forwarded-Host: good:8080\r\n"), "{out}");
    assert!(!out.contains("evil"), "{out}");
}

#[test]
fn underscored_names_follow_the_policy() {
    let input =
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nTransfer_Encoding: chunked\r\n\
X_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\nContent-Length: 2\r\n\r\n";
    let dropped = forwarded_with(input, UnderscorePolicy::Drop);
    assert!(!dropped.contains('_'), "{dropped}");
    assert!(dropped.contains("X-Ok: 1\r\n"), "{dropped}");
    let kept = forwarded_with(input, UnderscorePolicy::Forward);
    assert!(kept.contains("Content_Length: 5\r\n"), "{kept}");
    assert!(kept.contains("Transfer_Encoding: chunked\r\n"), "{kept}");
    assert_eq!(count(&kept, "content-length"), 1, "{kept}");
}

#[test]
fn request_keeps_upgrade_when_upgrading_and_adds_host_for_http10() {
    let out = forwarded(
        b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(out.contains("Upgrade: websocket\r\n"), "{out}");
    assert!(out.contains("Connection: upgrade\r\n"), "{out}");
    // h2c would tunnel past the routing: forwarded as a plain request.
    let out = forwarded(
            b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n",
        );
    assert!(!out.to_ascii_lowercase().contains("upgrade"), "{out}");
    assert!(!out.contains("HTTP2-Settings"), "{out}");
    let out = forwarded(b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        out.starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
        "{out}"
    );
    assert!(!out.contains("X-Forwarded-Host"), "{out}");
}

fn relayed(input: &[u8], relay: RelayFraming, v: Version, keep: bool) -> String {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let resp = parse_response(input, &mut storage, false).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &resp, relay, v, keep, None, &NO_EDITS);
    String::from_utf8(out).unwrap()
}

#[test]
fn response_relay() {
    let out = relayed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n",
            RelayFraming::AsIs,
            Version::Http11,
            true,
        );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 5\r\n\r\n"
    );
    let out = relayed(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
        RelayFraming::Close,
        Version::Http10,
        false,
    );
    assert_eq!(out, "HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n");
    let out = relayed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        RelayFraming::AsIs,
        Version::Http10,
        true,
    );
    assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
    assert!(out.contains("Content-Length: 0\r\n"), "{out}");
}

#[test]
fn response_framing_survives_connection_options() {
    for name in [
        "content-length",
        "Content-Length",
        "transfer-encoding",
        "close",
    ] {
        let input =
            format!("HTTP/1.1 200 OK\r\nConnection: {name}\r\nContent-Length: 5\r\n\r\nhello");
        let out = relayed(input.as_bytes(), RelayFraming::AsIs, Version::Http11, true);
        assert_eq!(count(&out, "content-length"), 1, "{name}: {out}");
        assert!(out.contains("Content-Length: 5\r\n"), "{name}: {out}");
        let input =
            format!("HTTP/1.1 200 OK\r\nConnection: {name}\r\nTransfer-Encoding: chunked\r\n\r\n");
        let out = relayed(
            input.as_bytes(),
            RelayFraming::Chunked,
            Version::Http11,
            true,
        );
        assert_eq!(count(&out, "transfer-encoding"), 1, "{name}: {out}");
        assert_eq!(count(&out, "content-length"), 0, "{name}: {out}");
    }
}

#[test]
fn response_lengths_without_a_body() {
    let head = |input: &[u8], head_request: bool| {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response(input, &mut storage, head_request)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &resp,
            RelayFraming::AsIs,
            Version::Http11,
            true,
            None,
            &NO_EDITS,
        );
        String::from_utf8(out).unwrap()
    };
    // HEAD and 304 announce the length the body would have had, as rgate parsed it.
    let out = head(b"HTTP/1.1 200 OK\r\nContent-Length: 0042\r\n\r\n", true);
    assert!(out.contains("Content-Length: 42\r\n"), "{out}");
    let out = head(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        false,
    );
    assert!(out.contains("Content-Length: 9\r\n"), "{out}");
    // An invalid one is not passed on; 204 and 1xx never carry one.
    let out = head(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", true);
    assert_eq!(count(&out, "content-length"), 0, "{out}");
    let out = head(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
        false,
    );
    assert_eq!(count(&out, "content-length"), 0, "{out}");
}

#[test]
fn upgrade_is_relayed_only_with_a_101() {
    let out = relayed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        RelayFraming::Upgrade,
        Version::Http11,
        true,
    );
    assert_eq!(count(&out, "upgrade"), 1, "{out}");
    assert!(out.contains("Upgrade: websocket\r\n"), "{out}");
    assert!(out.contains("Connection: upgrade\r\n"), "{out}");
    let out = relayed(
        b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        RelayFraming::AsIs,
        Version::Http11,
        true,
    );
    assert_eq!(count(&out, "upgrade"), 0, "{out}");
}

/// A route's header edits: set fields replace the client's (or backend's) of the same name,
/// removed ones go; rgate's own fields are written after them and cannot be displaced.
#[test]
fn route_header_edits_set_and_remove_both_ways() {
    let edits = HeaderEdits {
        set: vec![("x-team".into(), "X-Team".into(), "search".into())],
        remove: vec!["cookie".into()],
    };
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let input = b"GET /api/q HTTP/1.1\r\nHost: gw\r\nCookie: a=1\r\nx-team: client\r\n\
X-Forwarded-Prefix: /spoofed\r\nAccept: */*\r\n\r\n";
    let head = parse_request(input, &mut storage).unwrap().unwrap();
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        &head,
        &Forwarding {
            target: "/q",
            client_ip: "10.0.0.7".parse().unwrap(),
            fallback_host: "127.0.0.1:9".parse().unwrap(),
            underscores: UnderscorePolicy::Drop,
            request_id: b"rid",
            stripped_prefix: Some("/api"),
            edits: &edits,
        },
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "GET /q HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\nX-Forwarded-Host: gw\r\n\
X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Prefix: /api\r\nX-Team: search\r\n\
X-Request-Id: rid\r\nX-Forwarded-Proto: http\r\n\r\n"
    );

    let edits = HeaderEdits {
        set: vec![(
            "cache-control".into(),
            "Cache-Control".into(),
            "no-store".into(),
        )],
        remove: vec!["server".into()],
    };
    let resp = b"HTTP/1.1 200 OK\r\nServer: secret/1.0\r\nCache-Control: public\r\n\
X-Kept: 1\r\nContent-Length: 0\r\n\r\n";
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let resp = parse_response(resp, &mut storage, false).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(
        &mut out,
        &resp,
        RelayFraming::AsIs,
        Version::Http11,
        true,
        Some(b"rid"),
        &edits,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nCache-Control: no-store\r\nX-Request-Id: rid\r\n\
Content-Length: 0\r\n\r\n"
    );
}
