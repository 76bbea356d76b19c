//! After `101 Switching Protocols` (e.g. WebSocket) the client and backend connections are
//! joined into a two-way byte tunnel. Each direction copies until its reader sees EOF, then
//! half-closes the other side, so either peer can finish first.

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};

use crate::wire::stream::Buffered;

/// Copy buffer per tunnel direction.
const TUNNEL_BUFFER_BYTES: usize = 16 * 1024;

pub(crate) async fn run(mut client: Buffered, mut backend: Buffered) {
    // Bytes that arrived with the heads belong to the new protocol: pass them on first.
    let pending = client.data().len();
    if pending > 0 && client.forward_to(pending, &mut backend.io).await.is_err() {
        return;
    }
    let pending = backend.data().len();
    if pending > 0 && backend.forward_to(pending, &mut client.io).await.is_err() {
        return;
    }
    let (client_read, client_write) = client.io.into_split();
    let (backend_read, backend_write) = backend.io.into_split();
    monoio::join!(
        copy(client_read, backend_write),
        copy(backend_read, client_write)
    );
}

async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(mut from: R, mut to: W) {
    let mut buf = Vec::with_capacity(TUNNEL_BUFFER_BYTES);
    loop {
        let (res, b) = from.read(buf).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => {}
            _ => break,
        }
        let (res, b) = to.write_all(buf).await;
        buf = b;
        buf.clear();
        if res.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
