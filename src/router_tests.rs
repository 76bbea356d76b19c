//! Tests of `router.rs`: normalisation, host and prefix precedence, rewriting.

use super::*;
use crate::config::host_pattern;

fn table() -> RouteTable {
    RouteTable::new(&[
        Route::plain("/api", 0),
        Route::plain("/api/payment", 1),
        Route::plain("/api/orders", 2),
    ])
}

#[test]
fn longest_prefix_wins_and_query_is_ignored() {
    let t = table();
    assert_eq!(t.route(None, "/api/payment/x").unwrap().backend, 1);
    assert_eq!(t.route(None, "/api/paymentsomething").unwrap().backend, 1);
    assert_eq!(t.route(None, "/api/other").unwrap().backend, 0);
    assert_eq!(t.route(None, "/api?x=/api/payment").unwrap().backend, 0);
    assert_eq!(t.route(None, "/ap?i"), None);
    assert_eq!(t.route(None, "/"), None);
}

#[test]
fn dot_segments_are_resolved_before_matching() {
    let n = |s| normalize_target(s).map(|c| c.into_owned());
    assert_eq!(n("/api/payment/x?a=1").unwrap(), "/api/payment/x?a=1");
    assert_eq!(n("/api/payment/../orders/1").unwrap(), "/api/orders/1");
    assert_eq!(n("/api/payment/%2e%2e/orders").unwrap(), "/api/orders");
    assert_eq!(n("/api/payment/.%2E/orders").unwrap(), "/api/orders");
    assert_eq!(n("/api/./payment/.").unwrap(), "/api/payment/");
    assert_eq!(n("/a/b/..").unwrap(), "/a/");
    assert_eq!(n("/..").unwrap_err(), TargetError::EscapesRoot);
    assert_eq!(n("/a/../../b").unwrap_err(), TargetError::EscapesRoot);
    assert_eq!(n("/a/..b/c").unwrap(), "/a/..b/c");
    assert_eq!(n("/a?x=/../..").unwrap(), "/a?x=/../..");
    assert_eq!(n("http://host/api/x?y").unwrap(), "/api/x?y");
    assert_eq!(n("http://host").unwrap(), "/");
    assert_eq!(n("HTTP://host?q").unwrap(), "/?q");
    assert_eq!(n("http://host#frag").unwrap(), "/");
    assert_eq!(n("http://host/a/../b#frag").unwrap(), "/b");
    assert_eq!(n("*").unwrap(), "*");
    assert_eq!(n("host:443").unwrap_err(), TargetError::UnsupportedForm);
    let t = table();
    let routed = n("/api/payment/../orders/1").unwrap();
    assert_eq!(t.route(None, &routed).unwrap().backend, 2);
}

/// Most targets are already normal: they are passed on as they are, without a copy,
/// even when they hold a `.` or a `%` that is not a dot segment (one cut short included).
#[test]
fn normal_targets_are_borrowed() {
    for target in [
        "/",
        "/api/x?q=1",
        "/a.b/c.",
        "/a/%41/..b",
        "/%2",
        "/.%2",
        "/a/.%",
        "*",
    ] {
        let got = normalize_target(target).unwrap();
        assert!(
            matches!(got, Cow::Borrowed(t) if t == target),
            "{target:?}: {got:?}"
        );
    }
    assert!(matches!(normalize_target("/a/./b"), Ok(Cow::Owned(t)) if t == "/a/b"));
}

/// The reason reaches the client in the 400's JSON message.
#[test]
fn every_target_error_says_why() {
    assert_eq!(
        TargetError::EscapesRoot.reason(),
        "path climbs above the root with '..'"
    );
    assert_eq!(
        TargetError::UnsupportedForm.reason(),
        "request-target is not a path"
    );
}

/// A route with a host (`host_pattern`'s syntax) and a prefix.
fn hosted(host: Option<&str>, prefix: &str, backend: usize) -> Route {
    Route {
        host: host.map(|h| host_pattern(h).unwrap()),
        ..Route::plain(prefix, backend)
    }
}

#[test]
fn the_most_specific_host_wins_then_the_longest_prefix() {
    let t = RouteTable::new(&[
        hosted(None, "/", 0),
        hosted(None, "/api/long", 1),
        hosted(Some("*.example.com"), "/", 2),
        hosted(Some("*.example.com"), "/api", 3),
        hosted(Some("api.example.com"), "/api", 4),
        hosted(Some("API.other.org"), "/", 5),
    ]);
    let b = |host: Option<&str>, target: &str| {
        t.route(host.map(str::as_bytes), target).map(|m| m.backend)
    };
    // (host, target) -> backend
    for (host, target, want) in [
        // exact host, its longest prefix
        (Some("api.example.com"), "/api/x", Some(4)),
        // case, port and a trailing dot do not matter
        (Some("API.Example.COM:8080"), "/api/x", Some(4)),
        (Some("api.example.com."), "/api", Some(4)),
        // the exact host has no route for this path: the wildcard's
        (Some("api.example.com"), "/other", Some(2)),
        // a more specific host beats a longer prefix of a less specific one
        (Some("api.example.com"), "/api/long", Some(4)),
        (Some("www.example.com"), "/api/long", Some(3)),
        // one label only: not the apex, not two labels
        (Some("example.com"), "/api/long", Some(1)),
        (Some("a.b.example.com"), "/api/x", Some(0)),
        // routes without host for any other host, and without a Host at all
        (Some("elsewhere.net"), "/api/long/1", Some(1)),
        (None, "/x", Some(0)),
        // exact host given in upper case in the config
        (Some("api.other.org"), "/x", Some(5)),
        // IP literals and odd values match no host route
        (Some("[::1]:8080"), "/api/long", Some(1)),
        (Some("127.0.0.1:80"), "/", Some(0)),
    ] {
        assert_eq!(b(host, target), want, "{host:?} {target}");
    }
    // No route without a host: a host nobody routes gets nothing.
    let only_hosts = RouteTable::new(&[hosted(Some("a.test"), "/", 0)]);
    assert_eq!(only_hosts.route(Some(b"b.test"), "/"), None);
    assert_eq!(only_hosts.route(None, "/"), None);
    assert_eq!(only_hosts.route(Some(b"A.TEST"), "/").unwrap().backend, 0);
}

#[test]
fn prefixes_are_bytes_and_a_longer_one_needs_its_whole_length() {
    let t = RouteTable::new(&[
        Route::plain("/a", 0),
        Route::plain("/a/b/c", 1),
        Route::plain("/a%2Fb", 2),
    ]);
    let b = |target: &str| t.route(None, target).map(|m| m.backend);
    assert_eq!(b("/a/b"), Some(0), "/a/b/c is not a prefix of /a/b");
    assert_eq!(b("/a/b/c"), Some(1));
    assert_eq!(b("/a/b/cd"), Some(1));
    // An encoded slash is not a slash: it matches only a prefix written the same way.
    assert_eq!(b("/a%2Fb/x"), Some(2));
    assert_eq!(b("/a%2fb/x"), Some(0));
    assert_eq!(b("/b"), None);
    assert_eq!(RouteTable::new(&[]).route(None, "/"), None);
}

#[test]
fn rewriting_strips_or_replaces_the_prefix_after_normalisation() {
    let strip = |prefix: &str| Route {
        rewrite: Rewrite::Strip,
        ..Route::plain(prefix, 0)
    };
    let replace = |prefix: &str, with: &str| Route {
        rewrite: Rewrite::Replace(with.into()),
        ..Route::plain(prefix, 0)
    };
    for (route, target, want) in [
        (strip("/api"), "/api/users?x=1", "/users?x=1"),
        (strip("/api"), "/api", "/"),
        (strip("/api"), "/api?q=/api", "/?q=/api"),
        (strip("/api/"), "/api/", "/"),
        (strip("/api/"), "/api/x/y", "/x/y"),
        (strip("/api"), "/apiary", "/ary"),
        (strip("/api"), "/api%2Fsecret", "/%2Fsecret"),
        (replace("/api", "/v2"), "/api/users", "/v2/users"),
        (replace("/api", "/v2"), "/api?x", "/v2?x"),
        (replace("/old/", "/"), "/old/a", "/a"),
        (Route::plain("/api", 0), "/api/x", "/api/x"),
    ] {
        assert_eq!(
            rewrite(&route, target),
            want,
            "{:?} {target}",
            route.rewrite
        );
    }
    // Normalise, match, rewrite: dot segments are gone before the prefix is stripped, so a
    // path cannot climb out of the route's prefix into another part of the backend.
    let t = RouteTable::new(&[strip("/api"), Route::plain("/admin", 1)]);
    let target = normalize_target("/api/../admin/x").unwrap();
    let m = t.route(None, &target).unwrap();
    assert_eq!(
        m.backend, 1,
        "routed as /admin/x, never stripped by /api's route"
    );
    let target = normalize_target("/api/%2e%2e/x").unwrap();
    assert_eq!(target, "/x");
    assert_eq!(t.route(None, &target), None);
    let target = normalize_target("/api/a/../b").unwrap();
    assert_eq!(rewrite(&strip("/api"), &target), "/b");
}

#[test]
fn the_path_ends_at_the_first_question_mark() {
    assert_eq!(path_of("/a/b?x=1?y"), "/a/b");
    assert_eq!(path_of("/a/b"), "/a/b");
    assert_eq!(path_of("/?"), "/");
    assert_eq!(path_of(""), "");
}
