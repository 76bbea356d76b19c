//! Deciding where a request goes, while its head is still borrowed from the read buffer:
//! parse and validate the head, normalise the target, then rgate's own endpoints
//! (`/stats`, `/metrics`), the routes (longest prefix), the default response, and an
//! instance of the route's backend — and, for a request to forward, write the forwarded
//! head. Then acting on it (`handle`): forward, or answer it as rgate.

use super::attempt::Attempt;
use super::record::RequestRecorder;
use super::{ClientConn, Next, NO_INSTANCE_MESSAGE};
use crate::access_log::format::LoggedHead;
use crate::config::Rewrite;
use crate::http::framing::BodyFraming;
use crate::http::gateway::{ErrorCode, Reply};
use crate::http::request::{parse_request, RequestError, RequestHead};
use crate::http::request_id::RequestId;
use crate::http::writer::{write_request_head, Forwarding};
use crate::http::{Version, MAX_HEADERS};
use crate::router::{normalize_target, rewrite, RouteMatch};
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
    /// The largest body the request's route takes (None: no limit, or not routed).
    pub(super) max_body: Option<u64>,
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
            max_body: None,
        }
    }
}

/// Where a request goes, decided while its head is parsed.
pub(super) enum Decision {
    Endpoint(Endpoint),
    Default,
    BadTarget(&'static str),
    NoInstance(RouteMatch),
    /// The body's announced length is over the route's limit: 413, nothing forwarded.
    TooLarge(RouteMatch, u64),
    Forward(RouteMatch, Attempt),
}

/// A request whose head is complete, decided.
pub(super) struct Decided {
    pub(super) info: RequestInfo,
    pub(super) decision: Decision,
    /// Bytes of the head in the read buffer (consumed once decided).
    pub(super) head_len: usize,
    pub(super) id: RequestId,
    /// The head's fields for the access log, when there is one.
    pub(super) logged: Option<LoggedHead>,
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
        let mut info = RequestInfo::of(&head);
        let head_len = head.head_len;
        let id = self.core.ids.for_request(head.request_id);
        let logged = self
            .core
            .access_log
            .is_some()
            .then(|| LoggedHead::capture(&head));
        let target = match normalize_target(head.target) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Some(Decided {
                    info,
                    decision: Decision::BadTarget(e.reason()),
                    head_len,
                    id,
                    logged,
                }))
            }
        };
        let path = crate::router::path_of(&target);
        if path == settings.config.stats.path {
            return Ok(Some(Decided {
                info,
                decision: Decision::Endpoint(Endpoint::at_stats_path(head.headers)),
                head_len,
                id,
                logged,
            }));
        }
        if path == settings.config.stats.metrics_path {
            return Ok(Some(Decided {
                info,
                decision: Decision::Endpoint(Endpoint::Metrics),
                head_len,
                id,
                logged,
            }));
        }
        let Some(route) = settings.routes.route(head.host, &target) else {
            return Ok(Some(Decided {
                info,
                decision: Decision::Default,
                head_len,
                id,
                logged,
            }));
        };
        let routed = &settings.config.routes[route.route];
        info.max_body = routed
            .max_body_bytes
            .or(settings.config.limits.max_body_bytes);
        if let (Some(limit), BodyFraming::Length(n)) = (info.max_body, info.framing) {
            if n > limit {
                return Ok(Some(Decided {
                    info,
                    decision: Decision::TooLarge(route, limit),
                    head_len,
                    id,
                    logged,
                }));
            }
        }
        let policy = &settings.config.backends[route.backend].policy;
        let Some(attempt) = Attempt::first(self.core.table(), route.backend, policy) else {
            return Ok(Some(Decided {
                info,
                decision: Decision::NoInstance(route),
                head_len,
                id,
                logged,
            }));
        };
        let addr = attempt.addr();
        let forwarded = rewrite(routed, &target);
        let stripped = (routed.rewrite != Rewrite::Keep)
            .then(|| routed.prefix.trim_end_matches('/'))
            .filter(|p| !p.is_empty());
        super::fresh_head(&mut self.head);
        write_request_head(
            &mut self.head,
            &head,
            &Forwarding {
                target: &forwarded,
                client_ip: self.peer.ip(),
                fallback_host: addr,
                underscores,
                request_id: id.as_bytes(),
                stripped_prefix: stripped,
                edits: &routed.request_headers,
            },
        );
        Ok(Some(Decided {
            info,
            decision: Decision::Forward(route, attempt),
            head_len,
            id,
            logged,
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
            Decision::TooLarge(route, limit) => {
                rec.record.route = Some(route.route);
                rec.record.backend = Some(route.backend);
                rec.fail(ErrorKind::Client);
                let message =
                    format!("the request body is larger than this route's limit of {limit} bytes");
                self.answer_error(info, 413, ErrorCode::ContentTooLarge, &message, false, rec)
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
                let (content_type, body) = settings.stats.render(
                    endpoint,
                    &table,
                    &settings.limits,
                    settings.access_log.as_ref().map(|l| &*l.counters),
                );
                // rgate's own endpoints are not proxied traffic: never counted nor logged.
                rec.own_endpoint();
                let reply = Reply {
                    vary: endpoint.vary(),
                    ..Reply::of(200, content_type, &body)
                };
                self.answer(info, reply, false, rec).await
            }
        }
    }
}
