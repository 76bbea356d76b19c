//! Routing on the wire: longest prefix, the query left out of the match, dot segments,
//! the default response, a backend without instances, random instance selection,
//! hop-by-hop removal and X-Forwarded-* both ways. The basic cases run under both I/O
//! drivers (`RGATE_DRIVER=legacy` forces epoll).

mod common;

use common::{config, Backend, Gateway, HOP_RESPONSE};

const DRIVERS: [&[(&str, &str)]; 2] = [&[], &[("RGATE_DRIVER", "legacy")]];

fn two_route_gateway(env: &[(&str, &str)]) -> (Gateway, Backend, Backend, Backend) {
    let api = Backend::start("api");
    let payment = Backend::start("payment");
    let orders = Backend::start("orders");
    let gw = Gateway::start_with_env(
        &config(
            &[
                ("/api", "api"),
                ("/api/payment", "payment"),
                ("/api/orders", "orders"),
            ],
            &[
                ("api", &[api.addr]),
                ("payment", &[payment.addr]),
                ("orders", &[orders.addr]),
            ],
            "",
        ),
        env,
    );
    (gw, api, payment, orders)
}

#[test]
fn listening_line_names_the_driver() {
    let b = Backend::start("b");
    let legacy = Gateway::start_with_env(
        &config(&[("/", "b")], &[("b", &[b.addr])], ""),
        &[("RGATE_DRIVER", "legacy")],
    );
    let line = legacy.log();
    let line = line.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(line.contains("legacy epoll driver"), "{line}");

    let default = Gateway::start(&config(&[("/", "b")], &[("b", &[b.addr])], ""));
    let log = default.log();
    let line = log.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(
        line.contains("io_uring driver") || line.contains("legacy epoll driver"),
        "{line}"
    );
}

#[test]
fn longest_prefix_wins_and_the_query_is_not_matched() {
    for env in DRIVERS {
        let (gw, _api, _payment, _orders) = two_route_gateway(env);
        for (path, backend) in [
            ("/api/payment", "payment"),
            ("/api/payment/x/y", "payment"),
            ("/api/paymentsomething", "payment"),
            ("/api/orders/7?a=1", "orders"),
            ("/api", "api"),
            ("/api/other", "api"),
            ("/api?x=/api/payment", "api"),
            ("/api/pay?x=/api/payment/1", "api"),
        ] {
            let echo = gw.get(path).echo();
            assert_eq!(echo.backend(), backend, "{path} under {env:?}");
            assert_eq!(echo.target(), path, "the target is forwarded as sent");
            assert_eq!(echo.method(), "GET");
            assert_eq!(echo.version(), "HTTP/1.1");
        }
    }
}

#[test]
fn unmatched_paths_get_exactly_the_default_response() {
    for env in DRIVERS {
        let (gw, api, _payment, _orders) = two_route_gateway(env);
        for path in ["/", "/ap", "/API/payment", "/other/api", "/?/api"] {
            let r = gw.get(path);
            assert_eq!(r.status, 403, "{path}");
            assert_eq!(r.body, b"This is not reachable", "{path}");
            assert_eq!(r.header("Content-Length"), Some("21"));
        }
        assert_eq!(api.requests(), 0);
    }
}

#[test]
fn a_backend_without_instances_answers_503_with_the_message() {
    let gw = Gateway::start(
        "routes:\n  - path_prefix: /api/payment\n    backend: payment\n\
backends:\n  - name: payment\n    match_labels: [rgate_test_label=no-container-has-this]\n",
    );
    let r = gw.get("/api/payment/x");
    let v = r.gateway_error(503);
    assert_eq!(
        v["message"],
        "Backend available but no Service URLs discovered"
    );
    assert_eq!(v["error"], "no_instances");
    // Keep-alive survives a gateway-made error.
    let mut c = gw.client();
    c.send(b"GET /api/payment HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).status, 503);
    c.send(b"GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "Not Found"),
        "the default default"
    );
}

#[test]
fn dot_segments_cannot_reach_another_backend() {
    let (gw, api, payment, orders) = two_route_gateway(&[]);
    for (sent, backend, forwarded) in [
        ("/api/payment/../orders/1", "orders", "/api/orders/1"),
        ("/api/orders/%2e%2e/payment/x", "payment", "/api/payment/x"),
        (
            "/api/orders/.%2E/payment?q=/../x",
            "payment",
            "/api/payment?q=/../x",
        ),
        ("/public/../api/payment/x", "payment", "/api/payment/x"),
        ("/api/./payment/./x", "payment", "/api/payment/x"),
        ("/api/payment/..", "api", "/api/"),
    ] {
        let echo = gw.get(sent).echo();
        assert_eq!(echo.backend(), backend, "{sent}");
        assert_eq!(echo.target(), forwarded, "{sent}");
    }
    // `/api/payment/../..` climbs out of every route: the default response, nothing forwarded.
    let before = api.requests() + payment.requests() + orders.requests();
    let r = gw.get("/api/payment/../../secret");
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "This is not reachable")
    );
    // Above the root: refused, and the connection closes cleanly.
    let mut c = gw.client();
    c.send(b"GET /api/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).gateway_error(400);
    c.expect_closed();
    assert_eq!(
        api.requests() + payment.requests() + orders.requests(),
        before
    );
}

#[test]
fn a_random_instance_is_picked_per_request() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[one.addr, two.addr])], ""));
    let mut c = gw.client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        seen.insert(c.read_response(false).echo().backend().to_string());
    }
    assert_eq!(seen.len(), 2, "both instances get traffic: {seen:?}");
}

#[test]
fn request_hop_by_hop_fields_are_removed_and_the_rest_kept_in_order() {
    for env in DRIVERS {
        let b = Backend::start("b");
        let gw = Gateway::start_with_env(&config(&[("/", "b")], &[("b", &[b.addr])], ""), env);
        let r = gw.request(
            "GET /h HTTP/1.1\r\nHost: gw.example:8080\r\nX-One: 1\r\nConnection: keep-alive, X-Private\r\n\
X-Private: secret\r\nKeep-Alive: timeout=5\r\nAccept: */*\r\nProxy-Connection: keep-alive\r\n\
TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nCookie: a=1\r\nCookie: b=2\r\n\
X-Spaces: a  b , c\r\nUser-Agent: raw/1\r\n\r\n",
        );
        let headers = r.echo().headers();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &headers[..8],
            &[
                ("Host".into(), "gw.example:8080".into()),
                ("X-One".into(), "1".into()),
                ("Accept".into(), "*/*".into()),
                ("Cookie".into(), "a=1".into()),
                ("Cookie".into(), "b=2".into()),
                ("X-Spaces".into(), "a  b , c".into()),
                ("User-Agent".into(), "raw/1".into()),
                ("X-Forwarded-Host".into(), "gw.example:8080".into()),
            ][..],
            "{env:?}: {headers:?}"
        );
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(
                !names.iter().any(|n| n.eq_ignore_ascii_case(gone)),
                "{gone} forwarded: {headers:?}"
            );
        }
        let xff: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n == "X-Forwarded-For")
            .collect();
        assert_eq!(xff.len(), 1);
        assert_eq!(xff[0].1, "127.0.0.1");
        let proto: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-proto"))
            .collect();
        assert_eq!(proto.len(), 1);
        assert_eq!(proto[0].1, "http");
        // No body, so no framing field: nothing the client sent frames this request.
        assert!(
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("transfer-encoding")
                    || n.eq_ignore_ascii_case("content-length")),
            "{headers:?}"
        );
    }
}

/// The client's `Transfer-Encoding` is not forwarded: rgate writes its own, once, spelled its
/// own way (the client's is `Chunked`), and re-chunks the body.
#[test]
fn the_clients_transfer_encoding_is_replaced_by_rgates_own() {
    for env in DRIVERS {
        let b = Backend::start("b");
        let gw = Gateway::start_with_env(&config(&[("/", "b")], &[("b", &[b.addr])], ""), env);
        let r = gw.request(
            "POST /te HTTP/1.1\r\nHost: a\r\nX-Before: 1\r\nTransfer-Encoding: Chunked\r\n\
X-After: 2\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
        );
        let echo = r.echo();
        let headers = echo.headers();
        let te: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .collect();
        assert_eq!(te.len(), 1, "{env:?}: {headers:?}");
        assert_eq!(
            te[0].1, "chunked",
            "{env:?}: the client's field was forwarded: {headers:?}"
        );
        assert_eq!(echo.body_len(), 3);
        assert_eq!(echo.header("X-Before").as_deref(), Some("1"));
        assert_eq!(echo.header("X-After").as_deref(), Some("2"));
    }
}

#[test]
fn x_forwarded_for_is_appended_and_proto_host_are_rgates_own() {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[b.addr])], ""));
    let echo = gw
        .request(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 10.1.1.1\r\nHost: h.test\r\n\
X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed.test\r\n\r\n",
        )
        .echo();
    assert_eq!(
        echo.header("X-Forwarded-For").as_deref(),
        Some("10.1.1.1, 127.0.0.1")
    );
    assert_eq!(echo.header("X-Forwarded-Proto").as_deref(), Some("http"));
    assert_eq!(echo.header("X-Forwarded-Host").as_deref(), Some("h.test"));
    let count = |name: &str| {
        echo.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(count("x-forwarded-proto"), 1);
    assert_eq!(count("x-forwarded-host"), 1);
}

#[test]
fn response_hop_by_hop_fields_are_removed_and_the_rest_kept_in_order() {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[b.addr])], ""));
    let mut c = gw.client();
    c.send(b"GET /?do=hop HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{HOP_RESPONSE}");
    assert_eq!(r.body, b"ok");
    assert_eq!(
        r.headers,
        vec![
            ("X-First".to_string(), "1".to_string()),
            ("X-Middle".into(), "two words".into()),
            ("Set-Cookie".into(), "a=1".into()),
            ("Set-Cookie".into(), "b=2".into()),
            ("X-Last".into(), "3".into()),
            (
                "X-Request-Id".into(),
                r.header("X-Request-Id").unwrap().into()
            ),
            ("Content-Length".into(), "2".into()),
        ]
    );
    // The client connection stays usable.
    c.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/after");
}
