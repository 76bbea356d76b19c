//! Routing as a Docker user expects it, on the wire against real backends: host matching
//! (exact, wildcard, with and without a port), prefixes stripped or rewritten as the
//! backend sees them, header edits both ways, and body limits (413 before anything is
//! forwarded for a Content-Length, when a chunked body crosses the limit, and instead of
//! `100 Continue`).

mod common;

use std::time::Duration;

use common::{Backend, Gateway};

/// `(yaml, backends)`: the routes below, each to its own backend named like it.
fn gateway(routes: &str, backends: &[(&str, &Backend)], extra: &str) -> Gateway {
    let mut y = format!(
        "routes:\n{routes}default_response:\n  body: nothing here\n  status_code: 404\nbackends:\n"
    );
    for (name, b) in backends {
        y += &format!("  - name: {name}\n    addresses: ['{}']\n", b.addr);
    }
    Gateway::start(&(y + extra))
}

fn via(gw: &Gateway, host: &str, target: &str) -> common::Response {
    gw.request(&format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
}

#[test]
fn hosts_route_by_exact_name_then_wildcard_then_any_with_or_without_a_port() {
    let (api, wild, any) = (
        Backend::start("api"),
        Backend::start("wild"),
        Backend::start("any"),
    );
    let gw = gateway(
        "  - {path_prefix: /, host: api.example.com, backend: api}\n\
         \x20 - {path_prefix: /, host: '*.example.com', backend: wild}\n\
         \x20 - {path_prefix: /static, backend: any}\n",
        &[("api", &api), ("wild", &wild), ("any", &any)],
        "",
    );
    for (host, target, who) in [
        ("api.example.com", "/x", Some(&api)),
        ("API.Example.com:8080", "/x", Some(&api)),
        ("www.example.com", "/x", Some(&wild)),
        ("www.example.com:443", "/static/a", Some(&wild)),
        ("example.com", "/static/a", Some(&any)),
        ("other.net", "/static/a", Some(&any)),
        ("other.net", "/x", None),
    ] {
        let before = (api.requests(), wild.requests(), any.requests());
        let r = via(&gw, host, target);
        let after = (api.requests(), wild.requests(), any.requests());
        match who {
            Some(b) => {
                assert_eq!(r.status, 200, "{host} {target}");
                assert_eq!(r.echo().target(), target);
                let grew = |x: &Backend, b0, b1| (std::ptr::eq(x, b), b1 - b0);
                for (x, b0, b1) in [
                    (&api, before.0, after.0),
                    (&wild, before.1, after.1),
                    (&any, before.2, after.2),
                ] {
                    let (is_it, n) = grew(x, b0, b1);
                    assert_eq!(n, usize::from(is_it), "{host} {target}");
                }
            }
            None => {
                assert_eq!(r.status, 404, "{host} {target}");
                assert_eq!(r.body, b"nothing here");
                assert_eq!(before, after);
            }
        }
    }
    // The absolute-form authority is the host (RFC 9112 §3.2.2).
    let r = gw.request("GET http://api.example.com/abs HTTP/1.1\r\nHost: other.net\r\n\r\n");
    assert_eq!(r.echo().target(), "/abs");
    assert_eq!(api.requests(), 3);
}

#[test]
fn strip_and_rewrite_are_what_the_backend_sees() {
    let b = Backend::start("b");
    let gw = gateway(
        "  - {path_prefix: /api/search, backend: b, strip_prefix: true}\n\
         \x20 - {path_prefix: /old/, backend: b, rewrite_prefix: /v2/}\n\
         \x20 - {path_prefix: /plain, backend: b}\n",
        &[("b", &b)],
        "",
    );
    let seen = |target: &str, extra: &str| {
        let r = gw.request(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"));
        assert_eq!(r.status, 200, "{target}");
        let e = r.echo();
        let prefix: Vec<String> = e
            .headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-prefix"))
            .map(|(_, v)| v)
            .collect();
        (e.target().to_string(), prefix)
    };
    assert_eq!(
        seen("/api/search/q?x=1", ""),
        ("/q?x=1".into(), vec!["/api/search".into()])
    );
    assert_eq!(
        seen("/api/search", ""),
        ("/".into(), vec!["/api/search".into()])
    );
    assert_eq!(
        seen("/api/search?x", ""),
        ("/?x".into(), vec!["/api/search".into()])
    );
    assert_eq!(
        seen("/old/a/b", ""),
        ("/v2/a/b".into(), vec!["/old".into()])
    );
    // Dot segments are resolved before matching and rewriting.
    assert_eq!(
        seen("/api/search/a/../b", ""),
        ("/b".into(), vec!["/api/search".into()])
    );
    assert_eq!(
        seen("/plain/../api/search/c", ""),
        ("/c".into(), vec!["/api/search".into()])
    );
    // A client's own X-Forwarded-Prefix never reaches a backend.
    assert_eq!(
        seen("/plain/x", "X-Forwarded-Prefix: /admin\r\n"),
        ("/plain/x".into(), vec![])
    );
    assert_eq!(
        seen("/api/search/x", "X-Forwarded-Prefix: /admin\r\n"),
        ("/x".into(), vec!["/api/search".into()])
    );
}

#[test]
fn route_headers_are_set_and_removed_both_ways() {
    let b = Backend::start("b");
    let gw = gateway(
        "  - path_prefix: /\n    backend: b\n    request_headers: {set: {X-Team: search, User-Agent: rgate-test}, remove: [Cookie]}\n    response_headers: {set: {X-Frame-Options: DENY}, remove: [Set-Cookie, X-Middle]}\n",
        &[("b", &b)],
        "",
    );
    let r = gw.request(
        "GET /?do=hop HTTP/1.1\r\nHost: t\r\nCookie: secret=1\r\nUser-Agent: curl\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("set-cookie")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("x-middle")),
        "{names:?}"
    );
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    assert_eq!(r.header("X-First"), Some("1"));
    // The request side, as the echo saw it.
    let e = gw
        .request("GET / HTTP/1.1\r\nHost: t\r\nCookie: secret=1\r\nUser-Agent: curl\r\nX-Team: mine\r\n\r\n")
        .echo();
    let h = e.headers();
    let get = |name: &str| -> Vec<String> {
        h.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(get("cookie"), Vec::<String>::new());
    assert_eq!(get("x-team"), ["search"]);
    assert_eq!(get("user-agent"), ["rgate-test"]);
    assert_eq!(get("host"), ["t"]);
}

#[test]
fn bodies_over_the_limit_get_413_and_the_backend_gets_nothing_of_them() {
    let b = Backend::start("b");
    let gw = gateway(
        "  - {path_prefix: /small, backend: b, max_body_bytes: 10}\n\
         \x20 - {path_prefix: /, backend: b}\n",
        &[("b", &b)],
        "limits:\n  max_body_bytes: 100\n",
    );
    // Content-Length over the route's limit: 413 before anything is forwarded; a small
    // body is read and dropped, so the connection stays usable.
    let mut c = gw.client();
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.read_response(false);
    assert_eq!(r.gateway_error(413)["error"], "content_too_large");
    assert_eq!(b.requests(), 0);
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!(c.read_response(false).echo().body_len(), 10);
    assert_eq!(b.requests(), 1);
    // The global limit for routes without their own.
    let mut c = gw.client();
    c.send(
        format!(
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n{}",
            "a".repeat(101)
        )
        .as_bytes(),
    );
    c.read_response(false).gateway_error(413);
    assert_eq!(b.requests(), 1);

    // Expect: 100-continue over the limit: 413 instead of 100, and the body is never asked for.
    let mut c = gw.client();
    c.send(
        b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 413, "{r:?}");
    r.gateway_error(413);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(b.requests(), 1);

    // A chunked body crossing the limit: 413, the client connection ends, and the backend
    // connection that had the start of it is closed, never reused.
    let mut c = gw.client();
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"6\r\nworld!\r\n0\r\n\r\n");
    let r = c.read_response(false);
    r.gateway_error(413);
    c.expect_closed();
    // The backend saw an incomplete body and no further request on that connection.
    let next = gw.request("POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(next.echo().body_len(), 2);
    // Under the limit, chunked goes through whole.
    let mut c = gw.client();
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).echo().body_len(), 10);
}

#[test]
fn a_head_split_anywhere_routes_and_rewrites_the_same() {
    // The head arrives in pieces (as slow clients and small segments deliver it): routing by
    // Host and rewriting happen once, on the whole head, whatever the cut.
    let (a, other) = (Backend::start("a"), Backend::start("other"));
    let gw = gateway(
        "  - {path_prefix: /svc, host: a.test, backend: a, strip_prefix: true}\n\
         \x20 - {path_prefix: /, backend: other}\n",
        &[("a", &a), ("other", &other)],
        "",
    );
    let request = b"GET /svc/x?y=1 HTTP/1.1\r\nUser-Agent: t\r\nHost: A.Test:80\r\n\r\n";
    for cut in [1, 5, 17, 26, 40, request.len() - 1] {
        let mut c = gw.client();
        c.send(&request[..cut]);
        std::thread::sleep(Duration::from_millis(20));
        c.send(&request[cut..]);
        let r = c.read_response(false);
        assert_eq!(r.echo().target(), "/x?y=1", "cut at {cut}");
    }
    assert_eq!(a.requests(), 6);
    assert_eq!(other.requests(), 0);
}
