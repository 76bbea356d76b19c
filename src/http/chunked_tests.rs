//! Tests of `http/chunked.rs`.

use super::*;

/// Decodes `input` delivered in the given pieces; returns (payload, framing bytes seen,
/// bytes left unconsumed after the end).
fn run(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, usize), ChunkedError> {
    let mut d = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut framing = 0;
    let mut left = 0;
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() && !d.is_done() {
            match d.decode(&piece[at..])? {
                Decoded::Payload(n) => {
                    payload.extend_from_slice(&piece[at..at + n]);
                    at += n;
                }
                Decoded::Framing(n) => {
                    framing += n;
                    at += n;
                }
            }
        }
        left += piece.len() - at;
    }
    assert!(d.is_done(), "decoder not done");
    Ok((payload, framing, left))
}

/// Runs `input` whole and split at every byte offset; all must agree.
fn at_every_split(input: &[u8]) -> Result<(Vec<u8>, usize, usize), ChunkedError> {
    let whole = run(&[input]);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run(&[a, b]), whole, "split at {i}");
    }
    // And byte by byte.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte");
    whole
}

#[test]
fn decodes_chunks_extensions_and_trailers() {
    let input = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
    let (payload, framing, left) = at_every_split(input).unwrap();
    assert_eq!(payload, b"hello world");
    assert_eq!(left, 4);
    assert_eq!(framing + payload.len() + left, input.len());
}

#[test]
fn uppercase_hex_and_whitespace_before_extension() {
    let (payload, ..) = at_every_split(b"A \t;ext\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!(payload, b"0123456789");
}

#[test]
fn sizes_are_hex_in_either_case() {
    let sixteen = "0123456789abcdef";
    for size in ["a", "A", "f", "F", "1a", "1A"] {
        let n = usize::from_str_radix(size, 16).unwrap();
        let input = format!("{size}\r\n{}\r\n0\r\n\r\n", &sixteen.repeat(2)[..n]);
        let (payload, ..) = run(&[input.as_bytes()]).unwrap();
        assert_eq!(payload.len(), n, "{size:?}");
    }
}

#[test]
fn empty_body() {
    let (payload, framing, left) = at_every_split(b"0\r\n\r\n").unwrap();
    assert!(payload.is_empty());
    assert_eq!((framing, left), (5, 0));
}

fn error_of(input: &[u8]) -> ChunkedError {
    let mut d = ChunkedDecoder::new();
    let mut at = 0;
    loop {
        match d.decode(&input[at..]) {
            Err(e) => return e,
            Ok(Decoded::Payload(n) | Decoded::Framing(n)) => {
                assert!(n > 0, "stalled without error on {input:?}");
                at += n;
            }
        }
    }
}

#[test]
fn rejects_malformed_framing() {
    assert_eq!(error_of(b"x\r\n"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"\r\n"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"-1\r\n"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"5 x\r\n"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"5\nhello"), ChunkedError::MissingCrlf);
    assert_eq!(error_of(b"5\r\nhelloX"), ChunkedError::MissingCrlf);
    assert_eq!(error_of(b"5\r\nhello\rX"), ChunkedError::MissingCrlf);
    assert_eq!(error_of(b"0\r\n\n"), ChunkedError::MissingCrlf);
    assert_eq!(error_of(b"0\r\nA: b\n"), ChunkedError::MissingCrlf);
    assert_eq!(
        error_of(b"11111111111111111\r\n"),
        ChunkedError::SizeTooLarge
    );
    let mut long_ext = b"1;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
    assert_eq!(error_of(&long_ext), ChunkedError::ExtensionTooLong);
    let mut long_trailer = b"0\r\n".to_vec();
    long_trailer.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES + 1));
    assert_eq!(error_of(&long_trailer), ChunkedError::TrailerTooLong);
}

#[test]
fn rejects_whitespace_without_extension_and_controls_in_extensions() {
    assert_eq!(error_of(b"5 \r\nhello"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"5\t\r\nhello"), ChunkedError::InvalidSize);
    assert_eq!(error_of(b"5;a\x01b\r\n"), ChunkedError::InvalidExtension);
    assert_eq!(error_of(b"5;a\0\r\n"), ChunkedError::InvalidExtension);
    assert_eq!(error_of(b"5;\x7f\r\n"), ChunkedError::InvalidExtension);
    assert_eq!(error_of(b"5;a\rb\r\n"), ChunkedError::MissingCrlf);
    // A bare LF in an extension is a broken line end, as anywhere else in the framing.
    assert_eq!(error_of(b"5;a\nhello"), ChunkedError::MissingCrlf);
}

/// Re-frames `input` delivered in the given pieces, as the relay does (the unconsumed
/// rest of a piece is offered again with the next one). Returns (output, bytes left).
fn reframe(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize), ChunkedError> {
    let mut r = Reframer::new();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        if r.is_done() {
            continue;
        }
        let used = r.feed(&pending, &mut out)?;
        pending.drain(..used);
    }
    assert!(r.is_done(), "reframer not done");
    Ok((out, pending.len()))
}

#[test]
fn reframing_writes_clean_chunks_at_every_split() {
    let input = b"5;ext=\"q\"\r\nhello\r\n006 ;x\r\n world\r\n0\r\nX-Sum: 1\r\n\
Content-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\nGET /next HTTP/1.1\r\n";
    let (whole, left) = reframe(&[input]).unwrap();
    assert_eq!(left, b"GET /next HTTP/1.1\r\n".len());
    assert_eq!(
        whole,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n".to_vec()
    );
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let (out, rest) = reframe(&[a, b]).unwrap();
        assert_eq!(rest, left, "split at {i}");
        // Chunk boundaries may move; the payload and the end may not.
        let (payload, _, after) = run(&[&out]).unwrap();
        assert_eq!(payload, b"hello world", "split at {i}");
        assert_eq!(after, 0, "split at {i}");
        assert!(out.ends_with(b"0\r\nX-Sum: 1\r\n\r\n"), "split at {i}");
    }
}

#[test]
fn reframing_refuses_a_malformed_trailer() {
    assert_eq!(
        reframe(&[b"1\r\na\r\n0\r\nX-A : 1\r\n\r\n"]).unwrap_err(),
        ChunkedError::Trailer(TrailerError::InvalidName)
    );
    assert_eq!(
        reframe(&[b"0\r\nX-A: 1\r\n folded\r\n\r\n"]).unwrap_err(),
        ChunkedError::Trailer(TrailerError::InvalidName)
    );
}

#[test]
fn chunk_sizes_are_written_in_hex() {
    for n in [1usize, 9, 10, 15, 16, 255, 4096, 65_535, 1 << 20] {
        let mut out = Vec::new();
        write_chunk(&mut out, &vec![b'x'; n]);
        assert!(out.starts_with(format!("{n:x}\r\n").as_bytes()), "{n}");
        assert_eq!(out.len(), format!("{n:x}").len() + n + 4);
    }
}

#[test]
fn sixteen_digit_size_is_accepted() {
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(b"FFFFFFFFFFFFFFFF\r\nab").unwrap(),
        Decoded::Framing(18)
    );
    assert_eq!(d.decode(b"ab").unwrap(), Decoded::Payload(2));
}

/// The trailer section may hold 16 KiB of field lines, CRLFs included; a byte more is refused.
#[test]
fn trailer_section_holds_16_kib() {
    let section = |len: usize| {
        let pad = "v".repeat(len - b"X-Pad: \r\n".len());
        format!("0\r\nX-Pad: {pad}\r\n\r\n").into_bytes()
    };
    let mut d = ChunkedDecoder::new();
    let input = section(16 * 1024);
    assert_eq!(d.decode(&input), Ok(Decoded::Framing(input.len())));
    assert!(d.is_done());
    assert_eq!(d.trailer_section().len(), 16 * 1024);
    assert_eq!(
        error_of(&section(16 * 1024 + 1)),
        ChunkedError::TrailerTooLong
    );
}

/// The message names the fault: a client whose chunked body is invalid reads it in the 400.
#[test]
fn every_chunked_error_says_why() {
    use ChunkedError::*;
    for (err, why) in [
        (InvalidSize, "invalid chunk size"),
        (SizeTooLarge, "chunk size too large"),
        (ExtensionTooLong, "chunk extension too long"),
        (MissingCrlf, "missing CRLF in chunked framing"),
        (TrailerTooLong, "trailer section too long"),
        (InvalidExtension, "control character in a chunk extension"),
        (
            Trailer(TrailerError::InvalidName),
            "invalid trailer field name",
        ),
        (
            Trailer(TrailerError::InvalidValue),
            "invalid trailer field value",
        ),
    ] {
        assert_eq!(err.to_string(), why);
    }
}

/// A chunk line may carry `MAX_EXTENSION_BYTES` of extensions, `;` excluded; a byte more is
/// refused.
#[test]
fn extensions_may_fill_their_limit() {
    let line = |len: usize| format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(len)).into_bytes();
    let (payload, ..) = run(&[&line(MAX_EXTENSION_BYTES)]).unwrap();
    assert_eq!(payload, b"a");
    assert_eq!(
        error_of(&line(MAX_EXTENSION_BYTES + 1)),
        ChunkedError::ExtensionTooLong
    );
}
