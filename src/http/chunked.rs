//! The chunked transfer coding (RFC 9112 §7.1) as a byte-at-a-time state machine.
//!
//! The decoder never copies: each call consumes a prefix of the input and says whether
//! that prefix was framing (size lines, CRLFs, trailers) or payload. A proxy forwarding the
//! body chunked sends every consumed byte on; one de-chunking (for an HTTP/1.0 client) sends
//! only the payload. Either way the decoder proves where the message ends, so nothing past
//! it is ever forwarded as body. It is strict: bare LF, a missing CRLF after data, an
//! oversized chunk size or over-long extensions and trailers are errors, because a lenient
//! decoder in a proxy is how request smuggling starts.

use std::fmt;

/// At most 16 hex digits: a size up to 2^64 - 1.
const MAX_SIZE_DIGITS: u8 = 16;
/// Chunk extensions are skipped, but only this many bytes of them per chunk line.
pub const MAX_EXTENSION_BYTES: usize = 4096;
/// The whole trailer section, all fields together.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Where in the chunked grammar the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After the digits: optional whitespace before `;` or CR.
    SizeWs,
    /// Inside `;name=value` extensions, up to CR.
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Inside chunk data; `remaining` bytes to go.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    TrailerLine,
    /// Expecting the LF that ends a trailer field line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The message body is complete.
    Done,
}

/// What a chunked body got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    InvalidSize,
    SizeTooLarge,
    ExtensionTooLong,
    MissingCrlf,
    TrailerTooLong,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::InvalidSize => "invalid chunk size",
            ChunkedError::SizeTooLarge => "chunk size too large",
            ChunkedError::ExtensionTooLong => "chunk extension too long",
            ChunkedError::MissingCrlf => "missing CRLF in chunked framing",
            ChunkedError::TrailerTooLong => "trailer section too long",
        })
    }
}

/// What a prefix of the input turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// `n` bytes of framing (size line, CRLF, trailer); forward them only when re-chunking.
    Framing(usize),
    /// `n` bytes of payload.
    Payload(usize),
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkedState,
    /// The chunk size being read, then the data bytes left in the chunk.
    remaining: u64,
    digits: u8,
    extension_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkedState::Size,
            remaining: 0,
            digits: 0,
            extension_len: 0,
            trailer_len: 0,
        }
    }

    /// True once the final CRLF has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Consumes a non-empty prefix of `input` (unless `input` is empty or the body is done)
    /// and says what it was.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkedError> {
        if self.state == ChunkedState::Data {
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.state = ChunkedState::DataCr;
            }
            return Ok(Decoded::Payload(n));
        }
        let mut used = 0;
        for &b in input {
            if matches!(self.state, ChunkedState::Data | ChunkedState::Done) {
                break;
            }
            used += 1;
            self.step(b)?;
        }
        Ok(Decoded::Framing(used))
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedState::*;
        self.state = match self.state {
            Size => match hex_value(b) {
                Some(v) => self.push_digit(v)?,
                None if self.digits == 0 => return Err(ChunkedError::InvalidSize),
                None => self.after_size(b)?,
            },
            SizeWs => self.after_size(b)?,
            Extension => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkedError::MissingCrlf),
                _ => {
                    self.extension_len += 1;
                    if self.extension_len > MAX_EXTENSION_BYTES {
                        return Err(ChunkedError::ExtensionTooLong);
                    }
                    Extension
                }
            },
            SizeLf => match b {
                b'\n' if self.remaining == 0 => TrailerStart,
                b'\n' => Data,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            DataLf => match b {
                b'\n' => {
                    self.digits = 0;
                    self.extension_len = 0;
                    Size
                }
                _ => return Err(ChunkedError::MissingCrlf),
            },
            TrailerStart => match b {
                b'\r' => EndLf,
                b'\n' => return Err(ChunkedError::MissingCrlf),
                _ => self.trailer_byte(TrailerLine)?,
            },
            TrailerLine => match b {
                b'\r' => self.trailer_byte(TrailerLf)?,
                b'\n' => return Err(ChunkedError::MissingCrlf),
                _ => self.trailer_byte(TrailerLine)?,
            },
            TrailerLf => match b {
                b'\n' => self.trailer_byte(TrailerStart)?,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            EndLf => match b {
                b'\n' => Done,
                _ => return Err(ChunkedError::MissingCrlf),
            },
            Data | Done => unreachable!("decode() never steps in {:?}", self.state),
        };
        Ok(())
    }

    fn push_digit(&mut self, v: u8) -> Result<ChunkedState, ChunkedError> {
        self.digits += 1;
        if self.digits > MAX_SIZE_DIGITS {
            return Err(ChunkedError::SizeTooLarge);
        }
        self.remaining = self
            .remaining
            .checked_mul(16)
            .and_then(|r| r.checked_add(u64::from(v)))
            .ok_or(ChunkedError::SizeTooLarge)?;
        Ok(ChunkedState::Size)
    }

    /// After the size digits: BWS, then `;` extensions or the CR of the line end.
    fn after_size(&mut self, b: u8) -> Result<ChunkedState, ChunkedError> {
        match b {
            b' ' | b'\t' => Ok(ChunkedState::SizeWs),
            b';' => Ok(ChunkedState::Extension),
            b'\r' => Ok(ChunkedState::SizeLf),
            b'\n' => Err(ChunkedError::MissingCrlf),
            _ => Err(ChunkedError::InvalidSize),
        }
    }

    fn trailer_byte(&mut self, next: ChunkedState) -> Result<ChunkedState, ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_BYTES {
            return Err(ChunkedError::TrailerTooLong);
        }
        Ok(next)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
    fn sixteen_digit_size_is_accepted() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"FFFFFFFFFFFFFFFF\r\nab").unwrap(),
            Decoded::Framing(18)
        );
        assert_eq!(d.decode(b"ab").unwrap(), Decoded::Payload(2));
    }
}
