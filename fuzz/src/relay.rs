//! How the proxy relays a chunked body (`src/proxy/body.rs`), on byte buffers: `Reframe`
//! feeds the body to rgate's own `chunked::Reframer` — the very code the proxy runs, which
//! writes every chunk line itself and filters the trailers —, `Dechunk` forwards only the
//! payload once rgate's `ChunkedDecoder` and trailer check accepted the body. The socket
//! loop around them is the proxy's; the oracle judges what these codec calls produce.

use rgate::http::chunked::{ChunkedDecoder, Decoded, Reframer};
use rgate::http::trailers;

/// How the proxy writes a chunked body on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedRelay {
    Reframe,
    Dechunk,
}

/// Relays the chunked body at the start of `body` into `out`. Returns the payload, or
/// `None` when rgate refuses it or the input ends before the body does.
pub fn relay_chunked(body: &[u8], mode: ChunkedRelay, out: &mut Vec<u8>) -> Option<Vec<u8>> {
    // The payload as rgate's decoder reads it, whatever the mode.
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
        if let Decoded::Payload(_) = decoded {
            payload.extend_from_slice(&body[at..at + n]);
        }
        at += n;
    }
    match mode {
        ChunkedRelay::Reframe => {
            let mut reframer = Reframer::new();
            let used = reframer.feed(body, out).ok()?;
            assert!(
                reframer.is_done(),
                "the decoder ended the body, the reframer did not"
            );
            assert_eq!(
                used, at,
                "the reframer and the decoder disagree on the body's end"
            );
        }
        ChunkedRelay::Dechunk => {
            trailers::write_allowed(decoder.trailer_section(), &mut Vec::new()).ok()?;
            out.extend_from_slice(&payload);
        }
    }
    Some(payload)
}
