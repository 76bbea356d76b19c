//! One request's exchange with a backend, as the client connection drives it: a short
//! sequence of steps over the backend session (`upstream::Exchange`), which keeps the phase.
//!
//! 1. `open`: a pooled connection to the instance, or a new one (refused / timed out → 503).
//! 2. `100 Continue` to the client once the backend is reachable, when it asked for one.
//! 3. `send_request`: the head, then the body in its framing (an invalid chunked body → 400).
//! 4. `final_head`: the response head, parsed once; interim (1xx) heads are relayed to an
//!    HTTP/1.1 client as they come, and the final one is written for the client from the
//!    same parse (`RelayPlan`).
//! 5. `relay_response`: the head (with a small body that came along), then the body.
//! 6. `into_reusable`: the connection goes back to the pool only if the session proves it.
//!
//! A failure in steps 3–4 that the session calls safe to retry (a pooled connection that
//! turns out dead before any response byte, and no body byte gone) is retried once, on a
//! new connection. Otherwise the client gets rgate's error (502/503/504) while nothing of
//! a response was sent to it; after that, the client connection is cut.

use std::io;
use std::net::SocketAddr;

use super::attempt::{Attempt, BackendSlot};
use super::decide::RequestInfo;
use super::record::RequestRecorder;
use super::{ClientConn, Next};
use crate::health::Failure;
use crate::http::framing::BodyFraming;
use crate::http::gateway::ErrorCode;
use crate::http::request_id::RequestId;
use crate::http::response::{ResponseError, ResponseHead};
use crate::http::writer::{write_response_head, HeaderEdits, RelayFraming, NO_EDITS};
use crate::http::Version;
use crate::stats::ErrorKind;
use crate::upstream::{BackendConn, Exchange, UpstreamError};
use crate::wire::body::{relay_body, ChunkedRelay, IdleLimit, RelayError};

/// A response body up to this size that is already buffered with its head is copied
/// behind the head and sent in one write (one syscall instead of two).
const MAX_COALESCED_BODY: usize = 16 * 1024;

/// What the final response head says, and how rgate relays it (its head for the client is
/// already written into the connection's output buffer).
#[derive(Debug, Clone, Copy)]
struct RelayPlan {
    status: u16,
    framing: BodyFraming,
    relay: RelayFraming,
    /// The client connection stays open after this response.
    client_keep: bool,
}

/// How a step ended when it did not go on.
enum Stop {
    /// A backend failure the client has not yet heard of.
    Upstream(UpstreamError),
    /// The client was answered (or is gone): this is what becomes of its connection.
    Done(Next),
}

/// How one attempt on one instance ended, when it did not end the request.
enum Tried {
    /// A final response head arrived (and is written for the client).
    Answered(Exchange, RelayPlan),
    /// The instance failed before any of its response reached the client.
    Failed {
        error: UpstreamError,
        /// Sending the request to another instance is safe (see `retry_elsewhere`).
        may_retry: bool,
        /// The instance is to blame (not rgate's own lack of descriptors or ports).
        instance_failed: bool,
        /// The client's request body was read whole.
        body_consumed: bool,
    },
    /// The client was answered or is gone.
    Done(Next),
}

impl ClientConn {
    /// The exchange with a backend for one request (see the module's doc): attempts on
    /// `attempt`'s instance, then, while it is safe, within the retry budget and `retries.max`,
    /// on other instances.
    pub(super) async fn forward(
        &mut self,
        info: &RequestInfo,
        mut attempt: Attempt,
        rec: &mut RequestRecorder,
    ) -> Next {
        let core = self.core.clone();
        let backend = rec.record.backend.unwrap_or_default();
        let policy = &core.settings.config.backends[backend].policy;
        let _slot = match policy.max_in_flight {
            Some(max) => match BackendSlot::take(&attempt, max) {
                Some(slot) => Some(slot),
                None => return self.overloaded(info, &attempt, rec).await,
            },
            None => None,
        };
        let budget = &core.retry_budgets[backend];
        budget.deposit(core.alarms.seconds());
        let mut sent_continue = false;
        let mut retries = 0;
        loop {
            let addr = attempt.addr();
            rec.record.instance = Some(addr);
            match self.try_instance(info, addr, &mut sent_continue, rec).await {
                Tried::Answered(exchange, plan) => {
                    if core.access_log.is_some() {
                        // Only the access log shows it: no clock read otherwise.
                        rec.upstream = Some((plan.status, rec.elapsed()));
                    }
                    if policy.breaker.on_5xx && plan.status >= 500 {
                        attempt.failed(policy, &core.table(), Failure::Error);
                    } else {
                        attempt.succeeded();
                    }
                    return self.relay_response(exchange, plan, addr, rec).await;
                }
                Tried::Done(next) => return next,
                Tried::Failed {
                    error,
                    may_retry,
                    instance_failed,
                    body_consumed,
                } => {
                    if instance_failed {
                        attempt.failed(policy, &core.table(), error.failure());
                    }
                    let again = may_retry
                        && retries < policy.retries.max
                        && attempt.backend().instances.len() > 1;
                    // Another instance first: the budget pays only for a retry that happens.
                    if let Some(next) = again.then(|| attempt.next(policy)).flatten() {
                        if budget.withdraw(&policy.retries, core.alarms.seconds()) {
                            log::debug!(
                                "core {}: {addr} failed ({error}); retrying on {}",
                                core.id,
                                next.addr()
                            );
                            attempt.count_retry();
                            retries += 1;
                            rec.retries = retries;
                            attempt = next;
                            continue;
                        }
                        attempt.backend_health().count_budget_exhausted();
                    }
                    return self.upstream_failed(info, error, body_consumed, rec).await;
                }
            }
        }
    }

    /// One attempt on the instance at `addr`: a pooled connection, or a new one; a pooled
    /// connection found dead before any response byte is replaced by a new one, once.
    async fn try_instance(
        &mut self,
        info: &RequestInfo,
        addr: SocketAddr,
        sent_continue: &mut bool,
        rec: &mut RequestRecorder,
    ) -> Tried {
        let mut pooled = self.core.pool.borrow_mut().take(addr);
        loop {
            // A retry goes to a new connection: the pool's other idle connections to this
            // address are likely as dead as the one that just failed.
            let fresh = pooled.is_none();
            let conn = match pooled.take() {
                Some(c) => BackendConn::from_pool(c),
                None => match self.open(addr).await {
                    Ok(c) => c,
                    Err(error) => {
                        // Nothing was sent: another instance may always have it — unless
                        // rgate itself is out of descriptors or ports, as it would be there.
                        let local = matches!(error, UpstreamError::Local(_));
                        return Tried::Failed {
                            error,
                            may_retry: !local,
                            instance_failed: !local,
                            body_consumed: false,
                        };
                    }
                },
            };
            let mut exchange = Exchange::new(conn);
            if info.expect_continue && !*sent_continue {
                if let Err(next) = self.send_continue(rec).await {
                    return Tried::Done(next);
                }
                *sent_continue = true;
            }
            let sent = self.send_request(&mut exchange, info, rec).await;
            let result = match sent {
                Ok(()) => {
                    self.final_head(&mut exchange, info, *sent_continue, rec)
                        .await
                }
                Err(stop) => Err(stop),
            };
            return match result {
                Ok(plan) if plan.status == 101 && !info.upgrade => Tried::Failed {
                    error: UpstreamError::Invalid(ResponseError::Malformed(
                        "101 to a request that asked no upgrade",
                    )),
                    may_retry: false,
                    instance_failed: true,
                    // The backend may have answered mid-upload: what is left of the body
                    // must not be read as the next request.
                    body_consumed: exchange.request_whole(),
                },
                Ok(plan) => Tried::Answered(exchange, plan),
                Err(Stop::Upstream(e)) if !fresh && exchange.retry_is_safe(&e) => continue,
                Err(Stop::Upstream(error)) => Tried::Failed {
                    may_retry: exchange.retry_elsewhere_is_safe(&error, info.idempotent),
                    instance_failed: true,
                    body_consumed: exchange.request_whole(),
                    error,
                },
                Err(Stop::Done(next)) => Tried::Done(next),
            };
        }
    }

    /// Refuses the request over its body (the client's fault: too large, malformed, too
    /// slow): answers `status` and ends the connection, dropping what still arrives; the
    /// backend connection that had the start of the body is dropped with the exchange.
    async fn refuse_body(
        &mut self,
        info: &RequestInfo,
        status: u16,
        code: ErrorCode,
        message: &str,
        rec: &mut RequestRecorder,
    ) -> Result<(), Stop> {
        rec.fail(ErrorKind::Client);
        self.reply_error(status, code, message, info.version, false, rec)
            .await;
        Err(Stop::Done(Next::Linger))
    }

    /// The backend has `max_in_flight` requests already: 503 `overloaded`, try again later.
    async fn overloaded(
        &mut self,
        info: &RequestInfo,
        attempt: &Attempt,
        rec: &mut RequestRecorder,
    ) -> Next {
        attempt.backend_health().count_overloaded();
        rec.fail(ErrorKind::Overloaded);
        let message = format!(
            "backend {} has as many requests in flight as it may (max_in_flight)",
            attempt.backend().name
        );
        self.answer_error(info, 503, ErrorCode::Overloaded, &message, false, rec)
            .await
    }

    /// A new connection to the instance.
    async fn open(&self, addr: SocketAddr) -> Result<BackendConn, UpstreamError> {
        let timeout = self.core.settings.config.timeouts.connect;
        BackendConn::connect(addr, &self.core.alarms, timeout).await
    }

    /// The backend is reachable: tell the client to send its body.
    async fn send_continue(&mut self, rec: &mut RequestRecorder) -> Result<(), Next> {
        super::fresh_head(&mut self.out);
        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if self.write_out().await.is_err() {
            rec.fail(ErrorKind::Client);
            return Err(Next::Abort);
        }
        Ok(())
    }

    /// Writes the forwarded head, then relays the request body in its framing.
    async fn send_request(
        &mut self,
        exchange: &mut Exchange,
        info: &RequestInfo,
        rec: &mut RequestRecorder,
    ) -> Result<(), Stop> {
        let has_body = info.framing != BodyFraming::None;
        let (res, head) = exchange
            .send_head(std::mem::take(&mut self.head), has_body)
            .await;
        self.head = head;
        res.map_err(Stop::Upstream)?;
        if !has_body {
            return Ok(());
        }
        exchange.body_started();
        let probe = exchange.answer_probe();
        let answered = move || probe.answered();
        let config = &self.core.settings.config;
        let idle = IdleLimit {
            alarms: &self.core.alarms,
            limit: config.timeouts.body_idle,
            write_limit: config.timeouts.body_idle,
            min_rate: config.limits.min_request_body_rate,
            receiver_answered: Some(&answered),
            max_payload: info.max_body,
        };
        let relayed = relay_body(
            &mut self.client,
            &mut exchange.stream().io,
            info.framing,
            ChunkedRelay::Reframe,
            idle,
            &mut |_| {},
        )
        .await;
        match relayed {
            Ok(n) => {
                rec.record.bytes_in += n;
                exchange.request_sent();
                Ok(())
            }
            Err(RelayError::TooLarge(limit)) => {
                // The backend has part of a body that will never end: its connection is
                // dropped (closed), never pooled; the client is told and the rest unread.
                let msg =
                    format!("the request body is larger than this route's limit of {limit} bytes");
                self.refuse_body(info, 413, ErrorCode::ContentTooLarge, &msg, rec)
                    .await
            }
            Err(RelayError::Chunked(e)) => {
                let msg = format!("invalid chunked body: {e}");
                self.refuse_body(info, 400, ErrorCode::BadRequest, &msg, rec)
                    .await
            }
            // The backend answered before the body's end (e.g. 413), or stopped reading: its
            // answer is read and relayed; the rest of the body is not.
            Err(RelayError::ReceiverAnswered | RelayError::DestinationIo(_)) => {
                exchange.request_cut();
                Ok(())
            }
            // The backend took nothing of the body for `body_idle`: its fault, answered.
            Err(RelayError::DestinationTimeout) => {
                Err(Stop::Upstream(UpstreamError::Send(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the backend stopped reading the body",
                ))))
            }
            Err(RelayError::SourceTooSlow) => {
                // A body this slow holds a connection (here and at the backend) for nothing.
                self.core.counters.connections.slow_body_cut();
                let msg = format!(
                    "request body slower than {} bytes/s",
                    self.core.settings.config.limits.min_request_body_rate
                );
                self.refuse_body(info, 408, ErrorCode::RequestTimeout, &msg, rec)
                    .await
            }
            Err(_) => {
                // The client went away or stalled mid-body: nothing to answer.
                rec.fail(ErrorKind::Client);
                Err(Stop::Done(Next::Abort))
            }
        }
    }

    /// Reads response heads until the final one, relaying interim (1xx) heads to an HTTP/1.1
    /// client on the way (except the 100 Continue rgate already sent itself). The final
    /// head is written for the client into `self.out`, from its one parse.
    async fn final_head(
        &mut self,
        exchange: &mut Exchange,
        info: &RequestInfo,
        sent_continue: bool,
        rec: &mut RequestRecorder,
    ) -> Result<RelayPlan, Stop> {
        let timeout = self.core.settings.config.timeouts.response_header;
        loop {
            let request_whole = exchange.request_whole();
            let (out, alarms, id) = (&mut self.out, &self.core.alarms, &rec.id);
            let routes = &self.core.settings.config.routes;
            let edits = rec
                .record
                .route
                .map_or(&NO_EDITS, |i| &routes[i].response_headers);
            let heard = exchange
                .read_head(alarms, timeout, info.is_head, |resp| {
                    super::fresh_head(out);
                    if resp.is_interim() {
                        let relay = info.version == Version::Http11
                            && !(resp.status == 100 && sent_continue);
                        if relay {
                            write_response_head(
                                out,
                                resp,
                                RelayFraming::Interim,
                                info.version,
                                true,
                                None,
                                &NO_EDITS,
                            );
                        }
                        None
                    } else {
                        // Whether the core drains is asked now, when the head is here.
                        let keep = info.keep_alive && request_whole && !alarms.is_draining();
                        Some(plan_relay(out, resp, info.version, keep, id, edits))
                    }
                })
                .await
                .map_err(Stop::Upstream)?;
            if let Some(plan) = heard {
                return Ok(plan);
            }
            if !self.out.is_empty() && self.write_out().await.is_err() {
                rec.fail(ErrorKind::Client);
                return Err(Stop::Done(Next::Abort));
            }
        }
    }

    /// Writes the response head (and a small body that came with it), then relays the body;
    /// pools the connection when the session proves it reusable.
    async fn relay_response(
        &mut self,
        mut exchange: Exchange,
        plan: RelayPlan,
        addr: SocketAddr,
        rec: &mut RequestRecorder,
    ) -> Next {
        // A small body that arrived with its head goes out in the same write.
        let mut framing = plan.framing;
        if let BodyFraming::Length(n) = framing {
            let stream = exchange.stream();
            let n = n as usize;
            if n <= MAX_COALESCED_BODY && stream.data().len() >= n {
                self.out.extend_from_slice(&stream.data()[..n]);
                stream.consume(n);
                framing = BodyFraming::None;
            }
        }
        rec.record.status = plan.status;
        rec.record.bytes_out = self.out.len() as u64;
        if framing == BodyFraming::None || plan.relay == RelayFraming::Upgrade {
            // This write is the whole response.
            rec.commit(&self.core);
        }
        if self.write_out().await.is_err() {
            rec.fail(ErrorKind::Client);
            return Next::Abort;
        }
        if plan.relay == RelayFraming::Upgrade {
            return Next::Upgrade(exchange.into_tunnel());
        }
        let mode = if plan.relay == RelayFraming::Chunked {
            ChunkedRelay::Reframe
        } else {
            ChunkedRelay::Dechunk
        };
        let head_bytes = rec.record.bytes_out;
        let core = &self.core;
        let idle = IdleLimit {
            alarms: &core.alarms,
            limit: core.settings.config.timeouts.body_idle,
            write_limit: core.settings.config.timeouts.client_write,
            min_rate: 0,
            receiver_answered: None,
            max_payload: None,
        };
        let mut before_last_write = |body_bytes: u64| {
            rec.record.bytes_out = head_bytes + body_bytes;
            rec.commit(core);
        };
        let relayed = relay_body(
            exchange.stream(),
            &mut self.client.io,
            framing,
            mode,
            idle,
            &mut before_last_write,
        )
        .await;
        match relayed {
            Ok(n) => rec.record.bytes_out = head_bytes + n,
            Err(e) => {
                // Mid-body, the status is already sent; all rgate can do is cut the
                // connection so the client sees the response is incomplete.
                rec.fail(match e {
                    RelayError::DestinationIo(_) => ErrorKind::Client,
                    RelayError::DestinationTimeout => {
                        self.core.counters.connections.slow_read_cut();
                        ErrorKind::Client
                    }
                    RelayError::SourceTimeout => ErrorKind::Timeout,
                    _ => ErrorKind::InvalidResponse,
                });
                log::debug!("core {}: response from {addr} cut: {e}", self.core.id);
                return Next::Abort;
            }
        }
        exchange.response_done();
        let request_whole = exchange.request_whole();
        if exchange.sent_stray_bytes() {
            self.core.pool.borrow_mut().distrust(addr);
        } else if let Some(reusable) = exchange.into_reusable() {
            self.core.pool.borrow_mut().put(addr, reusable);
        }
        if plan.client_keep {
            Next::KeepAlive
        } else if !request_whole {
            // The client may still be sending the body nobody reads: stop writing, and drop
            // what arrives for a moment, so closing does not reset the response away.
            Next::Linger
        } else {
            Next::Close
        }
    }

    /// Tells the client a backend exchange failed (when nothing was sent to it yet).
    async fn upstream_failed(
        &mut self,
        info: &RequestInfo,
        error: UpstreamError,
        body_consumed: bool,
        rec: &mut RequestRecorder,
    ) -> Next {
        let (status, code) = error.status();
        rec.fail(error.kind());
        log::debug!(
            "core {}: {} for {:?}: {error}",
            self.core.id,
            status,
            rec.record.instance
        );
        let message = format!(
            "backend {}: {error}",
            rec.record
                .instance
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        // A request read whole leaves the connection usable; otherwise `answer` decides.
        let body_consumed = body_consumed || info.framing == BodyFraming::None;
        self.answer_error(info, status, code, &message, body_consumed, rec)
            .await
    }
}

/// How the final response is relayed to a client of `version`, and its head written into
/// `out`. `keep`: the client may keep its connection (it asked to, its request went whole,
/// the core is not draining); a body delimited by closing overrides it.
fn plan_relay(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    version: Version,
    keep: bool,
    request_id: &RequestId,
    edits: &HeaderEdits,
) -> RelayPlan {
    let relay = if resp.status == 101 {
        RelayFraming::Upgrade
    } else {
        match resp.framing {
            BodyFraming::None | BodyFraming::Length(_) => RelayFraming::AsIs,
            BodyFraming::Chunked if version == Version::Http11 => RelayFraming::Chunked,
            BodyFraming::Chunked | BodyFraming::UntilClose => RelayFraming::Close,
        }
    };
    let client_keep = keep && relay != RelayFraming::Close;
    write_response_head(
        out,
        resp,
        relay,
        version,
        client_keep,
        Some(request_id.as_bytes()),
        edits,
    );
    RelayPlan {
        status: resp.status,
        framing: resp.framing,
        relay,
        client_keep,
    }
}
