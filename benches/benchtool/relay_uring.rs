//! `benchtool relay-uring` — the floor on io_uring: the same pairing as `relay.rs` (one
//! backend connection per client connection, bytes copied both ways, no HTTP), written the
//! way rgate does I/O: one monoio runtime on one thread, with the ring set up as rgate's
//! cores set theirs up (single issuer, cooperative task running), and owned buffers handed
//! to the kernel and back. rgate's CPU per request over this one is what rgate's own code
//! costs on top of the I/O model it chose.
//!
//! Not a proxy either: no timeouts, no limits; it runs until killed.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;

use futures_util::future::{select, Either};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};

use crate::relay::RELAY_BUF;

/// Submission queue entries: rgate's cores use the same.
const URING_ENTRIES: u32 = 4096;

pub fn run(listen: SocketAddr, to: SocketAddr) -> io::Result<()> {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag();
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(ring)
        .with_entries(URING_ENTRIES)
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen)?;
        eprintln!("benchtool relay (io_uring): {listen} -> {to}");
        loop {
            let (client, _) = listener.accept().await?;
            monoio::spawn(async move {
                let _ = relay(client, to).await;
            });
        }
    })
}

/// Pairs `client` with a new backend connection and copies both ways until both ends
/// have finished, or until either direction fails (then both sockets are dropped).
async fn relay(client: TcpStream, to: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let backend = TcpStream::connect(to).await?;
    backend.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (backend_read, backend_write) = backend.into_split();
    let upstream = pin!(copy(client_read, backend_write));
    let downstream = pin!(copy(backend_read, client_write));
    let (first, rest) = match select(upstream, downstream).await {
        Either::Left(done) | Either::Right(done) => done,
    };
    first?;
    rest.await
}

/// Copies until `from` ends, then shuts `to` down for writing.
async fn copy(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(RELAY_BUF);
    loop {
        let (res, read) = from.read(buf).await;
        buf = read;
        if res? == 0 {
            return to.shutdown().await;
        }
        let (res, written) = to.write_all(buf).await;
        buf = written;
        res?;
        buf.clear();
    }
}
