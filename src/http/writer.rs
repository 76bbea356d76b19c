//! The heads rgate writes on behalf of others: the request it forwards to a backend and the
//! response head it relays to the client. Both keep every end-to-end field in its order and
//! with its value, drop the hop-by-hop ones, and state their own framing.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::framing::BodyFraming;
use super::request::RequestHead;
use super::response::ResponseHead;
use super::{is_hop_by_hop, Version};

/// Appends the head of the request forwarded to a backend. `target` is the normalised
/// request-target the route was chosen on; `fallback_host` is used when the client sent
/// no Host (HTTP/1.0), because the backend is spoken to in HTTP/1.1.
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_, '_>,
    target: &str,
    client_ip: IpAddr,
    fallback_host: SocketAddr,
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let upgrading = head.upgrade.is_some();
    let last_xff = head
        .headers
        .iter()
        .rposition(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
    let mut wrote_length = false;
    for (i, h) in head.headers.iter().enumerate() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            if !upgrading {
                continue;
            }
        } else if is_hop_by_hop(name, &head.connection)
            // rgate answers `Expect: 100-continue` itself.
            || name.eq_ignore_ascii_case("expect")
            // rgate is the edge: these describe rgate's own client connection.
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            // Duplicates were checked to be identical; send one.
            if !wrote_length {
                if let BodyFraming::Length(n) = head.framing {
                    out.extend_from_slice(b"Content-Length: ");
                    put_decimal(out, n);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(b"Content-Length: 0\r\n");
                }
                wrote_length = true;
            }
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
    if head.framing == BodyFraming::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if upgrading {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    match head.host {
        Some(host) => {
            out.extend_from_slice(b"X-Forwarded-Host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
        }
        None => {
            let _ = write!(out, "Host: {fallback_host}\r\n");
        }
    }
    if last_xff.is_none() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        put_ip(out, client_ip);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-Proto: http\r\n\r\n");
}

/// How the relayed response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFraming {
    /// As the backend framed it: no body, or Content-Length.
    AsIs,
    /// Chunked, passed through to an HTTP/1.1 client.
    Chunked,
    /// Delimited by closing the connection (until-close bodies; chunked de-chunked for 1.0).
    Close,
    /// 101 Switching Protocols: the connection becomes a tunnel.
    Upgrade,
    /// An interim (1xx) head: no body, and no `Connection` field of rgate's — the final
    /// response that follows says what becomes of the connection.
    Interim,
}

/// Appends the response head relayed to the client.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    relay: RelayFraming,
    client_version: Version,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut wrote_length = false;
    for h in resp.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            if relay != RelayFraming::Upgrade {
                continue;
            }
        } else if is_hop_by_hop(name, &resp.connection) {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            if matches!(relay, RelayFraming::AsIs | RelayFraming::Interim) && !wrote_length {
                match resp.framing {
                    BodyFraming::Length(n) => {
                        out.extend_from_slice(b"Content-Length: ");
                        put_decimal(out, n);
                        out.extend_from_slice(b"\r\n");
                    }
                    // A HEAD or 304 response announces the length it would have had.
                    _ => put_header(out, name, h.value),
                }
                wrote_length = true;
            }
            continue;
        }
        put_header(out, name, h.value);
    }
    match relay {
        RelayFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        RelayFraming::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
        _ => {}
    }
    if !matches!(relay, RelayFraming::Upgrade | RelayFraming::Interim) {
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if client_version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
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
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
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
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0u64, 7, 10, 99, 100, 65_535, 1 << 32, u64::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let ips: [IpAddr; 6] = [
            "0.0.0.0".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            "10.200.3.255".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
        ];
        for ip in ips {
            let mut out = Vec::new();
            put_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }
    use crate::http::request::parse_request;
    use crate::http::response::parse_response;
    use crate::http::MAX_HEADERS;

    fn forwarded(input: &[u8]) -> String {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(input, &mut storage).unwrap().unwrap();
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &head,
            head.target,
            "10.0.0.7".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_drops_hop_by_hop_and_adds_forwarded() {
        let out = forwarded(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
Keep-Alive: 5\r\nTE: trailers\r\nUser-Agent: t\r\nTransfer-Encoding: chunked\r\n\
Proxy-Connection: x\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            out,
            "POST /a HTTP/1.1\r\nHost: gw\r\nUser-Agent: t\r\nAccept: */*\r\n\
Transfer-Encoding: chunked\r\nX-Forwarded-Host: gw\r\nX-Forwarded-For: 10.0.0.7\r\n\
X-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn request_appends_to_existing_forwarded_for() {
        let out = forwarded(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: gw\r\nX-Forwarded-Proto: https\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7\r\nHost: gw\r\n\
X-Forwarded-Host: gw\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn request_keeps_upgrade_when_upgrading_and_adds_host_for_http10() {
        let out = forwarded(
            b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(out.contains("Upgrade: websocket\r\n"), "{out}");
        assert!(out.contains("Connection: upgrade\r\n"), "{out}");
        let out = forwarded(b"GET / HTTP/1.0\r\n\r\n");
        assert!(
            out.starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{out}"
        );
    }

    fn relayed(input: &[u8], relay: RelayFraming, v: Version, keep: bool) -> String {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response(input, &mut storage, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &resp, relay, v, keep);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_relay() {
        let out = relayed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n",
            RelayFraming::AsIs,
            Version::Http11,
            true,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n"
        );
        let out = relayed(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
            RelayFraming::Close,
            Version::Http10,
            false,
        );
        assert_eq!(out, "HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n");
        let out = relayed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            RelayFraming::AsIs,
            Version::Http10,
            true,
        );
        assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
    }
}
