//! The fast backend every contender talks to: one thread (or `--threads N`, each with its
//! own listener on the same port, SO_REUSEPORT spreading connections over them), one monoio
//! (io_uring) runtime per thread, a fixed small response to every request. It reads request bodies framed by
//! Content-Length and drops them (the 1 GiB upload ends here), answers pipelined requests
//! in one write, and closes after a response when the request said `Connection: close`.
//! A GET of a path ending in `/big` gets `BIG_BODY` bytes instead (what a client that
//! does not read is made to wait on, in the abuse runs).
//! It is not a general server: no chunked request bodies, no HTTP/1.0 keep-alive.

use std::io;
use std::net::SocketAddr;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// The response to every request.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n";
/// The response to a request that asked to close: says so, so the client does not reuse it.
const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\
Connection: close\r\n\r\nHello, world\n";
/// The body of a `/big` response: zeros, never copied (a static, in .bss).
const BIG_BODY: usize = 8 << 20;
static BIG: [u8; BIG_BODY] = [0; BIG_BODY];
/// Read size: large, so a streamed body costs few reads.
const READ_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;

/// Serves on `threads` threads until killed; a failing thread ends the whole process (a
/// backend short of a thread would bound the bench without saying so).
pub fn run(addr: SocketAddr, threads: usize) -> io::Result<()> {
    for _ in 1..threads {
        std::thread::spawn(move || {
            if let Err(e) = serve_on_this_thread(addr) {
                eprintln!("benchtool backend: {e}");
                std::process::exit(1);
            }
        });
    }
    serve_on_this_thread(addr)
}

fn serve_on_this_thread(addr: SocketAddr) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(4096)
        .build()?;
    rt.block_on(async move {
        // monoio's listener sets SO_REUSEPORT: every thread binds the same port.
        let listener = TcpListener::bind(addr)?;
        eprintln!("benchtool backend: listening on {addr}");
        loop {
            let (io, _) = listener.accept().await?;
            let _ = io.set_nodelay(true);
            monoio::spawn(async move {
                let _ = serve(io).await;
            });
        }
    })
}

/// What the parser found at the front of the buffer.
enum Parsed {
    NeedMore,
    /// A head of this many bytes, announcing a body of that many, closing after or not.
    Head {
        len: usize,
        body: u64,
        close: bool,
        /// The path ends in `/big`.
        big: bool,
    },
}

fn parse(buf: &[u8]) -> io::Result<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::NeedMore),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let mut body = 0;
    let mut close = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let big = req.path.is_some_and(|p| p.ends_with("/big"));
    Ok(Parsed::Head {
        len,
        body,
        close,
        big,
    })
}

async fn serve(mut io: TcpStream) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(RESPONSE.len() * 16);
    // Body bytes still to drop, and whether the connection closes once they are.
    let mut body_left = 0u64;
    let mut close_after_body = false;
    loop {
        let mut at = 0;
        let mut close = false;
        let mut big = false;
        loop {
            if body_left > 0 {
                let n = body_left.min((buf.len() - at) as u64);
                at += n as usize;
                body_left -= n;
                if body_left > 0 {
                    break;
                }
                if close_after_body {
                    out.extend_from_slice(RESPONSE_CLOSE);
                    close = true;
                    break;
                }
                out.extend_from_slice(RESPONSE);
                continue;
            }
            match parse(&buf[at..])? {
                Parsed::NeedMore => break,
                Parsed::Head {
                    len,
                    body,
                    close: c,
                    big: is_big,
                } => {
                    at += len;
                    if is_big {
                        out.extend_from_slice(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n")
                                .as_bytes(),
                        );
                        // The body follows the write of what is answered so far.
                        big = true;
                        break;
                    }
                    if body > 0 {
                        body_left = body;
                        close_after_body = c;
                        continue;
                    }
                    if c {
                        out.extend_from_slice(RESPONSE_CLOSE);
                        close = true;
                        break;
                    }
                    out.extend_from_slice(RESPONSE);
                }
            }
        }
        buf.drain(..at);
        if !out.is_empty() {
            let (res, written) = io.write_all(out).await;
            out = written;
            out.clear();
            res?;
        }
        if big {
            let (res, _) = io.write_all(&BIG[..]).await;
            res?;
        }
        if close {
            return Ok(());
        }
        let len = buf.len();
        if buf.capacity() - len < READ_BYTES / 2 {
            buf.reserve(READ_BYTES);
        }
        let (res, slice) = io.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        if res? == 0 {
            return Ok(());
        }
    }
}
