//! Micro-benchmarks of the per-request work that touches no socket: parsing the request
//! head, normalising and routing its target, writing the forwarded head, and the same for
//! the response on its way back. `make bench` runs them; `cargo bench --bench hot_path`
//! runs them alone.
//!
//! Stable Rust has no `#[bench]`, and criterion would add a dependency tree for what a
//! timed loop does well enough here: each case is warmed up, then timed in batches for a
//! fixed wall-clock budget, and the fastest batch's ns/op is reported (the minimum is the
//! least disturbed by other work on the machine; the median is printed beside it).
//! Inputs and outputs go through `black_box` so the optimiser cannot drop the work.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rgate::config::{HostPattern, Route};
use rgate::http::request::parse_request;
use rgate::http::request_id::RequestIds;
use rgate::http::response::parse_response;
use rgate::http::writer::{
    write_request_head, write_response_head, Forwarding, RelayFraming, NO_EDITS,
};
use rgate::http::{UnderscorePolicy, Version, MAX_HEADERS};
use rgate::router::{normalize_target, RouteTable};

/// What wrk sends: the smallest realistic request.
const SMALL_REQUEST: &[u8] = b"GET /api/bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
/// A browser-like request: a dozen headers, ~600 bytes.
const BROWSER_REQUEST: &[u8] = b"GET /api/orders/12345/items?page=2&sort=desc HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://shop.example.com/api/orders/12345\r\n\
Cookie: session=2f9a7c1e8b3d4a5f6e7d8c9b0a1f2e3d; theme=dark; consent=yes\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
X-Request-Id: 7d1c0e4a-58b9-4f3e-9a2d-1b6c8e0f7a35\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Content-Length: 1234\r\nDate: Sun, 23 Nov 2025 05:00:00 GMT\r\nServer: backend\r\n\
Cache-Control: no-store\r\nConnection: keep-alive\r\n\r\n";

/// Time spent measuring each case (after its warm-up).
const BUDGET: Duration = Duration::from_millis(400);
const WARM_UP: Duration = Duration::from_millis(50);
const BATCH: u32 = 1000;

struct Timing {
    min_ns: f64,
    median_ns: f64,
}

/// Runs `op` in batches of `BATCH` for `BUDGET` and returns ns per call.
fn measure(mut op: impl FnMut()) -> Timing {
    let warm = Instant::now();
    while warm.elapsed() < WARM_UP {
        op();
    }
    let mut batches = Vec::with_capacity(4096);
    let started = Instant::now();
    while started.elapsed() < BUDGET && batches.len() < batches.capacity() {
        let t = Instant::now();
        for _ in 0..BATCH {
            op();
        }
        batches.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    batches.sort_by(f64::total_cmp);
    Timing {
        min_ns: batches[0],
        median_ns: batches[batches.len() / 2],
    }
}

/// `n` routes: half on their own host (`host-N.example.com`, one in ten a wildcard), half
/// prefixes (`/svc/N`) for any host.
fn mixed_routes(n: usize) -> RouteTable {
    let mut routes = Vec::new();
    for i in 0..n / 2 {
        let host = if i % 10 == 0 {
            format!("*.zone-{i}.example.com")
        } else {
            format!("host-{i}.example.com")
        };
        routes.push(Route {
            host: Some(host_pattern_of(&host)),
            ..Route::plain("/", i)
        });
        routes.push(Route::plain(&format!("/svc/{i}"), i));
    }
    RouteTable::new(&routes)
}

fn host_pattern_of(h: &str) -> HostPattern {
    match h.strip_prefix("*.") {
        Some(rest) => HostPattern::Wildcard(rest.to_string()),
        None => HostPattern::Exact(h.to_string()),
    }
}

fn routes() -> RouteTable {
    let prefixes = [
        "/api/payment",
        "/api/orders",
        "/api/orders/archive",
        "/api/users",
        "/api/users/admin",
        "/api/bench",
        "/static",
        "/assets/images",
        "/ws",
        "/",
    ];
    let routes: Vec<Route> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| Route::plain(p, i))
        .collect();
    RouteTable::new(&routes)
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let table = routes();
    let few = mixed_routes(10);
    let many = mixed_routes(1000);
    let client_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let mut request_out = Vec::with_capacity(2048);
    let mut response_out = Vec::with_capacity(2048);

    type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let cases: Vec<Case> = vec![
        (
            "header storage init ([EMPTY_HEADER; MAX_HEADERS])",
            Box::new(|| {
                let storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                black_box(&storage);
            }),
        ),
        (
            "parse_request (wrk, 1 header)",
            Box::new(|| {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let head = parse_request(black_box(SMALL_REQUEST), &mut storage);
                black_box(head.ok());
            }),
        ),
        (
            "parse_request (browser, 13 headers)",
            Box::new(|| {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let head = parse_request(black_box(BROWSER_REQUEST), &mut storage);
                black_box(head.ok());
            }),
        ),
        (
            "normalize_target + route (10 routes)",
            Box::new(|| {
                let target = normalize_target(black_box("/api/orders/12345/items?page=2"));
                black_box(
                    target
                        .ok()
                        .map(|t| table.route(Some(b"api.example.com"), &t)),
                );
            }),
        ),
        // The same request against 10 and 1,000 routes: the host misses its exact and
        // wildcard maps, the path walks the trie to `/svc/N`. Flat means these two agree.
        (
            "normalize_target + route (10 routes: 5 hosts, 5 prefixes)",
            Box::new(|| {
                let target = normalize_target(black_box("/svc/4/orders/12345/items?page=2"));
                black_box(
                    target
                        .ok()
                        .map(|t| few.route(Some(b"host-250.example.com:8080"), &t)),
                );
            }),
        ),
        (
            "normalize_target + route (1,000 routes: 500 hosts, 500 prefixes)",
            Box::new(|| {
                let target = normalize_target(black_box("/svc/417/orders/12345/items?page=2"));
                black_box(
                    target
                        .ok()
                        .map(|t| many.route(Some(b"host-250.example.com:8080"), &t)),
                );
            }),
        ),
        (
            "normalize_target + route (dot segments)",
            Box::new(|| {
                let target = normalize_target(black_box("/api/users/../orders/./1?x=1"));
                black_box(
                    target
                        .ok()
                        .map(|t| table.route(Some(b"api.example.com"), &t)),
                );
            }),
        ),
        ("write_request_head (browser)", {
            let out = &mut request_out;
            let ids = RequestIds::new(0xfeed, 0);
            let backend: std::net::SocketAddr = "10.0.0.7:8080".parse().expect("an address");
            Box::new(move || {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let head = parse_request(BROWSER_REQUEST, &mut storage)
                    .ok()
                    .flatten()
                    .expect("a valid request");
                out.clear();
                let id = ids.for_request(head.request_id);
                write_request_head(
                    out,
                    black_box(&head),
                    &Forwarding {
                        target: head.target,
                        client_ip,
                        fallback_host: backend,
                        underscores: UnderscorePolicy::Drop,
                        request_id: id.as_bytes(),
                        stripped_prefix: None,
                        edits: &NO_EDITS,
                    },
                );
                black_box(out.len());
            })
        }),
        ("parse_response + write_response_head", {
            let out = &mut response_out;
            Box::new(move || {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let resp = parse_response(black_box(RESPONSE), &mut storage, false)
                    .ok()
                    .flatten()
                    .expect("a valid response");
                out.clear();
                write_response_head(
                    out,
                    &resp,
                    RelayFraming::AsIs,
                    Version::Http11,
                    true,
                    Some(b"0000000000000001-0-1"),
                    &NO_EDITS,
                );
                black_box(out.len());
            })
        }),
    ];
    // Each parse includes initialising its header storage (the first case), and
    // `write_request_head` includes one parse: the differences are the work itself.
    println!("| micro-benchmark | ns/op (best) | ns/op (median) |");
    println!("| --- | ---: | ---: |");
    for (name, mut op) in cases {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let t = measure(&mut op);
        println!("| {name} | {:.1} | {:.1} |", t.min_ns, t.median_ns);
    }
}
