//! How the proxy relays a chunked body, restated from `src/proxy/body.rs::relay_chunked`
//! (socket-bound and crate-private there): rgate's `ChunkedDecoder` proves where the body
//! ends; `PassThrough` forwards every byte it consumed as it came, `Dechunk` forwards only
//! the payload. Keep this in step with the proxy: the oracle judges what is written here.

use rgate::http::chunked::{ChunkedDecoder, Decoded};

/// Which bytes of a chunked body the proxy writes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedRelay {
    PassThrough,
    Dechunk,
}

/// Relays the chunked body at the start of `body` into `out`. Returns the payload, or
/// `None` when rgate refuses it (a decoder error) or the input ends before the body does.
pub fn relay_chunked(body: &[u8], mode: ChunkedRelay, out: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut decoder = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut at = 0;
    while !decoder.is_done() {
        if at == body.len() {
            return None;
        }
        let decoded = decoder.decode(&body[at..]).ok()?;
        let (Decoded::Framing(n) | Decoded::Payload(n)) = decoded;
        assert!(n > 0, "ChunkedDecoder made no progress at byte {at}");
        let bytes = &body[at..at + n];
        if let Decoded::Payload(_) = decoded {
            payload.extend_from_slice(bytes);
        }
        if mode == ChunkedRelay::PassThrough || matches!(decoded, Decoded::Payload(_)) {
            out.extend_from_slice(bytes);
        }
        at += n;
    }
    Some(payload)
}
