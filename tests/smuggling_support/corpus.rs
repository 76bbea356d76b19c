//! The smuggling corpora: requests a client sends to rgate, and responses a backend sends
//! to rgate, each with what rgate must make of it. One line per case. Sources: Kettle's
//! "HTTP Desync Attacks" and "HTTP/1.1 must die", PortSwigger's request smuggling labs,
//! Klein's HTTP request smuggling papers, defparam's smuggler.py mutations, the http-garden
//! findings, and RFC 9112 §2.2, §3.2, §6, §7 and §11.2.
//!
//! Every raw case holds `{ID}` where the case's tag goes (`c017`: as long as `{ID}`, so
//! lengths computed on the template hold); every path a case requests contains the tag, so
//! whatever reaches the backend can be told apart. The route `/api` leads to the strict
//! backend.

use super::strict_backend::Then;

/// What reaching the backend must look like for one forwarded message.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The payload the backend must receive (de-chunked).
    pub body: Vec<u8>,
    /// The Host the backend must receive; `None`: any valid one.
    pub host: Option<&'static str>,
    /// Fields the backend must receive with exactly these values.
    pub has: Vec<(&'static str, &'static str)>,
}

impl Forwarded {
    pub fn host(mut self, host: &'static str) -> Forwarded {
        self.host = Some(host);
        self
    }
    pub fn any_host(mut self) -> Forwarded {
        self.host = None;
        self
    }
    pub fn has(mut self, name: &'static str, value: &'static str) -> Forwarded {
        self.has.push((name, value));
        self
    }
}

/// One message, with this body, sent with `Host: a`.
pub fn fwd(body: &[u8]) -> Forwarded {
    Forwarded {
        body: body.to_vec(),
        host: Some("a"),
        has: Vec::new(),
    }
}

/// What rgate must do with one request case.
#[derive(Debug, Clone)]
pub enum Expect {
    /// rgate refuses the head: its JSON error with one of these statuses, the connection
    /// closes, and not one byte of the case reaches a backend.
    Reject(&'static [u16]),
    /// rgate refuses in the body (bad chunk, trailer): its JSON error, the connection
    /// closes; the backend may have got a head and part of a body but no complete message,
    /// and that backend connection is closed.
    RejectInBody(&'static [u16]),
    /// The backend parses exactly these messages in order and the client gets their
    /// responses in order.
    Forward(Vec<Forwarded>),
    /// Either outcome is right (the RFC lets a recipient choose); a rejection may come in
    /// the body.
    Either(Vec<Forwarded>, &'static [u16]),
}

use Expect::*;

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub raw: Vec<u8>,
    pub expect: Expect,
}

impl Case {
    /// The bytes to send for this case, tagged.
    pub fn bytes(&self, tag: &str) -> Vec<u8> {
        replace(&self.raw, b"{ID}", tag.as_bytes())
    }
}

pub fn replace(raw: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// A tag as long as `{ID}`.
pub fn tag(i: usize) -> String {
    assert!(i < 1000);
    format!("c{i:03}")
}

/// A complete request that, carried as a body, is what a smuggler wants parsed as the next
/// request (44 bytes once tagged).
pub const SMUGGLED: &str = "GET /api/{ID}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
/// `hello` as one chunk and the last chunk.
pub const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";
const R4XX: &[u16] = &[400, 413, 501];
const BAD: &[u16] = &[400];
const ANY: &[u16] = &[400, 413, 417, 501];

/// `POST /api/{ID}/p` with `Host: a`, more `fields` (each ending in CRLF), and `body`.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST /api/{{ID}}/p HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}").into_bytes()
}

/// `POST` with `Transfer-Encoding: chunked` (plus `fields`) and a chunked `body`.
fn chunked(fields: &str, body: &str) -> Vec<u8> {
    post(&format!("Transfer-Encoding: chunked\r\n{fields}"), body)
}

/// `POST` with `Content-Length` of `body` (plus `fields`).
fn with_length(fields: &str, body: &str) -> Vec<u8> {
    post(&format!("{fields}Content-Length: {}\r\n", body.len()), body)
}

/// `GET /api/{ID}/g` with `Host: a` and more `fields`.
fn get(fields: &str) -> Vec<u8> {
    format!("GET /api/{{ID}}/g HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn bytes(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

fn case(name: &'static str, raw: Vec<u8>, expect: Expect) -> Case {
    Case { name, raw, expect }
}

/// The request corpus.
#[rustfmt::skip]
pub fn request_cases() -> Vec<Case> {
    let sm = SMUGGLED;
    let smb = SMUGGLED.as_bytes();
    let hello = CHUNKED_HELLO;
    // The smuggled request as one chunk.
    let sm_chunked = format!("{:x}\r\n{sm}\r\n0\r\n\r\n", sm.len());
    let fields_then_hello = |f: &str| chunked(f, hello);
    vec![
        // ----- baselines: the corpus runner and the backend accept the ordinary -----
        case("baseline-get", get(""), Forward(vec![fwd(b"")])),
        case("baseline-post-length", with_length("", "hello"), Forward(vec![fwd(b"hello")])),
        case("baseline-post-chunked", chunked("", hello), Forward(vec![fwd(b"hello")])),
        case("baseline-pipelined-two", [get(""), get("")].concat(), Forward(vec![fwd(b""), fwd(b"")])),
        // ----- Connection naming a field rgate needs (RFC 9110 §7.6.1 abuse) -----
        case("connection-content-length", with_length("Connection: content-length\r\n", sm), Forward(vec![fwd(smb)])),
        case("connection-Content-Length-upper", with_length("Connection: CONTENT-LENGTH\r\n", sm), Forward(vec![fwd(smb)])),
        case("connection-close-content-length", with_length("Connection: close, content-length\r\n", sm), Forward(vec![fwd(smb)])),
        case("connection-keep-alive-content-length-host", with_length("Connection: keep-alive, content-length, host\r\n", sm), Forward(vec![fwd(smb)])),
        case("connection-second-field-content-length", with_length("Connection: keep-alive\r\nConnection: content-length\r\n", sm), Forward(vec![fwd(smb)])),
        case("connection-transfer-encoding", chunked("Connection: transfer-encoding\r\n", &sm_chunked), Forward(vec![fwd(smb)])),
        case("connection-transfer-encoding-hello", fields_then_hello("Connection: Transfer-Encoding\r\n"), Forward(vec![fwd(b"hello")])),
        case("connection-host", get("Connection: host\r\n"), Forward(vec![fwd(b"")])),
        case("connection-x-forwarded-for", get("X-Forwarded-For: 1.2.3.4\r\nConnection: x-forwarded-for\r\n"), Forward(vec![fwd(b"").has("X-Forwarded-For", "1.2.3.4, 127.0.0.1")])),
        case("connection-x-forwarded-for-no-xff", get("Connection: x-forwarded-for\r\n"), Forward(vec![fwd(b"").has("X-Forwarded-For", "127.0.0.1")])),
        case("connection-x-forwarded-host", get("Connection: x-forwarded-host\r\n"), Forward(vec![fwd(b"").has("X-Forwarded-Host", "a")])),
        case("connection-x-forwarded-proto", get("Connection: x-forwarded-proto\r\n"), Forward(vec![fwd(b"").has("X-Forwarded-Proto", "http")])),
        case("connection-x-request-id", get("X-Request-Id: abc\r\nConnection: x-request-id\r\n"), Forward(vec![fwd(b"").has("X-Request-Id", "abc")])),
        case("connection-connection", get("Connection: connection\r\n"), Forward(vec![fwd(b"")])),
        case("connection-keep-alive-field", get("Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"), Forward(vec![fwd(b"")])),
        case("connection-te", get("TE: trailers\r\nConnection: te\r\n"), Forward(vec![fwd(b"")])),
        case("connection-upgrade-content-length", with_length("Connection: Upgrade, Content-Length\r\nUpgrade: websocket\r\n", sm), Forward(vec![fwd(smb)])),
        // ----- Transfer-Encoding obfuscation -----
        case("te-xchunked", post("Transfer-Encoding: xchunked\r\n", hello), Reject(R4XX)),
        case("te-extra-ows", post("Transfer-Encoding:   chunked\r\n", hello), Forward(vec![fwd(b"hello")])),
        case("te-trailing-space", post("Transfer-Encoding: chunked \r\n", hello), Forward(vec![fwd(b"hello")])),
        case("te-tab", post("Transfer-Encoding:\tchunked\r\n", hello), Forward(vec![fwd(b"hello")])),
        case("te-space-before-colon", post("Transfer-Encoding : chunked\r\n", hello), Reject(BAD)),
        case("te-casing", post("Transfer-encoding: Chunked\r\n", hello), Forward(vec![fwd(b"hello")])),
        case("te-upper", post("TRANSFER-ENCODING: CHUNKED\r\n", hello), Forward(vec![fwd(b"hello")])),
        case("te-chunked-identity", post("Transfer-Encoding: chunked, identity\r\n", hello), Reject(BAD)),
        case("te-identity-chunked", post("Transfer-Encoding: identity, chunked\r\n", hello), Reject(R4XX)),
        case("te-gzip-chunked", post("Transfer-Encoding: gzip, chunked\r\n", hello), Reject(&[501])),
        case("te-chunked-chunked", post("Transfer-Encoding: chunked, chunked\r\n", hello), Reject(R4XX)),
        case("te-two-fields", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", hello), Reject(R4XX)),
        case("te-chunked-then-x", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", hello), Reject(R4XX)),
        case("te-empty", post("Transfer-Encoding:\r\n", hello), Reject(R4XX)),
        case("te-comma-chunked", post("Transfer-Encoding: ,chunked\r\n", hello), Either(vec![fwd(b"hello")], R4XX)),
        case("te-quoted", post("Transfer-Encoding: \"chunked\"\r\n", hello), Reject(R4XX)),
        case("te-vtab", post("Transfer-Encoding: \x0bchunked\r\n", hello), Reject(BAD)),
        case("te-formfeed", post("Transfer-Encoding: \x0cchunked\r\n", hello), Reject(BAD)),
        case("te-nul", post("Transfer-Encoding: chunked\x00\r\n", hello), Reject(BAD)),
        case("te-obs-fold", post("Transfer-Encoding:\r\n chunked\r\n", hello), Reject(BAD)),
        case("te-obs-fold-onto-other", post("X-Foo: bar\r\n Transfer-Encoding: chunked\r\n", hello), Reject(BAD)),
        case("te-leading-ws-first-field", raw("POST /api/{ID}/p HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), Either(vec![fwd(b"hello")], BAD)),
        case("te-http10", raw(&format!("POST /api/{{ID}}/p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{hello}")), Reject(BAD)),
        case("te-underscore-with-length", with_length("Transfer_Encoding: chunked\r\n", "hello"), Forward(vec![fwd(b"hello")])),
        case("te-trailing-garbage-name", post("Transfer-Encoding-X: chunked\r\nContent-Length: 5\r\n", "hello"), Forward(vec![fwd(b"hello")])),
        // ----- TE and CL together: the classic desyncs -----
        case("cl-te-classic", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"), Reject(BAD)),
        case("te-cl-classic", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n"), Reject(BAD)),
        case("te-cl-zero", post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", hello), Reject(BAD)),
        case("te-obfuscated-cl", post("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", "hello"), Reject(R4XX)),
        case("te-cl-smuggled-get", post(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", 5 + sm.len()), &format!("0\r\n\r\n{sm}")), Reject(BAD)),
        // ----- Content-Length obfuscation -----
        case("cl-plus", post("Content-Length: +5\r\n", "hello"), Reject(BAD)),
        case("cl-hex", post("Content-Length: 0x5\r\n", "hello"), Reject(BAD)),
        case("cl-leading-ows", post("Content-Length:  5\r\n", "hello"), Forward(vec![fwd(b"hello")])),
        case("cl-trailing-ows", post("Content-Length: 5 \r\n", "hello"), Forward(vec![fwd(b"hello")])),
        case("cl-leading-zero", post("Content-Length: 05\r\n", "hello"), Either(vec![fwd(b"hello")], BAD)),
        case("cl-exponent", post("Content-Length: 1e1\r\n", "helloworld"), Reject(BAD)),
        case("cl-negative", post("Content-Length: -1\r\n", "hello"), Reject(BAD)),
        case("cl-decimal-point", post("Content-Length: 5.0\r\n", "hello"), Reject(BAD)),
        case("cl-overflow", post("Content-Length: 99999999999999999999999\r\n", "hello"), Reject(&[400, 413])),
        case("cl-two-differing", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), Reject(BAD)),
        case("cl-two-same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), Either(vec![fwd(b"hello")], BAD)),
        case("cl-list-differing", post("Content-Length: 5, 6\r\n", "hello!"), Reject(BAD)),
        case("cl-list-same", post("Content-Length: 5, 5\r\n", "hello"), Either(vec![fwd(b"hello")], BAD)),
        case("cl-list-trailing-comma", post("Content-Length: 5,\r\n", "hello"), Either(vec![fwd(b"hello")], BAD)),
        case("cl-zero-then-smuggle", post(&format!("Content-Length: 0\r\nContent-Length: {}\r\n", sm.len()), sm), Reject(BAD)),
        case("cl-empty", post("Content-Length:\r\n", "hello"), Reject(BAD)),
        case("cl-space-inside", post("Content-Length: 1 0\r\n", "helloworld"), Reject(BAD)),
        case("cl-nul", post("Content-Length: 5\x00\r\n", "hello"), Reject(BAD)),
        case("cl-vtab", post("Content-Length: \x0b5\r\n", "hello"), Reject(BAD)),
        case("cl-fullwidth-digit", post("Content-Length: \u{ff15}\r\n", "hello"), Reject(BAD)),
        case("cl-obs-fold", post("Content-Length:\r\n 5\r\n", "hello"), Reject(BAD)),
        case("cl-space-before-colon", post("Content-Length : 5\r\n", "hello"), Reject(BAD)),
        case("cl-underscore", post(&format!("Content_Length: {}\r\n", sm.len()), sm), Forward(vec![fwd(b""), fwd(b"")])),
        // ----- line endings (RFC 9112 §2.2) -----
        case("bare-lf-head", raw("GET /api/{ID}/g HTTP/1.1\nHost: a\n\n"), Either(vec![fwd(b"")], BAD)),
        case("bare-lf-one-field", raw("POST /api/{ID}/p HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\nhello"), Either(vec![fwd(b"hello")], BAD)),
        case("bare-cr-ends-field", raw("POST /api/{ID}/p HTTP/1.1\r\nHost: a\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"), Reject(BAD)),
        case("bare-cr-in-value", get("X-A: b\rc\r\n"), Either(vec![fwd(b"")], BAD)),
        case("cr-cr-lf", get("X-A: b\r\r\n"), Either(vec![fwd(b"")], BAD)),
        case("leading-crlf", [raw("\r\n"), get("")].concat(), Either(vec![fwd(b"")], BAD)),
        // ----- Host (RFC 9112 §3.2, RFC 3986 §3.2.2) -----
        case("host-comma-list", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a, b\r\n\r\n"), Reject(BAD)),
        case("host-path-userinfo", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a/b@c\r\n\r\n"), Reject(BAD)),
        case("host-userinfo", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: user@a\r\n\r\n"), Reject(BAD)),
        case("host-space", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a b\r\n\r\n"), Reject(BAD)),
        case("host-query", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a?b\r\n\r\n"), Reject(BAD)),
        case("host-fragment", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a#b\r\n\r\n"), Reject(BAD)),
        case("host-bad-port", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a:b\r\n\r\n"), Reject(BAD)),
        case("host-two-fields", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Reject(BAD)),
        case("host-missing", raw("GET /api/{ID}/g HTTP/1.1\r\nX-A: b\r\n\r\n"), Reject(BAD)),
        case("host-ipv4-port", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"), Forward(vec![fwd(b"").host("127.0.0.1:8080")])),
        case("host-ipv6", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), Forward(vec![fwd(b"").host("[::1]:80")])),
        case("host-underscore-is-valid", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: my_host\r\n\r\n"), Forward(vec![fwd(b"").host("my_host")])),
        case("host-trailing-dot", raw("GET /api/{ID}/g HTTP/1.1\r\nHost: a.\r\n\r\n"), Forward(vec![fwd(b"").host("a.")])),
        case("absolute-form-other-host", raw("GET http://good/api/{ID}/g HTTP/1.1\r\nHost: evil\r\n\r\n"), Forward(vec![fwd(b"").host("good")])),
        case("absolute-form-port", raw("GET http://good:8080/api/{ID}/g HTTP/1.1\r\nHost: evil\r\n\r\n"), Forward(vec![fwd(b"").host("good:8080")])),
        case("absolute-form-https", raw("GET https://good/api/{ID}/g HTTP/1.1\r\nHost: evil\r\n\r\n"), Forward(vec![fwd(b"").host("good")])),
        case("absolute-form-userinfo", raw("GET http://user@good/api/{ID}/g HTTP/1.1\r\nHost: good\r\n\r\n"), Reject(BAD)),
        case("absolute-form-user-password", raw("GET http://u:p@good/api/{ID}/g HTTP/1.1\r\nHost: good\r\n\r\n"), Reject(BAD)),
        case("absolute-form-comma-authority", raw("GET http://a,b/api/{ID}/g HTTP/1.1\r\nHost: a\r\n\r\n"), Reject(BAD)),
        case("absolute-form-empty-authority", raw("GET http:///api/{ID}/g HTTP/1.1\r\nHost: a\r\n\r\n"), Reject(BAD)),
        case("absolute-form-no-host-field", raw("GET http://good/api/{ID}/g HTTP/1.1\r\n\r\n"), Reject(BAD)),
        // ----- underscores in field names -----
        case("underscore-x-forwarded-for", get("X_Forwarded_For: 6.6.6.6\r\n"), Forward(vec![fwd(b"")])),
        case("underscore-transfer-encoding-only", post("Transfer_Encoding: chunked\r\n", ""), Forward(vec![fwd(b"")])),
        // ----- chunked bodies (RFC 9112 §7.1) -----
        case("chunk-extension", post("Transfer-Encoding: chunked\r\n", "5;foo=bar\r\nhello\r\n0\r\n\r\n"), Forward(vec![fwd(b"hello")])),
        case("chunk-extension-quoted", post("Transfer-Encoding: chunked\r\n", "5;foo=\"b;a\\\"r\"\r\nhello\r\n0\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("chunk-extension-no-name", post("Transfer-Encoding: chunked\r\n", "5;\r\nhello\r\n0\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("chunk-extension-control-byte", post("Transfer-Encoding: chunked\r\n", "5;a=\x01b\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-extension-nul", post("Transfer-Encoding: chunked\r\n", "5;\x00\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-extension-bare-lf", post("Transfer-Encoding: chunked\r\n", "5;a\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-extension-bare-cr", post("Transfer-Encoding: chunked\r\n", "5;a\rb\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-extension-on-last", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0;x=y\r\n\r\n"), Forward(vec![fwd(b"hello")])),
        case("chunk-size-0x", post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-trailing-space", post("Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("chunk-size-leading-space", post("Transfer-Encoding: chunked\r\n", " 5\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-negative", post("Transfer-Encoding: chunked\r\n", "-1\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-plus", post("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-overlong", post("Transfer-Encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n"), RejectInBody(R4XX)),
        case("chunk-size-wraps-to-5", post("Transfer-Encoding: chunked\r\n", "ffffffffffffffff5\r\nhello\r\n0\r\n\r\n"), RejectInBody(R4XX)),
        case("chunk-size-bare-lf", post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-underscore", post("Transfer-Encoding: chunked\r\n", "0_5\r\nhello\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-size-upper-hex", post("Transfer-Encoding: chunked\r\n", "A\r\n0123456789\r\n0\r\n\r\n"), Forward(vec![fwd(b"0123456789")])),
        case("chunk-data-overrun", post("Transfer-Encoding: chunked\r\n", "5\r\nhelloX\r\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-data-bare-lf", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\n0\r\n\r\n"), RejectInBody(BAD)),
        case("chunk-body-is-a-request", chunked("", &sm_chunked), Forward(vec![fwd(smb)])),
        case("chunk-then-pipelined", [chunked("", "0\r\n\r\n"), get("")].concat(), Forward(vec![fwd(b""), fwd(b"")])),
        // ----- trailers (RFC 9112 §7.1.2, RFC 9110 §6.5) -----
        case("trailer-allowed", chunked("", "5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"), Forward(vec![fwd(b"hello")])),
        case("trailer-content-length", chunked("", "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-transfer-encoding", chunked("", "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-host", chunked("", "5\r\nhello\r\n0\r\nHost: evil\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-connection", chunked("", "5\r\nhello\r\n0\r\nConnection: close\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-trailer", chunked("", "5\r\nhello\r\n0\r\nTrailer: Content-Length\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-te", chunked("", "5\r\nhello\r\n0\r\nTE: trailers\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-upgrade", chunked("", "5\r\nhello\r\n0\r\nUpgrade: h2c\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-keep-alive", chunked("", "5\r\nhello\r\n0\r\nKeep-Alive: timeout=1\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-x-forwarded-for", chunked("", "5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-x-forwarded-host", chunked("", "5\r\nhello\r\n0\r\nX-Forwarded-Host: evil\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-authorization", chunked("", "5\r\nhello\r\n0\r\nAuthorization: Basic YTpi\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-content-type", chunked("", "5\r\nhello\r\n0\r\nContent-Type: text/evil\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-content-encoding", chunked("", "5\r\nhello\r\n0\r\nContent-Encoding: gzip\r\n\r\n"), Either(vec![fwd(b"hello")], BAD)),
        case("trailer-obs-fold", chunked("", "5\r\nhello\r\n0\r\nX-A: b\r\n c\r\n\r\n"), RejectInBody(BAD)),
        case("trailer-no-colon", chunked("", "5\r\nhello\r\n0\r\nXA\r\n\r\n"), RejectInBody(BAD)),
        case("trailer-nul", chunked("", "5\r\nhello\r\n0\r\nX-A: b\x00\r\n\r\n"), RejectInBody(BAD)),
        case("trailer-space-before-colon", chunked("", "5\r\nhello\r\n0\r\nX-A : b\r\n\r\n"), RejectInBody(BAD)),
        case("trailer-bare-lf", chunked("", "5\r\nhello\r\n0\r\nX-A: b\n\r\n"), RejectInBody(BAD)),
        // ----- HTTP/1.0 -----
        case("http10-length", raw("POST /api/{ID}/p HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"), Forward(vec![fwd(b"hello").any_host()])),
        case("http10-te-keep-alive", raw(&format!("POST /api/{{ID}}/p HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n{hello}")), Reject(BAD)),
        // ----- bodies that are requests: CL.0 / 0.CL / pipelines -----
        case("cl0-get-with-body", raw(&format!("GET /api/{{ID}}/g HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{sm}", sm.len())), Forward(vec![fwd(smb)])),
        case("0cl-then-pipelined", [post("Content-Length: 0\r\n", ""), raw(sm)].concat(), Forward(vec![fwd(b""), fwd(b"")])),
        case("body-is-a-response", with_length("", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), Forward(vec![fwd(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")])),
        case("pipelined-three-mixed", [with_length("", "abc"), chunked("", hello), get("")].concat(), Forward(vec![fwd(b"abc"), fwd(b"hello"), fwd(b"")])),
        // ----- Expect: 100-continue -----
        case("expect-continue-length", with_length("Expect: 100-continue\r\n", "hello"), Forward(vec![fwd(b"hello")])),
        case("expect-continue-chunked", chunked("Expect: 100-continue\r\n", hello), Forward(vec![fwd(b"hello")])),
        case("expect-continue-upper", with_length("Expect: 100-Continue\r\n", "hello"), Forward(vec![fwd(b"hello")])),
        case("expect-continue-no-body", get("Expect: 100-continue\r\n"), Forward(vec![fwd(b"")])),
        case("expect-continue-connection-content-length", with_length("Expect: 100-continue\r\nConnection: content-length\r\n", sm), Forward(vec![fwd(smb)])),
        case("expect-other", with_length("Expect: 100-continue, x\r\n", "hello"), Reject(&[417])),
        case("expect-with-cl-and-te", post("Expect: 100-continue\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", hello), Reject(BAD)),
        // ----- Upgrade: h2c (Bishop Fox h2c smuggling) -----
        case("upgrade-h2c", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"), Forward(vec![fwd(b"")])),
        case("upgrade-h2c-with-body", with_length("Connection: Upgrade\r\nUpgrade: h2c\r\n", "hello"), Either(vec![fwd(b"hello")], ANY)),
        // ----- request line and field syntax -----
        case("target-with-space", raw("GET /api/{ID}/a b HTTP/1.1\r\nHost: a\r\n\r\n"), Reject(BAD)),
        case("request-line-tab", raw("GET\t/api/{ID}/g HTTP/1.1\r\nHost: a\r\n\r\n"), Reject(BAD)),
        case("version-http12", raw("GET /api/{ID}/g HTTP/1.2\r\nHost: a\r\n\r\n"), Either(vec![fwd(b"")], &[400, 505])),
        case("field-without-colon", get("X-A b\r\n"), Reject(BAD)),
        case("field-empty-name", get(": b\r\n"), Reject(BAD)),
        case("field-name-control", get("X-\x01A: b\r\n"), Reject(BAD)),
        case("field-value-del", get("X-A: b\x7f\r\n"), Either(vec![fwd(b"")], BAD)),
        case("field-value-nul", get("X-A: b\x00c\r\n"), Reject(BAD)),
        case("field-value-obs-text", bytes(b"GET /api/{ID}/g HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n"), Either(vec![fwd(b"")], BAD)),
    ]
}

/// What the client may see for one response case.
#[derive(Debug, Clone)]
pub struct RespExpect {
    /// The response relayed: its status and body.
    pub relay: Option<(u16, Vec<u8>)>,
    /// rgate's own 502.
    pub bad_gateway: bool,
    /// The client connection cut before a complete response.
    pub cut: bool,
}

pub fn relay(status: u16, body: &[u8]) -> RespExpect {
    RespExpect {
        relay: Some((status, body.to_vec())),
        bad_gateway: false,
        cut: false,
    }
}

pub fn bad_gateway() -> RespExpect {
    RespExpect {
        relay: None,
        bad_gateway: true,
        cut: false,
    }
}

impl RespExpect {
    pub fn or_bad_gateway(mut self) -> RespExpect {
        self.bad_gateway = true;
        self
    }
    pub fn or_cut(mut self) -> RespExpect {
        self.cut = true;
        self
    }
}

/// One response case: what the backend sends for `method /api/{ID}/resp`.
#[derive(Debug, Clone)]
pub struct RespCase {
    pub name: &'static str,
    pub method: &'static str,
    pub parts: Vec<Vec<u8>>,
    pub then: Then,
    /// The last part is sent only once the client has its response.
    pub hold_last: bool,
    pub expect: RespExpect,
}

fn resp(name: &'static str, raw: &str, then: Then, expect: RespExpect) -> RespCase {
    RespCase {
        name,
        method: "GET",
        parts: vec![raw.as_bytes().to_vec()],
        then,
        hold_last: false,
        expect,
    }
}

/// A response that ends; once the client has it (rgate read it whole and may have pooled the
/// connection), `extra` bytes follow and the backend does `then`.
fn resp_late(
    name: &'static str,
    first: &str,
    extra: &str,
    then: Then,
    expect: RespExpect,
) -> RespCase {
    RespCase {
        name,
        method: "GET",
        parts: vec![first.as_bytes().to_vec(), extra.as_bytes().to_vec()],
        then,
        hold_last: true,
        expect,
    }
}

/// The response a smuggler hopes the next client gets.
pub const POISON: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned";

/// The response corpus.
#[rustfmt::skip]
pub fn response_cases() -> Vec<RespCase> {
    use Then::{Close, KeepOpen as Keep};
    let h = "HTTP/1.1 200 OK\r\n";
    let poison = POISON;
    let chunked_hello = "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let mut cases = vec![
        resp("baseline-length", &format!("{h}Content-Length: 5\r\n\r\nhello"), Keep, relay(200, b"hello")),
        resp("baseline-chunked", &format!("{h}{chunked_hello}"), Keep, relay(200, b"hello")),
        resp("baseline-until-close", &format!("{h}Connection: close\r\n\r\nhello"), Close, relay(200, b"hello")),
        // ----- Connection naming framing fields -----
        resp("connection-content-length", &format!("{h}Connection: content-length\r\nContent-Length: 5\r\n\r\nhello"), Keep, relay(200, b"hello")),
        resp("connection-content-length-close", &format!("{h}Connection: content-length\r\nContent-Length: 5\r\n\r\nhello"), Close, relay(200, b"hello")),
        resp("connection-content-length-body-is-response", &format!("{h}Connection: content-length\r\nContent-Length: {}\r\n\r\n{poison}", poison.len()), Keep, relay(200, poison.as_bytes())),
        resp("connection-transfer-encoding", &format!("{h}Connection: transfer-encoding\r\n{chunked_hello}"), Keep, relay(200, b"hello")),
        // ----- ambiguous framing -----
        resp("cl-and-te", &format!("{h}Content-Length: 5\r\n{chunked_hello}"), Keep, bad_gateway()),
        resp("te-and-cl", &format!("{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("cl-two-differing", &format!("{h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), Keep, bad_gateway()),
        resp("cl-list-differing", &format!("{h}Content-Length: 5, 6\r\n\r\nhello!"), Keep, bad_gateway()),
        resp("cl-two-same", &format!("{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), Keep, relay(200, b"hello").or_bad_gateway()),
        resp("cl-plus", &format!("{h}Content-Length: +5\r\n\r\nhello"), Keep, bad_gateway()),
        resp("cl-negative", &format!("{h}Content-Length: -1\r\n\r\nhello"), Keep, bad_gateway()),
        resp("cl-hex", &format!("{h}Content-Length: 0x5\r\n\r\nhello"), Keep, bad_gateway()),
        resp("te-chunked-identity", &format!("{h}Transfer-Encoding: chunked, identity\r\n\r\nhello"), Close, bad_gateway()),
        resp("te-identity", &format!("{h}Transfer-Encoding: identity\r\n\r\nhello"), Close, bad_gateway()),
        resp("te-xchunked", &format!("{h}Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Close, bad_gateway()),
        resp("te-gzip-chunked", &format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("te-two-fields", &format!("{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("te-obs-fold", &format!("{h}Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("te-space-before-colon", &format!("{h}Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("te-nul", &format!("{h}Transfer-Encoding: chunked\x00\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("te-vtab", &format!("{h}Transfer-Encoding: \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway()),
        resp("http10-te", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Close, bad_gateway()),
        // ----- bad chunks: found before or after the head went out -----
        resp("chunk-size-0x", &format!("{h}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-size-negative", &format!("{h}Transfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-size-overlong", &format!("{h}Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-size-bare-lf", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-size-leading-space", &format!("{h}Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-size-trailing-space", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"), Keep, relay(200, b"hello").or_bad_gateway().or_cut()),
        resp("chunk-data-overrun", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("chunk-extension", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n"), Keep, relay(200, b"hello")),
        resp("chunk-extension-control", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n"), Keep, bad_gateway().or_cut()),
        // ----- bytes beyond the response -----
        resp("extra-response-same-write", &format!("{h}Content-Length: 5\r\n\r\nhello{poison}"), Keep, relay(200, b"hello")),
        resp_late("extra-response-late", &format!("{h}Content-Length: 5\r\n\r\nhello"), poison, Keep, relay(200, b"hello")),
        resp_late("extra-response-late-after-chunked", &format!("{h}{chunked_hello}"), poison, Keep, relay(200, b"hello")),
        resp_late("close-late-after-keep-alive-response", &format!("{h}Content-Length: 5\r\n\r\nhello"), "", Close, relay(200, b"hello")),
        resp_late("one-byte-late", &format!("{h}Content-Length: 5\r\n\r\nhello"), "H", Keep, relay(200, b"hello")),
        resp("extra-response-after-chunked-same-write", &format!("{h}{chunked_hello}{poison}"), Keep, relay(200, b"hello")),
        resp("no-body-204-with-bytes", &format!("HTTP/1.1 204 No Content\r\n\r\n{poison}"), Keep, relay(204, b"")),
        resp("no-body-204-with-length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", Keep, relay(204, b"").or_bad_gateway()),
        resp("no-body-304-with-bytes", &format!("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello{poison}"), Keep, relay(304, b"").or_bad_gateway()),
        resp_late("no-body-304-then-late-bytes", "HTTP/1.1 304 Not Modified\r\n\r\n", poison, Keep, relay(304, b"")),
        resp("interim-103-with-length", "HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Keep, relay(200, b"ok").or_bad_gateway()),
        resp("interim-100-then-final", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Keep, relay(200, b"ok")),
        resp("connection-close-with-extra", &format!("{h}Connection: close\r\nContent-Length: 5\r\n\r\nhello{poison}"), Keep, relay(200, b"hello")),
        // ----- trailers -----
        resp("trailer-content-length", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), Keep, relay(200, b"hello").or_bad_gateway().or_cut()),
        resp("trailer-transfer-encoding", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), Keep, relay(200, b"hello").or_bad_gateway().or_cut()),
        resp("trailer-connection", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nConnection: close\r\n\r\n"), Keep, relay(200, b"hello").or_bad_gateway().or_cut()),
        resp("trailer-content-type", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Type: text/evil\r\n\r\n"), Keep, relay(200, b"hello").or_bad_gateway().or_cut()),
        resp("trailer-obs-fold", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: b\r\n c\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("trailer-no-colon", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nXA\r\n\r\n"), Keep, bad_gateway().or_cut()),
        resp("trailer-nul", &format!("{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: b\x00\r\n\r\n"), Keep, bad_gateway().or_cut()),
        // ----- head syntax -----
        resp("field-obs-fold", &format!("{h}X-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello"), Keep, relay(200, b"hello").or_bad_gateway()),
        resp("field-nul", &format!("{h}X-A: b\x00c\r\nContent-Length: 5\r\n\r\nhello"), Keep, bad_gateway()),
        resp("bare-lf-head", "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", Keep, relay(200, b"hello").or_bad_gateway()),
        resp("length-too-long-then-close", &format!("{h}Content-Length: 10\r\n\r\nhello"), Close, bad_gateway().or_cut()),
    ];
    cases.push(RespCase {
        name: "head-response-with-body-bytes",
        method: "HEAD",
        parts: vec![format!("{h}Content-Length: 5\r\n\r\nhello{poison}").into_bytes()],
        then: Keep,
        hold_last: false,
        expect: relay(200, b""),
    });
    cases
}
