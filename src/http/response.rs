//! The backend's response head: parsed with httparse, checked, and summarised into what the
//! proxy needs to relay it (status, framing, whether the backend keeps the connection).

use std::fmt;

use super::framing::{BodyFraming, FramingError, FramingHeaders};
use super::request::httparse_reason;
use super::{ConnectionTokens, Version, MAX_HEAD_BYTES};

#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub version: Version,
    pub status: u16,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    pub framing: BodyFraming,
    /// The Content-Length the backend declared, when valid: a response to HEAD and a 304
    /// announce the length the body would have had (RFC 9110 §8.6), and rgate passes it on.
    pub declared_length: Option<u64>,
    pub connection: ConnectionTokens,
}

impl ResponseHead<'_, '_> {
    /// Whether the backend will keep the connection open after this response.
    pub fn backend_keeps_alive(&self) -> bool {
        self.connection.persistent(self.version) && self.framing != BodyFraming::UntilClose
    }

    /// 1xx other than 101: an interim response, followed by the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Why a backend's response head is unusable (the client gets 502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(&'static str),
    HeadTooLarge,
    TooManyHeaders,
    Framing(FramingError),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(why) => write!(f, "malformed response head: {why}"),
            ResponseError::HeadTooLarge => {
                write!(f, "response head larger than {MAX_HEAD_BYTES} bytes")
            }
            ResponseError::TooManyHeaders => write!(f, "too many response header fields"),
            ResponseError::Framing(e) => write!(f, "response framing: {}", e.reason()),
        }
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: need more input.
/// `request_is_head` decides that the response has no body (RFC 9112 §6.3 rule 1).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    request_is_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, ResponseError> {
    let mut resp = httparse::Response::new(headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(e) => return Err(ResponseError::Malformed(httparse_reason(e))),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(ResponseError::HeadTooLarge);
    }
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(ResponseError::Malformed("incomplete status line"));
    };
    if !(100..=999).contains(&status) {
        return Err(ResponseError::Malformed("status code out of range"));
    }
    let version = Version::from_minor(minor);
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    let mut framing = FramingHeaders::default();
    let mut connection = ConnectionTokens::default();
    for h in headers {
        if !framing.observe(h.name, h.value) && h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        }
    }
    let declared_length = framing.content_length();
    let framing = framing
        .response_framing(version, status, request_is_head)
        .map_err(ResponseError::Framing)?;
    Ok(Some(ResponseHead {
        version,
        status,
        reason: resp.reason.unwrap_or(""),
        headers,
        head_len,
        framing,
        declared_length,
        connection,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    fn summary(
        buf: &[u8],
        head: bool,
    ) -> Result<Option<(u16, usize, BodyFraming, bool)>, ResponseError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_response(buf, &mut storage, head)
            .map(|o| o.map(|r| (r.status, r.head_len, r.framing, r.backend_keeps_alive())))
    }

    #[test]
    fn parses_at_every_split() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let whole = summary(input, false).unwrap().unwrap();
        assert_eq!(whole, (200, input.len() - 5, BodyFraming::Length(5), true));
        for cut in 0..whole.1 {
            assert_eq!(summary(&input[..cut], false), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn persistence_and_framing() {
        let r = summary(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!r.3, "HTTP/1.0 closes by default");
        let r = summary(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!r.3);
        let r = summary(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(r.2, BodyFraming::UntilClose);
        assert!(!r.3);
        let r = summary(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(r.2, BodyFraming::None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(summary(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        assert!(summary(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false).is_err());
    }

    #[test]
    fn interim_responses_are_1xx_except_101() {
        for (status, interim) in [
            (100, true),
            (103, true),
            (101, false),
            (199, true),
            (200, false),
        ] {
            let line = format!("HTTP/1.1 {status} X\r\n\r\n");
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = parse_response(line.as_bytes(), &mut storage, false)
                .unwrap()
                .unwrap();
            assert_eq!(head.is_interim(), interim, "{status}");
        }
    }

    #[test]
    fn a_head_of_exactly_the_limit_is_taken_and_one_byte_more_is_too_large() {
        let start = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: ";
        let pad = |total: usize| {
            let mut h = start.to_string();
            h.push_str(&"a".repeat(total - start.len() - 4));
            h.push_str("\r\n\r\n");
            assert_eq!(h.len(), total);
            h
        };
        let exact = pad(MAX_HEAD_BYTES);
        assert!(summary(exact.as_bytes(), false).unwrap().is_some());
        let over = pad(MAX_HEAD_BYTES + 1);
        assert_eq!(
            summary(over.as_bytes(), false),
            Err(ResponseError::HeadTooLarge)
        );
        // Still incomplete: waiting is fine up to the limit, an error past it.
        let partial = &exact.as_bytes()[..MAX_HEAD_BYTES - 1];
        assert_eq!(summary(partial, false), Ok(None));
        let mut long = exact.as_bytes()[..MAX_HEAD_BYTES - 4].to_vec();
        long.extend_from_slice(b"aaaaa");
        assert_eq!(summary(&long, false), Err(ResponseError::HeadTooLarge));
    }

    #[test]
    fn only_the_connection_field_says_whether_the_backend_keeps_the_connection() {
        let r = summary(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Note: close\r\n\r\n",
            false,
        );
        assert!(
            r.unwrap().unwrap().3,
            "X-Note: close is not Connection: close"
        );
        let r = summary(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!r.unwrap().unwrap().3, "Connection: close");
    }

    #[test]
    fn every_response_error_says_why() {
        for (e, says) in [
            (
                ResponseError::Malformed("x y"),
                "malformed response head: x y",
            ),
            (
                ResponseError::HeadTooLarge,
                "response head larger than 32768 bytes",
            ),
            (
                ResponseError::TooManyHeaders,
                "too many response header fields",
            ),
        ] {
            assert_eq!(e.to_string(), says);
        }
    }
}
