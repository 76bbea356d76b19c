//! rgate's HTTP/1.1 client side: the backend session (`Exchange`), which owns one
//! connection and follows one request's exchange on it in order —
//!
//! ```text
//! Ready ─send_head─► HeadSent ─(body relayed)─► RequestSent ─read_head─► HeadRead ─(body)─► Done
//!                                      └─ the backend stopped reading ─► RequestCut ─► HeadRead …
//! any failure ─► Broken
//! ```
//!
//! — and knows from its own phase what a failure means: whether a retry on another
//! connection is safe (`retry_is_safe`: nothing of a response arrived, and what was sent can
//! be sent again), and whether the connection may carry another request (`into_reusable`:
//! only after exactly one complete response, no byte beyond it, and keep-alive on both
//! sides). The pool (`pool`) holds only what `into_reusable` proved.
//!
//! The response head is parsed once, when it is complete, and handed to the caller there
//! (`read_head`), so the proxy writes the client's head from the same parse.
//!
//! Errors (`UpstreamError`) say where the exchange broke; each knows what the client gets
//! (503 connect, 504 response timeout, 502 the rest) and how it is counted.

pub(crate) mod pool;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::alarms::Alarms;
use crate::health::Failure;
use crate::http::gateway::ErrorCode;
use crate::http::response::{parse_response, ResponseError, ResponseHead};
use crate::http::MAX_HEADERS;
use crate::stats::ErrorKind;
use crate::wire::stream::Buffered;

/// Read buffer of a backend connection; grows for bodies, shrinks when pooled.
const BACKEND_BUFFER_BYTES: usize = 8 * 1024;

/// What went wrong talking to a backend, in the order it can happen.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// rgate itself could not open a connection (out of descriptors, ports or memory): not
    /// the instance's fault.
    Local(io::Error),
    Connect(io::Error),
    ConnectTimeout,
    /// Writing the request head or body failed.
    Send(io::Error),
    /// The backend closed (or reset) before sending any byte of a response.
    ClosedBeforeResponse,
    Read(io::Error),
    ResponseTimeout,
    Invalid(ResponseError),
}

impl UpstreamError {
    /// How the circuit breaker counts this error against the instance.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            UpstreamError::ConnectTimeout | UpstreamError::ResponseTimeout => Failure::Timeout,
            _ => Failure::Error,
        }
    }

    /// The status and error code the client gets.
    pub(crate) fn status(&self) -> (u16, ErrorCode) {
        match self {
            UpstreamError::Local(_) | UpstreamError::Connect(_) | UpstreamError::ConnectTimeout => {
                (503, ErrorCode::BackendUnavailable)
            }
            UpstreamError::ResponseTimeout => (504, ErrorCode::GatewayTimeout),
            UpstreamError::Send(_)
            | UpstreamError::ClosedBeforeResponse
            | UpstreamError::Read(_)
            | UpstreamError::Invalid(_) => (502, ErrorCode::BadGateway),
        }
    }

    /// How the failure is counted in the statistics.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::Local(_) | UpstreamError::Connect(_) | UpstreamError::ConnectTimeout => {
                ErrorKind::Connect
            }
            UpstreamError::ResponseTimeout => ErrorKind::Timeout,
            _ => ErrorKind::InvalidResponse,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Local(e) => write!(f, "rgate cannot open a connection: {e}"),
            UpstreamError::Connect(e) => write!(f, "connect failed: {e}"),
            UpstreamError::ConnectTimeout => write!(f, "connect timed out"),
            UpstreamError::Send(e) => write!(f, "sending the request failed: {e}"),
            UpstreamError::ClosedBeforeResponse => {
                write!(f, "backend closed the connection before responding")
            }
            UpstreamError::Read(e) => write!(f, "reading the response failed: {e}"),
            UpstreamError::ResponseTimeout => write!(f, "no response head in time"),
            UpstreamError::Invalid(e) => write!(f, "invalid response: {e}"),
        }
    }
}

pub(crate) struct BackendConn {
    stream: Buffered,
    /// Came from the pool: a failure before any response byte may just mean the backend
    /// closed it while idle.
    reused: bool,
}

/// A backend connection proven reusable; only the pool holds these.
pub(crate) struct ReusableConn(BackendConn);

impl ReusableConn {
    /// Whether the connection can still carry a request: the backend may have closed it (or
    /// reset it, or sent bytes nobody asked for) while it sat idle. Checked when the pool
    /// hands it out, so a backend that restarted, or closes idle connections itself, costs
    /// the client nothing even for a request that could not be retried.
    pub(crate) fn idle_state(&self) -> IdleState {
        let mut byte = [0u8; 1];
        // SAFETY: the pooled connection owns the open socket for the whole call, and an idle
        // pooled connection has no I/O in flight in the runtime.
        match unsafe { peek(self.0.stream.io.as_raw_fd(), &mut byte) } {
            Peeked::Nothing => IdleState::Quiet,
            Peeked::Closed => IdleState::Closed,
            Peeked::Bytes(_) => IdleState::StrayBytes,
        }
    }
}

/// What a pooled connection turned out to be when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleState {
    /// Nothing arrived while it was idle: it can carry a request.
    Quiet,
    /// The backend closed (or reset) it while it was idle.
    Closed,
    /// Bytes arrived that answer no request: the instance is not to be trusted with reuse.
    StrayBytes,
}

/// What a peek at a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peeked {
    /// Nothing to read yet.
    Nothing,
    /// This many unread bytes (copied, not consumed).
    Bytes(usize),
    /// The peer closed or reset the connection.
    Closed,
}

/// Looks at what the peer of socket `fd` has sent and nobody has read, by one non-blocking
/// peek into `buf`. (No safe API peeks without blocking on a monoio stream.)
///
/// # Safety
/// `fd` must be an open socket for the whole call, with no read of it in flight: MSG_PEEK
/// leaves any data where it is, MSG_DONTWAIT returns at once whatever the socket's mode, and
/// `buf` is ours.
unsafe fn peek(fd: RawFd, buf: &mut [u8]) -> Peeked {
    let n = libc::recv(
        fd,
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_PEEK | libc::MSG_DONTWAIT,
    );
    match n {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Bytes(n as usize),
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Peeked::Nothing,
        _ => Peeked::Closed,
    }
}

/// `HTTP/1.1 200`: enough of a status line to tell an interim response from a final one.
const STATUS_LINE_PREFIX: usize = 12;

/// Tells, while a request body is being written, whether the backend has answered already
/// with a final response (or closed): then the rest of the body is not relayed
/// (`wire::body::IdleLimit`). An interim (1xx) head is not an answer: the body goes on.
#[derive(Clone, Copy)]
pub(crate) struct AnswerProbe(RawFd);

impl AnswerProbe {
    pub(crate) fn answered(self) -> bool {
        let mut start = [0u8; STATUS_LINE_PREFIX];
        // SAFETY: made by `Exchange::answer_probe` for its own socket and used only while
        // that exchange writes the request body (`proxy::exchange::send_request`): the
        // socket is open, and nothing reads it until the body is done.
        match unsafe { peek(self.0, &mut start) } {
            Peeked::Nothing => false,
            Peeked::Closed => true,
            // Too little to tell yet: asked again before the next read of body.
            Peeked::Bytes(n) if n < STATUS_LINE_PREFIX => false,
            Peeked::Bytes(_) => start[9] != b'1',
        }
    }
}

impl BackendConn {
    pub(crate) async fn connect(
        addr: SocketAddr,
        alarms: &Alarms,
        timeout: Duration,
    ) -> Result<BackendConn, UpstreamError> {
        let stream = match alarms
            .timeout_in(timeout, TcpStream::connect_addr(addr))
            .await
        {
            Err(_) => return Err(UpstreamError::ConnectTimeout),
            Ok(Err(e)) if is_local(&e) => return Err(UpstreamError::Local(e)),
            Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        Ok(BackendConn {
            stream: Buffered::new(stream, BACKEND_BUFFER_BYTES),
            reused: false,
        })
    }

    pub(crate) fn from_pool(conn: ReusableConn) -> BackendConn {
        let mut conn = conn.0;
        conn.reused = true;
        conn
    }
}

/// Where an exchange stands; see the module's diagram. A failure leaves the phase where it
/// was: the error says what happened, and only `Done` can make the connection reusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected, or taken from the pool: nothing sent yet.
    Ready,
    /// The request head was written; its body is next.
    HeadSent,
    /// Some of the request body may have been written.
    BodyStarted,
    /// The whole request was written.
    RequestSent,
    /// The backend stopped reading the body before its end (it may answer early, e.g. 413).
    RequestCut,
    /// A final response head was read (and handed to the caller).
    HeadRead { request_whole: bool },
    /// The response body ended where its framing said.
    Done { request_whole: bool },
}

/// One request's exchange on one backend connection (see the module's doc).
pub(crate) struct Exchange {
    conn: BackendConn,
    phase: Phase,
    /// Some byte of a response (interim ones included) arrived.
    response_started: bool,
    /// The backend said it keeps the connection after the final response.
    backend_keeps_alive: bool,
    /// The request has a body (a fact of the request, set with its head).
    has_body: bool,
}

impl Exchange {
    pub(crate) fn new(conn: BackendConn) -> Exchange {
        Exchange {
            conn,
            phase: Phase::Ready,
            response_started: false,
            backend_keeps_alive: false,
            has_body: false,
        }
    }

    /// The backend connection's buffered stream (bodies are relayed from and to it).
    pub(crate) fn stream(&mut self) -> &mut Buffered {
        &mut self.conn.stream
    }

    /// Sends the request head and gives it back unchanged: a retry sends it again.
    /// `has_body`: a body follows (relayed by the caller between `body_started` and
    /// `request_sent`/`request_cut`).
    pub(crate) async fn send_head(
        &mut self,
        head: Vec<u8>,
        has_body: bool,
    ) -> (Result<(), UpstreamError>, Vec<u8>) {
        self.has_body = has_body;
        let (res, head) = self.conn.stream.io.write_all(head).await;
        if res.is_ok() {
            self.phase = if has_body {
                Phase::HeadSent
            } else {
                Phase::RequestSent
            };
        }
        (res.map(|_| ()).map_err(UpstreamError::Send), head)
    }

    /// A probe of whether the backend answered while the body is being written.
    pub(crate) fn answer_probe(&self) -> AnswerProbe {
        AnswerProbe(self.conn.stream.io.as_raw_fd())
    }

    /// The request body is about to be relayed.
    pub(crate) fn body_started(&mut self) {
        self.phase = Phase::BodyStarted;
    }

    /// The request body was written whole.
    pub(crate) fn request_sent(&mut self) {
        self.phase = Phase::RequestSent;
    }

    /// Writing the body failed on the backend's side: it stopped reading, and may have
    /// answered already. The response is still read; the connection will not be reused.
    pub(crate) fn request_cut(&mut self) {
        self.phase = Phase::RequestCut;
    }

    /// Whether the request (head and body) was written whole.
    pub(crate) fn request_whole(&self) -> bool {
        matches!(
            self.phase,
            Phase::RequestSent
                | Phase::HeadRead {
                    request_whole: true
                }
                | Phase::Done {
                    request_whole: true
                }
        )
    }

    /// Whether `error` may be answered by sending the same request on another connection:
    /// only on a connection that came from the pool (the backend may have closed it while it
    /// was idle), before any byte of a response, and when no byte of a body left — a body
    /// read from the client cannot be sent again.
    pub(crate) fn retry_is_safe(&self, error: &UpstreamError) -> bool {
        let lost_before_response = matches!(
            error,
            UpstreamError::Send(_) | UpstreamError::ClosedBeforeResponse
        ) && !self.response_started;
        let body_untouched = !self.has_body || matches!(self.phase, Phase::Ready | Phase::HeadSent);
        self.conn.reused && lost_before_response && body_untouched
    }

    /// Whether the request may go to another instance after `error` on this one: nothing of
    /// a response arrived, no byte of a body left (a body read from the client cannot be
    /// sent again), and the method is `idempotent` (the instance may have acted on it; an
    /// idempotent request acted on twice is as acted on once). A connect failure, where
    /// nothing was sent, is always safe and never reaches an exchange.
    pub(crate) fn retry_elsewhere_is_safe(&self, error: &UpstreamError, idempotent: bool) -> bool {
        let before_response = matches!(
            error,
            UpstreamError::Send(_)
                | UpstreamError::ClosedBeforeResponse
                | UpstreamError::ResponseTimeout
                | UpstreamError::Read(_)
        ) && !self.response_started;
        let body_untouched = !self.has_body || matches!(self.phase, Phase::Ready | Phase::HeadSent);
        idempotent && before_response && body_untouched
    }

    /// Waits until a complete, valid response head is buffered and hands it to `on_head`
    /// — the one parse of it — then consumes it. `request_is_head` decides the framing of
    /// the response (a reply to HEAD has no body). Returns what `on_head` returned.
    pub(crate) async fn read_head<R>(
        &mut self,
        alarms: &Alarms,
        timeout: Duration,
        request_is_head: bool,
        mut on_head: impl FnMut(&ResponseHead<'_, '_>) -> R,
    ) -> Result<R, UpstreamError> {
        let deadline = alarms.deadline_in(timeout);
        let stream = &mut self.conn.stream;
        loop {
            if !stream.data().is_empty() {
                self.response_started = true;
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match parse_response(stream.data(), &mut storage, request_is_head) {
                    Ok(Some(head)) => {
                        let out = on_head(&head);
                        let (len, keeps_alive, interim) =
                            (head.head_len, head.backend_keeps_alive(), head.is_interim());
                        stream.consume(len);
                        if !interim {
                            self.backend_keeps_alive = keeps_alive;
                            self.phase = Phase::HeadRead {
                                request_whole: self.request_whole(),
                            };
                        }
                        return Ok(out);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(UpstreamError::Invalid(e)),
                }
            }
            let had_bytes = !stream.data().is_empty();
            let err = match alarms
                .timeout(deadline, stream.fill(BACKEND_BUFFER_BYTES))
                .await
            {
                Ok(Ok(n)) if n > 0 => continue,
                Err(_) => UpstreamError::ResponseTimeout,
                Ok(Ok(_)) if had_bytes => UpstreamError::Invalid(ResponseError::Malformed(
                    "connection closed inside the response head",
                )),
                Ok(Ok(_)) => UpstreamError::ClosedBeforeResponse,
                Ok(Err(e)) if had_bytes => UpstreamError::Read(e),
                Ok(Err(e)) if is_reset(&e) => UpstreamError::ClosedBeforeResponse,
                Ok(Err(e)) => UpstreamError::Read(e),
            };
            return Err(err);
        }
    }

    /// The response body was relayed to the end of its framing.
    pub(crate) fn response_done(&mut self) {
        if let Phase::HeadRead { request_whole } = self.phase {
            self.phase = Phase::Done { request_whole };
        }
    }

    /// Whether the backend sent bytes beyond the response this exchange read whole: then it
    /// is not to be trusted with reuse (`pool::IdlePool::distrust`).
    pub(crate) fn sent_stray_bytes(&mut self) -> bool {
        matches!(self.phase, Phase::Done { .. }) && !self.conn.stream.data().is_empty()
    }

    /// The connection, if this exchange proved it can carry another request: the request
    /// went whole, exactly one response was read to its end and nothing beyond it, and the
    /// backend keeps the connection.
    pub(crate) fn into_reusable(mut self) -> Option<ReusableConn> {
        let clean = self.phase
            == (Phase::Done {
                request_whole: true,
            })
            && self.backend_keeps_alive
            // Bytes past the response are a response to nothing: never reuse.
            && self.conn.stream.data().is_empty();
        if clean {
            self.conn.stream.shrink_when_idle();
            Some(ReusableConn(self.conn))
        } else {
            None
        }
    }

    /// The connection itself, for a tunnel after `101 Switching Protocols`.
    pub(crate) fn into_tunnel(self) -> Buffered {
        self.conn.stream
    }
}

/// Errors of a connect that say rgate is out of something itself (descriptors, ephemeral
/// ports, buffers, memory), whatever the instance.
fn is_local(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// Errors that mean "the peer closed the connection", as opposed to a local failure.
pub(crate) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests;
