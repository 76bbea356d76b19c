//! Overload and abuse on the wire: the open-files limit raised at start, the connection cap
//! (idle connections make room for active clients; never an accept loop spinning on
//! `EMFILE`, and its warnings rate-limited), and the per-address cap.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{config, get, get_request, limits, wait_for, wait_until, Backend, Client, Gateway};

fn gateway(b: &Backend, extra: &str) -> common::Launch {
    Gateway::options(&config(&[("/", "b")], &[("b", &[b.addr])], extra))
}

/// `(soft, hard)` open-files limit of process `pid`.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (f[0], f[1])
}

/// CPU time (user + system, in clock ticks) process `pid` used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The `connections` object of `/stats`.
fn connections(gw: &Gateway) -> serde_json::Value {
    gw.get("/stats").json()["connections"].clone()
}

/// `n` keep-alive connections that each made one request and now rest.
fn idle_clients(gw: &Gateway, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = gw.client();
            c.send(&get_request("/idle"));
            assert_eq!(c.read_response(false).status, 200);
            c
        })
        .collect()
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    let b = Backend::start("b");
    let gw = gateway(&b, "").nofile(256, 4096).start();
    assert_eq!(nofile_of(gw.pid()), (4096, 4096));
    gw.wait_log(
        limits::CONDITION,
        "open files: soft limit raised from 256 to 4096",
    );
    // The caps follow from it: (4096 - 64) / 2, over 2 cores.
    gw.wait_log(
        limits::CONDITION,
        "connections: at most 2016 (1008 per core",
    );
    let c = connections(&gw);
    assert_eq!(
        (c["max"].as_u64(), c["max_per_core"].as_u64()),
        (Some(2016), Some(1008))
    );
    assert_eq!(c["descriptors_limit"], 4096);
    assert!(c["descriptors_open"].as_u64().is_some_and(|n| n > 3), "{c}");
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connections_make_room() {
    let b = Backend::start("b");
    let gw = gateway(&b, "limits:\n  max_connections: 10\n")
        .cores(1)
        .start();
    let mut idle = idle_clients(&gw, 10);
    // An eleventh client is served: the oldest idle connection was closed for it.
    assert_eq!(get(gw.addr, "/active").unwrap().status, 200);
    idle[0].expect_closed();
    for c in &mut idle[2..] {
        c.expect_open();
    }
    // Ten more that stay connected, one at a time: each closes the oldest idle one.
    let newer = idle_clients(&gw, 10);
    for c in &mut idle[1..] {
        c.expect_closed();
    }
    drop(newer);
    wait_until(
        limits::CONDITION,
        "the count of idle connections closed",
        || connections(&gw)["idle_closed_at_cap"] == 11,
    );
}

#[test]
fn more_clients_than_descriptors_are_served_in_turn_with_few_warnings_and_no_spinning() {
    // 100 descriptors, and a cap set above what they allow: accept meets EMFILE.
    let b = Backend::start("b");
    let gw = gateway(&b, "limits:\n  max_connections: 1000\n")
        .cores(1)
        .nofile(100, 100)
        .start();
    let idle = idle_clients(&gw, 40);
    // Connected, but beyond the descriptors rgate has: the kernel queues them.
    let queued: Vec<Client> = (0..100).map(|_| gw.client()).collect();
    let before = cpu_ticks(gw.pid());
    let started = std::time::Instant::now();
    // An active client still gets its answer: out of descriptors, rgate closes idle
    // connections (the oldest first) to take the queued ones in turn.
    wait_until(limits::CONDITION, "an active client to be served", || {
        get(gw.addr, "/active").is_ok_and(|r| r.status == 200)
    });
    std::thread::sleep(Duration::from_secs(2));
    let elapsed = started.elapsed().as_secs_f64();
    let used = (cpu_ticks(gw.pid()) - before) as f64 / 100.0;
    assert!(
        used < 0.5 * elapsed,
        "{used:.2} s of CPU in {elapsed:.1} s: an accept loop spins"
    );
    let warnings = gw.log().matches("accept failed").count();
    assert!(warnings <= 2, "{warnings} accept warnings:\n{}", gw.log());
    drop((idle, queued));
}

/// Connections of the burst in the memory test below.
const BURST: usize = 2_000;

#[test]
fn the_memory_a_burst_of_connections_took_goes_back_soon_after_they_close() {
    // The test holds BURST sockets itself.
    raise_own_open_files(BURST as u64 + 500);
    let b = Backend::start("b");
    let gw = gateway(&b, "").cores(1).start();
    // The core's buffers and backend pool warmed before the baseline.
    drop(idle_clients(&gw, 20));
    let before = gw.memory_kib("VmRSS");
    let burst = idle_clients(&gw, BURST);
    let held = gw.memory_kib("VmRSS");
    let grown = held.saturating_sub(before);
    assert!(
        grown > BURST as u64 / 2,
        "{BURST} connections grew RSS by only {grown} KiB: the test would prove nothing"
    );
    drop(burst);
    // The closes reach the core (however loaded the machine: that is not what is tested)…
    wait_until(limits::CONDITION, "the burst's connections closed", || {
        connections(&gw)["open"].as_u64() <= Some(1)
    });
    // …and glibc keeps what they freed unless rgate trims it: once the wave of closes has
    // ended (50 ms without one; at most a second after an earlier trim), RSS returns near
    // where it was (what stays is the core's tables). Before, the rest of a wave waited 10 s.
    let limit = before + grown / 4;
    wait_until(
        Duration::from_secs(3),
        format!("RSS back under {limit} KiB (before {before}, with the burst {held})"),
        || gw.memory_kib("VmRSS") < limit,
    );
}

#[test]
fn idle_keep_alive_connections_park_without_their_tasks_and_come_back_when_they_send() {
    raise_own_open_files(BURST as u64 + 500);
    let b = Backend::start("b");
    let gw = gateway(&b, "").cores(1).start();
    // A warm-up through every step (park, come back, park, close): the code and tables
    // those steps touch the first time are in the baseline.
    let mut warm = idle_clients(&gw, 20);
    for _ in 0..2 {
        wait_until(limits::CONDITION, "the warm-up connections parked", || {
            connections(&gw)["parked"].as_u64() == Some(20)
        });
        warm[0].send(&get_request("/warm"));
        assert_eq!(warm[0].read_response(false).status, 200);
    }
    drop(warm);
    wait_until(limits::CONDITION, "the warm-up connections closed", || {
        connections(&gw)["open"].as_u64() <= Some(1)
    });
    let before = gw.memory_kib("VmRSS");
    let mut idle = idle_clients(&gw, BURST);
    // Idle for 200 ms, each gives up its task, buffers and alarm: what stays is a slot in
    // the core's lot (and the kernel's epoll entry). RSS then holds a fraction of a KiB per
    // connection (nginx's own figure is ~0.5; with their tasks they took over 2).
    wait_until(limits::CONDITION, "the idle connections parked", || {
        connections(&gw)["parked"].as_u64() == Some(BURST as u64)
    });
    let limit = before + BURST as u64 / 2;
    wait_for(
        Duration::from_secs(3),
        format!("RSS under {limit} KiB with {BURST} parked connections (before {before})"),
        || match gw.memory_kib("VmRSS") {
            rss if rss < limit => Ok(()),
            rss => Err(format!("{rss} KiB")),
        },
    );
    // Every one of them is a keep-alive connection still: each sends again and is answered
    // on the same connection (those that say nothing stay parked).
    for (i, c) in idle.iter_mut().enumerate().step_by(7) {
        c.send(&get_request(&format!("/again/{i}")));
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "connection {i}");
        assert_eq!(r.echo().target(), format!("/again/{i}"));
    }
    // The warm-up's 22, the burst's first requests, and these.
    assert_eq!(b.requests(), 22 + BURST + BURST.div_ceil(7));
    let c = connections(&gw);
    assert_eq!(c["open"].as_u64(), Some(BURST as u64 + 1), "{c}");
    wait_until(
        limits::CONDITION,
        "the answered connections parked again",
        || connections(&gw)["parked"].as_u64() == Some(BURST as u64),
    );
    // Clients leaving close their parked connections without waking a task each.
    drop(idle);
    wait_until(limits::CONDITION, "the parked connections closed", || {
        let c = connections(&gw);
        c["open"].as_u64() <= Some(1) && c["parked"].as_u64() == Some(0)
    });
}

/// Raises this test process's soft open-files limit to at least `want` (or the hard one).
fn raise_own_open_files(want: u64) {
    // SAFETY: getrlimit/setrlimit on this process's own limit, with a valid struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want {
            l.rlim_cur = want.min(l.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
        assert!(
            l.rlim_cur >= want,
            "open-files limit {} below {want}",
            l.rlim_cur
        );
    }
}

#[test]
fn over_the_per_address_cap_a_connection_gets_503_and_another_address_gets_in() {
    let b = Backend::start("b");
    let gw = gateway(&b, "limits:\n  max_connections_per_ip: 3\n")
        .cores(1)
        .start();
    let _held = idle_clients(&gw, 3);
    let r = get(gw.addr, "/fourth").unwrap();
    let v = r.gateway_error(503);
    assert_eq!(v["error"], "too_many_connections");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(b.received("GET", "/fourth"), 0);

    // 127.0.0.2 is another client address.
    let mut other = Client::connect_from(Ipv4Addr::new(127, 0, 0, 2), gw.addr);
    other.send(&get_request("/other"));
    assert_eq!(other.read_response(false).status, 200);
    // Counted (asked from the other address: this one is still at its cap).
    other.send(&get_request("/stats"));
    let stats = other.read_response(false).json();
    assert_eq!(stats["connections"]["refused_per_ip"], 1, "{stats}");
}

#[test]
fn a_request_body_slower_than_the_minimum_rate_is_cut_and_a_normal_upload_is_not() {
    let b = Backend::start("b");
    let gw = gateway(&b, "limits:\n  min_request_body_rate: 1000\n")
        .cores(1)
        .start();
    // A normal upload.
    let body = vec![b'x'; 1 << 20];
    let mut c = gw.client();
    c.send(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert_eq!(c.read_response(false).echo().body_len(), body.len() as u64);
    // 100 bytes every 500 ms: 200 bytes/s, under the 1000 asked for; each pause is well
    // within the body idle timeout, so only the rate can stop it.
    let mut slow = gw.client();
    slow.send(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let started = std::time::Instant::now();
    let mut cut = None;
    for _ in 0..60 {
        if slow.try_send(&[b'y'; 100]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        if slow.has_data() {
            cut = Some(slow.read_response(false));
            break;
        }
    }
    let r = cut.expect("the slow body was never cut");
    assert_eq!(r.gateway_error(408)["error"], "request_timeout");
    // One rate window (10 s) and at most two more, not the whole 100,000 bytes' worth.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connections(&gw)["slow_body_cut"], 1);
}

#[test]
fn a_client_that_reads_nothing_is_cut_after_the_write_limit() {
    let b = Backend::start("b");
    let gw = gateway(&b, "timeouts:\n  client_write_ms: 500\n")
        .cores(1)
        .start();
    let mut c = gw.client();
    let n: u64 = 256 << 20;
    c.send(&get_request(&format!("/big?do=large&n={n}")));
    // Read nothing while the socket buffers fill and the limit passes.
    std::thread::sleep(Duration::from_secs(3));
    let got = c.read_to_end_counting();
    assert!(got < n, "all {got} bytes arrived: nothing was cut");
    assert_eq!(connections(&gw)["slow_read_cut"], 1);
    // The gateway still serves.
    assert_eq!(get(gw.addr, "/after").unwrap().status, 200);
}
