//! Responses rgate makes itself. Every error has one JSON shape,
//! `{"status": 503, "error": "no_instances", "message": "...", "request_id": "..."}`, with
//! Content-Type, Content-Length and `X-Request-Id` set; the configured default response is
//! sent exactly as configured (with `X-Request-Id`).

use std::io::Write as _;

use super::request_id::RequestId;
use super::Version;

/// The error codes rgate answers with; each is one stable string in the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    RequestTimeout,
    UriTooLong,
    HeadersTooLarge,
    ExpectationFailed,
    ContentTooLarge,
    NotImplemented,
    NoInstances,
    BackendUnavailable,
    BadGateway,
    GatewayTimeout,
    Overloaded,
    TooManyConnections,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::ExpectationFailed => "expectation_failed",
            ErrorCode::ContentTooLarge => "content_too_large",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::NoInstances => "no_instances",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::GatewayTimeout => "gateway_timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::TooManyConnections => "too_many_connections",
        }
    }

    /// Seconds after which a client may try again, for the errors that say so.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            ErrorCode::Overloaded | ErrorCode::TooManyConnections => Some(1),
            _ => None,
        }
    }
}

/// The JSON body of a gateway error. `request_id` is valid (`request_id::is_valid_request_id`:
/// no quote, backslash or control), so it needs no escaping.
pub fn error_body(status: u16, code: ErrorCode, message: &str, request_id: &RequestId) -> Vec<u8> {
    // Written by hand to keep the field order stable; the message is escaped by serde_json.
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
    format!(
        "{{\"status\":{status},\"error\":\"{}\",\"message\":{message},\"request_id\":\"{}\"}}",
        code.as_str(),
        request_id.as_str()
    )
    .into_bytes()
}

/// A complete response made by rgate.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub version: Version,
    pub keep_alive: bool,
    /// Omit the body (a reply to HEAD).
    pub head_only: bool,
    /// Seconds after which the client may try again (an overloaded backend).
    pub retry_after: Option<u32>,
    /// Sent as `X-Request-Id`.
    pub request_id: Option<&'a RequestId>,
    /// The request field the body was chosen by, sent as `Vary`.
    pub vary: Option<&'a str>,
}

impl<'a> Reply<'a> {
    /// A reply to an HTTP/1.1 request that closes the connection; the caller sets the rest.
    pub fn of(status: u16, content_type: &'a str, body: &'a [u8]) -> Reply<'a> {
        Reply {
            status,
            content_type,
            body,
            version: Version::Http11,
            keep_alive: false,
            head_only: false,
            retry_after: None,
            request_id: None,
            vary: None,
        }
    }
}

/// Appends a complete response made by rgate.
pub fn write_response(out: &mut Vec<u8>, reply: &Reply<'_>) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if let Some(seconds) = reply.retry_after {
        let _ = write!(out, "Retry-After: {seconds}\r\n");
    }
    if let Some(id) = reply.request_id {
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(field) = reply.vary {
        let _ = write!(out, "Vary: {field}\r\n");
    }
    super::put_persistence(out, reply.version, reply.keep_alive);
    out.extend_from_slice(b"\r\n");
    if !reply.head_only {
        out.extend_from_slice(reply.body);
    }
}

/// The standard reason phrase, or an empty one (allowed: RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_shape() {
        let id = RequestId::from_client(b"req-7").unwrap();
        let body = error_body(
            503,
            ErrorCode::NoInstances,
            "Backend available but no Service URLs discovered",
            &id,
        );
        let mut out = Vec::new();
        let reply = Reply {
            status: 503,
            content_type: "application/json",
            body: &body,
            version: Version::Http11,
            keep_alive: false,
            head_only: false,
            retry_after: None,
            request_id: Some(&id),
            vary: None,
        };
        write_response(&mut out, &reply);
        let text = String::from_utf8(out).unwrap();
        assert!(text
            .starts_with("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"));
        assert!(text.contains(&format!(
            "Content-Length: {}\r\nX-Request-Id: req-7\r\nConnection: close\r\n\r\n",
            body.len()
        )));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 503);
        assert_eq!(v["error"], "no_instances");
        assert_eq!(
            v["message"],
            "Backend available but no Service URLs discovered"
        );
        assert_eq!(v["request_id"], "req-7");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
    }

    #[test]
    fn every_status_rgate_sends_has_its_reason_phrase() {
        for (status, phrase) in [
            (100, "Continue"),
            (200, "OK"),
            (201, "Created"),
            (204, "No Content"),
            (301, "Moved Permanently"),
            (302, "Found"),
            (304, "Not Modified"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (417, "Expectation Failed"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (599, ""),
        ] {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }

    #[test]
    fn retry_after_is_sent_for_overload_only_and_head_omits_the_body() {
        for code in [ErrorCode::Overloaded, ErrorCode::TooManyConnections] {
            assert_eq!(code.retry_after(), Some(1), "{code:?}");
        }
        for code in [
            ErrorCode::BadGateway,
            ErrorCode::NoInstances,
            ErrorCode::BadRequest,
        ] {
            assert_eq!(code.retry_after(), None, "{code:?}");
        }
        let body = b"{}";
        let write = |reply: Reply<'_>| {
            let mut out = Vec::new();
            write_response(&mut out, &reply);
            String::from_utf8(out).unwrap()
        };
        let with = write(Reply {
            retry_after: Some(1),
            ..Reply::of(503, "application/json", body)
        });
        assert!(with.contains("\r\nRetry-After: 1\r\n"), "{with}");
        assert!(with.ends_with("\r\n\r\n{}"), "{with}");
        let head = write(Reply {
            head_only: true,
            ..Reply::of(503, "application/json", body)
        });
        assert!(!head.contains("Retry-After"), "{head}");
        assert!(
            head.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }
}
