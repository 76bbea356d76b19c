//! The client side of HTTP/1.1 on the wire: keep-alive, pipelining, HTTP/1.0, HEAD,
//! 1xx/204/304, 100-continue, request bodies in both framings, and every malformed or
//! oversized head — answered 400/414/431, never forwarded, the connection closed cleanly.

mod common;

use common::{config, Backend, Client, Digest, Gateway};

fn gateway() -> (Gateway, Backend) {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(&[("/api", "b")], &[("b", &[b.addr])], ""));
    (gw, b)
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection_and_one_backend_connection() {
    let (gw, b) = gateway();
    let mut c = gw.client();
    for i in 0..20 {
        c.send(format!("GET /api/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert!(!r.has_header("Connection"), "{r:?}");
        assert_eq!(r.echo().target(), format!("/api/{i}"));
    }
    assert_eq!(
        b.connections(),
        1,
        "the pooled backend connection is reused"
    );
    c.send(b"GET /api/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.extend_from_slice(
            format!(
                "GET /api/p{i}?do=sleep&ms={} HTTP/1.1\r\nHost: a\r\n\r\n",
                (6 - i) * 10
            )
            .as_bytes(),
        );
    }
    batch
        .extend_from_slice(b"POST /api/post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    batch.extend_from_slice(b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n");
    batch.extend_from_slice(b"HEAD /api/head HTTP/1.1\r\nHost: a\r\n\r\n");
    batch.extend_from_slice(
        b"POST /api/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    batch.extend_from_slice(b"GET /api/final HTTP/1.1\r\nHost: a\r\n\r\n");
    c.send(&batch);
    for i in 0..6 {
        assert!(c
            .read_response(false)
            .echo()
            .target()
            .starts_with(&format!("/api/p{i}?")));
    }
    let post = c.read_response(false).echo();
    assert_eq!((post.target(), post.body_len()), ("/api/post", 5));
    let default = c.read_response(false);
    assert_eq!(
        (default.status, default.text().as_str()),
        (403, "This is not reachable")
    );
    let head = c.read_response(true);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let chunked = c.read_response(false).echo();
    assert_eq!((chunked.target(), chunked.body_len()), ("/api/chunked", 3));
    assert_eq!(c.read_response(false).echo().target(), "/api/final");
}

#[test]
fn http10_without_keep_alive_is_answered_and_closed() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"GET /api/old HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    let echo = r.echo();
    assert_eq!(
        echo.version(),
        "HTTP/1.1",
        "rgate talks HTTP/1.1 to backends"
    );
    assert!(
        echo.header("Host").is_some(),
        "a Host is supplied for HTTP/1.0"
    );
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();
}

#[test]
fn http10_keep_alive_keeps_the_connection() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    for i in 0..3 {
        c.send(
            format!("GET /api/{i} HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n")
                .as_bytes(),
        );
        let r = c.read_response(false);
        assert_eq!(r.header("Connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.echo().target(), format!("/api/{i}"));
    }
    // The default response and gateway errors keep it too.
    c.send(b"GET /none HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(
        (r.status, r.header("Connection")),
        (403, Some("keep-alive"))
    );
    c.send(b"GET /api/x HTTP/1.0\r\n\r\n");
    c.read_response(false).echo();
    c.expect_closed();
}

#[test]
fn http10_client_gets_a_chunked_response_unchunked_and_closed() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"GET /api/c?do=chunked&n=70000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response(false);
    assert!(!r.has_header("Transfer-Encoding"), "{r:?}");
    assert!(!r.has_header("Content-Length"), "{r:?}");
    let mut d = Digest::default();
    d.update(&r.body);
    assert_eq!(d, Digest::of_pattern(70_000));
    // The body ended with the connection, so it was closed (read to EOF above).
}

#[test]
fn http10_request_body_with_length_is_forwarded() {
    let (gw, _b) = gateway();
    let r = gw.request("POST /api/p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.echo().body_len(), 3);
}

#[test]
fn head_responses_have_no_body_and_keep_the_connection() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"HEAD /api/h HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 200);
    let announced: usize = r.header("Content-Length").unwrap().parse().unwrap();
    assert!(announced > 0, "HEAD keeps the length the GET would have");
    // Each HEAD gets the head the GET gets, and no body. Content-Length is kept; a
    // Transfer-Encoding may be left out (RFC 9110 §9.3.2: a HEAD response need not carry
    // what only frames a body it does not have), so it is not compared.
    for (q, framing) in [
        ("do=chunked&n=1000", ("Content-Length", None)),
        ("do=large&n=5000", ("Content-Length", Some("5000"))),
        ("do=until-close&n=10", ("Content-Length", None)),
    ] {
        c.send(format!("HEAD /api/h?{q} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.read_response(true);
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.header(framing.0), framing.1, "{q}: {r:?}");
        let mut g = gw.client();
        g.send(format!("GET /api/h?{q} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let get = g.read_response(false);
        let end_to_end = |r: &common::Response| -> Vec<(String, String)> {
            r.headers
                .iter()
                .filter(|(n, _)| {
                    !n.eq_ignore_ascii_case("connection")
                        && !n.eq_ignore_ascii_case("transfer-encoding")
                        // each request has its own
                        && !n.eq_ignore_ascii_case("x-request-id")
                })
                .cloned()
                .collect()
        };
        assert_eq!(
            end_to_end(&r),
            end_to_end(&get),
            "{q}: HEAD and GET heads differ"
        );
    }
    // Nothing of a body was relayed: the next response starts right away.
    c.send(b"GET /api/after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/after");
    // HEAD to the default response: its length, no body.
    c.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!((r.status, r.header("Content-Length")), (403, Some("21")));
    c.send(b"GET /api/again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/again");
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    for code in [204u16, 304] {
        c.send(format!("GET /api/s?do=status&code={code} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!(r.status, code);
        assert_eq!(r.header("ETag"), Some("\"v1\""));
        assert!(!r.has_header("Transfer-Encoding"));
    }
    c.send(b"GET /api/after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/after");
}

#[test]
fn until_close_response_is_relayed_and_the_client_connection_closes() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"GET /api/u?do=until-close&n=200000 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    let mut d = Digest::default();
    d.update(&r.body);
    assert_eq!(d, Digest::of_pattern(200_000));
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"GET /api/e?do=early HTTP/1.1\r\nHost: a\r\n\r\n");
    let early = c.read_head().unwrap();
    assert_eq!(early.status, 103);
    assert_eq!(early.header("Link"), Some("</style.css>; rel=preload"));
    assert!(!early.has_header("Connection"));
    assert_eq!(c.read_response(false).echo().target(), "/api/e?do=early");
}

#[test]
fn request_bodies_in_both_framings_reach_the_backend() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    let body: Vec<u8> = (0..100_000u64).map(common::pattern_byte).collect();
    c.send(
        format!(
            "PUT /api/l HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let echo = c.read_response(false).echo();
    assert_eq!(
        (echo.body_len(), echo.body_sum()),
        (100_000, Digest::of_pattern(100_000).sum)
    );
    assert_eq!(echo.header("Content-Length").as_deref(), Some("100000"));

    c.send(b"POST /api/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut chunked = Vec::new();
    common::write_pattern(&mut chunked, 100_000, 3000, true).unwrap();
    c.send(&chunked);
    let echo = c.read_response(false).echo();
    assert_eq!(
        (echo.body_len(), echo.body_sum()),
        (100_000, Digest::of_pattern(100_000).sum)
    );
    assert_eq!(echo.header("Transfer-Encoding").as_deref(), Some("chunked"));
    assert_eq!(echo.header("Content-Length"), None);

    // With an extension and a trailer field, which rgate validates and passes on.
    c.send(b"POST /api/t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=v\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n");
    assert_eq!(c.read_response(false).echo().body_len(), 3);
    c.send(b"GET /api/after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/after");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let cont = c.read_head().expect("100 Continue before the body");
    assert_eq!(cont.status, 100);
    c.send(b"hello");
    let echo = c.read_response(false).echo();
    assert_eq!(echo.body_len(), 5);
    assert_eq!(
        echo.header("Expect"),
        None,
        "rgate answered the expectation itself"
    );
    // Only one 100 reaches the client, and the connection carries on.
    c.send(b"GET /api/after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/after");
}

#[test]
fn expect_100_continue_to_the_default_response_is_answered_without_the_body() {
    let (gw, b) = gateway();
    let mut c = gw.client();
    c.send(b"POST /elsewhere HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "This is not reachable")
    );
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();
    assert_eq!(b.requests(), 0);
}

/// Sends `raw` on a fresh connection; asserts the status, the JSON error shape, a clean
/// close, and that the backend never saw it.
fn refused(gw: &Gateway, b: &Backend, raw: &[u8], status: u16) -> serde_json::Value {
    let before = b.requests();
    let mut c = Client::connect(gw.addr);
    c.send(raw);
    let r = c.read_response(false);
    let v = r.gateway_error(status);
    assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    c.expect_closed();
    assert_eq!(
        b.requests(),
        before,
        "a refused request reached the backend: {}",
        String::from_utf8_lossy(raw)
    );
    v
}

#[test]
fn ambiguous_framing_is_refused_and_never_forwarded() {
    let (gw, b) = gateway();
    let bad_request = |raw: &[u8]| {
        let v = refused(&gw, &b, raw, 400);
        assert_eq!(
            v["error"],
            "bad_request",
            "{}",
            String::from_utf8_lossy(raw)
        );
    };
    for raw in [
        &b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\nabc",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        b"POST /api/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: a\r\nX-Space : v\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: a\r\n\tX-Tab: v\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /api/a HTTP/9.9\r\nHost: a\r\n\r\n",
        b"GET /api/a\r\nHost: a\r\n\r\n",
        b"GET  /api/a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\x01T /api/a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /api/a HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET api/a HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        bad_request(raw);
    }
}

#[test]
fn a_transfer_coding_other_than_chunked_gets_501() {
    let (gw, b) = gateway();
    for raw in [
        &b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /api/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ] {
        let v = refused(&gw, &b, raw, 501);
        assert_eq!(
            v["error"],
            "not_implemented",
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

/// After a 400, rgate stops writing but reads what the client still sends for a moment, so
/// the response is not destroyed by a reset: a client still uploading reads it whole.
#[test]
fn a_client_still_sending_after_a_400_reads_the_whole_response() {
    let (gw, b) = gateway();
    let mut c = gw.client();
    let mut writer = c.stream.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(b"POST /api/a HTTP/1.1\r\nHost : a\r\nContent-Length: 400000\r\n\r\n")?;
        let piece = vec![b'x'; 16 * 1024];
        for _ in 0..25 {
            writer.write_all(&piece)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("the 400 was lost: {e}"));
    assert_eq!(r.gateway_error(400)["error"], "bad_request");
    assert_eq!(r.header("Connection"), Some("close"));
    let _ = upload.join().unwrap();
    assert_eq!(b.requests(), 0);
}

#[test]
fn invalid_chunked_bodies_get_400_and_close() {
    let (gw, _b) = gateway();
    for body in [
        &b"zz\r\nabc\r\n0\r\n\r\n"[..],
        b"-1\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\nabc\n0\n\n",
        b"11111111111111111\r\n",
        b" 3\r\nabc\r\n0\r\n\r\n",
    ] {
        let mut c = gw.client();
        c.send(b"POST /api/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.send(body);
        let r = c.read_response(false);
        assert_eq!(r.gateway_error(400)["error"], "bad_request");
        assert_eq!(r.header("Connection"), Some("close"));
        c.expect_closed();
    }
}

#[test]
fn head_limits_answer_414_and_431() {
    let (gw, b) = gateway();
    let long_target = format!("GET /api/{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    let v = refused(&gw, &b, long_target.as_bytes(), 414);
    assert_eq!(v["error"], "uri_too_long");
    // A request line that never ends is refused too, without waiting for it.
    let endless = format!("GET /api/{}", "a".repeat(20_000));
    let v = refused(&gw, &b, endless.as_bytes(), 414);
    assert_eq!(v["error"], "uri_too_long");

    let mut big = String::from("GET /api/a HTTP/1.1\r\nHost: a\r\n");
    for i in 0..40 {
        big += &format!("X-Filler-{i}: {}\r\n", "v".repeat(1000));
    }
    big += "\r\n";
    let v = refused(&gw, &b, big.as_bytes(), 431);
    assert_eq!(v["error"], "headers_too_large");

    let mut many = String::from("GET /api/a HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        many += &format!("X-{i}: v\r\n");
    }
    many += "\r\n";
    let v = refused(&gw, &b, many.as_bytes(), 431);
    assert_eq!(v["error"], "headers_too_large");

    // Just under the limits: forwarded.
    let mut ok = String::from("GET /api/a HTTP/1.1\r\nHost: a\r\n");
    for i in 0..90 {
        ok += &format!("X-{i}: v\r\n");
    }
    ok += "\r\n";
    // 90 + Host + X-Forwarded-{For,Host,Proto} + X-Request-Id.
    assert_eq!(gw.request(&ok).echo().headers().len(), 95);
    let ok = gw.get(&format!("/api/{}", "a".repeat(8000)));
    assert_eq!(ok.echo().target().len(), 8005);
}

#[test]
fn other_expectations_get_417() {
    let (gw, b) = gateway();
    let v = refused(
        &gw,
        &b,
        b"GET /api/a HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n",
        417,
    );
    assert_eq!(v["error"], "expectation_failed");
}

#[test]
fn an_error_after_pipelined_requests_answers_those_first() {
    let (gw, b) = gateway();
    let mut c = gw.client();
    c.send(b"GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /api/2 HTTP/1.1\r\nHost : a\r\n\r\nGET /api/3 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/api/1");
    c.read_response(false).gateway_error(400);
    c.expect_closed();
    assert_eq!(b.requests(), 1);
}

#[test]
fn a_head_arriving_byte_by_byte_is_parsed() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    let raw = b"POST /api/slow HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok";
    for byte in raw.chunks(1) {
        c.send(byte);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let echo = c.read_response(false).echo();
    assert_eq!((echo.target(), echo.body_len()), ("/api/slow", 2));
    assert_eq!(echo.header("X-A").as_deref(), Some("1"));
}

#[test]
fn an_incomplete_head_gets_408_after_the_client_head_timeout() {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(
        &[("/api", "b")],
        &[("b", &[b.addr])],
        "timeouts: {client_head_ms: 300}\n",
    ));
    let mut c = gw.client();
    c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\n");
    let r = c.read_response(false);
    let v = r.gateway_error(408);
    assert_eq!(v["error"], "request_timeout");
    c.expect_closed();
    assert_eq!(b.requests(), 0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(
        &[("/api", "b")],
        &[("b", &[b.addr])],
        "timeouts: {keepalive_idle_ms: 600}\n",
    ));
    // One that was served, and one that never sent a byte: both rest, both are closed.
    let mut served = gw.client();
    served.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(served.read_response(false).status, 200);
    let idle_since = std::time::Instant::now();
    let mut silent = gw.client();
    served.expect_closed();
    silent.expect_closed();
    let waited = idle_since.elapsed();
    // Not before the timeout; the coarse idle clock may add up to one core tick (50 ms).
    assert!(
        waited >= std::time::Duration::from_millis(550),
        "closed after {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

/// A keep-alive connection that has served one request and then parked (idle past the
/// parking delay: no task of its own, only its descriptor in the core's lot).
fn served_and_parked(gw: &Gateway) -> Client {
    let mut c = gw.client();
    c.send(b"GET /api/first HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
    common::wait_until(
        common::limits::CONDITION,
        "the idle connection parked",
        || gw.get("/stats").json()["connections"]["parked"].as_u64() == Some(1),
    );
    c
}

/// A keep-alive connection idle past the parking delay (200 ms) gives up its task; when it
/// comes back with a head sent in pieces, each pause again longer than that delay, the
/// pieces already read must stay with it (not parked away) and the head timeout must run
/// from the first of them, not start over at each piece.
#[test]
fn a_head_trickled_in_after_parking_is_read_whole_and_its_timeout_is_not_reset() {
    use std::time::{Duration, Instant};
    let b = Backend::start("b");
    let gw = Gateway::start(&config(
        &[("/api", "b")],
        &[("b", &[b.addr])],
        "timeouts: {client_head_ms: 900}\n",
    ));
    let pause = Duration::from_millis(300);
    // Whole, though in three pieces with pauses past the parking delay between them.
    let mut c = served_and_parked(&gw);
    for piece in [
        &b"GET /api/pie"[..],
        b"ces HTTP/1.1\r\nHo",
        b"st: a\r\n\r\n",
    ] {
        c.send(piece);
        std::thread::sleep(pause);
    }
    assert_eq!(c.read_response(false).echo().target(), "/api/pieces");
    // Never complete: 408 once 900 ms have passed since its first byte, though no pause
    // between pieces reaches the timeout.
    std::thread::sleep(pause);
    let first_byte = Instant::now();
    c.send(b"GET /api/never HTTP/1.1\r\n");
    // Two more pieces, the last at 600 ms; nothing is written after that, so that no write
    // meets the closed connection and resets the answer away.
    for _ in 0..2 {
        std::thread::sleep(pause);
        c.send(b"X-Slow: 1\r\n");
    }
    let r = c.read_response(false);
    let waited = first_byte.elapsed();
    assert_eq!(r.gateway_error(408)["error"], "request_timeout");
    c.expect_closed();
    // The 408 came 900 ms from the head's first byte (a core tick, 50 ms, early or late for
    // the coarse clock; the rest is slack for a loaded machine), not 900 ms from its last
    // piece (1,500 ms).
    assert!(waited >= Duration::from_millis(850), "408 after {waited:?}");
    assert!(waited < Duration::from_millis(1400), "408 after {waited:?}");
    assert_eq!(b.requests(), 2);
}

/// A parked connection whose client sends its last request and half-closes at once: the
/// core sees the hang-up and the bytes together, and must answer the request, not take the
/// hang-up for a client that left.
#[test]
fn a_parked_connection_that_sends_a_request_and_half_closes_gets_its_answer() {
    let (gw, b) = gateway();
    let mut c = served_and_parked(&gw);
    c.send(b"GET /api/last HTTP/1.1\r\nHost: a\r\n\r\n");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_response(false).echo().target(), "/api/last");
    c.expect_closed();
    assert_eq!(b.requests(), 2);
}

#[test]
fn a_connection_that_rested_serves_its_next_request() {
    let (gw, b) = gateway();
    let mut c = gw.client();
    for i in 0..3 {
        // Past the moment an idle connection gives back its buffers and waits for
        // readability instead (200 ms): the next request must still be read whole.
        std::thread::sleep(std::time::Duration::from_millis(350));
        c.send(format!("GET /api/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(c.read_response(false).echo().target(), format!("/api/{i}"));
    }
    assert_eq!(b.requests(), 3);
}
