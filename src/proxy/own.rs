//! Responses rgate makes itself — its errors in the one JSON shape, the default response,
//! `/stats` and `/metrics` — and what becomes of the connection after one: kept when the
//! request's body was read (or is small enough to read and drop now), closed otherwise.

use std::io;

use super::decide::RequestInfo;
use super::record::RequestRecorder;
use super::{ClientConn, Next};
use crate::http::framing::BodyFraming;
use crate::http::gateway::{self, ErrorCode, Reply};
use crate::http::Version;
use crate::wire::stream::write_all;

/// A request body up to this size is read and dropped when rgate answers the request
/// itself, so the connection can stay open; a bigger one closes the connection instead.
const MAX_DISCARDED_BODY: u64 = 64 * 1024;

impl ClientConn {
    /// Answers a request rgate handles itself with `reply` (its version, persistence and
    /// HEAD-ness are set here, from the request). The connection is kept when the request
    /// body was already consumed (`body_consumed`) or could be read and dropped now.
    pub(super) async fn answer(
        &mut self,
        info: &RequestInfo,
        mut reply: Reply<'_>,
        body_consumed: bool,
        rec: &mut RequestRecorder,
    ) -> Next {
        let body_read = body_consumed
            || match info.framing {
                BodyFraming::None => true,
                BodyFraming::Length(n) if n <= MAX_DISCARDED_BODY && !info.expect_continue => {
                    self.discard(n).await
                }
                _ => false,
            };
        let keep_alive = body_read && info.keep_alive && !self.core.alarms.is_draining();
        reply.version = info.version;
        reply.keep_alive = keep_alive;
        reply.head_only = info.is_head;
        match (self.send_own(reply, rec).await, keep_alive, body_read) {
            (false, ..) => Next::Abort,
            (true, true, _) => Next::KeepAlive,
            (true, false, true) => Next::Close,
            (true, false, false) => Next::Linger,
        }
    }

    pub(super) async fn answer_error(
        &mut self,
        info: &RequestInfo,
        status: u16,
        code: ErrorCode,
        message: &str,
        body_consumed: bool,
        rec: &mut RequestRecorder,
    ) -> Next {
        let body = gateway::error_body(status, code, message, &rec.id);
        let reply = Reply {
            retry_after: code.retry_after(),
            ..Reply::of(status, "application/json", &body)
        };
        self.answer(info, reply, body_consumed, rec).await
    }

    /// Sends an error response on a connection that closes after it.
    pub(super) async fn reply_error(
        &mut self,
        status: u16,
        code: ErrorCode,
        message: &str,
        version: Version,
        head_only: bool,
        rec: &mut RequestRecorder,
    ) {
        let body = gateway::error_body(status, code, message, &rec.id);
        let reply = Reply {
            request_id: None,
            status,
            content_type: "application/json",
            body: &body,
            version,
            keep_alive: false,
            head_only,
            retry_after: code.retry_after(),
            vary: None,
        };
        self.send_own(reply, rec).await;
    }

    /// Writes a response rgate made, counting the request first. False if the client is gone.
    async fn send_own(&mut self, reply: Reply<'_>, rec: &mut RequestRecorder) -> bool {
        super::fresh_head(&mut self.out);
        let id = rec.id;
        let reply = Reply {
            request_id: Some(&id),
            ..reply
        };
        gateway::write_response(&mut self.out, &reply);
        rec.record.status = reply.status;
        rec.record.bytes_out = self.out.len() as u64;
        rec.commit(&self.core);
        self.write_out().await.is_ok()
    }

    /// Reads and drops `n` body bytes. False if the client did not send them in time.
    pub(super) async fn discard(&mut self, mut n: u64) -> bool {
        let idle = self.core.settings.config.timeouts.body_idle;
        while n > 0 {
            if self.client.data().is_empty() {
                match self.core.alarms.timeout_in(idle, self.client.fill(0)).await {
                    Ok(Ok(k)) if k > 0 => {}
                    _ => return false,
                }
            }
            let k = (self.client.data().len() as u64).min(n);
            self.client.consume(k as usize);
            n -= k;
        }
        true
    }

    /// Writes the output buffer to the client and takes the buffer back, empty. A client
    /// that takes nothing for `timeouts.client_write` fails it (and the buffer is lost).
    pub(super) async fn write_out(&mut self) -> io::Result<()> {
        let limit = self.core.settings.config.timeouts.client_write;
        let out = std::mem::take(&mut self.out);
        match self
            .core
            .alarms
            .timeout_in(limit, write_all(&mut self.client.io, out))
            .await
        {
            Ok((res, out)) => {
                self.out = out;
                res
            }
            Err(_) => {
                self.core.counters.connections.slow_read_cut();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }
}
