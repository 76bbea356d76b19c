//! The `/stats` page, seen from outside: on the wire, which clients get the page and which the
//! JSON (by `Accept`; both with `Vary: Accept`); and in a real browser, the real rgate binary
//! (2 cores) in front of real backends, with known traffic sent through it, loaded by headless
//! Chromium. The test reads the DOM the page's script rendered and compares every total, table
//! row and chart with the JSON read over a raw socket, then takes a screenshot
//! (`<target>/tmp/dashboard.png`).
//!
//! Without a `chromium` command the browser tests say so loudly and pass, unless
//! `RGATE_REQUIRE_CHROMIUM=1` (set by .ci/run) makes them fail; `make test` lists them as
//! skipped. Chromium reaches nothing but 127.0.0.1 and every run of it is bounded in time
//! (`dashboard/chromium.rs`).

#[path = "dashboard/chromium.rs"]
mod chromium;
mod common;
#[path = "dashboard/dom.rs"]
mod dom;

use std::path::Path;

use chromium::Chromium;
use common::{dead_port, Backend, Gateway, Response};
use dom::Fragment;
use serde_json::Value;

/// The page as rgate embeds it.
const PAGE: &str = include_str!("../src/stats/dashboard.html");

/// What browsers send when they load a page (Chromium, Firefox, Safari).
const BROWSERS: [&str; 3] = [
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
];

/// What other clients send: nothing (curl without -H, most libraries), curl's `*/*`, a JSON
/// client, axios, and a client that takes HTML only below JSON.
const NOT_BROWSERS: [Option<&str>; 5] = [
    None,
    Some("*/*"),
    Some("application/json"),
    Some("application/json, text/plain, */*"),
    Some("application/json, text/html;q=0.5"),
];

/// The screenshot's window, and where it is saved.
const SCREENSHOT_SIZE: (u32, u32) = (1280, 1000);
const SCREENSHOT: &str = "dashboard.png";

/// `method path` with an optional `Accept`, on a new connection that closes after it.
fn ask(rgate: &Gateway, method: &str, path: &str, accept: Option<&str>) -> Response {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    rgate.request(&format!(
        "{method} {path} HTTP/1.1\r\nHost: rgate.test\r\n{accept}Connection: close\r\n\r\n"
    ))
}

/// `/stats` as a client that asks for nothing in particular: the JSON.
fn stats(rgate: &Gateway) -> Value {
    let r = ask(rgate, "GET", "/stats", None);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// The error kinds the page lists for a traffic shape: the non-zero ones, in the JSON's order.
fn kinds(t: &Value) -> String {
    let listed: Vec<String> = t["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors in {t}"))
        .iter()
        .filter(|(_, n)| count(n) > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if listed.is_empty() {
        "–".into()
    } else {
        listed.join(", ")
    }
}

/// Checks that `shown` (e.g. "1.62 ms", "13.2") is the JSON latency `want` as the page rounds
/// it (2 decimals below 10, 1 below 100, none above), or "–" for none.
fn assert_ms(shown: &str, want: &Value, what: &str) {
    let Some(want) = want.as_f64() else {
        assert_eq!(shown, "–", "{what}: no latency, shown {shown:?}");
        return;
    };
    let value: f64 = shown
        .trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {shown:?} is not a latency ({e})"));
    let half_step = if want < 10.0 {
        0.005
    } else if want < 100.0 {
        0.05
    } else {
        0.5
    };
    assert!(
        (value - want).abs() <= half_step + 1e-9,
        "{what}: shown {shown:?}, the JSON says {want}"
    );
}

/// A table row shows the traffic shape `t`: counts exactly, error kinds, latencies as rounded.
fn assert_row(row: Fragment<'_>, t: &Value, what: &str) {
    let r = &t["requests_count"];
    for (cell, field) in [
        ("data-requests=", "total"),
        ("data-success=", "success"),
        ("data-errors=", "error"),
    ] {
        assert_eq!(
            row.element(cell).number(),
            count(&r[field]),
            "{what}: {cell} in {}",
            row.0
        );
    }
    assert_eq!(row.element("data-error-kinds=").text(), kinds(t), "{what}");
    assert_ms(
        &row.element("data-p50=").text(),
        &t["latency_ms"]["p50"],
        what,
    );
    assert_ms(
        &row.element("data-p99=").text(),
        &t["latency_ms"]["p99"],
        what,
    );
}

#[test]
fn browsers_get_the_page_and_every_other_client_the_json() {
    let dead = dead_port();
    let rgate = Gateway::start(&common::config(
        &[("/api", "api")],
        &[("api", &[dead.addr])],
        "",
    ));
    for accept in NOT_BROWSERS {
        let r = ask(&rgate, "GET", "/stats", accept);
        assert_eq!(r.status, 200, "{accept:?}: {r:?}");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "{accept:?}"
        );
        assert_eq!(r.header("Vary"), Some("Accept"), "{accept:?}");
        assert!(r.json()["requests_count"].is_object(), "{accept:?}: {r:?}");
        let head = ask(&rgate, "HEAD", "/stats", accept);
        assert_eq!(head.header("Content-Type"), Some("application/json"));
        assert_eq!(head.header("Vary"), Some("Accept"), "{accept:?}");
        assert!(head.body.is_empty(), "{head:?}");
    }
    for accept in BROWSERS {
        let r = ask(&rgate, "GET", "/stats", Some(accept));
        assert_eq!(r.status, 200, "{accept}: {r:?}");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{accept}"
        );
        assert_eq!(r.header("Vary"), Some("Accept"), "{accept}");
        let len = PAGE.len().to_string();
        assert_eq!(r.header("Content-Length"), Some(len.as_str()));
        assert!(r.body == PAGE.as_bytes(), "not the embedded page: {r:?}");
        let head = ask(&rgate, "HEAD", "/stats", Some(accept));
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(head.header("Content-Length"), Some(len.as_str()));
        assert_eq!(head.header("Vary"), Some("Accept"));
        assert!(head.body.is_empty(), "{head:?}");
    }
    // Decided per request: a browser's request and then curl's on one connection.
    let mut c = rgate.client();
    let html = c
        .try_exchange(
            format!(
                "GET /stats HTTP/1.1\r\nHost: rgate.test\r\nAccept: {}\r\n\r\n",
                BROWSERS[0]
            )
            .as_bytes(),
        )
        .unwrap();
    let json = c
        .try_exchange(b"GET /stats HTTP/1.1\r\nHost: rgate.test\r\nAccept: */*\r\n\r\n")
        .unwrap();
    assert_eq!(
        html.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    // /metrics does not depend on Accept, and says nothing about it.
    let metrics = ask(&rgate, "GET", "/metrics", Some(BROWSERS[0]));
    assert!(
        metrics
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{metrics:?}"
    );
    assert_eq!(metrics.header("Vary"), None);
    // None of it was traffic.
    assert_eq!(count(&stats(&rgate)["requests_count"]["total"]), 0);
}

#[test]
fn the_page_shows_what_the_json_shows() {
    let Some(browser) = Chromium::find("the_page_shows_what_the_json_shows") else {
        return;
    };
    // /api: a live instance and one that refuses (ejected for 10 minutes after 3 failures,
    // so it shows as ejected for the whole test); /down: only a refusing instance (503s with
    // the error kind `connect`); anything else: the default response (403, not an error).
    let live = Backend::start("live");
    let (refusing, down) = (dead_port(), dead_port());
    let rgate = Gateway::start(&format!(
        "routes:
  - {{path_prefix: /api, backend: api}}
  - {{path_prefix: /down, backend: down}}
backends:
  - name: api
    addresses: ['{}', '{}']
    circuit_breaker: {{failures: 3, ejection_ms: 600000, max_ejection_ms: 600000}}
  - {{name: down, addresses: ['{}']}}
default_response: {{body: not here, status_code: 403}}
",
        live.addr, refusing.addr, down.addr
    ));
    let refusing_addr = refusing.addr.to_string();
    let state_of = |s: &Value, addr: &str| -> String {
        s["backends"]["api"]["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["address"] == addr))
            .map(|i| i["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no instance {addr} in {s:#}"))
    };
    // Random balancing sends about half the first attempts to the refusing instance: bounded
    // far beyond what 3 failures need.
    let mut ok = 0u64;
    while state_of(&stats(&rgate), &refusing_addr) != "ejected" {
        assert!(ok < 200, "not ejected after {ok} requests");
        for _ in 0..5 {
            assert_eq!(rgate.get("/api/x").status, 200);
            ok += 1;
        }
    }
    const FAILED: u64 = 4;
    const UNROUTED: u64 = 3;
    for _ in 0..FAILED {
        assert_eq!(rgate.get("/down/x").status, 503);
    }
    for _ in 0..UNROUTED {
        assert_eq!(rgate.get("/elsewhere").status, 403);
    }

    let url = format!("http://{}/stats", rgate.addr);
    let before = stats(&rgate);
    let dumped = browser.dump_dom(&url);
    let s = stats(&rgate);
    assert_eq!(
        before["requests_count"], s["requests_count"],
        "the browser's visit was counted: it asked rgate for more than the page and its JSON"
    );
    let r = &s["requests_count"];
    assert_eq!(
        (count(&r["total"]), count(&r["error"])),
        (ok + FAILED + UNROUTED, FAILED),
        "{s:#}"
    );

    let dom = Fragment(&dumped);
    assert!(
        dom.element("<body").attr("data-ready").is_some(),
        "the page never rendered:\n{dumped}"
    );
    assert_eq!(
        dom.element("id=\"status\"").attr("class").as_deref(),
        Some("live")
    );
    for (marker, field) in [
        ("data-total-requests=", "total"),
        ("data-total-success=", "success"),
        ("data-total-errors=", "error"),
        ("data-total-aborted=", "aborted"),
    ] {
        assert_eq!(dom.element(marker).number(), count(&r[field]), "{marker}");
    }
    // Refreshed at least twice in the page's time, with no traffic in between.
    for marker in ["data-live-requests=", "data-live-errors="] {
        assert_eq!(dom.element(marker).text(), "0.00", "{marker}");
    }
    assert_ms(
        &dom.element("data-total-p50=").text(),
        &s["latency_ms"]["p50"],
        "total p50",
    );
    assert_ms(
        &dom.element("data-total-p99=").text(),
        &s["latency_ms"]["p99"],
        "total p99",
    );

    let routes = s["routes"].as_object().unwrap();
    assert_eq!(dom.count("data-route=\""), routes.len());
    for (name, t) in routes {
        let row = dom.element(&format!("data-route=\"{name}\""));
        assert_row(row, t, name);
    }
    assert_eq!(
        dom.element("data-route=\"/down\"")
            .element("data-error-kinds=")
            .text(),
        format!("connect {FAILED}")
    );
    let backends = s["backends"].as_object().unwrap();
    assert_eq!(dom.count("data-backend=\""), backends.len());
    let mut instances = 0;
    for (name, b) in backends {
        let row = dom.element(&format!("data-backend=\"{name}\""));
        assert_row(row, b, name);
        assert_eq!(row.element("data-retries=").number(), count(&b["retries"]));
        let list = b["instances"].as_array().unwrap();
        let up = list.iter().filter(|i| i["state"] == "up").count();
        assert_eq!(
            row.element("data-instances-up=").text(),
            format!("{up} / {}", list.len())
        );
        for i in list {
            instances += 1;
            let addr = i["address"].as_str().unwrap();
            let row = dom.element(&format!("data-instance=\"{addr}\""));
            assert_eq!(row.attr("data-instance-of").as_deref(), Some(name.as_str()));
            assert_row(row, i, addr);
            let state = row.element("data-state=");
            assert_eq!(
                state.attr("data-state"),
                i["state"].as_str().map(String::from)
            );
            let label = state.text();
            match i["state"].as_str() {
                Some("ejected") => assert!(label.starts_with("ejected until "), "{label:?}"),
                other => assert_eq!(Some(label.as_str()), other),
            }
            assert_eq!(
                row.element("data-ejections=").number(),
                count(&i["ejections"])
            );
        }
    }
    assert_eq!(dom.count("data-instance=\""), instances);
    assert_eq!(state_of(&s, &refusing_addr), "ejected");

    // The charts: a point per minute of history (every request happened within the last
    // hour), both series in each, axes with ticks, a legend, and no empty state.
    let history = s["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{s:#}");
    assert_eq!(
        history.iter().map(|m| count(&m["requests"])).sum::<u64>(),
        count(&r["total"])
    );
    for (chart, series) in [
        ("traffic", ["requests", "errors"]),
        ("latency", ["p50", "p99"]),
    ] {
        let svg = dom.element(&format!("data-chart=\"{chart}\""));
        assert!(!svg.contains("data-empty"), "{chart}: {}", svg.0);
        for key in series {
            assert!(
                svg.contains(&format!("data-series=\"{key}\"")),
                "{chart}: {}",
                svg.0
            );
            assert!(
                svg.contains(&format!("data-legend=\"{key}\"")),
                "{chart}: {}",
                svg.0
            );
            assert_eq!(
                svg.count(&format!("data-point=\"{key}\"")),
                history.len(),
                "{chart} {key}: {}",
                svg.0
            );
        }
        assert!(svg.count("data-x-tick") >= 5, "{chart}: {}", svg.0);
        assert!(svg.count("data-y-tick") >= 2, "{chart}: {}", svg.0);
    }

    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join(SCREENSHOT);
    browser.screenshot(&url, &png, SCREENSHOT_SIZE);
    let image = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let dimension = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().unwrap());
    assert_eq!((dimension(16), dimension(20)), SCREENSHOT_SIZE, "IHDR size");
}

#[test]
fn an_idle_gateway_s_page_says_so_shows_names_as_text_and_follows_a_moved_path() {
    let Some(browser) = Chromium::find(
        "an_idle_gateway_s_page_says_so_shows_names_as_text_and_follows_a_moved_path",
    ) else {
        return;
    };
    // Names from the config are shown, never run: a route and a backend named as markup.
    let route = r#"/x<b>"&"#;
    let backend = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;
    let dead = dead_port();
    let rgate = Gateway::start(&format!(
        "routes:
  - {{path_prefix: '{route}', backend: '{backend}'}}
backends:
  - {{name: '{backend}', addresses: ['{}']}}
stats: {{path: /_rgate/stats}}
",
        dead.addr
    ));
    let dumped = browser.dump_dom(&format!("http://{}/_rgate/stats", rgate.addr));
    let dom = Fragment(&dumped);
    // Rendered at all: the page fetched its JSON from the moved path it was loaded from.
    let body = dom.element("<body");
    assert!(
        body.attr("data-ready").is_some(),
        "the page never rendered:\n{dumped}"
    );
    assert!(
        body.attr("data-pwned").is_none(),
        "a name ran as markup:\n{dumped}"
    );
    assert!(
        !dumped.contains("<img") && !dumped.contains("<b>"),
        "{dumped}"
    );
    assert_eq!(dom.count("data-route=\""), 1);
    let row = dom.element("data-route=\"");
    assert_eq!(row.attr("data-route").as_deref(), Some(route));
    assert_eq!(row.element("<td").text(), route);
    assert_eq!(row.element("data-requests=").number(), 0);
    let row = dom.element("data-backend=\"");
    assert_eq!(row.attr("data-backend").as_deref(), Some(backend));
    assert_eq!(row.element("<td").text(), backend);
    assert_eq!(dom.element("data-total-requests=").number(), 0);
    for chart in ["traffic", "latency"] {
        let svg = dom.element(&format!("data-chart=\"{chart}\""));
        assert_eq!(
            svg.element("data-empty").text(),
            "no traffic yet",
            "{chart}"
        );
        assert!(!svg.contains("data-series"), "{chart}: {}", svg.0);
        assert!(!svg.contains("data-point"), "{chart}: {}", svg.0);
    }
}
