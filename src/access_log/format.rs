//! The two line formats of the access log, written into a byte buffer:
//!
//! * `combined`: nginx's combined format (so every tool that reads nginx logs reads it),
//!   then rgate's own fields as `key=value`:
//!   `1.2.3.4 - - [01/Dec/2026:10:00:00 +0000] "GET /api/x HTTP/1.1" 200 512 "-" "curl/8"
//!   rt=0.003 urt=0.002 us=200 route="/api" backend="api" instance=10.0.0.2:80
//!   request_id=… error=- retries=0 cut=0`. The size is the bytes sent, head included
//!   (nginx's `$bytes_sent`). Strings are escaped as nginx does (`\xHH` for `"`, `\`,
//!   controls and bytes past ASCII).
//! * `json`: one object per line, fields in a fixed order with stable names (see
//!   `docs/config.md`), absent values as `null`; bytes past ASCII as `\u00HH`.
//!
//! What a client sent (target, Host, User-Agent, Referer, X-Forwarded-For) is escaped in
//! both, so no request can forge or break a line.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use crate::http::request::RequestHead;
use crate::http::writer::{put_decimal, put_ip};
use crate::http::Version;

/// The request head's fields a line shows, copied out of the read buffer.
#[derive(Debug, Default)]
pub(crate) struct LoggedHead {
    buf: Vec<u8>,
    method: Range<usize>,
    target: Range<usize>,
    host: Option<Range<usize>>,
    forwarded_for: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    referer: Option<Range<usize>>,
    protocol: &'static str,
}

impl LoggedHead {
    pub(crate) fn capture(head: &RequestHead<'_, '_>) -> LoggedHead {
        let mut h = LoggedHead {
            buf: Vec::with_capacity(256),
            protocol: match head.version {
                Version::Http10 => "HTTP/1.0",
                Version::Http11 => "HTTP/1.1",
            },
            ..LoggedHead::default()
        };
        h.method = h.put(head.method.as_bytes());
        h.target = h.put(head.target.as_bytes());
        h.host = head.host.map(|v| h.put(v));
        for field in head.headers {
            let name = field.name;
            let slot = match name.len() {
                7 if name.eq_ignore_ascii_case("referer") => &mut h.referer,
                10 if name.eq_ignore_ascii_case("user-agent") => &mut h.user_agent,
                _ => continue,
            };
            if slot.is_none() {
                let start = h.buf.len();
                h.buf.extend_from_slice(field.value);
                *slot = Some(start..h.buf.len());
            }
        }
        // Several X-Forwarded-For fields are one list (RFC 9110 §5.3), written together.
        let start = h.buf.len();
        for field in head.headers {
            let name = field.name;
            if name.len() == 15 && name.eq_ignore_ascii_case("x-forwarded-for") {
                if h.forwarded_for.is_some() {
                    h.buf.extend_from_slice(b", ");
                }
                h.buf.extend_from_slice(field.value);
                h.forwarded_for = Some(start..h.buf.len());
            }
        }
        h
    }

    fn put(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
    }

    fn get(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.as_ref().map(|r| &self.buf[r.clone()])
    }
}

/// One finished request, as its line shows it.
pub(crate) struct Entry<'a> {
    /// When the request ended: Unix milliseconds.
    pub(crate) unix_ms: u64,
    pub(crate) client: IpAddr,
    /// None when the head could not be parsed (a 400 or 408).
    pub(crate) head: Option<&'a LoggedHead>,
    /// The status sent to the client; 0 when none was.
    pub(crate) status: u16,
    /// The backend's status and how long its head took, when a backend answered.
    pub(crate) upstream: Option<(u16, Duration)>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    pub(crate) route: Option<&'a str>,
    pub(crate) backend: Option<&'a str>,
    pub(crate) instance: Option<SocketAddr>,
    pub(crate) request_id: &'a str,
    pub(crate) error: Option<&'static str>,
    pub(crate) retries: u32,
    /// The response was cut after its head was sent.
    pub(crate) cut: bool,
}

/// The log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Combined,
    Json,
}

/// The time parts of a line, made once per second by each core.
#[derive(Default)]
pub(crate) struct Clock {
    second: u64,
    /// `01/Dec/2026:10:00:00 +0000`
    local: String,
    /// `2026-12-01T10:00:00`
    iso: String,
}

impl Clock {
    fn at(&mut self, unix_ms: u64) -> (&str, &str) {
        let second = unix_ms / 1000;
        if second != self.second || self.iso.is_empty() {
            self.second = second;
            let (days, rem) = ((second / 86_400) as i64, second % 86_400);
            let (y, m, d) = crate::logging::civil_from_days(days);
            let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let month = MONTHS[(m as usize).saturating_sub(1) % 12];
            self.local = format!("{d:02}/{month}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000");
            self.iso = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
        }
        (&self.local, &self.iso)
    }
}

/// Appends `entry`'s line (ending in `\n`) in `format`.
pub(crate) fn write_line(out: &mut Vec<u8>, format: LogFormat, clock: &mut Clock, e: &Entry<'_>) {
    match format {
        LogFormat::Combined => combined(out, clock, e),
        LogFormat::Json => json(out, clock, e),
    }
}

fn combined(out: &mut Vec<u8>, clock: &mut Clock, e: &Entry<'_>) {
    let (local, _) = clock.at(e.unix_ms);
    put_ip(out, e.client);
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(local.as_bytes());
    out.extend_from_slice(b"] \"");
    match e.head {
        Some(h) => {
            nginx_escaped(out, &h.buf[h.method.clone()]);
            out.push(b' ');
            nginx_escaped(out, &h.buf[h.target.clone()]);
            out.push(b' ');
            out.extend_from_slice(h.protocol.as_bytes());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"\" ");
    put_decimal(out, e.status.into());
    out.push(b' ');
    put_decimal(out, e.bytes_out);
    out.extend_from_slice(b" \"");
    let head = e.head;
    nginx_or_dash(out, head.and_then(|h| h.get(&h.referer)));
    out.extend_from_slice(b"\" \"");
    nginx_or_dash(out, head.and_then(|h| h.get(&h.user_agent)));
    out.extend_from_slice(b"\" rt=");
    seconds(out, e.duration);
    out.extend_from_slice(b" urt=");
    match e.upstream {
        Some((_, t)) => seconds(out, t),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" us=");
    match e.upstream {
        Some((status, _)) => put_decimal(out, status.into()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" route=\"");
    nginx_or_dash(out, e.route.map(str::as_bytes));
    out.extend_from_slice(b"\" backend=\"");
    nginx_or_dash(out, e.backend.map(str::as_bytes));
    out.extend_from_slice(b"\" instance=");
    match e.instance {
        Some(a) => put_addr(out, a),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" request_id=");
    out.extend_from_slice(e.request_id.as_bytes());
    out.extend_from_slice(b" error=");
    out.extend_from_slice(e.error.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" retries=");
    put_decimal(out, e.retries.into());
    out.extend_from_slice(if e.cut { b" cut=1\n" } else { b" cut=0\n" });
}

fn json(out: &mut Vec<u8>, clock: &mut Clock, e: &Entry<'_>) {
    let (_, iso) = clock.at(e.unix_ms);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(iso.as_bytes());
    out.push(b'.');
    put_fraction(out, e.unix_ms % 1000);
    out.extend_from_slice(b"Z\",\"client\":\"");
    put_ip(out, e.client);
    out.extend_from_slice(b"\",\"x_forwarded_for\":");
    let head = e.head;
    json_or_null(out, head.and_then(|h| h.get(&h.forwarded_for)));
    out.extend_from_slice(b",\"method\":");
    json_or_null(out, head.map(|h| &h.buf[h.method.clone()]));
    out.extend_from_slice(b",\"target\":");
    json_or_null(out, head.map(|h| &h.buf[h.target.clone()]));
    out.extend_from_slice(b",\"protocol\":");
    json_or_null(out, head.map(|h| h.protocol.as_bytes()));
    out.extend_from_slice(b",\"host\":");
    json_or_null(out, head.and_then(|h| h.get(&h.host)));
    out.extend_from_slice(b",\"status\":");
    put_decimal(out, e.status.into());
    out.extend_from_slice(b",\"upstream_status\":");
    match e.upstream {
        Some((status, _)) => put_decimal(out, status.into()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_in\":");
    put_decimal(out, e.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    put_decimal(out, e.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, e.duration);
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream {
        Some((_, t)) => millis(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"route\":");
    json_or_null(out, e.route.map(str::as_bytes));
    out.extend_from_slice(b",\"backend\":");
    json_or_null(out, e.backend.map(str::as_bytes));
    out.extend_from_slice(b",\"instance\":");
    match e.instance {
        Some(a) => {
            out.push(b'"');
            put_addr(out, a);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"request_id\":");
    json_string(out, e.request_id.as_bytes());
    out.extend_from_slice(b",\"user_agent\":");
    json_or_null(out, head.and_then(|h| h.get(&h.user_agent)));
    out.extend_from_slice(b",\"referer\":");
    json_or_null(out, head.and_then(|h| h.get(&h.referer)));
    out.extend_from_slice(b",\"error\":");
    json_or_null(out, e.error.map(str::as_bytes));
    out.extend_from_slice(b",\"retries\":");
    put_decimal(out, e.retries.into());
    out.extend_from_slice(if e.cut {
        b",\"cut\":true}\n"
    } else {
        b",\"cut\":false}\n"
    });
}

/// Seconds with millisecond precision, as nginx's `$request_time`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    put_decimal(out, ms / 1000);
    out.push(b'.');
    put_fraction(out, ms % 1000);
}

/// Milliseconds with microsecond precision.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros() as u64;
    put_decimal(out, us / 1000);
    out.push(b'.');
    put_fraction(out, us % 1000);
}

/// Three digits, zero-padded (`n` < 1000).
fn put_fraction(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&[
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    if a.is_ipv6() {
        out.push(b'[');
        put_ip(out, a.ip());
        out.push(b']');
    } else {
        put_ip(out, a.ip());
    }
    out.push(b':');
    put_decimal(out, a.port().into());
}

fn nginx_or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => nginx_escaped(out, v),
        _ => out.push(b'-'),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Copies the runs that need no escaping whole; `escape` writes each byte that does.
fn escaped(out: &mut Vec<u8>, v: &[u8], plain: fn(u8) -> bool, escape: fn(&mut Vec<u8>, u8)) {
    let mut rest = v;
    while let Some(i) = rest.iter().position(|&b| !plain(b)) {
        out.extend_from_slice(&rest[..i]);
        escape(out, rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

fn nginx_escaped(out: &mut Vec<u8>, v: &[u8]) {
    escaped(
        out,
        v,
        |b| b != b'"' && b != b'\\' && (0x20..0x7f).contains(&b),
        |out, b| {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ])
        },
    );
}

fn json_or_null(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_string(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    escaped(
        out,
        v,
        |b| b != b'"' && b != b'\\' && (0x20..0x7f).contains(&b),
        |out, b| match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)].to_ascii_lowercase(),
                HEX[usize::from(b & 15)].to_ascii_lowercase(),
            ]),
        },
    );
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_request;
    use crate::http::MAX_HEADERS;

    fn line(format: LogFormat, request: &[u8], edit: impl FnOnce(&mut Entry<'_>)) -> String {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(request, &mut storage).unwrap().unwrap();
        let logged = LoggedHead::capture(&head);
        let mut e = Entry {
            // 2026-12-01T10:00:00.042Z
            unix_ms: 1_796_119_200_042,
            client: "10.1.2.3".parse().unwrap(),
            head: Some(&logged),
            status: 200,
            upstream: Some((201, Duration::from_micros(2_345))),
            bytes_in: 80,
            bytes_out: 512,
            duration: Duration::from_micros(3_456),
            route: Some("/api"),
            backend: Some("api"),
            instance: Some("172.18.0.2:8080".parse().unwrap()),
            request_id: "abc-1",
            error: None,
            retries: 1,
            cut: false,
        };
        edit(&mut e);
        let mut out = Vec::new();
        write_line(&mut out, format, &mut Clock::default(), &e);
        String::from_utf8(out).unwrap()
    }

    const REQUEST: &[u8] = b"GET /api/x?q=1 HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: curl/8\r\n\
X-Forwarded-For: 1.1.1.1\r\nReferer: http://r/\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n";

    #[test]
    fn combined_is_nginx_combined_then_rgate_fields() {
        assert_eq!(
            line(LogFormat::Combined, REQUEST, |_| {}),
            "10.1.2.3 - - [01/Dec/2026:10:00:00 +0000] \"GET /api/x?q=1 HTTP/1.1\" 200 512 \
\"http://r/\" \"curl/8\" rt=0.003 urt=0.002 us=201 route=\"/api\" backend=\"api\" \
instance=172.18.0.2:8080 request_id=abc-1 error=- retries=1 cut=0\n"
        );
        let failed = line(LogFormat::Combined, b"GET / HTTP/1.0\r\n\r\n", |e| {
            e.status = 504;
            e.upstream = None;
            e.instance = None;
            e.error = Some("timeout");
            e.cut = true;
        });
        assert!(
            failed.contains("\"GET / HTTP/1.0\" 504 512 \"-\" \"-\" rt=0.003 urt=- us=- "),
            "{failed}"
        );
        assert!(
            failed.ends_with("instance=- request_id=abc-1 error=timeout retries=1 cut=1\n"),
            "{failed}"
        );
        let unparsed = line(LogFormat::Combined, REQUEST, |e| {
            e.head = None;
            e.route = None;
        });
        assert!(
            unparsed.contains("] \"-\" 200 512 \"-\" \"-\" "),
            "{unparsed}"
        );
        assert!(unparsed.contains(" route=\"-\" "), "{unparsed}");
    }

    #[test]
    fn json_has_every_field_in_a_fixed_order() {
        let text = line(LogFormat::Json, REQUEST, |_| {});
        assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let order = [
            "time",
            "client",
            "x_forwarded_for",
            "method",
            "target",
            "protocol",
            "host",
            "status",
            "upstream_status",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "upstream_ms",
            "route",
            "backend",
            "instance",
            "request_id",
            "user_agent",
            "referer",
            "error",
            "retries",
            "cut",
        ];
        assert_eq!(v.as_object().unwrap().len(), order.len(), "{text}");
        let at: Vec<usize> = order
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(v["time"], "2026-12-01T10:00:00.042Z");
        assert_eq!(v["x_forwarded_for"], "1.1.1.1, 2.2.2.2");
        assert_eq!(v["target"], "/api/x?q=1");
        assert_eq!(v["host"], "gw.example");
        assert_eq!(v["upstream_status"], 201);
        assert_eq!(v["duration_ms"], 3.456);
        assert_eq!(v["upstream_ms"], 2.345);
        assert_eq!(v["instance"], "172.18.0.2:8080");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["cut"], false);
        let bare = line(LogFormat::Json, b"GET / HTTP/1.0\r\n\r\n", |e| {
            e.upstream = None;
            e.route = None;
        });
        let v: serde_json::Value = serde_json::from_str(&bare).unwrap();
        for absent in [
            "x_forwarded_for",
            "host",
            "upstream_status",
            "upstream_ms",
            "route",
        ] {
            assert!(v[absent].is_null(), "{absent}: {bare}");
        }
    }

    #[test]
    fn what_a_client_sent_cannot_break_or_forge_a_line() {
        let hostile =
            b"GET /a\"b HTTP/1.1\r\nHost: h\r\nUser-Agent: x\" 200 1 \"\\\xc3\xa9\tz\r\n\r\n";
        let combined = line(LogFormat::Combined, hostile, |_| {});
        assert!(combined.contains("\"GET /a\\x22b HTTP/1.1\""), "{combined}");
        assert!(
            combined.contains("\"x\\x22 200 1 \\x22\\x5C\\xC3\\xA9\\x09z\""),
            "{combined}"
        );
        assert_eq!(combined.matches('\n').count(), 1);
        let json = line(LogFormat::Json, hostile, |_| {});
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["target"], "/a\"b");
        assert_eq!(v["user_agent"], "x\" 200 1 \"\\\u{c3}\u{a9}\tz");
    }
}
