//! The heads rgate writes on behalf of others: the request it forwards to a backend and the
//! response head it relays to the client. Both keep every end-to-end field in its order and
//! with its value, drop the hop-by-hop ones, and state their own framing: every
//! `Content-Length` and `Transfer-Encoding` of the peer is dropped, and the one framing field
//! written comes from rgate's own decision (`BodyFraming`, `RelayFraming`), after and
//! independently of the filtering — nothing the peer sends can remove or change it.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::framing::BodyFraming;
use super::request::RequestHead;
use super::request_id::{is_request_id_header, REQUEST_ID_HEADER};
use super::response::ResponseHead;
use super::{is_hop_by_hop, UnderscorePolicy, Version};

/// Whether a field is one of the two that frame a message; the writers never copy those.
/// (The length decides first: this runs for every field of every message.)
fn is_framing(name: &str) -> bool {
    match name.len() {
        14 => name.eq_ignore_ascii_case("content-length"),
        17 => name.eq_ignore_ascii_case("transfer-encoding"),
        _ => false,
    }
}

/// What rgate decided about a request it forwards, beyond the client's head.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The origin-form target the backend gets: normalised, routed, rewritten.
    pub target: &'a str,
    pub client_ip: IpAddr,
    /// Used as Host when the client sent none (HTTP/1.0): the backend is spoken to in 1.1.
    pub fallback_host: SocketAddr,
    pub underscores: UnderscorePolicy,
    /// Replaces every `X-Request-Id` the client sent (it is the client's own when valid).
    pub request_id: &'a [u8],
    /// The prefix the route took off the path (`X-Forwarded-Prefix`), when it did.
    pub stripped_prefix: Option<&'a str>,
    /// The route's `request_headers`.
    pub edits: &'a HeaderEdits,
}

/// Appends the head of the request forwarded to a backend.
pub fn write_request_head(out: &mut Vec<u8>, head: &RequestHead<'_, '_>, f: &Forwarding<'_>) {
    let Forwarding {
        target,
        client_ip,
        fallback_host,
        underscores,
        request_id,
        stripped_prefix,
        edits,
    } = *f;
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The validated Host (the absolute-form authority when there was one), first.
    out.extend_from_slice(b"Host: ");
    match head.host {
        Some(host) => out.extend_from_slice(host),
        None => {
            let _ = write!(out, "{fallback_host}");
        }
    }
    out.extend_from_slice(b"\r\n");

    let upgrading = head.upgrade.is_some();
    let last_xff = head
        .headers
        .iter()
        .rposition(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
    let mut declared_length = false;
    for (i, h) in head.headers.iter().enumerate() {
        let name = h.name;
        if is_framing(name) {
            declared_length |= name.eq_ignore_ascii_case("content-length");
            continue;
        }
        if name.eq_ignore_ascii_case("upgrade") {
            if !upgrading {
                continue;
            }
        } else if is_hop_by_hop(name, &head.connection)
            || name.eq_ignore_ascii_case("host")
            // rgate answers `Expect: 100-continue` itself.
            || name.eq_ignore_ascii_case("expect")
            // rgate is the edge: these describe rgate's own client connection.
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || name.eq_ignore_ascii_case("x-forwarded-prefix")
            || is_request_id_header(name)
            || (!edits.is_empty() && edits.drops(name))
            // (the parse already knows whether any name has one: no second scan without)
            || (head.underscore_names
                && underscores != UnderscorePolicy::Forward
                && name.contains('_'))
        {
            continue;
        }
        put_header(out, name, h.value);
        if Some(i) == last_xff {
            out.truncate(out.len() - 2);
            out.extend_from_slice(b", ");
            put_ip(out, client_ip);
            out.extend_from_slice(b"\r\n");
        }
    }
    match head.framing {
        BodyFraming::Length(n) => put_length(out, n),
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        // `Content-Length: 0` stays (some servers want a length on every POST); without it,
        // a request without a body has no framing field at all.
        BodyFraming::None if declared_length => put_length(out, 0),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if upgrading {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    if let Some(host) = head.host {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
    if last_xff.is_none() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        put_ip(out, client_ip);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(prefix) = stripped_prefix {
        put_header(out, "X-Forwarded-Prefix", prefix.as_bytes());
    }
    for (_, name, value) in &edits.set {
        put_header(out, name, value.as_bytes());
    }
    put_header(out, REQUEST_ID_HEADER, request_id);
    out.extend_from_slice(b"X-Forwarded-Proto: http\r\n\r\n");
}

/// Header fields to set (replacing any of the same name) and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Lower-case name, the name as written, value.
    pub set: Vec<(String, String, String)>,
    /// Lower-case names.
    pub remove: Vec<String>,
}

/// No edits (interim responses, responses to requests no route took).
pub static NO_EDITS: HeaderEdits = HeaderEdits {
    set: Vec::new(),
    remove: Vec::new(),
};

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Whether a field of the message is dropped: removed, or replaced by a set one.
    pub fn drops(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self
                .set
                .iter()
                .any(|(l, _, _)| l.eq_ignore_ascii_case(name))
    }
}

/// How the relayed response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFraming {
    /// As the backend framed it: no body, or Content-Length.
    AsIs,
    /// Chunked (re-chunked by rgate) to an HTTP/1.1 client.
    Chunked,
    /// Delimited by closing the connection (until-close bodies; chunked de-chunked for 1.0).
    Close,
    /// 101 Switching Protocols: the connection becomes a tunnel.
    Upgrade,
    /// An interim (1xx) head: no body, and no `Connection` field of rgate's — the final
    /// response that follows says what becomes of the connection.
    Interim,
}

/// Appends the response head relayed to the client. `request_id` is added as
/// `X-Request-Id` unless the backend sent one (it usually echoes the one it got).
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    relay: RelayFraming,
    client_version: Version,
    keep_alive: bool,
    request_id: Option<&[u8]>,
    edits: &HeaderEdits,
) {
    let mut request_id = request_id;
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers {
        let name = h.name;
        if is_framing(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("upgrade") {
            if relay != RelayFraming::Upgrade {
                continue;
            }
        } else if is_hop_by_hop(name, &resp.connection) || (!edits.is_empty() && edits.drops(name))
        {
            continue;
        } else if request_id.is_some() && is_request_id_header(name) {
            request_id = None;
        }
        put_header(out, name, h.value);
    }
    for (_, name, value) in &edits.set {
        put_header(out, name, value.as_bytes());
    }
    if let Some(id) = request_id {
        put_header(out, REQUEST_ID_HEADER, id);
    }
    match relay {
        RelayFraming::AsIs => match resp.framing {
            BodyFraming::Length(n) => put_length(out, n),
            // A response to HEAD, a 304 or a `Content-Length: 0` announces its length; 1xx
            // and 204 never carry one (RFC 9110 §8.6).
            _ if resp.status == 204 || resp.status < 200 => {}
            _ => {
                if let Some(n) = resp.declared_length {
                    put_length(out, n);
                }
            }
        },
        RelayFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        RelayFraming::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
        RelayFraming::Close | RelayFraming::Interim => {}
    }
    if !matches!(relay, RelayFraming::Upgrade | RelayFraming::Interim) {
        super::put_persistence(out, client_version, keep_alive);
    }
    out.extend_from_slice(b"\r\n");
}

fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    put_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal. By hand: the formatting machinery costs more than the rest of
/// a head's writing, and these run for every request.
pub(crate) fn put_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let at = decimal_into(&mut digits, n);
    out.extend_from_slice(&digits[at..]);
}

/// Writes `n` in decimal at the end of `buf`; returns where its digits start.
fn decimal_into(buf: &mut [u8], mut n: u64) -> usize {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

/// Appends an address as `Display` writes it (IPv4 by hand, for the same reason).
pub(crate) fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Right to left into one buffer: "255.255.255.255" is the longest.
            let mut text = [0u8; 15];
            let mut at = text.len();
            for (i, octet) in v4.octets().into_iter().rev().enumerate() {
                if i > 0 {
                    at -= 1;
                    text[at] = b'.';
                }
                at = decimal_into(&mut text[..at], u64::from(octet));
            }
            out.extend_from_slice(&text[at..]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
