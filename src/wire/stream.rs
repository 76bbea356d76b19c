//! A TCP stream with a read buffer whose bytes are handed to the kernel and back
//! (monoio's owned-buffer I/O). The proxy parses heads in place in this buffer and forwards
//! body bytes straight out of it, so a byte read is never copied before it is written.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;

/// Read size while a body streams through: big enough to keep syscalls few.
pub(crate) const BODY_READ_BYTES: usize = 64 * 1024;

/// A stream (a `TcpStream` in rgate; any monoio stream, e.g. in-memory ones in tests) and
/// its read buffer.
pub(crate) struct Buffered<S = TcpStream> {
    pub(crate) io: S,
    buf: Vec<u8>,
    /// Bytes before `start` are consumed; `buf[start..]` is unread data.
    start: usize,
    /// The capacity a fresh or shrunk buffer gets.
    base_capacity: usize,
}

impl<S> Buffered<S> {
    pub(crate) fn new(io: S, base_capacity: usize) -> Buffered<S> {
        Buffered {
            io,
            buf: Vec::new(),
            start: 0,
            base_capacity,
        }
    }

    /// The unread bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len() - self.start);
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes after the unread ones, with room for at least `want` of them.
    /// Returns how many arrived; 0 means the peer closed its side.
    pub(crate) async fn fill(&mut self, want: usize) -> io::Result<usize>
    where
        S: AsyncReadRent,
    {
        let len = self.make_room(want);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self.io.read(buf.slice_mut(len..)).await;
        self.buf = slice.into_inner();
        res
    }

    /// Like `fill(0)`, but cancelable without losing data: after `Canceller::cancel`, the
    /// read either completes with the bytes the kernel already took from the socket, or
    /// fails with "operation canceled". Dropping a plain `fill` instead could lose such bytes.
    pub(crate) async fn fill_cancelable(&mut self, cancel: CancelHandle) -> io::Result<usize>
    where
        S: CancelableAsyncReadRent,
    {
        let len = self.make_room(0);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self.io.cancelable_read(buf.slice_mut(len..), cancel).await;
        self.buf = slice.into_inner();
        res
    }

    /// Moves the unread bytes to the front and makes room for at least `want` more (at
    /// least half the base capacity); returns where the next read goes.
    fn make_room(&mut self, want: usize) -> usize {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        let want = want.max(self.base_capacity / 2).max(1);
        if self.buf.capacity() - len < want {
            self.buf.reserve_exact(want.max(self.base_capacity));
        }
        len
    }

    /// Frees the read buffer when nothing unread is in it (an idle connection).
    pub(crate) fn release_buffer(&mut self) {
        if self.data().is_empty() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// Gives back memory grown for a body once a connection goes idle.
    pub(crate) fn shrink_when_idle(&mut self) {
        if self.buf.capacity() > self.base_capacity && self.data().len() <= self.base_capacity {
            let mut fresh = Vec::with_capacity(self.base_capacity);
            fresh.extend_from_slice(self.data());
            self.buf = fresh;
            self.start = 0;
        }
    }

    /// Writes `n` unread bytes of this stream's buffer to `dst`, then consumes them.
    pub(crate) async fn forward_to<W: AsyncWriteRent>(
        &mut self,
        n: usize,
        dst: &mut W,
    ) -> io::Result<()> {
        let (from, to) = (self.start, self.start + n);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = dst.write_all(buf.slice(from..to)).await;
        self.buf = slice.into_inner();
        res?;
        self.consume(n);
        Ok(())
    }
}

/// Writes all of `data` and gives the buffer back (cleared) for reuse.
pub(crate) async fn write_all<W: AsyncWriteRent>(
    io: &mut W,
    data: Vec<u8>,
) -> (io::Result<()>, Vec<u8>) {
    let (res, mut data) = io.write_all(data).await;
    data.clear();
    (res.map(|_| ()), data)
}
