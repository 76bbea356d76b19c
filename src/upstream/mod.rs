//! rgate's HTTP/1.1 client side: one connection to a backend, followed through the
//! exchange in order — connect (or come from the pool), send the head, (the body is relayed
//! by `body`), wait for the response head, and finally `into_reusable` — which hands the
//! connection back to the pool only on proof that the exchange ended cleanly.

pub(crate) mod pool;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::alarms::Alarms;
use crate::http::gateway::ErrorCode;
use crate::http::response::{parse_response, ResponseError};
use crate::http::MAX_HEADERS;
use crate::wire::stream::Buffered;

/// Read buffer of a backend connection; grows for bodies, shrinks when pooled.
const BACKEND_BUFFER_BYTES: usize = 8 * 1024;

/// What went wrong talking to a backend, in the order it can happen.
#[derive(Debug)]
pub(crate) enum UpstreamError {
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
    /// The status and error code the client gets.
    pub(crate) fn status(&self) -> (u16, ErrorCode) {
        match self {
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout => {
                (503, ErrorCode::BackendUnavailable)
            }
            UpstreamError::ResponseTimeout => (504, ErrorCode::GatewayTimeout),
            UpstreamError::Send(_)
            | UpstreamError::ClosedBeforeResponse
            | UpstreamError::Read(_)
            | UpstreamError::Invalid(_) => (502, ErrorCode::BadGateway),
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
    pub(crate) stream: Buffered,
    /// Came from the pool: a failure before any response byte may just mean the backend
    /// closed it while idle.
    pub(crate) reused: bool,
}

/// A backend connection proven reusable; only the pool holds these.
pub(crate) struct ReusableConn(BackendConn);

impl ReusableConn {
    /// Whether the connection can no longer carry a request: the backend closed it (or
    /// reset it, or sent bytes nobody asked for) while it sat idle. Checked when the pool
    /// hands it out, so a backend that restarted, or closes idle connections itself, costs
    /// the client nothing even for a request that could not be retried.
    pub(crate) fn is_stale(&self) -> bool {
        let fd = self.0.stream.io.as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: `fd` is the open socket `self` owns for the whole call; the buffer is one
        // valid, writable byte. MSG_PEEK leaves any data where it is and MSG_DONTWAIT
        // returns at once whatever the socket's mode. An idle pooled connection has no I/O
        // in flight in the runtime, so this read races with nothing. (No safe API peeks
        // without blocking on a monoio stream.)
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }
}

/// How an exchange on a backend connection ended, as the proxy observed it.
pub(crate) struct ExchangeEnd {
    pub(crate) request_complete: bool,
    pub(crate) response_complete: bool,
    pub(crate) backend_keeps_alive: bool,
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

    /// Sends the request head and gives it back unchanged: a retry sends it again.
    pub(crate) async fn send_head(
        &mut self,
        head: Vec<u8>,
    ) -> (Result<(), UpstreamError>, Vec<u8>) {
        let (res, head) = self.stream.io.write_all(head).await;
        (res.map(|_| ()).map_err(UpstreamError::Send), head)
    }

    /// Waits until a complete, valid response head is buffered, and returns its status.
    /// `request_is_head` decides the framing of the response (a reply to HEAD has no body).
    pub(crate) async fn wait_for_head(
        &mut self,
        alarms: &Alarms,
        timeout: Duration,
        request_is_head: bool,
    ) -> Result<u16, UpstreamError> {
        let deadline = alarms.deadline_in(timeout);
        loop {
            if !self.stream.data().is_empty() {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match parse_response(self.stream.data(), &mut storage, request_is_head) {
                    Ok(Some(head)) => return Ok(head.status),
                    Ok(None) => {}
                    Err(e) => return Err(UpstreamError::Invalid(e)),
                }
            }
            let had_bytes = !self.stream.data().is_empty();
            match alarms
                .timeout(deadline, self.stream.fill(BACKEND_BUFFER_BYTES))
                .await
            {
                Err(_) => return Err(UpstreamError::ResponseTimeout),
                Ok(Ok(0)) if had_bytes => {
                    return Err(UpstreamError::Invalid(ResponseError::Malformed(
                        "connection closed inside the response head",
                    )))
                }
                Ok(Ok(0)) => return Err(UpstreamError::ClosedBeforeResponse),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if had_bytes => return Err(UpstreamError::Read(e)),
                Ok(Err(e)) if is_reset(&e) => return Err(UpstreamError::ClosedBeforeResponse),
                Ok(Err(e)) => return Err(UpstreamError::Read(e)),
            }
        }
    }

    /// The connection, if the exchange on it ended cleanly enough to send another request.
    pub(crate) fn into_reusable(mut self, end: ExchangeEnd) -> Option<ReusableConn> {
        let clean = end.request_complete
            && end.response_complete
            && end.backend_keeps_alive
            // Bytes past the response are a protocol violation: never reuse.
            && self.stream.data().is_empty();
        if clean {
            self.stream.shrink_when_idle();
            Some(ReusableConn(self))
        } else {
            None
        }
    }
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
