//! The session against a scripted backend on 127.0.0.1 (a std thread): reusability
//! decided by the phase, a backend closing at every point of a response head, and what
//! is safe to retry.

use super::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

const LONG: Duration = Duration::from_secs(30);

/// A backend that, on one connection, answers each request head with the next script
/// entry (bytes, then whether to close), and counts the heads it read.
fn scripted_backend(script: Vec<(Vec<u8>, bool)>) -> (SocketAddr, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut heads = 0;
        for (reply, close) in script {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            while !seen.ends_with(b"\r\n\r\n") {
                if s.read(&mut byte).unwrap_or(0) == 0 {
                    return heads;
                }
                seen.push(byte[0]);
            }
            heads += 1;
            s.write_all(&reply).unwrap();
            if close {
                return heads;
            }
        }
        // Hold the connection until the client closes it.
        let _ = s.read(&mut [0u8; 1]);
        heads
    });
    (addr, handle)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("a runtime")
        .block_on(f)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// One exchange without a body; the response body (Content-Length) is read whole.
async fn get(ex: &mut Exchange, alarms: &Alarms) -> Result<u16, UpstreamError> {
    let (res, _) = ex.send_head(GET.to_vec(), false).await;
    res?;
    let (status, len) = ex
        .read_head(alarms, LONG, false, |h| {
            let len = match h.framing {
                crate::http::framing::BodyFraming::Length(n) => n as usize,
                _ => 0,
            };
            (h.status, len)
        })
        .await?;
    while ex.stream().data().len() < len {
        if ex.stream().fill(0).await.map_err(UpstreamError::Read)? == 0 {
            return Err(UpstreamError::ClosedBeforeResponse);
        }
    }
    ex.stream().consume(len);
    ex.response_done();
    Ok(status)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn only_one_whole_response_and_nothing_beyond_makes_a_connection_reusable() {
    for (reply, reusable) in [
        (OK.to_vec(), true),
        ([OK, b"HTTP/1.1 200 OK\r\n"].concat(), false),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            false,
        ),
    ] {
        let (addr, backend) = scripted_backend(vec![(reply.clone(), false)]);
        let got = run(async move {
            let alarms = Alarms::default();
            let conn = BackendConn::connect(addr, &alarms, LONG).await.unwrap();
            let mut ex = Exchange::new(conn);
            assert_eq!(get(&mut ex, &alarms).await.unwrap(), 200);
            ex.into_reusable().is_some()
        });
        assert_eq!(got, reusable, "{}", String::from_utf8_lossy(&reply));
        backend.join().unwrap();
    }
}

#[test]
fn a_cut_request_or_an_unfinished_response_is_never_reused() {
    let (addr, backend) = scripted_backend(vec![(OK.to_vec(), false)]);
    run(async move {
        let alarms = Alarms::default();
        let mut ex = Exchange::new(BackendConn::connect(addr, &alarms, LONG).await.unwrap());
        let (res, _) = ex.send_head(GET.to_vec(), true).await;
        res.unwrap();
        ex.body_started();
        ex.request_cut();
        assert!(!ex.request_whole());
        ex.read_head(&alarms, LONG, false, |_| ()).await.unwrap();
        let stream = ex.stream();
        stream.consume(stream.data().len());
        ex.response_done();
        assert!(
            ex.into_reusable().is_none(),
            "the backend did not read all of it"
        );
    });
    backend.join().unwrap();
    let (addr, backend) = scripted_backend(vec![(OK.to_vec(), false)]);
    run(async move {
        let alarms = Alarms::default();
        let mut ex = Exchange::new(BackendConn::connect(addr, &alarms, LONG).await.unwrap());
        let (res, _) = ex.send_head(GET.to_vec(), false).await;
        res.unwrap();
        ex.read_head(&alarms, LONG, false, |_| ()).await.unwrap();
        assert!(ex.into_reusable().is_none(), "the body was not read");
    });
    backend.join().unwrap();
}

/// The backend closes after sending the first `cut` bytes of a response head: before
/// any byte that is a close before the response, after some a malformed response; a
/// retry is safe only on a pooled connection, and only before any response byte.
#[test]
fn a_backend_closing_at_every_point_of_a_head() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    for cut in 0..head.len() {
        // The first exchange pools the connection; the second meets the close.
        let (addr, backend) =
            scripted_backend(vec![(OK.to_vec(), false), (head[..cut].to_vec(), true)]);
        run(async move {
            let alarms = Alarms::default();
            let mut first = Exchange::new(BackendConn::connect(addr, &alarms, LONG).await.unwrap());
            get(&mut first, &alarms).await.unwrap();
            let pooled = first.into_reusable().expect("reusable");
            let mut ex = Exchange::new(BackendConn::from_pool(pooled));
            let err = get(&mut ex, &alarms).await.unwrap_err();
            if cut == 0 {
                assert!(
                    matches!(err, UpstreamError::ClosedBeforeResponse),
                    "cut {cut}: {err}"
                );
                assert!(ex.retry_is_safe(&err), "cut {cut}");
            } else {
                assert!(matches!(err, UpstreamError::Invalid(_)), "cut {cut}: {err}");
                assert!(!ex.retry_is_safe(&err), "cut {cut}: a response had begun");
            }
            assert!(ex.into_reusable().is_none(), "cut {cut}");
        });
        assert_eq!(backend.join().unwrap(), 2, "cut {cut}");
    }
}

#[test]
fn a_request_whose_body_began_is_never_retried() {
    let (addr, backend) = scripted_backend(vec![(OK.to_vec(), false), (Vec::new(), true)]);
    run(async move {
        let alarms = Alarms::default();
        let mut first = Exchange::new(BackendConn::connect(addr, &alarms, LONG).await.unwrap());
        get(&mut first, &alarms).await.unwrap();
        let mut ex = Exchange::new(BackendConn::from_pool(first.into_reusable().unwrap()));
        let (res, _) = ex.send_head(GET.to_vec(), true).await;
        res.unwrap();
        let before_body = UpstreamError::ClosedBeforeResponse;
        assert!(
            ex.retry_is_safe(&before_body),
            "nothing of the body left yet"
        );
        ex.body_started();
        ex.request_sent();
        let err = ex
            .read_head(&alarms, LONG, false, |_| ())
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::ClosedBeforeResponse), "{err}");
        assert!(!ex.retry_is_safe(&err), "the body was consumed");
    });
    backend.join().unwrap();
    // A fresh connection is never retried: the failure is the backend's, not the pool's.
    let (addr, backend) = scripted_backend(vec![(Vec::new(), true)]);
    run(async move {
        let alarms = Alarms::default();
        let mut ex = Exchange::new(BackendConn::connect(addr, &alarms, LONG).await.unwrap());
        let err = get(&mut ex, &alarms).await.unwrap_err();
        assert!(!ex.retry_is_safe(&err));
    });
    backend.join().unwrap();
}
