//! Request IDs: every request rgate handles has one, sent to the backend and back to the
//! client as `X-Request-Id`, written in the access log and in the JSON of rgate's own
//! errors. A client's own ID is kept when it is valid (visible ASCII, at most
//! `MAX_REQUEST_ID_BYTES`); otherwise rgate makes one.
//!
//! A made ID is `<process>-<core>-<sequence>`: 16 hex digits drawn at random once per
//! process (so IDs differ across restarts), the core's number, and the core's own counter
//! (so cores never collide and no request takes a lock or a system call for its ID).

use std::cell::Cell;
use std::fmt;

/// The longest client ID rgate passes on; a longer one is replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The header's name, as rgate writes it.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Whether a field name is `X-Request-Id` (the length decides first).
pub fn is_request_id_header(name: &str) -> bool {
    name.len() == REQUEST_ID_HEADER.len() && name.eq_ignore_ascii_case(REQUEST_ID_HEADER)
}

/// Whether a client's ID is passed on as is: 1 to 128 bytes of visible ASCII (no spaces,
/// no controls, no quotes or backslashes, so it needs no escaping in a log line or JSON).
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&value.len())
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// One request's ID, held inline (no allocation per request).
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_REQUEST_ID_BYTES],
}

impl RequestId {
    /// A client's ID, if valid.
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        if !is_valid_request_id(value) {
            return None;
        }
        let mut id = RequestId {
            len: value.len() as u8,
            bytes: [0; MAX_REQUEST_ID_BYTES],
        };
        id.bytes[..value.len()].copy_from_slice(value);
        Some(id)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The ID as text (it is ASCII by construction).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// Makes one core's IDs.
pub struct RequestIds {
    /// `<process>-<core>-`, written once.
    prefix: Vec<u8>,
    next: Cell<u64>,
}

impl RequestIds {
    /// The IDs of core `core` of a process whose random token is `process`.
    pub fn new(process: u64, core: usize) -> RequestIds {
        RequestIds {
            prefix: format!("{process:016x}-{core}-").into_bytes(),
            next: Cell::new(1),
        }
    }

    /// The next ID of this core.
    pub fn make(&self) -> RequestId {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut id = RequestId {
            len: 0,
            bytes: [0; MAX_REQUEST_ID_BYTES],
        };
        let p = self.prefix.len();
        id.bytes[..p].copy_from_slice(&self.prefix);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let d = &digits[i..];
        id.bytes[p..p + d.len()].copy_from_slice(d);
        id.len = (p + d.len()) as u8;
        id
    }

    /// The client's ID when it sent a valid one, else the next of this core.
    pub fn for_request(&self, client: Option<&[u8]>) -> RequestId {
        client
            .and_then(RequestId::from_client)
            .unwrap_or_else(|| self.make())
    }
}

/// A random token for this process's IDs: from the kernel's generator once at start, or,
/// failing that, from the clock and the process id.
pub fn process_token() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`, which lives across it.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == buf.len() as isize {
        return u64::from_ne_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_visible_ascii_and_short_enough() {
        assert!(is_valid_request_id(b"abc-123_XYZ.~:/+="));
        assert!(is_valid_request_id(&[b'a'; MAX_REQUEST_ID_BYTES]));
        assert!(!is_valid_request_id(&[b'a'; MAX_REQUEST_ID_BYTES + 1]));
        assert!(!is_valid_request_id(b""));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a\\b",
            b"a\tb",
            b"a\x7fb",
            b"caf\xc3\xa9",
        ] {
            assert!(!is_valid_request_id(bad), "{bad:?}");
        }
        let ids = RequestIds::new(7, 0);
        assert_eq!(ids.for_request(Some(b"mine-1")).as_str(), "mine-1");
        assert_eq!(
            ids.for_request(Some(b"not mine")).as_str(),
            "0000000000000007-0-1"
        );
        assert_eq!(ids.for_request(None).as_str(), "0000000000000007-0-2");
    }

    #[test]
    fn made_ids_differ_by_process_core_and_sequence() {
        let a = RequestIds::new(0xabcdef, 3);
        assert_eq!(a.make().as_str(), "0000000000abcdef-3-1");
        assert_eq!(a.make().as_str(), "0000000000abcdef-3-2");
        let b = RequestIds::new(0xabcdef, 4);
        assert_eq!(b.make().as_str(), "0000000000abcdef-4-1");
        let long = RequestIds::new(u64::MAX, usize::MAX);
        long.next.set(u64::MAX);
        let id = long.make();
        assert_eq!(
            id.as_str(),
            format!("ffffffffffffffff-{}-{}", usize::MAX, u64::MAX)
        );
        assert!(is_valid_request_id(id.as_bytes()));
        assert_ne!(process_token(), process_token());
    }
}
