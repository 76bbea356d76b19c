//! The backend side on the wire: the keep-alive pool (reuse, idle eviction, retry of a
//! connection the backend closed), a backend going down and coming back, the gateway's
//! own 502/503/504 answers, a backend dying mid-response, the 101 tunnel, and draining
//! on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, dead_port, limits, wait_until, Backend, Client, Gateway, ReadError};

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
    // One client, one request at a time: every backend connection is this test's doing.
    for (i, req) in requests.iter().enumerate() {
        c.send(req);
        c.read_response(false).echo();
        assert_eq!(
            b.connections(),
            i + 1,
            "a fresh connection for each request"
        );
        // The backend closes the pooled connection while it is idle; rgate must notice
        // before reusing it (a body-carrying POST is never retried, so only the check
        // before reuse can save the last one).
        wait_until(
            limits::CONDITION,
            "the backend to close the idle connection",
            || b.idle_closed() == i + 1,
        );
    }
    c.send(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n");
    c.read_response(false).echo();
    assert_eq!(b.connections(), requests.len() + 1);
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
    // rgate closes the pooled connection once it was idle for pool_idle_ms.
    wait_until(
        limits::CONDITION,
        "rgate to close the idle pooled connection",
        || b.closed_by_peer() == 1,
    );
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
    let port = dead_port();
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[port.addr])], ""));
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
    // An HTTP/1.0 client is told the length as well, so it too sees the cut (a cut, not a
    // connection left hanging until the client gives up).
    let mut c = gw.client();
    c.send(b"GET /d?do=die&n=100000 HTTP/1.0\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("100000"));
    match c.read_body(&head, false, &mut |_| {}) {
        Err(ReadError::Closed { .. }) | Err(ReadError::Io(_)) => {}
        other => panic!("expected the connection cut before the announced length, got {other:?}"),
    }
}

#[test]
fn a_backend_dying_mid_chunked_body_cuts_the_client_connection_without_a_last_chunk() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "");
    let mut c = gw.client();
    c.send(b"GET /d?do=die-chunked&n=50000 HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    let mut got = 0u64;
    match c.read_body(&head, false, &mut |b| got += b.len() as u64) {
        Err(ReadError::Closed { .. }) | Err(ReadError::Io(_)) => {}
        other => panic!("expected the connection cut before the last chunk, got {other:?}"),
    }
    assert!(got <= 50_000, "{got}");
    // The gateway goes on serving.
    gw.get("/after").echo();
}

#[test]
fn a_backend_silent_mid_body_for_body_idle_ms_cuts_the_client_connection() {
    let b = Backend::start("b");
    let gw = gateway_with(&b, "timeouts: {body_idle_ms: 300}\n");
    let mut c = gw.client();
    let n = 100_000u64;
    c.send(format!("GET /s?do=stall&n={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let head = c.read_head().unwrap();
    assert_eq!(head.header("Content-Length"), Some(n.to_string().as_str()));
    let started = Instant::now();
    let mut got = 0u64;
    match c.read_body(&head, false, &mut |b| got += b.len() as u64) {
        Err(ReadError::Closed { .. }) | Err(ReadError::Io(_)) => {}
        other => panic!("expected the connection cut at body_idle_ms, got {other:?}"),
    }
    let waited = started.elapsed();
    // Cut by rgate's timer, not by the client's read timeout, and not before the limit.
    assert!(got < n, "{got}");
    assert!(waited < limits::IO / 2, "cut only after {waited:?}");
    assert!(
        waited >= Duration::from_millis(250),
        "cut after {waited:?}, before body_idle_ms"
    );
    assert_eq!(
        b.held(),
        1,
        "the backend was still silent when rgate gave up"
    );
    b.release();
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
    let mut gw = one_core_gateway(&b);
    let mut idle = gw.client();
    idle.send(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n");
    idle.read_response(false).echo();

    let mut c = gw.client();
    c.send(b"GET /slow?do=hold HTTP/1.1\r\nHost: a\r\n\r\n");
    wait_until(
        limits::CONDITION,
        "the request to reach the backend",
        || b.held() == 1,
    );
    gw.signal(libc::SIGTERM);
    // The core drains: it closes the idle keep-alive connection (after a second idle).
    idle.expect_closed();
    b.release();
    let r = c.read_response(false);
    assert_eq!(r.echo().target(), "/slow?do=hold");
    assert_eq!(
        r.header("Connection"),
        Some("close"),
        "a draining rgate closes after it"
    );
    let status = gw
        .wait_exit(limits::EXIT)
        .expect("rgate exits after draining");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(TcpStream::connect(gw.addr).is_err(), "no longer listening");
}

/// rgate on one core: one pool, so the test knows every backend connection.
fn one_core_gateway(b: &Backend) -> Gateway {
    Gateway::options(&config(&[("/", "b")], &[("b", &[b.addr])], ""))
        .cores(1)
        .start()
}

/// SIGINT (Ctrl-C) stops rgate the way SIGTERM does: the request in flight completes with
/// `Connection: close`, then exit 0.
#[test]
fn sigint_drains_like_sigterm_and_exits_0() {
    let b = Backend::start("b");
    let mut gw = one_core_gateway(&b);
    let mut idle = gw.client();
    idle.send(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n");
    idle.read_response(false).echo();
    let mut c = gw.client();
    c.send(b"GET /held?do=hold HTTP/1.1\r\nHost: a\r\n\r\n");
    wait_until(
        limits::CONDITION,
        "the request to reach the backend",
        || b.held() == 1,
    );
    gw.signal(libc::SIGINT);
    // The core drains: it closes the idle keep-alive connection (after a second idle).
    idle.expect_closed();
    b.release();
    let r = c.read_response(false);
    assert_eq!(r.echo().target(), "/held?do=hold");
    assert_eq!(r.header("Connection"), Some("close"));
    let status = gw
        .wait_exit(limits::EXIT)
        .expect("rgate exits after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
}

/// Keep-alive connections idle long enough to have parked without their tasks when the core
/// drains: one that sends a request within the drain's grace (a second) is answered, with
/// `Connection: close`; one that stays silent is closed after the grace; rgate exits 0.
#[test]
fn parked_connections_get_the_drain_grace_and_then_close() {
    let b = Backend::start("b");
    let mut gw = one_core_gateway(&b);
    let mut talker = gw.client();
    let mut silent = gw.client();
    for c in [&mut talker, &mut silent] {
        c.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
    }
    wait_until(limits::CONDITION, "both connections parked", || {
        gw.get("/stats").json()["connections"]["parked"] == 2
    });
    gw.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    talker.send(b"GET /during-drain HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = talker.read_response(false);
    assert_eq!(r.echo().target(), "/during-drain");
    assert_eq!(r.header("Connection"), Some("close"));
    talker.expect_closed();
    let silent_since = std::time::Instant::now();
    silent.expect_closed();
    assert!(
        silent_since.elapsed() < Duration::from_secs(3),
        "the silent one was closed only after {:?}",
        silent_since.elapsed()
    );
    let status = gw
        .wait_exit(limits::EXIT)
        .expect("rgate exits after draining");
    assert_eq!(status.code(), Some(0), "{}", gw.log());
}

/// A request still in flight when `--drain-timeout` runs out is cut; rgate exits 0 then, not
/// before the drain time and not long after.
#[test]
fn a_drain_timeout_that_expires_closes_what_is_still_open_and_exits() {
    let b = Backend::start("b");
    let mut gw = Gateway::options(&config(&[("/", "b")], &[("b", &[b.addr])], ""))
        .args(&["--drain-timeout", "1"])
        .start();
    let mut c = gw.client();
    c.send(b"GET /stuck?do=hold HTTP/1.1\r\nHost: a\r\n\r\n");
    wait_until(
        limits::CONDITION,
        "the request to reach the backend",
        || b.held() == 1,
    );
    let stopped = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit(limits::EXIT)
        .expect("rgate exits at the drain timeout");
    let took = stopped.elapsed();
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(
        took >= Duration::from_millis(950),
        "exited after {took:?}, before the drain timeout"
    );
    assert!(took < Duration::from_secs(5), "exited only after {took:?}");
    assert!(gw.log().contains("drain timeout reached"), "{}", gw.log());
    // The held request got no response: its connection was closed under it.
    match c.try_read_response(false) {
        Err(ReadError::Closed { got: 0 }) | Err(ReadError::Io(_)) => {}
        other => panic!("expected the connection closed without a response, got {other:?}"),
    }
    assert_eq!(b.held(), 1, "the backend was still holding it");
}

#[test]
fn a_backend_that_cannot_be_reached_in_time_gives_503() {
    // A listener with a backlog of 0 and one connection in its accept queue (never accepted)
    // has a full queue: the kernel drops further SYNs, so connecting to it hangs.
    let full = common::bound_socket("127.0.0.1:0".parse().unwrap(), false).unwrap();
    // SAFETY: listen(2) on a socket we own.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    // SAFETY: a listening TCP socket; ownership moves into the listener.
    let full = unsafe { std::net::TcpListener::from_raw_fd(full.into_raw_fd()) };
    let addr = full.local_addr().unwrap();
    let _queued = TcpStream::connect_timeout(&addr, limits::IO).expect("the one queued connection");
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
    // AT_ONCE requests the backend holds until all are there: each needs its own backend
    // connection. The test is the only client, so every count below is exact.
    let burst = |tag: &str| {
        let clients: Vec<Client> = (0..AT_ONCE)
            .map(|i| {
                let mut c = gw.client();
                c.send(format!("GET /{tag}{i}?do=hold HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
                c
            })
            .collect();
        wait_until(
            limits::CONDITION,
            "every request to be held by the backend",
            || b.held() == AT_ONCE,
        );
        b.release();
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
    wait_until(
        limits::CONDITION,
        "the pool to close what it cannot keep",
        || b.closed_by_peer() >= AT_ONCE - MAX_IDLE,
    );
    // The kept ones serve the next burst: only the missing few are opened again (had the
    // pool closed more than AT_ONCE - MAX_IDLE, more would be opened).
    burst("b");
    assert_eq!(
        b.connections(),
        AT_ONCE + (AT_ONCE - MAX_IDLE),
        "{}",
        gw.log()
    );
}

/// A backend that answers (here 413) as soon as it has the head, while the client is still
/// uploading: the answer reaches the client at once, rgate stops relaying the body (the
/// backend gets far less than the client meant to send), and the connection ends after the
/// answer without resetting it away.
#[test]
fn an_early_answer_during_an_upload_reaches_the_client_and_stops_the_upload() {
    const BODY: u64 = 256 * 1024 * 1024;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let backend_received = received.clone();
    let backend = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(limits::IO)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the head");
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
            .unwrap();
        // Keep reading (and dropping) whatever rgate still relays, until it closes.
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            backend_received.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[addr])], ""));
    let mut c = gw.client();
    c.send(
        format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    );
    let mut uploader = c.stream.try_clone().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent_by_uploader = sent.clone();
    let upload = thread::spawn(move || {
        let piece = vec![b'x'; 64 * 1024];
        while sent_by_uploader.load(std::sync::atomic::Ordering::SeqCst) < BODY {
            if uploader.write_all(&piece).is_err() {
                return; // rgate closed: the upload stopped.
            }
            sent_by_uploader.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let r = c.read_response(false);
    assert_eq!(r.status, 413);
    assert_eq!(r.body, b"too big!");
    assert!(
        r.closes_connection(),
        "rgate closes after an answer to a cut request"
    );
    upload.join().unwrap();
    backend.join().unwrap();
    let (sent, received) = (
        sent.load(std::sync::atomic::Ordering::SeqCst),
        received.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        received < BODY / 4,
        "rgate went on relaying after the answer: the backend got {received} of {BODY} bytes (the client sent {sent})"
    );
}
