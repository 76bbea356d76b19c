//! Body framing: how the length of a message body is known, decided once per message
//! from its head, by the rules of RFC 9112 §6.3. An ambiguous request is refused, never
//! forwarded; an ambiguous response is treated as invalid (502). The decision is all that
//! leaves this module: the writer states it in a framing field of rgate's own.

use super::{comma_list, trim, Version};

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding; the decoder finds the end.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Why a message's framing cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Both Transfer-Encoding and Content-Length (a smuggling vector).
    LengthAndTransferEncoding,
    /// Content-Length that is not one decimal number, or several that differ.
    InvalidContentLength,
    /// Transfer-Encoding whose final coding is not chunked.
    ChunkedNotFinal,
    /// A coding other than chunked, which rgate does not decode.
    UnsupportedCoding,
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1: faulty framing).
    TransferEncodingInHttp10,
}

impl FramingError {
    pub fn reason(self) -> &'static str {
        match self {
            FramingError::LengthAndTransferEncoding => {
                "both Transfer-Encoding and Content-Length are present"
            }
            FramingError::InvalidContentLength => "invalid or conflicting Content-Length",
            FramingError::ChunkedNotFinal => "Transfer-Encoding does not end with chunked",
            FramingError::UnsupportedCoding => "unsupported transfer coding",
            FramingError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
        }
    }
}

/// The framing headers of one message, gathered while its head is read.
#[derive(Debug, Default, Clone)]
pub struct FramingHeaders {
    content_length: Option<Result<u64, ()>>,
    transfer_encoding: bool,
    codings: Codings,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Codings {
    count: u32,
    last_is_chunked: bool,
}

impl FramingHeaders {
    /// Feeds one header field; returns true when it was a framing header.
    pub fn observe(&mut self, name: &str, value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case("content-length") {
            self.content_length = Some(merge_length(self.content_length, value));
            true
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in comma_list(value) {
                // Parameters (`;q=`) are not allowed on chunked; compare the whole token.
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                self.codings.count += 1;
                self.codings.last_is_chunked = chunked;
            }
            true
        } else {
            false
        }
    }

    /// The Content-Length, when one valid value was given.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length.and_then(|r| r.ok())
    }

    /// RFC 9112 §6.3 for a request. Requests without either header have no body.
    pub fn request_framing(&self, version: Version) -> Result<BodyFraming, FramingError> {
        if self.transfer_encoding {
            if version == Version::Http10 {
                return Err(FramingError::TransferEncodingInHttp10);
            }
            // §6.3 rule 3: a server MAY reject; as a proxy rgate always does.
            if self.content_length.is_some() {
                return Err(FramingError::LengthAndTransferEncoding);
            }
            // Rule 4: final coding not chunked → 400 and close.
            if !self.codings.last_is_chunked {
                return Err(FramingError::ChunkedNotFinal);
            }
            if self.codings.count != 1 {
                return Err(FramingError::UnsupportedCoding);
            }
            return Ok(BodyFraming::Chunked);
        }
        match self.content_length {
            None => Ok(BodyFraming::None),
            Some(Err(())) => Err(FramingError::InvalidContentLength),
            Some(Ok(0)) => Ok(BodyFraming::None),
            Some(Ok(n)) => Ok(BodyFraming::Length(n)),
        }
    }

    /// RFC 9112 §6.3 for a response to a request with `request_method_head`.
    pub fn response_framing(
        &self,
        version: Version,
        status: u16,
        request_method_head: bool,
    ) -> Result<BodyFraming, FramingError> {
        // Rule 1: HEAD, 1xx, 204 and 304 responses end with their head.
        if request_method_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(BodyFraming::None);
        }
        if self.transfer_encoding {
            if version == Version::Http10 {
                return Err(FramingError::TransferEncodingInHttp10);
            }
            if self.content_length.is_some() {
                // Rule 3 lets a recipient prefer Transfer-Encoding; a proxy must not pass the
                // ambiguity on, so rgate treats the response as invalid.
                return Err(FramingError::LengthAndTransferEncoding);
            }
            // Rule 4 would read a body whose final coding is not chunked until close; rgate
            // relays only what it can frame itself, so anything but exactly `chunked` is
            // refused (`gzip, chunked` would also leave a coding the relayed head no longer
            // announces once de-chunked).
            if !self.codings.last_is_chunked {
                return Err(FramingError::ChunkedNotFinal);
            }
            if self.codings.count != 1 {
                return Err(FramingError::UnsupportedCoding);
            }
            return Ok(BodyFraming::Chunked);
        }
        match self.content_length {
            None => Ok(BodyFraming::UntilClose),
            Some(Err(())) => Err(FramingError::InvalidContentLength),
            Some(Ok(0)) => Ok(BodyFraming::None),
            Some(Ok(n)) => Ok(BodyFraming::Length(n)),
        }
    }
}

/// Folds one Content-Length field value into what was seen before. A list of identical
/// values (`5, 5`) or repeated identical fields is one length (RFC 9110 §8.6); anything else
/// is invalid.
fn merge_length(seen: Option<Result<u64, ()>>, value: &[u8]) -> Result<u64, ()> {
    let mut result = seen.unwrap_or(Err(()));
    let mut first = seen.is_none();
    let mut any = false;
    for item in value.split(|&b| b == b',') {
        let n = parse_decimal(trim(item))?;
        any = true;
        if first {
            result = Ok(n);
            first = false;
        } else if result != Ok(n) {
            return Err(());
        }
    }
    if any {
        result
    } else {
        Err(())
    }
}

/// 1 to 19 decimal digits, nothing else (no sign, no spaces inside).
fn parse_decimal(s: &[u8]) -> Result<u64, ()> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d - b'0')))
            .ok_or(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)]) -> FramingHeaders {
        let mut f = FramingHeaders::default();
        for (n, v) in headers {
            f.observe(n, v.as_bytes());
        }
        f
    }

    fn req(headers: &[(&str, &str)]) -> Result<BodyFraming, FramingError> {
        framing(headers).request_framing(Version::Http11)
    }

    #[test]
    fn request_framing_follows_rfc_9112() {
        use BodyFraming::*;
        assert_eq!(req(&[]), Ok(None));
        assert_eq!(req(&[("Content-Length", "10")]), Ok(Length(10)));
        assert_eq!(req(&[("content-length", "0")]), Ok(None));
        assert_eq!(req(&[("Content-Length", "5, 5")]), Ok(Length(5)));
        assert_eq!(
            req(&[("Content-Length", "5"), ("Content-Length", "5")]),
            Ok(Length(5))
        );
        assert_eq!(req(&[("Transfer-Encoding", "chunked")]), Ok(Chunked));
        assert_eq!(req(&[("Transfer-Encoding", "Chunked")]), Ok(Chunked));
    }

    /// Up to 19 digits is a length (u64 holds every 19-digit number); 20 digits is not, even
    /// when leading zeros make it small: the limit is on the spelling, not the value.
    #[test]
    fn a_length_has_at_most_nineteen_digits() {
        use BodyFraming::*;
        assert_eq!(
            req(&[("Content-Length", "1000000000000000000")]),
            Ok(Length(1_000_000_000_000_000_000))
        );
        assert_eq!(
            req(&[("Content-Length", "0000000000000000005")]),
            Ok(Length(5))
        );
        assert_eq!(
            req(&[("Content-Length", "00000000000000000005")]),
            Err(FramingError::InvalidContentLength)
        );
    }

    #[test]
    fn every_framing_error_says_why() {
        use FramingError::*;
        let all = [
            LengthAndTransferEncoding,
            InvalidContentLength,
            ChunkedNotFinal,
            UnsupportedCoding,
            TransferEncodingInHttp10,
        ];
        let reasons: std::collections::HashSet<&str> = all.iter().map(|e| e.reason()).collect();
        assert_eq!(reasons.len(), all.len(), "one distinct reason each");
        assert!(LengthAndTransferEncoding
            .reason()
            .contains("Content-Length"));
        assert!(ChunkedNotFinal.reason().contains("chunked"));
        assert!(InvalidContentLength.reason().contains("Content-Length"));
        assert!(TransferEncodingInHttp10.reason().contains("HTTP/1.0"));
        assert!(UnsupportedCoding.reason().contains("coding"));
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        use FramingError::*;
        assert_eq!(
            req(&[("Content-Length", "5"), ("Content-Length", "6")]),
            Err(InvalidContentLength)
        );
        assert_eq!(
            req(&[("Content-Length", "5, 6")]),
            Err(InvalidContentLength)
        );
        assert_eq!(req(&[("Content-Length", "-1")]), Err(InvalidContentLength));
        assert_eq!(req(&[("Content-Length", "+5")]), Err(InvalidContentLength));
        assert_eq!(req(&[("Content-Length", "")]), Err(InvalidContentLength));
        assert_eq!(req(&[("Content-Length", "1 2")]), Err(InvalidContentLength));
        assert_eq!(
            req(&[("Content-Length", "99999999999999999999")]),
            Err(InvalidContentLength)
        );
        assert_eq!(
            req(&[("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
            Err(LengthAndTransferEncoding)
        );
        assert_eq!(
            req(&[("Transfer-Encoding", "chunked, gzip")]),
            Err(ChunkedNotFinal)
        );
        assert_eq!(
            req(&[("Transfer-Encoding", "identity")]),
            Err(ChunkedNotFinal)
        );
        assert_eq!(
            req(&[("Transfer-Encoding", "gzip, chunked")]),
            Err(UnsupportedCoding)
        );
        assert_eq!(
            req(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ]),
            Err(UnsupportedCoding)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")]).request_framing(Version::Http10),
            Err(TransferEncodingInHttp10)
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        use BodyFraming::*;
        let resp = |h: &[(&str, &str)], status, head| {
            framing(h).response_framing(Version::Http11, status, head)
        };
        assert_eq!(resp(&[("Content-Length", "3")], 200, true), Ok(None));
        assert_eq!(resp(&[("Content-Length", "3")], 204, false), Ok(None));
        assert_eq!(resp(&[("Content-Length", "3")], 304, false), Ok(None));
        assert_eq!(resp(&[], 101, false), Ok(None));
        assert_eq!(resp(&[], 200, false), Ok(UntilClose));
        assert_eq!(resp(&[("Content-Length", "3")], 200, false), Ok(Length(3)));
        assert_eq!(
            resp(&[("Transfer-Encoding", "chunked")], 200, false),
            Ok(Chunked)
        );
        // Anything but exactly `chunked` is refused rather than read until close.
        for te in [
            "gzip",
            "identity",
            "chunked, chunked",
            "gzip, chunked",
            "xchunked",
        ] {
            assert!(
                resp(&[("Transfer-Encoding", te)], 200, false).is_err(),
                "{te}"
            );
        }
        assert!(resp(
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ],
            200,
            false
        )
        .is_err());
        assert!(resp(&[("Content-Length", "x")], 200, false).is_err());
        assert!(resp(
            &[("Content-Length", "3"), ("Transfer-Encoding", "chunked")],
            200,
            false
        )
        .is_err());
    }
}
