//! The `request` target: a client's bytes through rgate's request path — `parse_request`,
//! `normalize_target`, `write_request_head`, then the body relayed by its framing — and the
//! bytes the backend would receive held against the strict parser.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rgate::http::framing::BodyFraming;
use rgate::http::request::parse_request;
use rgate::http::request_id::{is_valid_request_id, RequestIds};
use rgate::http::writer::{write_request_head, Forwarding, NO_EDITS};
use rgate::http::{UnderscorePolicy, MAX_HEADERS};
use rgate::router::normalize_target;

use crate::relay::{relay_chunked, ChunkedRelay};
use crate::{forbidden_trailer, show, strict};

/// The client's address, as the proxy passes it to `write_request_head`.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
/// The backend's address: the Host rgate writes for an HTTP/1.0 request without one.
const BACKEND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8080);

/// Framing and routing fields that a client may list in `Connection` but that must not
/// cost the forwarded message its framing or its Host.
const NOT_HOP_BY_HOP: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// What rgate would send to the backend for one client request, and what it must mean.
#[derive(Debug)]
pub struct Forwarded {
    /// The forwarded head followed by the relayed body.
    pub out: Vec<u8>,
    pub method: String,
    /// The normalised target rgate routed on.
    pub target: String,
    /// The host the client addressed: the authority of an absolute-form target, else its
    /// Host field, else (HTTP/1.0 without Host) the backend's address.
    pub host: Vec<u8>,
    /// The payload the client sent (de-chunked).
    pub payload: Vec<u8>,
    pub framing: BodyFraming,
    /// Which of `NOT_HOP_BY_HOP` the client's `Connection` listed (lowercase).
    pub connection_named: Vec<&'static str>,
}

/// Checks one client input; panics when rgate would forward something the strict parser
/// reads differently. Refused and incomplete inputs pass.
pub fn check_request(data: &[u8]) {
    if let Some(forwarded) = forward(data) {
        verify(&forwarded);
    }
}

/// Runs rgate's request path on `data`. `None`: refused, or more input needed.
pub fn forward(data: &[u8]) -> Option<Forwarded> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse_request(data, &mut storage).ok()??;
    // As the proxy's `decide`, with the default `headers.underscores: drop`.
    head.check_underscores(UnderscorePolicy::Drop).ok()?;
    let target = normalize_target(head.target).ok()?;
    let mut out = Vec::new();
    let id = RequestIds::new(1, 0).for_request(head.request_id);
    write_request_head(
        &mut out,
        &head,
        &Forwarding {
            target: &target,
            client_ip: CLIENT_IP,
            fallback_host: BACKEND,
            underscores: UnderscorePolicy::Drop,
            request_id: id.as_bytes(),
            stripped_prefix: None,
            edits: &NO_EDITS,
        },
    );

    let body = &data[head.head_len..];
    let payload = match head.framing {
        BodyFraming::None => Vec::new(),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).ok().filter(|&n| n <= body.len())?;
            out.extend_from_slice(&body[..n]);
            body[..n].to_vec()
        }
        // Requests are relayed chunked to the backend, re-framed (`exchange.rs`: `Reframe`).
        BodyFraming::Chunked => relay_chunked(body, ChunkedRelay::Reframe, &mut out)?,
        BodyFraming::UntilClose => panic!("request framed until close: {}", show(data)),
    };
    let host = match absolute_authority(head.target) {
        Some(authority) => authority.to_vec(),
        None => match head.host {
            Some(host) => trim_ows(host).to_vec(),
            None => BACKEND.to_string().into_bytes(),
        },
    };
    let connection_named = NOT_HOP_BY_HOP
        .into_iter()
        .filter(|n| head.connection.extra.iter().any(|e| e == n))
        .collect();
    Some(Forwarded {
        out,
        method: head.method.to_string(),
        target: target.into_owned(),
        host,
        payload,
        framing: head.framing,
        connection_named,
    })
}

/// Holds the forwarded bytes against the strict parser and what the client meant.
pub fn verify(f: &Forwarded) {
    let fail = |why: String| -> ! { panic!("{why}\nforwarded: {}", show(&f.out)) };
    let req = strict::parse_request(&f.out)
        .unwrap_or_else(|e| fail(format!("strict parser refuses the forwarded request: {e}")));
    let m = &req.message;
    for name in &f.connection_named {
        let kept = m.fields_named(name).next().is_some();
        let needed = match *name {
            "content-length" => matches!(f.framing, BodyFraming::Length(_)),
            "transfer-encoding" => f.framing == BodyFraming::Chunked,
            _ => true,
        };
        if needed && !kept {
            fail(format!(
                "`Connection: {name}` cost the forwarded request its {name} field"
            ));
        }
    }
    if let Some(field) = m.fields.iter().find(|f| f.name.contains(&b'_')) {
        fail(format!(
            "field name with `_` forwarded: {}",
            show(field.name)
        ));
    }
    if req.method != f.method.as_bytes() {
        fail(format!(
            "method {} forwarded as {}",
            f.method,
            show(req.method)
        ));
    }
    if req.target != f.target.as_bytes() {
        fail(format!(
            "target {} forwarded as {}",
            f.target,
            show(req.target)
        ));
    }
    let hosts: Vec<_> = m.fields_named("host").collect();
    match hosts.as_slice() {
        [host] if host.value == f.host => {}
        [host] => fail(format!(
            "Host {} forwarded; the client addressed {}",
            show(host.value),
            show(&f.host)
        )),
        _ => fail(format!("{} Host fields forwarded", hosts.len())),
    }
    let ids: Vec<_> = m.fields_named("x-request-id").collect();
    match ids.as_slice() {
        [id] if is_valid_request_id(id.value) => {}
        [id] => fail(format!("invalid X-Request-Id {} forwarded", show(id.value))),
        _ => fail(format!("{} X-Request-Id fields forwarded", ids.len())),
    }
    if m.body != f.payload {
        fail(format!(
            "backend reads body {} ({:?}); the client sent {}",
            show(&m.body),
            m.delimited,
            show(&f.payload)
        ));
    }
    if m.len != f.out.len() {
        fail(format!(
            "{} bytes after the forwarded request: the backend reads them as another request",
            f.out.len() - m.len
        ));
    }
    if let Some(t) = forbidden_trailer(&m.trailers) {
        fail(format!("trailer field {} forwarded", show(t.name)));
    }
}

/// The authority of an absolute-form target, without userinfo (RFC 9112 §3.2.2: the
/// recipient uses it, not Host). `None` for origin-form and `*`.
fn absolute_authority(target: &str) -> Option<&[u8]> {
    if target.starts_with('/') || target == "*" {
        return None;
    }
    let (_, rest) = target.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .as_bytes(),
    )
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    //! The checks must fail on wrong forwarding; these feed them hand-made wrong output.
    use super::*;

    fn forwarded(out: &[u8], payload: &[u8], framing: BodyFraming) -> Forwarded {
        Forwarded {
            out: out.to_vec(),
            method: "POST".into(),
            target: "/a".into(),
            host: b"gw".to_vec(),
            payload: payload.to_vec(),
            framing,
            connection_named: vec![],
        }
    }

    #[test]
    fn accepts_faithful_forwarding() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nContent-Length: 2\r\n\r\nhi",
            b"hi",
            BodyFraming::Length(2),
        ));
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            b"hi",
            BodyFraming::Chunked,
        ));
    }

    #[test]
    #[should_panic(expected = "after the forwarded request")]
    fn body_without_length_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\n\r\nhi",
            b"",
            BodyFraming::None,
        ));
    }

    #[test]
    #[should_panic(expected = "cost the forwarded request its content-length")]
    fn lost_length_is_caught() {
        let mut f = forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\n\r\nhi",
            b"hi",
            BodyFraming::Length(2),
        );
        f.connection_named = vec!["content-length"];
        verify(&f);
    }

    #[test]
    #[should_panic(expected = "Host fields")]
    fn two_hosts_are_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nHost: gw\r\nX-Request-Id: r-1\r\n\r\n",
            b"",
            BodyFraming::None,
        ));
    }

    #[test]
    #[should_panic(expected = "the client addressed")]
    fn wrong_host_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: evil\r\nX-Request-Id: r-1\r\n\r\n",
            b"",
            BodyFraming::None,
        ));
    }

    #[test]
    #[should_panic(expected = "with `_`")]
    fn underscore_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nX_A: 1\r\n\r\n",
            b"",
            BodyFraming::None,
        ));
    }

    #[test]
    #[should_panic(expected = "trailer field")]
    fn framing_trailer_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
            b"",
            BodyFraming::Chunked,
        ));
    }

    #[test]
    #[should_panic(expected = "strict parser refuses")]
    fn both_framing_fields_are_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            b"hi",
            BodyFraming::Chunked,
        ));
    }

    #[test]
    fn rgate_path_runs_for_plain_requests() {
        // Not vacuous: an ordinary request reaches the checks and passes them.
        let f = forward(
            b"POST /a/./b HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nContent-Length: 2\r\n\r\nhi",
        )
        .expect("accepted");
        assert_eq!((f.target.as_str(), &f.payload[..]), ("/a/b", &b"hi"[..]));
        verify(&f);
        assert!(forward(
            b"POST / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\nContent-Length: 2\r\n\r\nh"
        )
        .is_none());
        assert!(forward(b"GET /../x HTTP/1.1\r\nHost: gw\r\nX-Request-Id: r-1\r\n\r\n").is_none());
    }

    #[test]
    fn effective_host_of_absolute_form() {
        assert_eq!(absolute_authority("http://u:p@h:1/x?y"), Some(&b"h:1"[..]));
        assert_eq!(absolute_authority("HTTPS://h?q"), Some(&b"h"[..]));
        assert_eq!(absolute_authority("/x"), None);
    }

    #[test]
    #[should_panic(expected = "0 X-Request-Id fields forwarded")]
    fn a_missing_request_id_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\n\r\n",
            b"",
            BodyFraming::None,
        ));
    }

    #[test]
    #[should_panic(expected = "invalid X-Request-Id")]
    fn an_invalid_request_id_is_caught() {
        verify(&forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nX-Request-Id: a\"b\r\n\r\n",
            b"",
            BodyFraming::None,
        ));
    }
}
