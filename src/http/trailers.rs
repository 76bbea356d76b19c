//! The trailer section of a chunked body (RFC 9112 §7.1.2): checked line by line, and passed
//! on without the fields that may not be trailers. A trailer is read after the body, when the
//! head was long since acted on, so a field that frames, routes, authenticates or says how to
//! process the content (RFC 9110 §6.5.1) would mean one thing to a recipient that merges
//! trailers into the head and nothing to one that does not: rgate drops them.
//!
//! Not here: finding where the section ends (`chunked` does that), or writing chunks.

use std::fmt;

use super::{is_hop_by_hop, ConnectionTokens, NEVER_HOP_BY_HOP};

/// Fields never passed on as trailers, beyond the hop-by-hop ones and those rgate sets.
const NOT_IN_TRAILERS: [&str; 24] = [
    // framing and how to process the content
    "content-type",
    "content-encoding",
    "content-range",
    "content-location",
    // request modifiers: controls and conditionals
    "cache-control",
    "expect",
    "max-forwards",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    // authentication and state
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    // response control data
    "age",
    "expires",
    "date",
    "location",
    "vary",
];

/// A trailer line that is not a field line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerError {
    /// No `:`, an empty name, or a name that is not a token (whitespace before the colon,
    /// a line starting with whitespace — obs-fold —, a control byte).
    InvalidName,
    /// A control byte (NUL, a bare CR…) in a value.
    InvalidValue,
}

impl fmt::Display for TrailerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrailerError::InvalidName => "invalid trailer field name",
            TrailerError::InvalidValue => "invalid trailer field value",
        })
    }
}

/// Checks every line of `section` (field lines, each ending with CRLF, as the chunked decoder
/// collected them) and appends the ones that may be passed on to `out`, each rewritten as
/// `name: value` CRLF. Nothing is appended when any line is invalid.
pub fn write_allowed(section: &[u8], out: &mut Vec<u8>) -> Result<(), TrailerError> {
    let start = out.len();
    let result = section
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .try_for_each(|line| {
            let line = line.strip_suffix(b"\r").ok_or(TrailerError::InvalidValue)?;
            let (name, value) = field_line(line)?;
            if may_pass(name) {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            Ok(())
        });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5), strictly.
fn field_line(line: &[u8]) -> Result<(&str, &[u8]), TrailerError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(TrailerError::InvalidName)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(TrailerError::InvalidName);
    }
    let value = super::trim(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(TrailerError::InvalidValue);
    }
    // A token is ASCII, so this cannot fail.
    let name = std::str::from_utf8(name).map_err(|_| TrailerError::InvalidName)?;
    Ok((name, value))
}

fn may_pass(name: &str) -> bool {
    let listed = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    !(is_hop_by_hop(name, &ConnectionTokens::default())
        || listed(&NEVER_HOP_BY_HOP)
        || listed(&NOT_IN_TRAILERS)
        || name.contains('_'))
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(section: &[u8]) -> Result<String, TrailerError> {
        let mut out = b"kept".to_vec();
        write_allowed(section, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn passes_ordinary_fields_and_drops_forbidden_ones() {
        assert_eq!(
            allowed(
                b"X-Checksum:  abc \r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
Host: evil\r\nTrailer: X\r\nConnection: close\r\nX-Forwarded-For: 6.6.6.6\r\n\
Content-Type: text/html\r\nSet-Cookie: a=1\r\nX_Under: 1\r\nServer-Timing: db;dur=5\r\n"
            ),
            Ok("keptX-Checksum: abc\r\nServer-Timing: db;dur=5\r\n".into())
        );
        assert_eq!(allowed(b""), Ok("kept".into()));
    }

    #[test]
    fn refuses_malformed_lines_and_appends_nothing() {
        for bad in [
            &b"X-A b: 1\r\n"[..],
            b"X-A : 1\r\n",
            b" X-A: 1\r\n",
            b"\tfolded\r\n",
            b"NoColon\r\n",
            b": empty-name\r\n",
            b"X-A: a\0b\r\n",
            b"X-A: a\x0bb\r\n",
            b"X-A: a\x7f\r\n",
            b"X-A: 1\r\nX-B: 2\n",
            b"X-A\x01: 1\r\n",
        ] {
            let mut out = b"kept".to_vec();
            assert!(write_allowed(bad, &mut out).is_err(), "{bad:?}");
            assert_eq!(out, b"kept", "{bad:?}");
        }
    }

    #[test]
    fn a_space_inside_a_value_is_allowed_and_each_error_says_why() {
        assert_eq!(allowed(b"X-Sum: a b\r\n").unwrap(), "keptX-Sum: a b\r\n");
        assert_eq!(
            TrailerError::InvalidName.to_string(),
            "invalid trailer field name"
        );
        assert_eq!(
            TrailerError::InvalidValue.to_string(),
            "invalid trailer field value"
        );
    }
}
