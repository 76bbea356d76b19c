//! Deciding where a request goes, while its head is still borrowed from the read buffer:
//! parse and validate the head, normalise the target, then rgate's own endpoints
//! (`/stats`, `/metrics`), the routes (longest prefix), the default response, and an
//! instance of the route's backend — and, for a request to forward, write the forwarded
//! head. Then acting on it (`handle`): forward, or answer it as rgate.

use super::attempt::Attempt;
use super::record::RequestRecorder;
use super::{ClientConn, Next, NO_INSTANCE_MESSAGE};
use crate::http::framing::BodyFraming;
use crate::http::gateway::{ErrorCode, Reply};
use crate::http::request::{parse_request, RequestError, RequestHead};
use crate::http::writer::write_request_head;
use crate::http::{Version, MAX_HEADERS};
use crate::router::{normalize_target, RouteMatch};
use crate::stats::{Endpoint, ErrorKind};

/// The parts of a request head that outlive its buffer.
pub(super) struct RequestInfo {
    pub(super) version: Version,
    pub(super) is_head: bool,
    pub(super) keep_alive: bool,
    pub(super) framing: BodyFraming,
    pub(super) expect_continue: bool,
    pub(super) upgrade: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): sending it twice is as sending it once.
    pub(super) idempotent: bool,
}

impl RequestInfo {
    pub(super) fn of(head: &RequestHead<'_, '_>) -> RequestInfo {
        RequestInfo {
            version: head.version,
            is_head: head.is_head(),
            keep_alive: head.wants_keep_alive(),
            framing: head.framing,
            expect_continue: head.expect_continue,
            upgrade: head.upgrade.is_some(),
            idempotent: head.is_idempotent(),
        }
    }
}

/// Where a request goes, decided while its head is parsed.
pub(super) enum Decision {
    Endpoint(Endpoint),
    Default,
    BadTarget(&'static str),
    NoInstance(RouteMatch),
    Forward(RouteMatch, Attempt),
}

/// A request whose head is complete, decided.
pub(super) struct Decided {
    pub(super) info: RequestInfo,
    pub(super) decision: Decision,
    /// Bytes of the head in the read buffer (consumed once decided).
    pub(super) head_len: usize,
}

impl ClientConn {
    /// Parses the buffered head (if complete), routes it and writes the forwarded head.
    /// Everything borrowed from the buffer ends here.
    pub(super) fn decide(&mut self) -> Result<Option<Decided>, RequestError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Some(head) = parse_request(self.client.data(), &mut storage)? else {
            return Ok(None);
        };
        let settings = &self.core.settings;
        let underscores = settings.config.headers.underscores;
        head.check_underscores(underscores)?;
        let info = RequestInfo::of(&head);
        let head_len = head.head_len;
        let target = match normalize_target(head.target) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Some(Decided {
                    info,
                    decision: Decision::BadTarget(e.reason()),
                    head_len,
                }))
            }
        };
        let path = target.split_once('?').map_or(&*target, |(p, _)| p);
        if path == settings.config.stats.path {
            return Ok(Some(Decided {
                info,
                decision: Decision::Endpoint(Endpoint::at_stats_path(head.headers)),
                head_len,
            }));
        }
        if path == settings.config.stats.metrics_path {
            return Ok(Some(Decided {
                info,
                decision: Decision::Endpoint(Endpoint::Metrics),
                head_len,
            }));
        }
        let Some(route) = settings.routes.route(&target) else {
            return Ok(Some(Decided {
                info,
                decision: Decision::Default,
                head_len,
            }));
        };
        let policy = &settings.config.backends[route.backend].policy;
        let Some(attempt) = Attempt::first(self.core.table(), route.backend, policy) else {
            return Ok(Some(Decided {
                info,
                decision: Decision::NoInstance(route),
                head_len,
            }));
        };
        let addr = attempt.addr();
        self.head.clear();
        write_request_head(
            &mut self.head,
            &head,
            &target,
            self.peer.ip(),
            addr,
            underscores,
        );
        Ok(Some(Decided {
            info,
            decision: Decision::Forward(route, attempt),
            head_len,
        }))
    }

    pub(super) async fn handle(
        &mut self,
        info: &RequestInfo,
        decision: Decision,
        rec: &mut RequestRecorder,
    ) -> Next {
        match decision {
            Decision::Forward(route, attempt) => {
                rec.record.route = Some(route.route);
                rec.record.backend = Some(route.backend);
                self.forward(info, attempt, rec).await
            }
            Decision::NoInstance(route) => {
                rec.record.route = Some(route.route);
                rec.record.backend = Some(route.backend);
                rec.fail(ErrorKind::NoInstance);
                self.answer_error(
                    info,
                    503,
                    ErrorCode::NoInstances,
                    NO_INSTANCE_MESSAGE,
                    false,
                    rec,
                )
                .await
            }
            Decision::BadTarget(why) => {
                rec.fail(ErrorKind::Client);
                self.reply_error(
                    400,
                    ErrorCode::BadRequest,
                    why,
                    info.version,
                    info.is_head,
                    rec,
                )
                .await;
                Next::Linger
            }
            Decision::Default => {
                // A handle on the core, so the configured body is borrowed, not copied.
                let core = self.core.clone();
                let default = &core.settings.config.default_response;
                let reply = Reply::of(
                    default.status,
                    "text/plain; charset=utf-8",
                    default.body.as_bytes(),
                );
                self.answer(info, reply, false, rec).await
            }
            Decision::Endpoint(endpoint) => {
                let table = self.core.table();
                let settings = &self.core.settings;
                let (content_type, body) =
                    settings.stats.render(endpoint, &table, &settings.limits);
                // rgate's own endpoints are not proxied traffic: never counted.
                rec.committed = true;
                let reply = Reply {
                    vary: endpoint.vary(),
                    ..Reply::of(200, content_type, &body)
                };
                self.answer(info, reply, false, rec).await
            }
        }
    }
}
