//! The relays on in-memory peers: every body delivered in every split, and a sender
//! that closes, fails or a receiver that fails at every point.

use super::*;
use std::collections::VecDeque;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::BufResult;

/// An in-memory peer: hands out `reads` one per read (then EOF), and records what is
/// written to it, failing writes once `write_limit` bytes were taken.
#[derive(Default)]
struct Peer {
    reads: VecDeque<io::Result<Vec<u8>>>,
    written: Vec<u8>,
    write_limit: Option<usize>,
}

impl Peer {
    fn sending(pieces: &[&[u8]]) -> Peer {
        Peer {
            // An empty read is an EOF: empty pieces are not reads.
            reads: pieces
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| Ok(p.to_vec()))
                .collect(),
            ..Peer::default()
        }
    }
}

impl AsyncReadRent for Peer {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self.reads.pop_front() {
            None => (Ok(0), buf),
            Some(Err(e)) => (Err(e), buf),
            Some(Ok(mut piece)) => {
                let n = piece.len().min(buf.bytes_total());
                if n < piece.len() {
                    self.reads.push_front(Ok(piece.split_off(n)));
                }
                // SAFETY: `write_ptr` points at `bytes_total` writable bytes of `buf`,
                // and `n` is at most that; those `n` bytes are initialised by the copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(piece.as_ptr(), buf.write_ptr(), n);
                    buf.set_init(n);
                }
                (Ok(n), buf)
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, _buf: T) -> BufResult<usize, T> {
        unimplemented!("the relays never use vectored reads")
    }
}

impl AsyncWriteRent for Peer {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` points at `bytes_init` initialised bytes of `buf`.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let room = self
            .write_limit
            .map_or(data.len(), |l| l - self.written.len());
        if room == 0 && !data.is_empty() {
            return (Err(io::ErrorKind::BrokenPipe.into()), buf);
        }
        let n = data.len().min(room);
        self.written.extend_from_slice(&data[..n]);
        (Ok(n), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, _buf: T) -> BufResult<usize, T> {
        unimplemented!("the relays never use vectored writes")
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a relay did: its result, what reached the receiver, what the sender still has
/// (buffered and unread), and the totals `before_last_write` was called with.
struct Outcome {
    result: Result<u64, RelayError>,
    written: Vec<u8>,
    left: Vec<u8>,
    counted: Vec<u64>,
}

fn relay(pieces: &[&[u8]], framing: BodyFraming, mode: ChunkedRelay) -> Outcome {
    relay_into(Peer::sending(pieces), Peer::default(), framing, mode)
}

fn relay_into(src: Peer, mut dst: Peer, framing: BodyFraming, mode: ChunkedRelay) -> Outcome {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let alarms = Alarms::default();
        // A small buffer, so that bodies take several reads.
        let mut src = Buffered::new(src, 8);
        let mut counted = Vec::new();
        let idle = IdleLimit {
            alarms: &alarms,
            limit: Duration::from_secs(60),
            write_limit: Duration::from_secs(60),
            min_rate: 0,
            receiver_answered: None,
            max_payload: None,
        };
        let result = relay_body(&mut src, &mut dst, framing, mode, idle, &mut |n| {
            counted.push(n)
        })
        .await;
        let mut left = src.data().to_vec();
        for piece in src.io.reads.drain(..).flatten() {
            left.extend(piece);
        }
        Outcome {
            result,
            written: dst.written,
            left,
            counted,
        }
    })
}

#[test]
fn a_length_body_arrives_whole_in_every_split_and_nothing_past_it() {
    let input = b"hello, world!NEXT";
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let out = relay(&[a, b], BodyFraming::Length(13), ChunkedRelay::Reframe);
        assert_eq!(out.result.unwrap(), 13, "cut {cut}");
        assert_eq!(out.written, b"hello, world!", "cut {cut}");
        assert_eq!(out.left, b"NEXT", "cut {cut}");
        assert_eq!(
            out.counted,
            [13],
            "counted once, before the last write; cut {cut}"
        );
    }
}

#[test]
fn a_sender_closing_at_any_point_of_a_body_is_an_error_never_a_short_success() {
    let body = b"hello, world!";
    for cut in 0..body.len() {
        let out = relay(
            &[&body[..cut]],
            BodyFraming::Length(13),
            ChunkedRelay::Reframe,
        );
        assert!(
            matches!(out.result, Err(RelayError::SourceClosed)),
            "cut {cut}"
        );
        assert!(out.counted.is_empty(), "not counted as complete; cut {cut}");
    }
    let chunked = b"5\r\nhello\r\n0\r\n\r\n";
    for cut in 0..chunked.len() {
        for mode in [ChunkedRelay::Reframe, ChunkedRelay::Dechunk] {
            let out = relay(&[&chunked[..cut]], BodyFraming::Chunked, mode);
            assert!(
                matches!(out.result, Err(RelayError::SourceClosed)),
                "cut {cut} {mode:?}"
            );
        }
    }
}

#[test]
fn a_chunked_body_is_reframed_or_dechunked_in_every_split() {
    let input = b"4;x=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\nHost: evil\r\n\r\nNEXT";
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let out = relay(&[a, b], BodyFraming::Chunked, ChunkedRelay::Reframe);
        let n = out.result.unwrap();
        assert_eq!(n, out.written.len() as u64, "cut {cut}");
        assert_eq!(out.counted, [n], "cut {cut}");
        assert_eq!(out.left, b"NEXT", "cut {cut}");
        let mut decoder = ChunkedDecoder::new();
        let (mut at, mut payload) = (0, Vec::new());
        while !decoder.is_done() {
            match decoder.decode(&out.written[at..]).unwrap() {
                Decoded::Payload(k) => {
                    payload.extend_from_slice(&out.written[at..at + k]);
                    at += k;
                }
                Decoded::Framing(k) => at += k,
            }
        }
        assert_eq!(payload, b"wikipedia", "cut {cut}");
        assert_eq!(
            at,
            out.written.len(),
            "nothing after the last chunk; cut {cut}"
        );
        assert_eq!(decoder.trailer_section(), b"X-T: 1\r\n", "cut {cut}");
        let text = String::from_utf8_lossy(&out.written);
        assert!(!text.contains(';'), "no extension passes; cut {cut}");

        let out = relay(&[a, b], BodyFraming::Chunked, ChunkedRelay::Dechunk);
        assert_eq!(out.written, b"wikipedia", "cut {cut}");
        assert_eq!(out.left, b"NEXT", "cut {cut}");
        assert_eq!(out.counted, [9], "cut {cut}");
    }
}

#[test]
fn a_body_until_close_ends_with_the_sender() {
    let out = relay(
        &[b"all ", b"of ", b"it"],
        BodyFraming::UntilClose,
        ChunkedRelay::Dechunk,
    );
    assert_eq!(out.result.unwrap(), 9);
    assert_eq!(out.written, b"all of it");
    assert_eq!(out.counted, [9]);
}

#[test]
fn failures_say_which_side_failed() {
    let src = Peer {
        reads: [
            Ok(b"hel".to_vec()),
            Err(io::ErrorKind::ConnectionReset.into()),
        ]
        .into(),
        ..Peer::default()
    };
    let out = relay_into(
        src,
        Peer::default(),
        BodyFraming::Length(5),
        ChunkedRelay::Reframe,
    );
    assert!(matches!(out.result, Err(RelayError::SourceIo(_))));

    let dst = Peer {
        write_limit: Some(3),
        ..Peer::default()
    };
    let out = relay_into(
        Peer::sending(&[b"hello"]),
        dst,
        BodyFraming::Length(5),
        ChunkedRelay::Reframe,
    );
    assert!(matches!(out.result, Err(RelayError::DestinationIo(_))));
    assert_eq!(out.written, b"hel");

    let out = relay(
        &[b"5\r\nhello\r\nz\r\n"],
        BodyFraming::Chunked,
        ChunkedRelay::Reframe,
    );
    assert!(matches!(out.result, Err(RelayError::Chunked(_))));
    let out = relay(
        &[b"0\r\nBad Name: 1\r\n\r\n"],
        BodyFraming::Chunked,
        ChunkedRelay::Dechunk,
    );
    assert!(matches!(out.result, Err(RelayError::Chunked(_))));
}
