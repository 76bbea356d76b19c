//! Request smuggling and response splitting, tried as an attacker would, against the real
//! rgate binary in front of a strict recording backend (`smuggling_support`).
//!
//! * The request corpus: each case is raw bytes and what rgate must make of them — refuse
//!   with its own JSON error before anything reaches a backend, or forward exactly the
//!   messages the case holds, framed by rgate itself, with the body the client meant. After
//!   each case two fresh requests must get their own responses (nothing left queued on a
//!   pooled backend connection). Runs on one core, so those requests meet the pool the case
//!   used; a failed case gets a fresh gateway and backend, so faults do not spill over.
//! * The response corpus: the backend answers with raw, often ambiguous, responses; the
//!   client must get exactly that response correctly framed, rgate's 502, or a cut
//!   connection — and the next requests their own responses.
//! * Poisoning under load: keep-alive clients whose every response must name their own
//!   request, while an attacker replays both corpora; on one core and on two.
//! * The strict backend and parser are tested themselves, so the suite cannot pass because
//!   they accept anything.
//!
//! Every failure message names the case; a corpus test lists every failing case at once.
//! Run: `cargo test --test smuggling` (debug build is enough; about 15 s).
//! Not for: performance, HTTP/2.

mod common;
mod smuggling_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, Gateway};
use smuggling_support::corpus::{self, Case, Expect, Forwarded, RespCase};
use smuggling_support::strict_backend::{echo_of, Mark, RawReply, StrictBackend};
use smuggling_support::strict_client::{Failure, StrictClient};
use smuggling_support::verdict::{
    brief, forwarded_faults, relayed_faults, rgate_error, show, trailer_faults,
};
use smuggling_support::wire::{self, Message, Role};

/// The longest one read may wait in a case.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the backend may take to have parsed everything rgate sent.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the load test runs.
const LOAD_TIME: Duration = Duration::from_secs(4);
/// Requests per load client, at most (the time limit usually ends the run first).
const LOAD_REQUESTS: usize = 50_000;
const LOAD_CLIENTS: usize = 6;

/// One gateway (`/api` → the strict backend) and its backend.
struct Rig {
    backend: StrictBackend,
    gw: Gateway,
}

impl Rig {
    fn start(cores: u32, extra: &str) -> Rig {
        let backend = StrictBackend::start();
        let gw = Gateway::options(&config(&[("/api", "b")], &[("b", &[backend.addr])], extra))
            .cores(cores)
            .start();
        Rig { backend, gw }
    }
}

/// Fresh requests on one new connection, a GET and a POST (which rgate may not retry on
/// another connection): each must get its own response.
fn probe(addr: SocketAddr, tag: &str) -> Vec<String> {
    let mut c = match StrictClient::connect(addr, CASE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return vec![format!("probe: connect: {e}")],
    };
    let mut faults = own_response(&mut c, &format!("/api/{tag}/probe0"), "probe 0 (GET)");
    if faults.is_empty() {
        faults = own_response(&mut c, &format!("/api/{tag}/probe1"), "probe 1 (POST)");
    }
    faults
}

/// Sends a request for `path` on `c` (a POST with a body when `what` says POST); the
/// response must be the backend's echo of exactly that path.
fn own_response(c: &mut StrictClient, path: &str, what: &str) -> Vec<String> {
    let req = if what.contains("POST") {
        format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nping")
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")
    };
    if let Err(e) = c.send(req.as_bytes()) {
        return vec![format!("{what}: write: {e}")];
    }
    match c.read_response(false) {
        Ok(m) => match echo_of(&m.body) {
            Some((_, target)) if m.status() == 200 && target == path => Vec::new(),
            _ => vec![format!(
                "{what} for {path} did not get its own response: {}",
                brief(&m)
            )],
        },
        Err(e) => vec![format!("{what} for {path}: {e}")],
    }
}

/// Runs one request case; returns what went wrong.
fn run_request_case(rig: &Rig, case: &Case, tag: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let mark = rig.backend.mark();
    let raw = case.bytes(tag);
    let mut c = match StrictClient::connect(rig.gw.addr, CASE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return vec![format!("connect: {e}")],
    };
    // rgate may refuse and close before it read everything: the response says more.
    let _ = c.send(&raw);
    let (wanted, statuses, in_body) = match &case.expect {
        Expect::Reject(s) => (None, Some(*s), false),
        Expect::RejectInBody(s) => (None, Some(*s), true),
        Expect::Forward(f) => (Some(f), None, false),
        Expect::Either(f, s) => (Some(f), Some(*s), true),
    };
    let first = c.read_response(false);
    let refused = first.as_ref().ok().and_then(rgate_error);
    match (refused, statuses, wanted) {
        (Some(status), Some(allowed), _) if !(200..300).contains(&status) => {
            if !allowed.contains(&status) {
                faults.push(format!(
                    "rgate answered {status}, expected one of {allowed:?}"
                ));
            }
            if let Err(e) = c.closes_cleanly() {
                faults.push(format!("after the {status}: {e}"));
            }
            if let Err(e) = rig.backend.settle(SETTLE) {
                faults.push(e);
            }
            for m in rig.backend.messages_since(mark) {
                faults.push(format!(
                    "refused, yet the backend parsed {} {}",
                    m.msg.method(),
                    m.msg.target()
                ));
            }
            let reached = rig.backend.mark().received - mark.received;
            if !in_body && reached > 0 {
                faults.push(format!("refused, yet {reached} bytes reached the backend"));
            }
        }
        (_, _, Some(wanted)) => {
            faults.extend(check_forwarded(rig, &mut c, first, wanted, tag, mark));
        }
        (_, allowed, None) => faults.push(format!(
            "expected rgate's JSON error {allowed:?}, got {}",
            match &first {
                Ok(m) => brief(m),
                Err(e) => e.to_string(),
            }
        )),
    }
    faults.extend(probe(rig.gw.addr, tag));
    for e in rig.backend.errors_since(mark) {
        faults.push(format!("strict backend refused what rgate sent: {e}"));
    }
    faults
}

/// The case was to be forwarded as `wanted`: check the client's responses and what the
/// backend parsed.
fn check_forwarded(
    rig: &Rig,
    c: &mut StrictClient,
    first: Result<Message, Failure>,
    wanted: &[Forwarded],
    tag: &str,
    mark: Mark,
) -> Vec<String> {
    let mut faults = Vec::new();
    let mut serials = Vec::new();
    let mut next = Some(first);
    for i in 0..wanted.len() {
        let got = next.take().unwrap_or_else(|| c.read_response(false));
        match got {
            Ok(m) => match echo_of(&m.body) {
                Some((serial, target)) if m.status() == 200 && target.contains(tag) => {
                    serials.push(serial)
                }
                _ => {
                    faults.push(format!(
                        "response {i}: not the backend's echo: {}",
                        brief(&m)
                    ));
                    break;
                }
            },
            Err(e) => {
                faults.push(format!("response {i}: {e}"));
                break;
            }
        }
    }
    if let Err(e) = rig.backend.settle(SETTLE) {
        faults.push(e);
    }
    let got = rig.backend.messages_since(mark);
    if got.len() != wanted.len() {
        let seen: Vec<String> = got
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.msg.method(),
                    r.msg.target(),
                    show(&r.msg.body)
                )
            })
            .collect();
        faults.push(format!(
            "backend parsed {} messages, expected {}: {seen:?}",
            got.len(),
            wanted.len()
        ));
    }
    for (i, (r, want)) in got.iter().zip(wanted).enumerate() {
        if !r.msg.target().contains(tag) {
            faults.push(format!("message {i} has target {:?}", r.msg.target()));
        }
        if serials.get(i).is_some_and(|&s| s != r.serial) {
            faults.push(format!(
                "response {i} answers backend message {}, not {}",
                serials[i], r.serial
            ));
        }
        faults.extend(forwarded_faults(&r.msg, want, tag));
    }
    faults
}

/// Runs the whole request corpus on one core; every failing case is listed.
#[test]
fn request_corpus() {
    let cases = corpus::request_cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let mut rig = Rig::start(1, "");
    let mut failed = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let tag = corpus::tag(i);
        let faults = run_request_case(&rig, case, &tag);
        if !faults.is_empty() {
            failed.push(format!("{} [{tag}]: {}", case.name, faults.join(" | ")));
            // A fresh pair, so this case's leftovers cannot fail the next one.
            rig = Rig::start(1, "");
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} request cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

fn run_response_case(rig: &Rig, case: &RespCase, tag: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let path = format!("/api/{tag}/resp");
    rig.backend.reply(
        &path,
        RawReply {
            parts: case.parts.clone(),
            then: case.then,
            hold_last: case.hold_last,
        },
    );
    let mark = rig.backend.mark();
    let mut c = match StrictClient::connect(rig.gw.addr, CASE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return vec![format!("connect: {e}")],
    };
    let head = case.method == "HEAD";
    let req = format!("{} {path} HTTP/1.1\r\nHost: a\r\n\r\n", case.method);
    if let Err(e) = c.send(req.as_bytes()) {
        return vec![format!("write: {e}")];
    }
    let want = &case.expect;
    let mut usable = false;
    match c.read_response(head) {
        Ok(m) if m.status() == 502 && rgate_error(&m).is_some() => {
            if !want.bad_gateway {
                faults.push(format!("rgate answered 502, expected {want:?}"));
            }
        }
        Ok(m) => match &want.relay {
            Some((status, body)) if m.status() == *status && m.body == *body => {
                faults.extend(relayed_faults(&m));
                // A body the backend framed with Content-Length keeps it (RFC 9112 §6.3).
                let sent =
                    wire::parse_message(&case.parts[0], Role::Response { to_head: head }, true);
                if let Ok(Some((sent, _))) = sent {
                    if matches!(sent.framing, wire::Framing::Length(_)) && sent.framing != m.framing
                    {
                        faults.push(format!(
                            "backend framed with {:?}, client got {:?}",
                            sent.framing, m.framing
                        ));
                    }
                }
                usable = !m.connection_has("close");
            }
            _ => faults.push(format!("client got {}, expected {want:?}", brief(&m))),
        },
        Err(Failure::Cut { got }) => {
            if !want.cut {
                faults.push(format!(
                    "connection cut after {got} bytes, expected {want:?}"
                ));
            }
        }
        Err(e) => faults.push(format!("client: {e}")),
    }
    rig.backend.release(&path);
    let deadline = Instant::now() + SETTLE;
    while !rig.backend.reply_done(&path) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if !rig.backend.reply_done(&path) {
        faults.push("the backend never sent its reply".into());
    }
    if usable {
        faults.extend(own_response(
            &mut c,
            &format!("/api/{tag}/same"),
            "next request (a POST) on the same connection",
        ));
    }
    faults.extend(probe(rig.gw.addr, tag));
    for e in rig.backend.errors_since(mark) {
        faults.push(format!("strict backend refused what rgate sent: {e}"));
    }
    faults
}

/// Runs the whole response corpus on one core; every failing case is listed.
#[test]
fn response_corpus() {
    let cases = corpus::response_cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let mut rig = Rig::start(1, "");
    let mut failed = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let tag = corpus::tag(i);
        let faults = run_response_case(&rig, case, &tag);
        if !faults.is_empty() {
            failed.push(format!("{} [{tag}]: {}", case.name, faults.join(" | ")));
            rig = Rig::start(1, "");
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} response cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// Sends `raw` on a fresh connection and reads up to `responses` responses, briefly: the
/// attacker.
fn attack(addr: SocketAddr, raw: &[u8], head: bool, responses: usize) {
    let Ok(mut c) = StrictClient::connect(addr, Duration::from_millis(500)) else {
        return;
    };
    if c.send(raw).is_err() {
        return;
    }
    for _ in 0..responses {
        if c.read_response(head).is_err() {
            return;
        }
    }
}

/// Keep-alive clients whose every response must name their own request, while an attacker
/// replays both corpora.
fn poisoning_under_load(cores: u32) {
    let rig = Rig::start(cores, "");
    let requests: Vec<(Vec<u8>, bool, usize)> = corpus::request_cases()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let responses = match &c.expect {
                Expect::Forward(f) | Expect::Either(f, _) => f.len(),
                Expect::Reject(_) | Expect::RejectInBody(_) => 1,
            };
            (c.bytes(&format!("x{i:03}")), false, responses)
        })
        .collect();
    let mut triggers = Vec::new();
    for (i, case) in corpus::response_cases().iter().enumerate() {
        let path = format!("/api/r{i:03}/resp");
        rig.backend.reply(
            &path,
            RawReply {
                parts: case.parts.clone(),
                then: case.then,
                hold_last: case.hold_last,
            },
        );
        // Late bytes come right after the response here: nobody waits to release them.
        rig.backend.release(&path);
        let head = case.method == "HEAD";
        let raw = format!("{} {path} HTTP/1.1\r\nHost: a\r\n\r\n", case.method);
        triggers.push((raw.into_bytes(), head, 1));
    }
    let addr = rig.gw.addr;
    let deadline = Instant::now() + LOAD_TIME;
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, attacks) = (stop.clone(), attacks.clone());
        thread::spawn(move || {
            let all: Vec<(Vec<u8>, bool, usize)> = requests.into_iter().chain(triggers).collect();
            for (raw, head, responses) in all.iter().cycle().take(100_000) {
                if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    return;
                }
                attack(addr, raw, *head, *responses);
                attacks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let clients: Vec<_> = (0..LOAD_CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let (mut ok, mut mismatches, mut errors) = (0usize, Vec::new(), Vec::new());
                let mut conn: Option<StrictClient> = None;
                for n in 0..LOAD_REQUESTS {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match StrictClient::connect(addr, CASE_TIMEOUT) {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                errors.push(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let path = format!("/api/c{i}/r{n}");
                    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
                    if let Err(e) = c.send(req.as_bytes()) {
                        errors.push(format!("{path}: write: {e}"));
                        conn = None;
                        continue;
                    }
                    match c.read_response(false) {
                        Ok(m) => match echo_of(&m.body) {
                            Some((_, t)) if m.status() == 200 && t == path => ok += 1,
                            _ => {
                                mismatches.push(format!("{path} got {}", brief(&m)));
                                conn = None;
                            }
                        },
                        Err(e) => {
                            errors.push(format!("{path}: {e}"));
                            conn = None;
                        }
                    }
                }
                (ok, mismatches, errors)
            })
        })
        .collect();
    let (mut ok, mut mismatches, mut errors) = (0, Vec::new(), Vec::new());
    for c in clients {
        let (o, m, e) = c.join().unwrap();
        ok += o;
        mismatches.extend(m);
        errors.extend(e);
    }
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    let attacks = attacks.load(Ordering::SeqCst);
    eprintln!(
        "cores {cores}: {ok} client responses checked, {attacks} attacks, {} mismatches, {} errors",
        mismatches.len(),
        errors.len()
    );
    assert!(
        attacks > 0 && ok > 0,
        "the load ran: {attacks} attacks, {ok} responses"
    );
    assert!(
        mismatches.is_empty(),
        "{} clients got a response that was not theirs (cores {cores}):\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(30)].join("\n")
    );
    assert!(
        errors.is_empty(),
        "{} client requests failed (cores {cores}):\n{}",
        errors.len(),
        errors[..errors.len().min(30)].join("\n")
    );
    let backend_errors = rig.backend.errors();
    assert!(
        backend_errors.is_empty(),
        "the strict backend refused {} things rgate sent (cores {cores}):\n{}",
        backend_errors.len(),
        backend_errors[..backend_errors.len().min(30)].join("\n")
    );
}

#[test]
fn poisoning_under_load_one_core() {
    poisoning_under_load(1);
}

#[test]
fn poisoning_under_load_two_cores() {
    poisoning_under_load(2);
}

// ----- headers: underscores policy -----

fn underscore_rig(policy: &str) -> Rig {
    Rig::start(1, &format!("headers:\n  underscores: {policy}\n"))
}

#[test]
fn underscores_reject_refuses_the_request() {
    let rig = underscore_rig("reject");
    let mark = rig.backend.mark();
    let mut c = StrictClient::connect(rig.gw.addr, CASE_TIMEOUT).unwrap();
    c.send(b"GET /api/u/x HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(rgate_error(&r), Some(400), "{}", brief(&r));
    c.closes_cleanly().unwrap();
    assert_eq!(
        rig.backend.mark().received,
        mark.received,
        "nothing reached the backend"
    );
}

#[test]
fn underscores_forward_passes_them_on() {
    let rig = underscore_rig("forward");
    let mut c = StrictClient::connect(rig.gw.addr, CASE_TIMEOUT).unwrap();
    c.send(b"GET /api/u/x HTTP/1.1\r\nHost: a\r\nX_Custom: v\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status(), 200, "{}", brief(&r));
    let got = rig.backend.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].msg.all("X_Custom"), ["v"]);
}

#[test]
fn underscores_drop_is_the_default_and_explicit() {
    for extra in ["", "headers:\n  underscores: drop\n"] {
        let rig = Rig::start(1, extra);
        let mut c = StrictClient::connect(rig.gw.addr, CASE_TIMEOUT).unwrap();
        c.send(b"GET /api/u/x HTTP/1.1\r\nHost: a\r\nX_Custom: v\r\nX-Kept: k\r\n\r\n")
            .unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status(), 200, "{}", brief(&r));
        let got = rig.backend.messages();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].msg.all("X_Custom").is_empty(),
            "{extra:?}: {:?}",
            got[0].msg.headers
        );
        assert_eq!(got[0].msg.all("X-Kept"), ["k"], "{extra:?}");
    }
}

// ----- the strict backend and parser are strict -----

/// Sends `raw` straight to the backend and waits for its verdict.
fn backend_verdict(b: &StrictBackend, raw: &[u8]) -> (usize, Vec<String>) {
    let mark = b.mark();
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(CASE_TIMEOUT)).unwrap();
    s.write_all(raw).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let deadline = Instant::now() + SETTLE;
    while b.errors_since(mark).is_empty() && b.settle(Duration::ZERO).is_err() {
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    (b.messages_since(mark).len(), b.errors_since(mark))
}

#[test]
fn strict_backend_flags_ambiguous_requests() {
    let b = StrictBackend::start();
    let bad: &[(&str, &[u8])] = &[
        ("CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("two CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
        ("CL +5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
        ("TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("two TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n"),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00\r\n\r\n"),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
        ("Host with @", b"GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n"),
        ("chunk size 0x5", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
        ("chunk size with space", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"),
        ("chunk ext control", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n"),
        ("chunk data overrun", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n"),
        ("trailer obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\r\n c\r\n\r\n"),
        ("tab in target", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"),
    ];
    for (name, raw) in bad {
        let (messages, errors) = backend_verdict(&b, raw);
        assert_eq!(messages, 0, "{name}: parsed");
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
    }
    // And it accepts the ordinary, recording extensions and trailers for the tests to judge.
    let (messages, errors) = backend_verdict(
        &b,
        b"POST / HTTP/1.1\r\nHost: my_host:80\r\nX_Y: z\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"q\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    );
    assert_eq!((messages, errors.len()), (1, 0), "{errors:?}");
    let last = b.messages().pop().unwrap().msg;
    assert_eq!(last.body, b"hello");
    assert_eq!(last.extensions, [";a=\"q\""]);
    assert_eq!(last.trailers, [("X-T".to_string(), "1".to_string())]);
}

#[test]
fn strict_backend_counts_a_smuggled_request_and_sees_leftovers() {
    let b = StrictBackend::start();
    // What rgate forwarded for `Connection: content-length`: a head without framing, and
    // the body (itself a request) after it. The backend parses two messages.
    let smuggled = corpus::replace(corpus::SMUGGLED.as_bytes(), b"{ID}", b"c000");
    let mut c = StrictClient::connect(b.addr, CASE_TIMEOUT).unwrap();
    c.send(&[&b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n"[..], &smuggled].concat())
        .unwrap();
    let first = c.read_response(false).unwrap();
    let second = c.read_response(false).unwrap();
    assert_eq!(echo_of(&first.body).unwrap().1, "/x");
    assert_eq!(echo_of(&second.body).unwrap().1, "/api/c000/smuggled");
    let got = b.messages();
    assert_eq!(got.len(), 2);
    assert!(got[0].msg.body.is_empty());
    // A partial message on an open connection is what `settle` reports.
    let before = b.conns()[0].received;
    c.send(b"POST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    while b.conns()[0].received == before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let pending = b.settle(Duration::from_millis(50));
    assert!(
        pending.as_ref().is_err_and(|e| e.contains("unparsed")),
        "{pending:?}"
    );
    assert!(b.errors().is_empty(), "{:?}", b.errors());
}

#[test]
fn strict_parser_judges_responses() {
    let parse = |raw: &[u8], eof| {
        wire::parse_message(raw, Role::Response { to_head: false }, eof).map(|o| o.map(|(m, _)| m))
    };
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    ] {
        assert!(parse(bad, true).is_err(), "{}", show(bad));
    }
    let m = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", true)
        .unwrap()
        .unwrap();
    assert_eq!(m.body, b"hello");
    assert!(
        parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhel", false)
            .unwrap()
            .is_none()
    );
    let m = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(m.extensions, [";x"]);
    assert_eq!(trailer_faults(&m.trailers).len(), 1);
    assert!(!wire::valid_host("a, b") && !wire::valid_host("a/b@c") && !wire::valid_host("a:b"));
    assert!(
        wire::valid_host("a.b-c_d:8080")
            && wire::valid_host("[::1]:80")
            && wire::valid_host("1.2.3.4")
    );
}
