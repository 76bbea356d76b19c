//! Bodies on the wire: chunked both ways, and 100 MB both ways in each framing while rgate's
//! peak resident memory stays bounded — the body streams, it is never held whole.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{config, write_pattern, Backend, Digest, Gateway, PIECE};

fn gateway() -> (Gateway, Backend) {
    let b = Backend::start("b");
    let gw = Gateway::start(&config(&[("/", "b")], &[("b", &[b.addr])], ""));
    (gw, b)
}

#[test]
fn chunked_responses_stream_to_http11_clients_chunked() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    for n in [0u64, 1, 300_001] {
        c.send(format!("GET /c?do=chunked&n={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"), "{r:?}");
        let mut d = Digest::default();
        d.update(&r.body);
        assert_eq!(d, Digest::of_pattern(n));
    }
}

#[test]
fn chunked_request_in_tiny_pieces_is_streamed() {
    let (gw, _b) = gateway();
    let mut c = gw.client();
    c.send(b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut body = Vec::new();
    write_pattern(&mut body, 5000, 97, true).unwrap();
    // Byte-sized writes split every size line and CRLF.
    for piece in body.chunks(7) {
        c.send(piece);
    }
    let echo = c.read_response(false).echo();
    assert_eq!(
        (echo.body_len(), echo.body_sum()),
        (5000, Digest::of_pattern(5000).sum)
    );
}

const LARGE: u64 = 100 * 1024 * 1024;
/// How much rgate's peak RSS may grow while 400 MB of bodies pass through it.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

fn upload(gw: &Gateway, chunked: bool) {
    let mut c = gw.client();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {LARGE}")
    };
    // The backend waits before reading, so the body piles up in front of it.
    c.send(format!("POST /up?pause=500 HTTP/1.1\r\nHost: a\r\n{framing}\r\n\r\n").as_bytes());
    write_pattern(&mut c.stream, LARGE, PIECE, chunked).expect("upload");
    c.stream.flush().unwrap();
    let echo = c.read_response(false).echo();
    let expected = Digest::of_pattern(LARGE);
    assert_eq!(
        (echo.body_len(), echo.body_sum()),
        (expected.len, expected.sum)
    );
}

fn download(gw: &Gateway, how: &str) {
    let mut c = gw.client();
    c.send(format!("GET /down?do={how}&n={LARGE} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let head = c.read_head().expect("response head");
    assert_eq!(head.status, 200);
    if how == "chunked" {
        assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    } else {
        assert_eq!(
            head.header("Content-Length"),
            Some(LARGE.to_string().as_str())
        );
    }
    // A client that stops reading a while: the backend must be held back, not buffered.
    std::thread::sleep(Duration::from_millis(500));
    let mut d = Digest::default();
    c.read_body(&head, false, &mut |b| d.update(b))
        .expect("the whole body");
    assert_eq!(d, Digest::of_pattern(LARGE));
}

#[test]
fn hundred_megabyte_bodies_both_ways_in_bounded_memory() {
    let (gw, _b) = gateway();
    // Warm up both cores' buffers and pools before the baseline.
    for _ in 0..4 {
        gw.get("/warm").echo();
    }
    let baseline = gw.memory_kib("VmHWM");
    upload(&gw, false);
    upload(&gw, true);
    download(&gw, "large");
    download(&gw, "chunked");
    let peak = gw.memory_kib("VmHWM");
    let rss = gw.memory_kib("VmRSS");
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KIB,
        "peak RSS grew from {baseline} KiB to {peak} KiB (RSS now {rss} KiB)"
    );
}
