//! The chunked transfer coding (RFC 9112 §7.1) as a byte-at-a-time state machine, and the
//! `Reframer` that writes a chunked body anew.
//!
//! The decoder never copies payload: each call consumes a prefix of the input and says
//! whether that prefix was framing (size lines, CRLFs, trailers) or payload; it keeps only
//! the trailer section (bounded), for `trailers` to check. It is strict: bare LF, a missing
//! CRLF after data, whitespace not followed by an extension, control bytes in extensions,
//! an oversized chunk size or over-long extensions and trailers are errors, because a
//! lenient decoder in a proxy is how request smuggling starts.
//!
//! The decoder proves where the message ends, so nothing past it is ever forwarded as body.
//! What is forwarded is never the sender's framing: a body relayed chunked goes through the
//! `Reframer`, which writes each chunk's size line itself (no extensions), the payload, and a
//! last chunk with only the trailer fields that may pass. A body de-chunked for an HTTP/1.0
//! client is the payload alone.

use std::fmt;

use super::trailers::{self, TrailerError};

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
    /// After the digits: whitespace, which must lead to `;` (BWS before an extension).
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
    /// A control byte inside a chunk extension.
    InvalidExtension,
    /// A trailer line that is not a field line.
    Trailer(TrailerError),
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::InvalidSize => "invalid chunk size",
            ChunkedError::SizeTooLarge => "chunk size too large",
            ChunkedError::ExtensionTooLong => "chunk extension too long",
            ChunkedError::MissingCrlf => "missing CRLF in chunked framing",
            ChunkedError::TrailerTooLong => "trailer section too long",
            ChunkedError::InvalidExtension => "control character in a chunk extension",
            ChunkedError::Trailer(TrailerError::InvalidName) => "invalid trailer field name",
            ChunkedError::Trailer(TrailerError::InvalidValue) => "invalid trailer field value",
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
    /// The trailer field lines, each with its CRLF (empty for most bodies: no allocation).
    trailer: Vec<u8>,
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
            trailer: Vec::new(),
        }
    }

    /// The trailer field lines read so far, each ending with CRLF.
    pub fn trailer_section(&self) -> &[u8] {
        &self.trailer
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
            SizeWs => match b {
                b' ' | b'\t' => SizeWs,
                b';' => Extension,
                _ => return Err(ChunkedError::InvalidSize),
            },
            Extension => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkedError::MissingCrlf),
                // Stripped when re-framed, but a control byte here means the sender's idea
                // of where the line ends may differ from rgate's.
                0..=0x08 | 0x0a..=0x1f | 0x7f => return Err(ChunkedError::InvalidExtension),
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
                _ => self.trailer_byte(b, TrailerLine)?,
            },
            TrailerLine => match b {
                b'\r' => self.trailer_byte(b, TrailerLf)?,
                b'\n' => return Err(ChunkedError::MissingCrlf),
                _ => self.trailer_byte(b, TrailerLine)?,
            },
            TrailerLf => match b {
                b'\n' => self.trailer_byte(b, TrailerStart)?,
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

    fn trailer_byte(&mut self, b: u8, next: ChunkedState) -> Result<ChunkedState, ChunkedError> {
        if self.trailer.len() >= MAX_TRAILER_BYTES {
            return Err(ChunkedError::TrailerTooLong);
        }
        self.trailer.push(b);
        Ok(next)
    }
}

/// Re-frames a chunked body as it streams: consumes the sender's chunked bytes and appends
/// the same payload in chunks whose framing rgate writes itself — size lines without
/// extensions, and a last chunk carrying only the trailer fields that may pass
/// (`trailers::write_allowed`). Chunk boundaries may differ from the sender's; the payload
/// does not.
#[derive(Debug, Default)]
pub struct Reframer {
    decoder: ChunkedDecoder,
    /// The last chunk and trailer section have been written.
    finished: bool,
    /// Payload bytes consumed so far.
    payload: u64,
}

impl Reframer {
    pub fn new() -> Reframer {
        Reframer::default()
    }

    /// True once the whole body was read and its end written.
    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// Payload bytes consumed so far.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Consumes the prefix of `input` that belongs to the body (all of it, unless the body
    /// ends inside it) and appends the re-framed bytes to `out`; returns how much was
    /// consumed. On an error, `out` may hold a partial chunk: the message is to be cut.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut at = 0;
        while at < input.len() && !self.decoder.is_done() {
            match self.decoder.decode(&input[at..])? {
                Decoded::Payload(n) => {
                    write_chunk(out, &input[at..at + n]);
                    self.payload += n as u64;
                    at += n;
                }
                Decoded::Framing(n) => at += n,
            }
        }
        if self.decoder.is_done() && !self.finished {
            out.extend_from_slice(b"0\r\n");
            trailers::write_allowed(self.decoder.trailer_section(), out)
                .map_err(ChunkedError::Trailer)?;
            out.extend_from_slice(b"\r\n");
            self.finished = true;
        }
        Ok(at)
    }
}

/// Appends one chunk of `payload` (not empty: an empty chunk would end the body).
fn write_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(!payload.is_empty());
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = payload.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.reserve(digits.len() - at + payload.len() + 4);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
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
#[path = "chunked_tests.rs"]
mod tests;
