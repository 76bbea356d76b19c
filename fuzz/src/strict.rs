//! The oracle: an independent, strict HTTP/1.1 parser for the bytes rgate writes. It shares
//! no code with rgate or httparse, and it accepts only what RFC 9112 lets a sender generate,
//! so that anything two recipients could read two ways is refused here:
//!
//! * CRLF line endings only; no bare CR or LF anywhere in a head or in chunked framing.
//! * Request line `token SP target SP HTTP/1.1`, status line `HTTP/1.1 SP 3DIGIT SP reason`.
//! * Field names are tokens with the colon right after them; no obs-fold; values hold no
//!   control character but HTAB.
//! * At most one framing field: one `Content-Length` of plain digits, or one
//!   `Transfer-Encoding: chunked` spelled exactly so; never both.
//! * Chunked bodies by the RFC 9112 §7.1 grammar: hex sizes, extensions as
//!   `BWS ; BWS token [BWS = BWS (token / quoted-string)]`, trailers as field lines.
//! * A response without a framing field is close-delimited, and only acceptable when it
//!   says `Connection: close` (otherwise the client would wait for a close that a
//!   persistent connection never sends, or read the next response as body).
//!
//! Not for: parsing what clients or backends send (the fuzz input); rgate parses that.

use std::fmt;

/// Where and why the strict parser refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub at: usize,
    pub why: &'static str,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.why, self.at)
    }
}

/// One field line, value without its surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// How a parsed message's body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    /// No body (no framing field in a request; HEAD, 1xx, 204, 304 responses).
    NoBody,
    Length(u64),
    Chunked,
    /// Response body until the connection closes (the end of the buffer).
    Close,
}

/// What a head and its body say, whatever the start line was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub fields: Vec<Field<'a>>,
    pub delimited: Delimited,
    /// The payload: de-chunked when the body was chunked.
    pub body: Vec<u8>,
    pub trailers: Vec<Field<'a>>,
    /// Bytes consumed from the start of the buffer, body included.
    pub len: usize,
}

impl<'a> Message<'a> {
    /// All fields called `name` (case-insensitive).
    pub fn fields_named<'m>(&'m self, name: &'m str) -> impl Iterator<Item = &'m Field<'a>> {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Whether some `Connection` field lists `option` (case-insensitive).
    pub fn connection_has(&self, option: &str) -> bool {
        self.fields_named("connection").any(|f| {
            f.value
                .split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(option.as_bytes()))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub message: Message<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'a [u8],
    pub message: Message<'a>,
}

/// Parses one request from the start of `buf`. Leftover bytes are the caller's to judge.
pub fn parse_request(buf: &[u8]) -> Result<Request<'_>, Reject> {
    let mut c = Cursor { buf, at: 0 };
    let method = c.take_while(is_tchar);
    if method.is_empty() {
        return Err(c.reject("method is not a token"));
    }
    c.expect(b" ", "one SP after the method")?;
    let target = c.take_while(is_target_byte);
    if target.is_empty() {
        return Err(c.reject("empty or invalid request-target"));
    }
    c.expect(b" ", "one SP after the request-target")?;
    c.expect(b"HTTP/1.1", "version is not HTTP/1.1")?;
    c.crlf()?;
    let fields = c.field_lines()?;
    let delimited = match declared_framing(&fields, c.at)? {
        Some(d) => d,
        None => Delimited::NoBody,
    };
    let message = c.body(fields, delimited)?;
    Ok(Request {
        method,
        target,
        message,
    })
}

/// Parses one response, preceded by any number of interim (1xx) responses, to a request
/// that was `HEAD` when `head_request`. The buffer ends where the connection closes.
pub fn parse_responses(
    buf: &[u8],
    head_request: bool,
) -> Result<(Vec<Response<'_>>, Response<'_>), Reject> {
    let mut interim = Vec::new();
    let mut at = 0;
    loop {
        let mut resp = parse_response(&buf[at..], head_request).map_err(|mut r| {
            r.at += at;
            r
        })?;
        resp.message.len += at;
        at = resp.message.len;
        if resp.status >= 200 {
            return Ok((interim, resp));
        }
        interim.push(resp);
    }
}

fn parse_response(buf: &[u8], head_request: bool) -> Result<Response<'_>, Reject> {
    let mut c = Cursor { buf, at: 0 };
    c.expect(b"HTTP/1.1 ", "version is not HTTP/1.1 followed by SP")?;
    let digits = c.take_while(|b| b.is_ascii_digit());
    if digits.len() != 3 || digits[0] == b'0' {
        return Err(c.reject("status code is not 3 digits from 100 to 999"));
    }
    let status = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    c.expect(b" ", "one SP after the status code")?;
    let reason = c.take_while(|b| b == b'\t' || b == b' ' || is_vchar_or_obs(b));
    c.crlf()?;
    let fields = c.field_lines()?;
    // Framing fields are checked even where they do not decide the body (HEAD, 304).
    let declared = declared_framing(&fields, c.at)?;
    if status == 101 {
        return Err(c.reject("101 relayed to a request that asked no upgrade"));
    }
    let delimited = if head_request || status < 200 || status == 204 || status == 304 {
        Delimited::NoBody
    } else {
        declared.unwrap_or(Delimited::Close)
    };
    let mut message = c.body(fields, delimited)?;
    if delimited == Delimited::Close {
        if !message.connection_has("close") {
            return Err(Reject {
                at: buf.len(),
                why: "close-delimited response without Connection: close",
            });
        }
        message.body = buf[message.len..].to_vec();
        message.len = buf.len();
    }
    Ok(Response {
        status,
        reason,
        message,
    })
}

/// The framing that the head's fields declare; ambiguity is refused.
fn declared_framing(fields: &[Field<'_>], at: usize) -> Result<Option<Delimited>, Reject> {
    let reject = |why| Err(Reject { at, why });
    let named = |n: &str| {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(n.as_bytes()))
            .collect::<Vec<_>>()
    };
    let (lengths, codings) = (named("content-length"), named("transfer-encoding"));
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(None),
        ([_, ..], [_, ..]) => reject("both Content-Length and Transfer-Encoding"),
        ([_, _, ..], _) => reject("more than one Content-Length"),
        (_, [_, _, ..]) => reject("more than one Transfer-Encoding"),
        ([length], []) => {
            let v = length.value;
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return reject("Content-Length is not 1 to 19 digits");
            }
            let n = v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            Ok(Some(Delimited::Length(n)))
        }
        ([], [coding]) if coding.value == b"chunked" => Ok(Some(Delimited::Chunked)),
        ([], [_]) => reject("Transfer-Encoding other than exactly `chunked`"),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn reject(&self, why: &'static str) -> Reject {
        Reject { at: self.at, why }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        &self.buf[start..self.at]
    }

    fn eat(&mut self, literal: &[u8]) -> bool {
        let found = self.buf[self.at..].starts_with(literal);
        if found {
            self.at += literal.len();
        }
        found
    }

    fn expect(&mut self, literal: &[u8], why: &'static str) -> Result<(), Reject> {
        if self.eat(literal) {
            Ok(())
        } else {
            Err(self.reject(why))
        }
    }

    fn crlf(&mut self) -> Result<(), Reject> {
        match self.peek() {
            _ if self.eat(b"\r\n") => Ok(()),
            None => Err(self.reject("input ends before CRLF")),
            Some(b'\r') => Err(self.reject("bare CR")),
            Some(b'\n') => Err(self.reject("bare LF")),
            Some(_) => Err(self.reject("unexpected byte where CRLF was due")),
        }
    }

    fn ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    /// Field lines up to and including the empty line (RFC 9112 §5).
    fn field_lines(&mut self) -> Result<Vec<Field<'a>>, Reject> {
        let mut fields = Vec::new();
        loop {
            if self.eat(b"\r\n") {
                return Ok(fields);
            }
            if matches!(self.peek(), Some(b' ' | b'\t')) {
                return Err(self.reject("field line starts with whitespace (obs-fold)"));
            }
            let name = self.take_while(is_tchar);
            if name.is_empty() {
                return Err(self.reject("field name is not a token"));
            }
            self.expect(b":", "field name not followed right away by a colon")?;
            self.ows();
            let value =
                trim_ows(self.take_while(|b| b == b'\t' || b == b' ' || is_vchar_or_obs(b)));
            self.crlf()?;
            fields.push(Field { name, value });
        }
    }

    /// The body after a head, as `delimited` says; `Close` is left to the caller.
    fn body(mut self, fields: Vec<Field<'a>>, delimited: Delimited) -> Result<Message<'a>, Reject> {
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        match delimited {
            Delimited::NoBody | Delimited::Close => {}
            Delimited::Length(n) => {
                let rest = &self.buf[self.at..];
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= rest.len())
                    .ok_or_else(|| self.reject("body shorter than its Content-Length"))?;
                body.extend_from_slice(&rest[..n]);
                self.at += n;
            }
            Delimited::Chunked => trailers = self.chunked(&mut body)?,
        }
        Ok(Message {
            fields,
            delimited,
            body,
            trailers,
            len: self.at,
        })
    }

    /// A chunked body (RFC 9112 §7.1); appends the payload, returns the trailers.
    fn chunked(&mut self, payload: &mut Vec<u8>) -> Result<Vec<Field<'a>>, Reject> {
        loop {
            let digits = self.take_while(|b| b.is_ascii_hexdigit());
            if digits.is_empty() {
                return Err(self.reject("chunk size is not hex digits"));
            }
            let size = digits.iter().try_fold(0u64, |n, &d| {
                let v = (d as char).to_digit(16).expect("hex digit");
                n.checked_mul(16)?.checked_add(u64::from(v))
            });
            let size = size.ok_or_else(|| self.reject("chunk size overflows 64 bits"))?;
            self.chunk_extensions()?;
            self.crlf()?;
            if size == 0 {
                return self.field_lines();
            }
            let rest = &self.buf[self.at..];
            let n = usize::try_from(size)
                .ok()
                .filter(|&n| n <= rest.len())
                .ok_or_else(|| self.reject("chunk data shorter than its size"))?;
            payload.extend_from_slice(&rest[..n]);
            self.at += n;
            self.crlf()?;
        }
    }

    /// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`: whitespace only
    /// around `;` and `=`, never alone before the CRLF.
    fn chunk_extensions(&mut self) -> Result<(), Reject> {
        while matches!(self.peek(), Some(b' ' | b'\t' | b';')) {
            self.ows();
            self.expect(b";", "whitespace after a chunk size not followed by `;`")?;
            self.ows();
            if self.take_while(is_tchar).is_empty() {
                return Err(self.reject("chunk extension name is not a token"));
            }
            let before_bws = self.at;
            self.ows();
            if self.eat(b"=") {
                self.ows();
                if self.peek() == Some(b'"') {
                    self.quoted_string()?;
                } else if self.take_while(is_tchar).is_empty() {
                    return Err(self.reject("chunk extension value is neither token nor quoted"));
                }
            } else {
                // BWS belongs to `=` (or to a following `;`): rewind so that the loop sees it.
                self.at = before_bws;
            }
        }
        Ok(())
    }

    fn quoted_string(&mut self) -> Result<(), Reject> {
        self.expect(b"\"", "quoted-string without its opening quote")?;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => self.at += 1,
                        _ => return Err(self.reject("invalid quoted-pair")),
                    }
                }
                Some(b) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => self.at += 1,
                _ => return Err(self.reject("invalid byte in a quoted-string")),
            }
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// VCHAR or obs-text: any byte but controls, SP and DEL.
fn is_vchar_or_obs(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

/// A request-target byte: no controls, no whitespace (obs-text tolerated, as in field values).
fn is_target_byte(b: u8) -> bool {
    is_vchar_or_obs(b)
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
    //! The oracle must refuse every ambiguity it is meant to catch; if it accepted them,
    //! the fuzz targets would pass vacuously.
    use super::*;

    fn req(s: &[u8]) -> Result<Request<'_>, Reject> {
        parse_request(s)
    }

    fn refused(s: &[u8]) -> &'static str {
        match req(s) {
            Ok(r) => panic!("accepted {:?}: {r:?}", s.escape_ascii().to_string()),
            Err(e) => e.why,
        }
    }

    #[test]
    fn accepts_plain_requests() {
        let r = req(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-A:  b c \t\r\n\r\n").unwrap();
        assert_eq!((r.method, r.target), (&b"GET"[..], &b"/a?b"[..]));
        assert_eq!(r.message.fields[1].value, b"b c");
        assert_eq!(r.message.delimited, Delimited::NoBody);
        let r = req(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcNEXT").unwrap();
        assert_eq!(r.message.body, b"abc");
        assert_eq!(r.message.len, 45 - 4);
    }

    #[test]
    fn decodes_chunked_with_extensions_and_trailers() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
5 ; a = \"q\\\"x\" ;b\r\nhello\r\n6;c=d\r\n world\r\n0\r\nT: 1\r\n\r\n";
        let r = req(input).unwrap();
        assert_eq!(r.message.body, b"hello world");
        assert_eq!(
            r.message.trailers,
            vec![Field {
                name: b"T",
                value: b"1"
            }]
        );
        assert_eq!(r.message.len, input.len());
    }

    #[test]
    fn refuses_ambiguous_framing() {
        let head = |fields: &str| format!("POST / HTTP/1.1\r\n{fields}\r\n0\r\n\r\n");
        for fields in [
            "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n",
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            "Content-Length: 1, 1\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: \r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: Chunked\r\n",
            "Transfer-Encoding: chunked;q=1\r\n",
        ] {
            refused(head(fields).as_bytes());
        }
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\tx\r\n y\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo\"st: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            refused(bad);
        }
    }

    #[test]
    fn refuses_malformed_chunked() {
        let chunked = |body: &[u8]| {
            let mut m = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            m.extend_from_slice(body);
            m
        };
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;\x00\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\r",
            b"0\r\nT: 1\n\r\n",
            b"0\r\n T: 1\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n",
            b"5\r\nhel",
        ] {
            refused(&chunked(bad));
        }
    }

    #[test]
    fn responses_need_a_delimiter_or_close() {
        let (interim, r) = parse_responses(
            b"HTTP/1.1 100 Go\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        )
        .unwrap();
        assert_eq!(
            (interim.len(), r.status, &r.message.body[..]),
            (1, 200, &b"ok"[..])
        );
        let (_, r) = parse_responses(
            b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\n\r\nall of it",
            false,
        )
        .unwrap();
        assert_eq!(r.message.body, b"all of it");
        assert_eq!(r.message.delimited, Delimited::Close);
        let (_, r) = parse_responses(b"HTTP/1.1 200 \r\nContent-Length: 9\r\n\r\n", true).unwrap();
        assert_eq!(r.message.delimited, Delimited::NoBody);
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\nbody"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 101 Switching\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1, 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            assert!(
                parse_responses(bad, false).is_err(),
                "{}",
                bad.escape_ascii()
            );
        }
    }
}
