//! Streaming a message body from one connection to the other, in whatever framing it has,
//! through a bounded buffer: the body is never held whole. Used both ways (client →
//! backend for requests, backend → client for responses).

use std::fmt;
use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

use super::stream::{Buffered, BODY_READ_BYTES};
use crate::core::Alarms;
use crate::http::chunked::{ChunkedDecoder, ChunkedError, Decoded};
use crate::http::framing::BodyFraming;

/// How a chunked body is written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedRelay {
    /// Validated and forwarded as chunked, byte for byte.
    PassThrough,
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
    /// The chunked framing was invalid.
    Chunked(ChunkedError),
    /// The receiving side could not be written to.
    DestinationIo(io::Error),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::SourceClosed => write!(f, "closed before the body was complete"),
            RelayError::SourceIo(e) => write!(f, "read failed: {e}"),
            RelayError::SourceTimeout => write!(f, "silent longer than the body idle timeout"),
            RelayError::Chunked(e) => write!(f, "{e}"),
            RelayError::DestinationIo(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// Relays one body of `framing` from `src` to `dst`. Returns the bytes written to `dst`.
/// On success, `src` holds exactly the bytes that followed the body.
///
/// `before_last_write(total)` runs once, just before the write that lets the receiver see
/// the body is complete (`total` = all body bytes written once it is done): the proxy counts
/// the request there. For bodies that end by closing, that is after the last write.
pub(crate) async fn relay_body(
    src: &mut Buffered,
    dst: &mut TcpStream,
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

/// How long a body's sender may stay silent, on the core's alarm clock.
#[derive(Clone, Copy)]
pub(crate) struct IdleLimit<'a> {
    pub(crate) alarms: &'a Alarms,
    pub(crate) limit: Duration,
}

/// Reads more into `src`; a clean close is `Ok(0)`.
async fn fill(src: &mut Buffered, idle: IdleLimit<'_>) -> Result<usize, RelayError> {
    match idle
        .alarms
        .timeout_in(idle.limit, src.fill(BODY_READ_BYTES))
        .await
    {
        Err(_) => Err(RelayError::SourceTimeout),
        Ok(Err(e)) => Err(RelayError::SourceIo(e)),
        Ok(Ok(n)) => Ok(n),
    }
}

async fn forward(src: &mut Buffered, n: usize, dst: &mut TcpStream) -> Result<(), RelayError> {
    src.forward_to(n, dst)
        .await
        .map_err(RelayError::DestinationIo)
}

async fn relay_length(
    src: &mut Buffered,
    dst: &mut TcpStream,
    length: u64,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    let mut remaining = length;
    while remaining > 0 {
        if src.data().is_empty() && fill(src, idle).await? == 0 {
            return Err(RelayError::SourceClosed);
        }
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(src.data().len());
        if n as u64 == remaining {
            before_last_write(length);
        }
        forward(src, n, dst).await?;
        remaining -= n as u64;
    }
    Ok(length)
}

async fn relay_chunked(
    src: &mut Buffered,
    dst: &mut TcpStream,
    mode: ChunkedRelay,
    idle: IdleLimit<'_>,
    before_last_write: &mut dyn FnMut(u64),
) -> Result<u64, RelayError> {
    let mut decoder = ChunkedDecoder::new();
    let mut written = 0u64;
    while !decoder.is_done() {
        if src.data().is_empty() && fill(src, idle).await? == 0 {
            return Err(RelayError::SourceClosed);
        }
        match mode {
            ChunkedRelay::PassThrough => {
                // Validate as far as the data goes, then forward it all in one write.
                let mut span = 0;
                while span < src.data().len() && !decoder.is_done() {
                    match decoder
                        .decode(&src.data()[span..])
                        .map_err(RelayError::Chunked)?
                    {
                        Decoded::Framing(n) | Decoded::Payload(n) => span += n,
                    }
                }
                if decoder.is_done() {
                    before_last_write(written + span as u64);
                }
                forward(src, span, dst).await?;
                written += span as u64;
            }
            ChunkedRelay::Dechunk => {
                match decoder.decode(src.data()).map_err(RelayError::Chunked)? {
                    Decoded::Framing(n) => src.consume(n),
                    Decoded::Payload(n) => {
                        forward(src, n, dst).await?;
                        written += n as u64;
                    }
                }
            }
        }
    }
    if mode == ChunkedRelay::Dechunk {
        // The receiver learns the end when the connection closes, after this.
        before_last_write(written);
    }
    Ok(written)
}

async fn relay_until_close(
    src: &mut Buffered,
    dst: &mut TcpStream,
    idle: IdleLimit<'_>,
) -> Result<u64, RelayError> {
    let mut written = 0u64;
    loop {
        if src.data().is_empty() && fill(src, idle).await? == 0 {
            return Ok(written);
        }
        let n = src.data().len();
        forward(src, n, dst).await?;
        written += n as u64;
    }
}
