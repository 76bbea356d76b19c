//! Moving bytes between sockets, below HTTP's meaning of them: a buffered stream whose
//! buffer is handed to the kernel and back (`stream`), and the relay of one message body in
//! its framing through a bounded buffer (`body`). Used by both sides of the proxy: the
//! client connection (`proxy`) and the backend session (`upstream`).

pub(crate) mod body;
pub(crate) mod stream;
