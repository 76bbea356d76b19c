//! The backend side on the wire: the keep-alive pool (reuse, idle eviction, retry of a
//! connection the backend closed), a backend going down and coming back, the gateway's
//! own 502/503/504 answers, a backend dying mid-response, the 101 tunnel, and draining
//! on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, dead_address, Backend, Client, Gateway, ReadError};

fn gateway_with(b: &Backend, extra: &str) -> Gateway {
    Gateway::start(&config(&[("/", "b")], &[("b", &[b.addr])], extra))
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced_without_an_error() {
    let b = Backend::start_closing_idle("b", Duration::from_millis(150));
    let gw = gateway_with(&b, "");
    let mut c = gw.client();
    let requests: [&[u8]; 4] = [
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"DELETE /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /4 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for (i, req) in requests.iter().enumerate() {
        c.send(req);
        c.read_response(false).echo();
        // The backend closes the pooled connection while it is idle.
        thread::sleep(Duration::from_millis(400));
        assert_eq!(b.connections(), i + 1);
    }
    c.send(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
}

#[test]
fn a_reused_connection_closed_before_answering_is_retried_once_on_a_fresh_one() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "");
    // Eight requests at once leave several pooled connections on each core; each will
    // close unanswered when reused.
    let statuses = burst(&gw, 8, 1, "do=sleep&ms=200");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // One at a time, so a retry could find another pooled connection to take.
    for _ in 0..8 {
        let r = gw.get("/again?do=close-reused");
        assert_eq!(r.status, 200, "{r:?}");
    }

    // A request whose body was sent is not repeated: the client hears of the failure.
    let mut c = gw.client();
    c.send(b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
    let before = b.requests();
    c.send(b"POST /once?do=close-reused HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    let v = c.read_response(false).gateway_error(502);
    assert_eq!(v["error"], "bad_gateway");
    assert_eq!(
        b.requests(),
        before + 1,
        "the POST with a body was sent once"
    );
}

#[test]
fn idle_pooled_connections_are_evicted_after_the_pool_timeout() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "timeouts: {pool_idle_ms: 200}\n");
    let mut c = gw.client();
    c.send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
    c.read_response(false).echo();
    assert_eq!(b.connections(), 1);
    thread::sleep(Duration::from_millis(1200));
    c.send(b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
    assert_eq!(b.connections(), 2, "the idle connection was not reused");
}

/// Runs `per_thread` requests on each of `threads` keep-alive connections at once;
/// returns every status.
fn burst(gw: &Gateway, threads: usize, per_thread: usize, query: &str) -> Vec<u16> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = gw.addr;
            let query = query.to_string();
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..per_thread)
                    .map(|i| {
                        if i % 2 == 0 {
                            c.send(format!("GET /{t}/{i}?{query} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
                        } else {
                            c.send(format!("POST /{t}/{i}?{query} HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").as_bytes());
                        }
                        let r = c.read_response(false);
                        if r.status != 200 {
                            eprintln!("{r:?}");
                        }
                        r.status
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_backend_that_restarts_gives_no_errors_once_it_is_back() {
    let mut b = Backend::start("b");
    let gw = gateway_with(&b, "");
    // Several backend connections per core end up in the pools.
    let statuses = burst(&gw, 8, 4, "do=sleep&ms=50");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    b.stop();
    for _ in 0..6 {
        let r = gw.get("/down");
        let v = r.gateway_error(503);
        assert_eq!(v["error"], "backend_unavailable", "{v}");
    }

    b.restart();
    let statuses = burst(&gw, 8, 6, "");
    assert!(
        statuses.iter().all(|&s| s == 200),
        "errors after the backend came back: {statuses:?}"
    );
}

#[test]
fn a_backend_that_answers_garbage_gives_502() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "");
    let mut c = gw.client();
    c.send(b"GET /g?do=garbage HTTP/1.1\r\nHost: a\r\n\r\n");
    let v = c.read_response(false).gateway_error(502);
    assert_eq!(v["error"], "bad_gateway");
    // The client connection is still good.
    c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
    // An unasked-for 101, and ambiguous framing, are invalid too.
    c.send(b"GET /u?do=upgrade HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).gateway_error(502);
    c.send(b"GET /u?do=ambiguous HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).gateway_error(502);
}

#[test]
fn a_closed_port_gives_503() {
    let port = dead_address();
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[port])], ""));
    let r = gw.get("/x");
    let v = r.gateway_error(503);
    assert_eq!(v["error"], "backend_unavailable");
    // With a body, too: the client is not left waiting.
    let r = gw.request("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    r.gateway_error(503);
}

#[test]
fn a_slow_backend_gives_504_after_the_response_header_timeout() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "timeouts: {response_header_ms: 300}\n");
    let mut c = gw.client();
    c.send(b"GET /slow?do=sleep&ms=3000 HTTP/1.1\r\nHost: a\r\n\r\n");
    let v = c.read_response(false).gateway_error(504);
    assert_eq!(v["error"], "gateway_timeout");
    // A fast request on the same client connection still works (on a fresh backend one).
    c.send(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).echo().target(), "/fast");
}

#[test]
fn a_backend_dying_mid_response_closes_the_client_connection() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "");
    let n = 1_000_000u64;
    let mut c = gw.client();
    c.send(format!("GET /d?do=die&n={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some(n.to_string().as_str()));
    let mut got = 0u64;
    match c.read_body(&head, false, &mut |b| got += b.len() as u64) {
        Err(ReadError::Closed { .. }) | Err(ReadError::Io(_)) => {}
        other => panic!("expected the connection cut before the announced length, got {other:?}"),
    }
    assert!(got < n, "{got}");
    // An HTTP/1.0 client is told the length as well, so it too sees the cut.
    let mut c = gw.client();
    c.send(b"GET /d?do=die&n=100000 HTTP/1.0\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert!(c.read_body(&head, false, &mut |_| {}).is_err());
}

#[test]
fn an_upgrade_answered_101_becomes_a_two_way_tunnel() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "");
    let mut c = gw.client();
    c.send(b"GET /ws?do=upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header("Upgrade"), Some("websocket"));
    assert!(head
        .header("Connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    let mut s = c.stream.try_clone().unwrap();
    for round in 0..50u32 {
        let msg = format!("frame {round} {}", "x".repeat(round as usize * 100));
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // A large message both ways at once.
    let big: Vec<u8> = (0..2_000_000u64).map(common::pattern_byte).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let big = big.clone();
        thread::spawn(move || w.write_all(&big).unwrap())
    };
    let mut back = vec![0u8; big.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == big);
    // Closing our side ends the tunnel: the backend's echo loop ends and the close comes back.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn sigterm_lets_an_in_flight_response_finish_then_exits_0() {
    let b = Backend::start("b");
    let mut gw = gateway_with(&b, "");
    let mut idle = gw.client();
    idle.send(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n");
    idle.read_response(false).echo();

    let mut c = gw.client();
    c.send(b"GET /slow?do=sleep&ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n");
    thread::sleep(Duration::from_millis(300));
    gw.signal(libc::SIGTERM);
    let r = c.read_response(false);
    assert_eq!(r.echo().target(), "/slow?do=sleep&ms=1500");
    assert_eq!(
        r.header("Connection"),
        Some("close"),
        "a draining rgate closes after it"
    );
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("rgate exits after draining");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    // The idle keep-alive connection was closed, not left hanging.
    idle.expect_closed();
    assert!(TcpStream::connect(gw.addr).is_err(), "no longer listening");
}

#[test]
fn a_backend_that_cannot_be_reached_in_time_gives_503() {
    // A listener whose accept queue is full drops new SYNs: connecting hangs.
    let full = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = full.local_addr().unwrap();
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 4096 && Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let gw = Gateway::start(&config(
        &[("/", "b")],
        &[("b", &[addr])],
        "timeouts: {connect_ms: 300}\n",
    ));
    let v = gw.get("/x").gateway_error(503);
    assert_eq!(v["error"], "backend_unavailable");
    assert!(v["message"].as_str().unwrap().contains("timed out"), "{v}");
    drop(full);
}

#[test]
fn the_legacy_driver_streams_bodies_and_tunnels_too() {
    let b = Backend::start("b");
    let gw = Gateway::start_with_env(
        &config(&[("/", "b")], &[("b", &[b.addr])], ""),
        &[("RGATE_DRIVER", "legacy")],
    );
    assert!(gw.log().contains("legacy epoll driver"), "{}", gw.log());
    let mut c = gw.client();
    let n = 3_000_000u64;
    c.send(format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").as_bytes());
    common::write_pattern(&mut c.stream, n, common::PIECE, false).unwrap();
    let echo = c.read_response(false).echo();
    assert_eq!(echo.body_sum(), common::Digest::of_pattern(n).sum);
    c.send(format!("GET /down?do=chunked&n={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let r = c.read_response(false);
    let mut d = common::Digest::default();
    d.update(&r.body);
    assert_eq!(d, common::Digest::of_pattern(n));

    c.send(b"GET /ws?do=upgrade HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(c.read_head().unwrap().status, 101);
    c.send(b"ping through the tunnel");
    let mut back = [0u8; 23];
    c.stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping through the tunnel");
}

#[test]
fn the_pool_keeps_at_most_64_idle_connections_per_backend_and_reuses_them() {
    // `MAX_IDLE_PER_ADDR` in src/proxy/pool.rs; one core, so one pool.
    const MAX_IDLE: usize = 64;
    const AT_ONCE: usize = MAX_IDLE + 6;
    let b = Backend::start("b");
    let gw = Gateway::options(&config(&[("/", "b")], &[("b", &[b.addr])], ""))
        .cores(1)
        .start();
    let burst = |tag: &str| {
        // Requests the backend holds for 500 ms: each needs its own backend connection.
        let clients: Vec<Client> = (0..AT_ONCE)
            .map(|i| {
                let mut c = gw.client();
                c.send(
                    format!("GET /{tag}{i}?do=sleep&ms=500 HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
                );
                c
            })
            .collect();
        for mut c in clients {
            assert_eq!(c.read_response(false).status, 200);
        }
    };
    burst("a");
    assert_eq!(
        b.connections(),
        AT_ONCE,
        "one backend connection per request"
    );
    // Back from the burst, the pool keeps MAX_IDLE of them and closes the rest.
    let limit = Instant::now() + Duration::from_secs(5);
    while b.closed_by_peer() < AT_ONCE - MAX_IDLE && Instant::now() < limit {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(b.closed_by_peer(), AT_ONCE - MAX_IDLE, "{}", gw.log());
    // The kept ones serve the next burst: only the missing few are opened again.
    burst("b");
    assert_eq!(b.connections(), AT_ONCE + (AT_ONCE - MAX_IDLE));
}
