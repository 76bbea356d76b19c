//! A strict HTTP/1.1 message parser (RFC 9112) for the smuggling tests, used on both sides
//! of rgate: by the strict backend for the requests rgate forwards, and by the strict client
//! for the responses rgate relays. It accepts only what a careful recipient must be able to
//! frame without guessing — CRLF line endings, token field names with the colon right after,
//! no control bytes in values, no obs-fold, at most one framing field (`Content-Length` of
//! digits, or `Transfer-Encoding` exactly `chunked`) — and reports everything else as an
//! error naming what it saw. Chunk extensions and trailer fields are legal and are recorded,
//! so the tests can assert that rgate stripped them.
//!
//! Pure functions on byte slices: `Ok(None)` means "need more input". Not for: anything a
//! test does not send or receive (HTTP/2, pipelines beyond what a case holds).

/// The largest head (start line and fields) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The largest body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// At most this many hex digits in a chunk size (2^64 - 1).
const MAX_CHUNK_DIGITS: usize = 16;

/// Whether a message is a request, or a response to a request of which method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Request,
    Response { to_head: bool },
}

/// How a parsed message's body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One complete message as it was on the wire.
#[derive(Debug, Clone)]
pub struct Message {
    /// Request: method, target, version. Response: version, status, reason.
    pub start: [String; 3],
    /// Field lines in order, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The payload (de-chunked).
    pub body: Vec<u8>,
    /// The raw extensions of every chunk line that had any (`;a=b`).
    pub extensions: Vec<String>,
    pub trailers: Vec<(String, String)>,
}

impl Message {
    pub fn method(&self) -> &str {
        &self.start[0]
    }
    pub fn target(&self) -> &str {
        &self.start[1]
    }
    pub fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
    /// Every value of the fields named `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
    /// Whether a `Connection` field lists `token`.
    pub fn connection_has(&self, token: &str) -> bool {
        self.all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Parses one message from the start of `buf`. `eof`: no more bytes will come (only a body
/// delimited by the close can end then). Returns the message and the bytes it used.
pub fn parse_message(
    buf: &[u8],
    role: Role,
    eof: bool,
) -> Result<Option<(Message, usize)>, String> {
    let Some((start, headers, head_len)) = parse_head(buf, role)? else {
        return Ok(None);
    };
    let framing = decide_framing(&start, &headers, role)?;
    let mut msg = Message {
        start,
        headers,
        framing,
        body: Vec::new(),
        extensions: Vec::new(),
        trailers: Vec::new(),
    };
    let rest = &buf[head_len..];
    let used = match framing {
        Framing::None => 0,
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| "Content-Length too large".to_string())?;
            if n > MAX_BODY {
                return Err(format!("Content-Length {n} over the test limit"));
            }
            if rest.len() < n {
                return Ok(None);
            }
            msg.body = rest[..n].to_vec();
            n
        }
        Framing::Chunked => match parse_chunked(rest, &mut msg)? {
            Some(n) => n,
            None => return Ok(None),
        },
        Framing::UntilClose => {
            if !eof {
                if rest.len() > MAX_BODY {
                    return Err("close-delimited body over the test limit".into());
                }
                return Ok(None);
            }
            msg.body = rest.to_vec();
            rest.len()
        }
    };
    Ok(Some((msg, head_len + used)))
}

/// The next CRLF-terminated line at `at`: its bytes and where the following line starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at..];
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\n' => return Err(format!("bare LF at byte {}", at + i)),
            b'\r' => {
                return match rest.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((&rest[..i], at + i + 2))),
                    Some(_) => Err(format!("bare CR at byte {}", at + i)),
                }
            }
            _ => {}
        }
    }
    if rest.len() > MAX_HEAD {
        return Err("line over the test limit".into());
    }
    Ok(None)
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

/// One field line: `token ":" OWS value OWS`, value of VCHAR, SP, HTAB and obs-text only.
pub fn parse_field(line: &[u8]) -> Result<(String, String), String> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(format!("obs-fold or leading whitespace: {:?}", lossy(line)));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("field line without ':': {:?}", lossy(line)))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("invalid field name {:?}", lossy(name)));
    }
    let value = trim_ows(&line[colon + 1..]);
    if let Some(b) = value
        .iter()
        .find(|&&b| !(b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80))
    {
        return Err(format!(
            "control byte {b:#04x} in the value of {:?}",
            lossy(name)
        ));
    }
    Ok((lossy(name), lossy(value)))
}

type Head = ([String; 3], Vec<(String, String)>, usize);

fn parse_head(buf: &[u8], role: Role) -> Result<Option<Head>, String> {
    let Some((first, mut at)) = line(buf, 0)? else {
        if buf.len() > MAX_HEAD {
            return Err("head over the test limit".into());
        }
        return Ok(None);
    };
    let start = match role {
        Role::Request => request_line(first)?,
        Role::Response { .. } => status_line(first)?,
    };
    let mut headers = Vec::new();
    loop {
        let Some((l, next)) = line(buf, at)? else {
            if buf.len() > MAX_HEAD {
                return Err("head over the test limit".into());
            }
            return Ok(None);
        };
        at = next;
        if l.is_empty() {
            return Ok(Some((start, headers, at)));
        }
        headers.push(parse_field(l)?);
        if headers.len() > 200 {
            return Err("more than 200 fields".into());
        }
    }
}

fn request_line(l: &[u8]) -> Result<[String; 3], String> {
    let bad = || format!("invalid request line {:?}", lossy(l));
    let mut parts = l.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad());
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(bad());
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(bad());
    }
    Ok([lossy(method), lossy(target), lossy(version)])
}

fn status_line(l: &[u8]) -> Result<[String; 3], String> {
    let bad = || format!("invalid status line {:?}", lossy(l));
    let mut parts = l.splitn(3, |&b| b == b' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let reason = parts.next().unwrap_or(b"");
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(bad());
    }
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if reason
        .iter()
        .any(|&b| !(b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80))
    {
        return Err(bad());
    }
    Ok([lossy(version), lossy(code), lossy(reason)])
}

/// RFC 9112 §6.3, strictly: anything a recipient would have to guess about is an error.
fn decide_framing(
    start: &[String; 3],
    headers: &[(String, String)],
    role: Role,
) -> Result<Framing, String> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (version, no_body) = match role {
        Role::Request => (start[2].as_str(), false),
        Role::Response { to_head } => {
            let status: u16 = start[1].parse().unwrap_or(0);
            let none = to_head || (100..200).contains(&status) || status == 204 || status == 304;
            (start[0].as_str(), none)
        }
    };
    if no_body {
        return Ok(Framing::None);
    }
    let cl = values("content-length");
    let te = values("transfer-encoding");
    if !cl.is_empty() && !te.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if te.len() > 1 {
        return Err(format!("{} Transfer-Encoding fields", te.len()));
    }
    if let Some(te) = te.first() {
        if version == "HTTP/1.0" {
            return Err("Transfer-Encoding in an HTTP/1.0 message".into());
        }
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(format!("Transfer-Encoding {te:?} is not exactly chunked"));
        }
        return Ok(Framing::Chunked);
    }
    if cl.len() > 1 {
        return Err(format!("{} Content-Length fields: {cl:?}", cl.len()));
    }
    if let Some(cl) = cl.first() {
        if cl.is_empty() || cl.len() > 15 || !cl.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid Content-Length {cl:?}"));
        }
        return Ok(Framing::Length(cl.parse().expect("digits")));
    }
    match role {
        Role::Request => Ok(Framing::None),
        Role::Response { .. } => {
            let closes = headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("connection")
                    && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
            });
            if closes || version == "HTTP/1.0" {
                Ok(Framing::UntilClose)
            } else {
                Err("response body without framing on a persistent connection".into())
            }
        }
    }
}

/// A chunked body at the start of `buf`; returns the bytes it used.
fn parse_chunked(buf: &[u8], msg: &mut Message) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some((l, next)) = line(buf, at)? else {
            return Ok(None);
        };
        let (size_part, ext) = match l.iter().position(|&b| b == b';') {
            Some(i) => (trim_ows(&l[..i]), Some(&l[i..])),
            None => (l, None),
        };
        if size_part.is_empty()
            || size_part.len() > MAX_CHUNK_DIGITS
            || !size_part.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(format!("invalid chunk size line {:?}", lossy(l)));
        }
        if let Some(ext) = ext {
            check_extensions(ext)?;
            msg.extensions.push(lossy(ext));
        }
        let size = u64::from_str_radix(std::str::from_utf8(size_part).unwrap(), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        at = next;
        if size == 0 {
            loop {
                let Some((l, next)) = line(buf, at)? else {
                    return Ok(None);
                };
                at = next;
                if l.is_empty() {
                    return Ok(Some(at));
                }
                msg.trailers.push(parse_field(l)?);
            }
        }
        let size = usize::try_from(size).map_err(|_| "chunk too large".to_string())?;
        if msg.body.len() + size > MAX_BODY {
            return Err("chunked body over the test limit".into());
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        msg.body.extend_from_slice(&buf[at..at + size]);
        at += size;
        if &buf[at..at + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += 2;
    }
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn check_extensions(ext: &[u8]) -> Result<(), String> {
    let bad = |why: &str| format!("chunk extension {:?}: {why}", lossy(ext));
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while matches!(ext.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> bool {
        let from = *i;
        while ext.get(*i).is_some_and(|&b| is_tchar(b)) {
            *i += 1;
        }
        *i > from
    };
    while i < ext.len() {
        skip_ws(&mut i);
        if ext.get(i) != Some(&b';') {
            return Err(bad("expected ';'"));
        }
        i += 1;
        skip_ws(&mut i);
        if !token(&mut i) {
            return Err(bad("no name"));
        }
        skip_ws(&mut i);
        if ext.get(i) == Some(&b'=') {
            i += 1;
            skip_ws(&mut i);
            if ext.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match ext.get(i) {
                        None => return Err(bad("unterminated quoted string")),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match ext.get(i + 1) {
                                Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => {}
                                _ => return Err(bad("bad quoted-pair")),
                            }
                            i += 2;
                        }
                        Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => i += 1,
                        Some(_) => return Err(bad("control byte")),
                    }
                }
            } else if !token(&mut i) {
                return Err(bad("no value after '='"));
            }
        }
    }
    Ok(())
}

/// Whether `host` is a valid Host value: reg-name (RFC 3986, without ','), IPv4 or
/// IP-literal, with an optional numeric port.
pub fn valid_host(host: &str) -> bool {
    let b = host.as_bytes();
    let (name, port) = if b.first() == Some(&b'[') {
        let Some(end) = host.find(']') else {
            return false;
        };
        let inside = &host[1..end];
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return false;
        }
        (&host[..=end], &host[end + 1..])
    } else {
        match host.find(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.starts_with(':')
            && port.len() <= 6
            && port[1..].bytes().all(|c| c.is_ascii_digit()));
    let name_ok = name.starts_with('[')
        || name.bytes().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric()
                || b"-._~!$&'()*+;=".contains(&c)
                || (c == b'%'
                    && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                || (i >= 1 && b[i - 1] == b'%' && c.is_ascii_hexdigit())
                || (i >= 2 && b[i - 2] == b'%' && c.is_ascii_hexdigit())
        });
    port_ok && name_ok
}
