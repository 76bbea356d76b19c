//! The `response` target: a backend's bytes through rgate's response path — interim heads,
//! `parse_response`, the relay framing chosen as `src/proxy/exchange.rs` chooses it,
//! `write_response_head`, the body — and what the client would receive held against the
//! strict parser. The input's first byte says what the client asked (`Client::from_byte`).

use rgate::http::framing::BodyFraming;
use rgate::http::response::parse_response;
use rgate::http::writer::{write_response_head, RelayFraming, NO_EDITS};
use rgate::http::{Version, MAX_HEADERS};

use crate::relay::{relay_chunked, ChunkedRelay};
use crate::{forbidden_trailer, show, strict};

/// The request ID the proxy adds to a response that has none.
const REQUEST_ID: &[u8] = b"0000000000000001-0-1";

/// What the client's request said that decides how the response is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub head_request: bool,
    pub version: Version,
    /// The client asked to keep the connection (and rgate is not draining).
    pub keep_alive: bool,
}

impl Client {
    /// Bit 0: HEAD request; bit 1: HTTP/1.0 client; bit 2: the client asked to close.
    pub fn from_byte(b: u8) -> Client {
        Client {
            head_request: b & 1 != 0,
            version: if b & 2 != 0 {
                Version::Http10
            } else {
                Version::Http11
            },
            keep_alive: b & 4 == 0,
        }
    }
}

/// What rgate would send to the client for one backend response, and what it must mean.
#[derive(Debug)]
pub struct Relayed {
    pub client: Client,
    /// Interim heads, then the final head and the relayed body.
    pub out: Vec<u8>,
    /// Statuses of the interim responses relayed.
    pub interim: Vec<u16>,
    pub status: u16,
    pub relay: RelayFraming,
    /// How the backend framed its body.
    pub backend_framing: BodyFraming,
    /// The payload the backend sent (de-chunked).
    pub payload: Vec<u8>,
    /// rgate keeps the client connection after this response.
    pub client_keep: bool,
}

/// Checks one backend input; panics when rgate would relay something the strict parser
/// reads differently. Refused (502) and incomplete inputs pass.
pub fn check_response(data: &[u8]) {
    if let Some(relayed) = relay(data) {
        verify(&relayed);
    }
}

/// Runs rgate's response path on `data`. `None`: refused, or more input needed.
pub fn relay(data: &[u8]) -> Option<Relayed> {
    let (&first, mut backend) = data.split_first()?;
    let client = Client::from_byte(first);
    let mut out = Vec::new();
    let mut interim = Vec::new();
    loop {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response(backend, &mut storage, client.head_request).ok()??;
        if resp.is_interim() {
            // `wait_final_head`: relayed to HTTP/1.1 clients (no 100 Continue of rgate's here).
            if client.version == Version::Http11 {
                write_response_head(
                    &mut out,
                    &resp,
                    RelayFraming::Interim,
                    client.version,
                    true,
                    None,
                    &NO_EDITS,
                );
                interim.push(resp.status);
            }
            backend = &backend[resp.head_len..];
            continue;
        }
        if resp.status == 101 {
            // The request asked no upgrade: rgate answers 502 itself.
            return None;
        }
        let relay = match resp.framing {
            BodyFraming::None | BodyFraming::Length(_) => RelayFraming::AsIs,
            BodyFraming::Chunked if client.version == Version::Http11 => RelayFraming::Chunked,
            BodyFraming::Chunked | BodyFraming::UntilClose => RelayFraming::Close,
        };
        let client_keep = client.keep_alive && relay != RelayFraming::Close;
        write_response_head(
            &mut out,
            &resp,
            relay,
            client.version,
            client_keep,
            Some(REQUEST_ID),
            &NO_EDITS,
        );
        let body = &backend[resp.head_len..];
        let payload = match resp.framing {
            BodyFraming::None => Vec::new(),
            BodyFraming::Length(n) => {
                let n = usize::try_from(n).ok().filter(|&n| n <= body.len())?;
                out.extend_from_slice(&body[..n]);
                body[..n].to_vec()
            }
            BodyFraming::Chunked => {
                let mode = if relay == RelayFraming::Chunked {
                    ChunkedRelay::Reframe
                } else {
                    ChunkedRelay::Dechunk
                };
                relay_chunked(body, mode, &mut out)?
            }
            BodyFraming::UntilClose => {
                out.extend_from_slice(body);
                body.to_vec()
            }
        };
        return Some(Relayed {
            client,
            out,
            interim,
            status: resp.status,
            relay,
            backend_framing: resp.framing,
            payload,
            client_keep,
        });
    }
}

/// Holds the relayed bytes against the strict parser and what the backend meant.
pub fn verify(r: &Relayed) {
    let fail =
        |why: String| -> ! { panic!("{why}\nclient {:?}, relayed: {}", r.client, show(&r.out)) };
    let (interim, resp) = strict::parse_responses(&r.out, r.client.head_request)
        .unwrap_or_else(|e| fail(format!("strict parser refuses the relayed response: {e}")));
    let statuses: Vec<u16> = interim.iter().map(|i| i.status).collect();
    if statuses != r.interim {
        fail(format!(
            "interim statuses {:?} read as {statuses:?}",
            r.interim
        ));
    }
    if resp.status != r.status {
        fail(format!("status {} relayed as {}", r.status, resp.status));
    }
    let m = &resp.message;
    let expected = match (r.relay, r.backend_framing) {
        (RelayFraming::AsIs, BodyFraming::Length(n)) => Some(strict::Delimited::Length(n)),
        (RelayFraming::Chunked, _) => Some(strict::Delimited::Chunked),
        (RelayFraming::Close, _) => Some(strict::Delimited::Close),
        _ => None,
    };
    if expected.is_some_and(|e| e != m.delimited) {
        fail(format!(
            "backend framing {:?} relayed as {:?}; the client reads {:?}",
            r.backend_framing, r.relay, m.delimited
        ));
    }
    if m.body != r.payload {
        fail(format!(
            "client reads body {}; the backend sent {}",
            show(&m.body),
            show(&r.payload)
        ));
    }
    if m.len != r.out.len() {
        fail(format!(
            "{} bytes after the relayed response: the client reads them as the next response",
            r.out.len() - m.len
        ));
    }
    if r.client.version == Version::Http10 && m.delimited == strict::Delimited::Chunked {
        fail("chunked body relayed to an HTTP/1.0 client".into());
    }
    if !r.client_keep && !m.connection_has("close") {
        fail("rgate closes the connection without saying Connection: close".into());
    }
    if let Some(t) = forbidden_trailer(&m.trailers) {
        fail(format!("trailer field {} relayed", show(t.name)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgate_path_runs_for_plain_responses() {
        let r = relay(b"\x00HTTP/1.1 103 Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            .expect("relayed");
        assert_eq!(
            (r.interim.as_slice(), r.status, &r.payload[..]),
            (&[103][..], 200, &b"hi"[..])
        );
        verify(&r);
        let r =
            relay(b"\x02HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
                .expect("relayed");
        assert_eq!(r.relay, RelayFraming::Close);
        verify(&r);
        assert!(relay(b"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh").is_none());
    }

    #[test]
    #[should_panic(expected = "without Connection: close")]
    fn unframed_body_on_a_kept_connection_is_caught() {
        verify(&Relayed {
            client: Client::from_byte(0),
            out: b"HTTP/1.1 200 OK\r\n\r\nhi".to_vec(),
            interim: vec![],
            status: 200,
            relay: RelayFraming::AsIs,
            backend_framing: BodyFraming::Length(2),
            payload: b"hi".to_vec(),
            client_keep: true,
        });
    }

    #[test]
    #[should_panic(expected = "relayed as AsIs; the client reads Close")]
    fn lost_length_is_caught_even_when_closing() {
        verify(&Relayed {
            client: Client::from_byte(4),
            out: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhi".to_vec(),
            interim: vec![],
            status: 200,
            relay: RelayFraming::AsIs,
            backend_framing: BodyFraming::Length(2),
            payload: b"hi".to_vec(),
            client_keep: false,
        });
    }
}
