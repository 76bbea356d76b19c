//! Streaming a message body from one connection to the other, in whatever framing it has,
//! through a bounded buffer: the body is never held whole. Used both ways (client →
//! backend for requests, backend → client for responses). A length-delimited body is
//! forwarded byte for byte (its length was written by rgate in the head); a chunked one is
//! re-framed (`http::chunked::Reframer`) or de-chunked, never forwarded as it came.

use std::fmt;
use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::alarms::Alarms;
use crate::http::chunked::{ChunkedDecoder, ChunkedError, Decoded, Reframer};
use crate::http::framing::BodyFraming;
use crate::http::trailers;
use crate::wire::stream::{write_all, Buffered, BODY_READ_BYTES};

/// How a chunked body is written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedRelay {
    /// Forwarded chunked, in chunks rgate frames itself (`Reframer`).
    Reframe,
    /// Payload only: the receiver is told the end by the connection closing (HTTP/1.0).
    Dechunk,
}

/// Where a body relay failed. The side matters: it decides who is told what.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// The sending side closed before the body was complete.
    SourceClosed,
    SourceIo(io::Error),
    /// The sending side was silent for longer than the body idle timeout.
    SourceTimeout,
    /// The sending side sent slower than the minimum rate (`Pace`).
    SourceTooSlow,
    /// The chunked framing was invalid.
    Chunked(ChunkedError),
    /// The receiving side could not be written to.
    DestinationIo(io::Error),
    /// The receiving side took nothing for longer than the write limit.
    DestinationTimeout,
    /// The receiving side answered before the body was complete (a backend's early 413):
    /// the rest of the body is not relayed.
    ReceiverAnswered,
    /// A chunked body's payload grew past this limit (`IdleLimit::max_payload`); the chunk
    /// that crossed it was not relayed.
    TooLarge(u64),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::SourceClosed => write!(f, "closed before the body was complete"),
            RelayError::SourceIo(e) => write!(f, "read failed: {e}"),
            RelayError::SourceTimeout => write!(f, "silent longer than the body idle timeout"),
            RelayError::SourceTooSlow => write!(f, "slower than the minimum body rate"),
            RelayError::TooLarge(limit) => write!(f, "payload over the limit of {limit} bytes"),
            RelayError::Chunked(e) => write!(f, "{e}"),
            RelayError::DestinationIo(e) => write!(f, "write failed: {e}"),
            RelayError::DestinationTimeout => write!(f, "the receiver read nothing in time"),
            RelayError::ReceiverAnswered => write!(f, "the receiver answered before the end"),
        }
    }
}

/// Relays one body of `framing` from `src` to `dst`. Returns the bytes written to `dst`.
/// On success, `src` holds exactly the bytes that followed the body.
///
/// `before_last_write(total)` runs once, just before the write that lets the receiver see
/// the body is complete (`total` = all body bytes written once it is done): the proxy counts
/// the request there. For bodies that end by closing, that is after the last write.
pub(crate) async fn relay_body<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    framing: BodyFraming,
    chunked: ChunkedRelay,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    match framing {
        BodyFraming::None => {
            before_last_write(0);
            Ok(0)
        }
        BodyFraming::Length(n) => relay_length(src, dst, n, idle, before_last_write).await,
        BodyFraming::Chunked => relay_chunked(src, dst, chunked, idle, before_last_write).await,
        BodyFraming::UntilClose => {
            let n = relay_until_close(src, dst, idle).await?;
            before_last_write(n);
            Ok(n)
        }
    }
}

/// How long a body's sender may stay silent and its receiver may take nothing, on the
/// core's alarm clock; the sender's minimum rate; and, for a request body, how to tell that
/// the backend answered already (asked before each read of more body, so an early answer
/// stops the upload within one read).
#[derive(Clone, Copy)]
pub(crate) struct IdleLimit<'a> {
    pub(crate) alarms: &'a Alarms,
    pub(crate) limit: Duration,
    /// The longest a write may wait for the receiver to take bytes.
    pub(crate) write_limit: Duration,
    /// Bytes per second the sender must keep up over each `RATE_WINDOW_SECONDS` (0: any).
    pub(crate) min_rate: u64,
    pub(crate) receiver_answered: Option<&'a dyn Fn() -> bool>,
    /// The most payload a chunked body may carry (a Content-Length body is checked before
    /// it is relayed).
    pub(crate) max_payload: Option<u64>,
}

/// The window over which a body's rate is measured: short bursts and pauses even out.
pub(crate) const RATE_WINDOW_SECONDS: u64 = 10;

/// A body's pace against `IdleLimit::min_rate`, window by window. Only the time spent
/// waiting for the sender counts: time blocked writing to a slow receiver is the receiver's.
struct Pace {
    window_start: u64,
    bytes: u64,
    /// When the last read ended (what lies between it and the next is writing).
    read_ended: u64,
}

impl Pace {
    fn new(idle: IdleLimit<'_>) -> Pace {
        let now = idle.alarms.seconds();
        Pace {
            window_start: now,
            bytes: 0,
            read_ended: now,
        }
    }

    /// A read is about to wait for the sender: the window skips the time spent writing.
    fn reading(&mut self, idle: IdleLimit<'_>) {
        let now = idle.alarms.seconds();
        self.window_start += now.saturating_sub(self.read_ended);
    }

    /// `n` more bytes arrived; an error once a whole window passed below the rate.
    fn arrived(&mut self, n: usize, idle: IdleLimit<'_>) -> Result<(), RelayError> {
        let now = idle.alarms.seconds();
        self.read_ended = now;
        if idle.min_rate == 0 {
            return Ok(());
        }
        self.bytes += n as u64;
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed < RATE_WINDOW_SECONDS {
            return Ok(());
        }
        if self.bytes < idle.min_rate.saturating_mul(elapsed) {
            return Err(RelayError::SourceTooSlow);
        }
        self.window_start = now;
        self.bytes = 0;
        Ok(())
    }
}

/// Reads more into `src`; a clean close is `Ok(0)`.
async fn fill<S: AsyncReadRent>(
    src: &mut Buffered<S>,
    idle: IdleLimit<'_>,
    pace: &mut Pace,
) -> Result<usize, RelayError> {
    if idle.receiver_answered.is_some_and(|answered| answered()) {
        return Err(RelayError::ReceiverAnswered);
    }
    pace.reading(idle);
    match idle
        .alarms
        .timeout_in(idle.limit, src.fill(BODY_READ_BYTES))
        .await
    {
        Err(_) => Err(RelayError::SourceTimeout),
        Ok(Err(e)) => Err(RelayError::SourceIo(e)),
        Ok(Ok(n)) => {
            pace.arrived(n, idle)?;
            Ok(n)
        }
    }
}

async fn forward<S, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    n: usize,
    dst: &mut W,
    idle: IdleLimit<'_>,
) -> Result<(), RelayError> {
    match idle
        .alarms
        .timeout_in(idle.write_limit, src.forward_to(n, dst))
        .await
    {
        Err(_) => Err(RelayError::DestinationTimeout),
        Ok(res) => res.map_err(RelayError::DestinationIo),
    }
}

async fn relay_length<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    length: u64,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    let mut pace = Pace::new(idle);
    let mut remaining = length;
    while remaining > 0 {
        if src.data().is_empty() && fill(src, idle, &mut pace).await? == 0 {
            return Err(RelayError::SourceClosed);
        }
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(src.data().len());
        if n as u64 == remaining {
            before_last_write(length);
        }
        forward(src, n, dst, idle).await?;
        remaining -= n as u64;
    }
    Ok(length)
}

async fn relay_chunked<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    mode: ChunkedRelay,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    match mode {
        ChunkedRelay::Reframe => reframe_chunked(src, dst, idle, before_last_write).await,
        ChunkedRelay::Dechunk => dechunk(src, dst, idle, before_last_write).await,
    }
}

/// Re-frames as far as the buffered data goes, then writes that in one write.
async fn reframe_chunked<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    let mut pace = Pace::new(idle);
    let mut reframer = Reframer::new();
    let mut out = Vec::new();
    let mut written = 0u64;
    while !reframer.is_done() {
        if src.data().is_empty() && fill(src, idle, &mut pace).await? == 0 {
            return Err(RelayError::SourceClosed);
        }
        let used = reframer
            .feed(src.data(), &mut out)
            .map_err(RelayError::Chunked)?;
        src.consume(used);
        if let Some(limit) = idle.max_payload.filter(|&l| reframer.payload_bytes() > l) {
            return Err(RelayError::TooLarge(limit));
        }
        if out.is_empty() {
            continue;
        }
        let n = out.len() as u64;
        if reframer.is_done() {
            before_last_write(written + n);
        }
        let (res, buf) = match idle
            .alarms
            .timeout_in(idle.write_limit, write_all(dst, out))
            .await
        {
            Ok(written) => written,
            Err(_) => return Err(RelayError::DestinationTimeout),
        };
        out = buf;
        res.map_err(RelayError::DestinationIo)?;
        written += n;
    }
    Ok(written)
}

/// Payload only, straight out of the read buffer; the receiver learns the end when the
/// connection closes, after this.
async fn dechunk<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    let mut pace = Pace::new(idle);
    let mut decoder = ChunkedDecoder::new();
    let mut written = 0u64;
    while !decoder.is_done() {
        if src.data().is_empty() && fill(src, idle, &mut pace).await? == 0 {
            return Err(RelayError::SourceClosed);
        }
        match decoder.decode(src.data()).map_err(RelayError::Chunked)? {
            Decoded::Framing(n) => src.consume(n),
            Decoded::Payload(n) => {
                forward(src, n, dst, idle).await?;
                written += n as u64;
            }
        }
    }
    // The trailer is dropped, but a malformed one still means a malformed message.
    trailers::write_allowed(decoder.trailer_section(), &mut Vec::new())
        .map_err(|e| RelayError::Chunked(ChunkedError::Trailer(e)))?;
    before_last_write(written);
    Ok(written)
}

async fn relay_until_close<S: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut Buffered<S>,
    dst: &mut W,
    idle: IdleLimit<'_>,
) -> Result<u64, RelayError> {
    let mut pace = Pace::new(idle);
    let mut written = 0u64;
    loop {
        if src.data().is_empty() && fill(src, idle, &mut pace).await? == 0 {
            return Ok(written);
        }
        let n = src.data().len();
        forward(src, n, dst, idle).await?;
        written += n as u64;
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
