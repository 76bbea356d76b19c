//! One request's exchange with a backend, in order: take a pooled connection or connect,
//! (send `100 Continue` to the client once the backend is reachable), send the head, relay
//! the request body, wait for the final response head (relaying 1xx), relay the response,
//! and pool the connection on proof that the exchange ended cleanly. A pooled connection
//! that turns out dead before any response byte is retried once on a fresh connection
//! when that is safe.

use std::net::SocketAddr;

use super::{ClientConn, Next, RequestInfo, Tally};
use crate::http::framing::BodyFraming;
use crate::http::gateway::ErrorCode;
use crate::http::response::{parse_response, ResponseError};
use crate::http::writer::{write_response_head, RelayFraming};
use crate::http::{Version, MAX_HEADERS};
use crate::stats::ErrorKind;
use crate::upstream::{BackendConn, ExchangeEnd, UpstreamError};
use crate::wire::body::{relay_body, ChunkedRelay, IdleLimit, RelayError};
use crate::wire::stream::write_all;

/// A response body up to this size that is already buffered with its head is copied
/// behind the head and sent in one write (one syscall instead of two).
const MAX_COALESCED_BODY: usize = 16 * 1024;

impl ClientConn {
    /// The exchange with a backend, with one retry on a fresh connection when a pooled
    /// one turns out to be dead before any response byte (and a retry is safe).
    pub(super) async fn forward(
        &mut self,
        info: &RequestInfo,
        addr: SocketAddr,
        tally: &mut Tally,
    ) -> Next {
        let timeouts = self.core.settings.config.timeouts;
        let mut sent_continue = false;
        let mut body_started = false;
        let mut request_complete = true;
        let mut first_attempt = true;
        let mut conn = loop {
            // The retry goes to a fresh connection: the pool's other idle connections to
            // this address are likely as dead as the one that just failed.
            let pooled = if first_attempt {
                self.core.pool.borrow_mut().take(addr)
            } else {
                None
            };
            let mut conn = match pooled {
                Some(c) => BackendConn::from_pool(c),
                None => match BackendConn::connect(addr, &self.core.alarms, timeouts.connect).await
                {
                    Ok(c) => c,
                    Err(e) => return self.upstream_failed(info, e, body_started, tally).await,
                },
            };
            let retry_allowed = conn.reused && first_attempt;
            first_attempt = false;
            if info.expect_continue && !sent_continue {
                // The backend is reachable: tell the client to send its body.
                self.out.clear();
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                let (res, out) =
                    write_all(&mut self.client.io, std::mem::take(&mut self.out)).await;
                self.out = out;
                if res.is_err() {
                    tally.record.error = Some(ErrorKind::Client);
                    return Next::Abort;
                }
                sent_continue = true;
            }
            let (res, head) = conn.send_head(std::mem::take(&mut self.head)).await;
            self.head = head;
            if let Err(e) = res {
                if retry_allowed {
                    continue;
                }
                return self.upstream_failed(info, e, body_started, tally).await;
            }
            if info.framing != BodyFraming::None {
                body_started = true;
                match relay_body(
                    &mut self.client,
                    &mut conn.stream.io,
                    info.framing,
                    ChunkedRelay::Reframe,
                    IdleLimit {
                        alarms: &self.core.alarms,
                        limit: timeouts.body_idle,
                    },
                    &mut |_| {},
                )
                .await
                {
                    Ok(n) => tally.record.bytes_in += n,
                    Err(RelayError::Chunked(e)) => {
                        tally.record.error = Some(ErrorKind::Client);
                        let msg = format!("invalid chunked body: {e}");
                        self.reply_error(
                            400,
                            ErrorCode::BadRequest,
                            &msg,
                            info.version,
                            false,
                            tally,
                        )
                        .await;
                        return Next::Linger;
                    }
                    // The backend stopped reading; it may have answered already (e.g. 413).
                    Err(RelayError::DestinationIo(_)) => request_complete = false,
                    Err(_) => {
                        // The client went away or stalled mid-body: nothing to answer.
                        tally.record.error = Some(ErrorKind::Client);
                        return Next::Abort;
                    }
                }
            }
            match self.wait_final_head(&mut conn, info, sent_continue).await {
                Ok(()) => break conn,
                Err(UpstreamError::ClosedBeforeResponse)
                    if retry_allowed
                        && !body_started
                        && (info.idempotent || info.framing == BodyFraming::None) =>
                {
                    continue
                }
                Err(e) => {
                    return self
                        .upstream_failed(info, e, body_started && request_complete, tally)
                        .await
                }
            }
        };

        // The final response head is buffered in `conn`: relay it.
        let draining = self.core.alarms.is_draining();
        let (status, framing, relay, backend_keeps_alive, client_keep, head_len) = {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let resp = match parse_response(conn.stream.data(), &mut storage, info.is_head) {
                Ok(Some(resp)) => resp,
                _ => unreachable!("wait_final_head returned a complete, valid head"),
            };
            let relay = if resp.status == 101 {
                RelayFraming::Upgrade
            } else {
                match resp.framing {
                    BodyFraming::None | BodyFraming::Length(_) => RelayFraming::AsIs,
                    BodyFraming::Chunked if info.version == Version::Http11 => {
                        RelayFraming::Chunked
                    }
                    BodyFraming::Chunked | BodyFraming::UntilClose => RelayFraming::Close,
                }
            };
            let client_keep =
                info.keep_alive && request_complete && !draining && relay != RelayFraming::Close;
            self.out.clear();
            write_response_head(&mut self.out, &resp, relay, info.version, client_keep);
            (
                resp.status,
                resp.framing,
                relay,
                resp.backend_keeps_alive(),
                client_keep,
                resp.head_len,
            )
        };
        if status == 101 && !info.upgrade {
            let e = UpstreamError::Invalid(ResponseError::Malformed(
                "101 to a request that asked no upgrade",
            ));
            return self.upstream_failed(info, e, true, tally).await;
        }
        conn.stream.consume(head_len);
        // A small body that arrived with its head goes out in the same write.
        let mut framing = framing;
        if let BodyFraming::Length(n) = framing {
            let n = n as usize;
            if n <= MAX_COALESCED_BODY && conn.stream.data().len() >= n {
                self.out.extend_from_slice(&conn.stream.data()[..n]);
                conn.stream.consume(n);
                framing = BodyFraming::None;
            }
        }
        tally.record.status = status;
        tally.record.bytes_out = self.out.len() as u64;
        if framing == BodyFraming::None || relay == RelayFraming::Upgrade {
            // This write is the whole response.
            tally.commit(&self.core);
        }
        let (res, out) = write_all(&mut self.client.io, std::mem::take(&mut self.out)).await;
        self.out = out;
        if res.is_err() {
            tally.record.error = Some(ErrorKind::Client);
            return Next::Abort;
        }
        if relay == RelayFraming::Upgrade {
            return Next::Upgrade(conn);
        }
        let mode = if relay == RelayFraming::Chunked {
            ChunkedRelay::Reframe
        } else {
            ChunkedRelay::Dechunk
        };
        let head_bytes = tally.record.bytes_out;
        let core = &self.core;
        let mut before_last_write = |body_bytes: u64| {
            tally.record.bytes_out = head_bytes + body_bytes;
            tally.commit(core);
        };
        let relayed = relay_body(
            &mut conn.stream,
            &mut self.client.io,
            framing,
            mode,
            IdleLimit {
                alarms: &core.alarms,
                limit: timeouts.body_idle,
            },
            &mut before_last_write,
        )
        .await;
        match relayed {
            Ok(n) => tally.record.bytes_out = head_bytes + n,
            Err(e) => {
                // Mid-body, the status is already sent; all rgate can do is cut the
                // connection so the client sees the response is incomplete.
                tally.record.error = Some(match e {
                    RelayError::DestinationIo(_) => ErrorKind::Client,
                    RelayError::SourceTimeout => ErrorKind::Timeout,
                    _ => ErrorKind::InvalidResponse,
                });
                log::debug!("core {}: response from {addr} cut: {e}", self.core.id);
                return Next::Abort;
            }
        }
        let end = ExchangeEnd {
            request_complete,
            response_complete: true,
            backend_keeps_alive,
        };
        if let Some(reusable) = conn.into_reusable(end) {
            self.core.pool.borrow_mut().put(addr, reusable);
        }
        if client_keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Waits for the final response head, relaying interim (1xx) responses to an HTTP/1.1
    /// client on the way, except the 100 Continue rgate already sent itself.
    async fn wait_final_head(
        &mut self,
        conn: &mut BackendConn,
        info: &RequestInfo,
        sent_continue: bool,
    ) -> Result<(), UpstreamError> {
        let timeout = self.core.settings.config.timeouts.response_header;
        loop {
            let status = conn
                .wait_for_head(&self.core.alarms, timeout, info.is_head)
                .await?;
            if !(100..200).contains(&status) || status == 101 {
                return Ok(());
            }
            let interim = {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match parse_response(conn.stream.data(), &mut storage, info.is_head) {
                    Ok(Some(resp)) if resp.is_interim() => {
                        let relay = info.version == Version::Http11
                            && !(resp.status == 100 && sent_continue);
                        if relay {
                            self.out.clear();
                            write_response_head(
                                &mut self.out,
                                &resp,
                                RelayFraming::Interim,
                                info.version,
                                true,
                            );
                        }
                        Some((resp.head_len, relay))
                    }
                    Ok(Some(_)) => None,
                    Ok(None) => unreachable!("wait_for_head returned with a complete head"),
                    Err(e) => return Err(UpstreamError::Invalid(e)),
                }
            };
            let Some((head_len, relay)) = interim else {
                return Ok(());
            };
            conn.stream.consume(head_len);
            if relay {
                let (res, out) =
                    write_all(&mut self.client.io, std::mem::take(&mut self.out)).await;
                self.out = out;
                res.map_err(UpstreamError::Send)?;
            }
        }
    }

    /// Tells the client a backend exchange failed (when nothing was sent to it yet).
    async fn upstream_failed(
        &mut self,
        info: &RequestInfo,
        error: UpstreamError,
        body_consumed: bool,
        tally: &mut Tally,
    ) -> Next {
        let (status, code) = error.status();
        tally.record.error = Some(match &error {
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout => ErrorKind::Connect,
            UpstreamError::ResponseTimeout => ErrorKind::Timeout,
            _ => ErrorKind::InvalidResponse,
        });
        log::debug!(
            "core {}: {} for {:?}: {error}",
            self.core.id,
            status,
            tally.record.instance
        );
        let message = format!(
            "backend {}: {error}",
            tally
                .record
                .instance
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        // A request read whole leaves the connection usable; otherwise `answer` decides.
        let body_consumed = body_consumed || info.framing == BodyFraming::None;
        self.answer_error(info, status, code, &message, body_consumed, tally)
            .await
    }
}
