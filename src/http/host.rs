//! The Host a request is for: the grammar of a `Host` value (RFC 9112 §3.2, RFC 3986 §3.2.2)
//! and the authority of an absolute-form request-target (RFC 9112 §3.2.2), which replaces
//! the `Host` field when present. rgate forwards the Host it validated and nothing else, so
//! a backend never sees a Host that rgate would have read differently.
//!
//! Not here: routing by host (the router), or what the backend does with the name.

use std::fmt;
use std::net::Ipv6Addr;

/// The most digits a port may have (65535).
const MAX_PORT_DIGITS: usize = 5;

/// Why a Host value or an absolute-form authority is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// An empty host: an `http` URI must name one (RFC 9110 §4.2.1).
    Empty,
    /// A byte the reg-name grammar does not allow (space, `/`, `@`, `?`, `#`, a control…).
    InvalidByte,
    /// `,` is a valid reg-name byte, but a comma turns Host into a list for any recipient
    /// that splits field values, so two parsers could pick different hosts.
    Comma,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `[...]` that is not an IPv6 address or an IPvFuture literal.
    BadIpLiteral,
    /// A port that is not 0 to 5 decimal digits up to 65535.
    BadPort,
    /// `user@` in an absolute-form target: credentials in a URI are refused.
    Userinfo,
}

impl HostError {
    pub fn reason(self) -> &'static str {
        match self {
            HostError::Empty => "empty host",
            HostError::InvalidByte => "invalid character in host",
            HostError::Comma => "host is a list",
            HostError::BadPercentEncoding => "invalid percent-encoding in host",
            HostError::BadIpLiteral => "invalid IP literal in host",
            HostError::BadPort => "invalid port in host",
            HostError::Userinfo => "userinfo in the request-target",
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks `host [ ":" port ]` against RFC 3986's grammar (reg-name, IPv4, IP-literal).
pub fn check_host(value: &[u8]) -> Result<(), HostError> {
    let (host, port) = if value.first() == Some(&b'[') {
        let close = value
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::BadIpLiteral)?;
        check_ip_literal(&value[1..close])?;
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return Err(HostError::InvalidByte),
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host[0] != b'[' {
        check_reg_name(host)?;
    }
    match port {
        Some(port) => check_port(port),
        None => Ok(()),
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, less the comma. One table
/// look-up per byte: this runs on every request.
fn check_reg_name(name: &[u8]) -> Result<(), HostError> {
    let mut i = 0;
    while i < name.len() {
        match REG_NAME[usize::from(name[i])] {
            ByteClass::Allowed => {}
            ByteClass::Percent => {
                let hex = name
                    .get(i + 1..i + 3)
                    .ok_or(HostError::BadPercentEncoding)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(HostError::BadPercentEncoding);
                }
                i += 2;
            }
            ByteClass::Comma => return Err(HostError::Comma),
            ByteClass::Invalid => return Err(HostError::InvalidByte),
        }
        i += 1;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum ByteClass {
    Invalid,
    Allowed,
    Percent,
    Comma,
}

/// What each byte is in a reg-name.
const REG_NAME: [ByteClass; 256] = {
    let mut table = [ByteClass::Invalid; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if byte == b'%' {
            ByteClass::Percent
        } else if byte == b',' {
            ByteClass::Comma
        } else if is_unreserved(byte) || is_sub_delim(byte) {
            ByteClass::Allowed
        } else {
            ByteClass::Invalid
        };
        b += 1;
    }
    table
};

/// Inside the brackets: an IPv6 address, or `v` HEXDIG+ `.` (unreserved / sub-delims / `:`)+.
fn check_ip_literal(inner: &[u8]) -> Result<(), HostError> {
    if let [b'v' | b'V', rest @ ..] = inner {
        let dot = rest
            .iter()
            .position(|&b| b == b'.')
            .ok_or(HostError::BadIpLiteral)?;
        let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
        let ok = !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
        return if ok {
            Ok(())
        } else {
            Err(HostError::BadIpLiteral)
        };
    }
    std::str::from_utf8(inner)
        .ok()
        .and_then(|s| s.parse::<Ipv6Addr>().ok())
        .map(|_| ())
        .ok_or(HostError::BadIpLiteral)
}

fn check_port(port: &[u8]) -> Result<(), HostError> {
    if port.len() > MAX_PORT_DIGITS || !port.iter().all(u8::is_ascii_digit) {
        return Err(HostError::BadPort);
    }
    let value = port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    if value > u32::from(u16::MAX) {
        return Err(HostError::BadPort);
    }
    Ok(())
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// An absolute-form target split into its authority and the rest (path, query), when the
/// target is one (`http://` or `https://`, any case). The authority is not yet checked.
pub fn split_absolute_form(target: &str) -> Option<(&str, &str)> {
    let scheme_len = if starts_with_ignore_case(target, "http://") {
        7
    } else if starts_with_ignore_case(target, "https://") {
        8
    } else {
        return None;
    };
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// The authority of an absolute-form target, checked: it becomes the request's Host.
/// `None` when the target is not absolute-form.
pub fn absolute_form_host(target: &str) -> Option<Result<&str, HostError>> {
    let (authority, _) = split_absolute_form(target)?;
    if authority.contains('@') {
        return Some(Err(HostError::Userinfo));
    }
    Some(check_host(authority.as_bytes()).map(|()| authority))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        for host in [
            "a",
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:0",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:80",
            "[2001:db8::8a2e:370:7334]:443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a_b.example",
            "%41%62c",
            "host:",
            "a~b!$&'()*+;=",
        ] {
            assert_eq!(check_host(host.as_bytes()), Ok(()), "{host:?}");
        }
    }

    #[test]
    fn invalid_hosts() {
        use HostError::*;
        for (host, err) in [
            ("", Empty),
            (":80", Empty),
            ("a, b", Comma),
            ("a,b", Comma),
            ("a b", InvalidByte),
            ("a/b@c", InvalidByte),
            ("a@b", InvalidByte),
            ("a?b", InvalidByte),
            ("a#b", InvalidByte),
            ("a\\b", InvalidByte),
            ("a\"b", InvalidByte),
            ("a\tb", InvalidByte),
            ("a\u{7f}", InvalidByte),
            ("é.example", InvalidByte),
            ("a%4", BadPercentEncoding),
            ("a%zz", BadPercentEncoding),
            // The byte after a percent-encoding is checked too, wherever the `%` stands.
            ("abc%41 x", InvalidByte),
            ("abc%41,x", Comma),
            ("a:80:80", InvalidByte),
            ("a:65536", BadPort),
            ("a:123456", BadPort),
            ("a:-1", BadPort),
            ("a: 80", BadPort),
            ("[::1", BadIpLiteral),
            ("[nonsense]", BadIpLiteral),
            ("[127.0.0.1]", BadIpLiteral),
            ("[v1.]", BadIpLiteral),
            ("[::1]x", InvalidByte),
            ("[::1]:x", BadPort),
        ] {
            assert_eq!(check_host(host.as_bytes()), Err(err), "{host:?}");
        }
    }

    /// The reason reaches the client in the 400's JSON message, so each error names its fault.
    #[test]
    fn every_host_error_says_why() {
        use HostError::*;
        for (err, reason) in [
            (Empty, "empty host"),
            (InvalidByte, "invalid character in host"),
            (Comma, "host is a list"),
            (BadPercentEncoding, "invalid percent-encoding in host"),
            (BadIpLiteral, "invalid IP literal in host"),
            (BadPort, "invalid port in host"),
            (Userinfo, "userinfo in the request-target"),
        ] {
            assert_eq!(err.reason(), reason);
            assert_eq!(err.to_string(), reason);
        }
    }

    /// Every prefix of a valid host is checked without panicking, and the verdict on the
    /// whole does not depend on how it was reached (the check has no hidden state).
    #[test]
    fn every_prefix_is_checked_safely() {
        for host in ["[2001:db8::1]:8080", "a%41b.example:80", "[v7.x:y]:1"] {
            assert_eq!(check_host(host.as_bytes()), Ok(()));
            for cut in 0..host.len() {
                let _ = check_host(&host.as_bytes()[..cut]);
            }
        }
    }

    #[test]
    fn absolute_form() {
        assert_eq!(split_absolute_form("/x"), None);
        assert_eq!(split_absolute_form("*"), None);
        assert_eq!(split_absolute_form("ftp://a/x"), None);
        assert_eq!(split_absolute_form("http://a/x?y"), Some(("a", "/x?y")));
        assert_eq!(split_absolute_form("HTTPS://a:1?y"), Some(("a:1", "?y")));
        assert_eq!(split_absolute_form("http://a#f"), Some(("a", "#f")));
        assert_eq!(absolute_form_host("http://good:80/x"), Some(Ok("good:80")));
        assert_eq!(
            absolute_form_host("http://user:pw@good/x"),
            Some(Err(HostError::Userinfo))
        );
        assert_eq!(absolute_form_host("http:///x"), Some(Err(HostError::Empty)));
        assert_eq!(
            absolute_form_host("http://a,b/x"),
            Some(Err(HostError::Comma))
        );
        assert_eq!(absolute_form_host("/x"), None);
    }
}
