//! The proxy loop: one task per client connection, on the core that accepted it. It reads
//! a request head, decides (synchronously, while the head is still borrowed from the read
//! buffer) where it goes, then drives the exchange with a backend: send the head, stream
//! the body, wait for the response head, stream the response back, pool the backend
//! connection. Requests on one connection are answered in order (pipelining included).
//!
//! * `stream`   — buffered TCP stream with owned-buffer I/O.
//! * `body`     — relaying a body in its framing, bounded memory.
//! * `exchange` — one request's exchange with a backend (retry, 1xx, relay back).
//! * `upstream` — the backend connection and its errors.
//! * `pool`     — the per-core keep-alive pool.
//! * `tunnel`   — the two-way byte copy after `101 Switching Protocols`.

mod attempt;
mod decide;
mod exchange;
mod own;
pub(crate) mod parked;
mod record;
pub(crate) mod tunnel;

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Canceller};
use monoio::net::TcpStream;

use crate::alarms::{Alarm, Deadline};
use crate::clients::Trim;
use crate::http::Version;
use crate::stats::ErrorKind;
use crate::wire::stream::Buffered;
use crate::worker::Worker;
use decide::Decided;
use record::RequestRecorder;

/// A client connection's read buffer to start with; it grows for big heads and bodies.
const CLIENT_BUFFER_BYTES: usize = 4 * 1024;
/// The room a head buffer (the request head forwarded, the head written to the client)
/// starts with: most heads fit, so a connection's first exchange does not grow them from
/// nothing a few bytes at a time (nine reallocations, each a copy, on a new connection).
const HEAD_BUFFER_BYTES: usize = 1024;
/// After an error response, how long rgate keeps reading (and dropping) what the client
/// still sends, so that closing does not reset the connection under the response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// Once a core drains, how long an idle keep-alive connection may still bring one more
/// request (answered with `Connection: close`) before it is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(1000);
/// How long a new connection may stay silent before it counts as idle (a core at its cap
/// may close it): long enough for any client's first bytes, short against one that
/// connects and says nothing.
const NEW_CONNECTION_GRACE: Duration = Duration::from_millis(1000);
/// How long a keep-alive connection keeps its read buffer waiting for the next request
/// before giving it back (it waits for readability instead, holding no buffer).
const IDLE_RELEASE_AFTER: Duration = Duration::from_millis(200);

/// The message of the seed for a route whose backend has no instance.
pub const NO_INSTANCE_MESSAGE: &str = "Backend available but no Service URLs discovered";

/// What happens to the client connection after an exchange.
enum Next {
    KeepAlive,
    /// Close after a complete response (FIN, nothing unread expected).
    Close,
    /// Close after an error response: stop writing, read and drop what still arrives.
    Linger,
    /// Drop the connection now (the exchange was cut; nothing more can be said).
    Abort,
    /// `101 Switching Protocols` relayed: the connection becomes a tunnel.
    Upgrade(Buffered),
    /// No request yet: give back the buffers and wait for readability until the deadline.
    Rest(Deadline),
    /// Parked in the core's lot (`parked`): the task ends, the connection stays open.
    Parked,
}

/// Serves one client connection until it closes: the task spawned for each accepted one.
///
/// Not an `async fn`: the task is the connection's own future, with nothing wrapped
/// around it, because its size is what every idle connection costs.
pub(crate) fn serve_client(
    core: Rc<Worker>,
    io: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    // TCP_NODELAY comes from the listening socket (`listener::set_nodelay_for_accepted`).
    ClientConn {
        open: OpenConnection::count(&core, peer),
        core,
        client: Buffered::new(io, CLIENT_BUFFER_BYTES),
        peer,
        head: Vec::new(),
        out: Vec::new(),
        canceller: None,
    }
    .run(false)
}

/// Counts a connection in the core's `Clients` while it lives: while its task lives, or
/// from the moment it leaves the lot (`parked`) until it closes.
struct OpenConnection {
    /// `None` once the connection has parked (the lot then keeps it counted).
    core: Option<Rc<Worker>>,
    ip: IpAddr,
}

impl OpenConnection {
    fn count(core: &Rc<Worker>, peer: SocketAddr) -> OpenConnection {
        core.clients.opened(peer.ip());
        core.counters.connections.set_open(core.clients.open());
        OpenConnection {
            core: Some(core.clone()),
            ip: peer.ip(),
        }
    }

    /// The connection parked: it stays open, counted without this guard.
    fn park(&mut self) {
        if let Some(core) = self.core.take() {
            core.clients.parked();
            core.counters
                .connections
                .set_parked(core.clients.parked_now());
            give_memory_back_after_a_wave(&core);
        }
    }

    /// A parked connection left the lot: counted by a guard again.
    fn unpark(core: &Rc<Worker>, peer: SocketAddr) -> OpenConnection {
        core.clients.unparked();
        core.counters
            .connections
            .set_parked(core.clients.parked_now());
        OpenConnection {
            core: Some(core.clone()),
            ip: peer.ip(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.clients.closed(self.ip);
            core.counters.connections.set_open(core.clients.open());
            give_memory_back_after_a_wave(&core);
        }
    }
}

/// Schedules a trim when connections closing or parking have made a wave
/// (`Clients::memory_to_give_back`).
fn give_memory_back_after_a_wave(core: &Rc<Worker>) {
    if let Trim::After(wait) = core.clients.memory_to_give_back() {
        let core = core.clone();
        monoio::spawn(async move { core.clients.trim_when_settled(wait).await });
    }
}

struct ClientConn {
    core: Rc<Worker>,
    client: Buffered,
    peer: SocketAddr,
    /// The forwarded request head (kept until the exchange ends, for a retry).
    head: Vec<u8>,
    /// Heads written to the client.
    out: Vec<u8>,
    /// Cancels the keep-alive read; kept while the connection is busy, dropped when it rests.
    canceller: Option<Canceller>,
    open: OpenConnection,
}

impl ClientConn {
    /// The connection's whole life. Written as a plain `async` block that uses `self` in
    /// place: an `async fn` taking `self` by value would store it twice.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, served: bool) -> impl std::future::Future<Output = ()> {
        async move {
            match self.serve(served).await {
                // A linger or a tunnel needs more state than serving (and a runtime timer,
                // 128-byte aligned): boxed, so that only those pay for it, and no
                // connection's task grows by it.
                next @ (Next::Linger | Next::Upgrade(_)) => Box::pin(self.finish(next)).await,
                // Closing the socket (dropping `self`) sends the FIN after the response (a
                // shutdown first would only cost another operation): nothing unread is
                // expected, and what a client sent anyway would reset the connection
                // either way.
                Next::Close | Next::Abort | Next::KeepAlive | Next::Rest(_) | Next::Parked => {}
            }
        }
    }

    /// Serves requests until the connection is to end (or park); says how. `served`: the
    /// connection has made a request before (it comes out of the lot).
    async fn serve(&mut self, mut served: bool) -> Next {
        // A new connection reads at once, as a keep-alive one waits for its next request:
        // a client's first bytes usually follow the handshake at once, and a read already
        // queued takes them without a readiness wait first.
        let mut rest_until = None;
        // A connection that has made a request counts as idle as soon as it rests (a core
        // at its cap may close it); a new one only after `NEW_CONNECTION_GRACE`.
        loop {
            if let Some(deadline) = rest_until.take() {
                if let Err(next) = self.rest(deadline, served).await {
                    return next;
                }
            }
            // Boxed: waiting for a request with a buffer and answering it need far more
            // state than resting, and a future is as large as its largest state. Boxed,
            // a resting connection's task stays small — at one allocation (and one copy of
            // that state) per spell of requests, not per request.
            match Box::pin(self.serve_while_busy(&mut served)).await {
                Next::Rest(deadline) => {
                    self.client.release_buffer();
                    self.head = Vec::new();
                    self.out = Vec::new();
                    self.canceller = None;
                    // A keep-alive connection parks without its task; a new one, that has
                    // not said a word yet, rests with it (see `rest`).
                    if served && self.park(deadline) {
                        return Next::Parked;
                    }
                    rest_until = Some(deadline);
                }
                next => return next,
            }
        }
    }

    /// Serves requests one after another until the connection is to rest or end.
    async fn serve_while_busy(&mut self, served: &mut bool) -> Next {
        loop {
            match self.serve_one(*served).await {
                Next::KeepAlive => {
                    *served = true;
                    self.client.shrink_when_idle();
                }
                next => return next,
            }
        }
    }

    /// Ends a connection that lingers or becomes a tunnel (`run` closes the others).
    async fn finish(self, next: Next) {
        match next {
            Next::Linger => linger(self.client).await,
            Next::Upgrade(backend) => tunnel::run(self.client, backend).await,
            _ => {}
        }
    }

    /// Waits for, reads and answers one request (the first on this connection unless it
    /// has `served` one).
    async fn serve_one(&mut self, served: bool) -> Next {
        if self.client.data().is_empty() {
            if let Err(next) = self.await_request(served).await {
                return next;
            }
        }
        self.read_and_answer().await
    }

    /// Reads the request whose first bytes are buffered, and answers it.
    async fn read_and_answer(&mut self) -> Next {
        let timeouts = self.core.settings.config.timeouts;
        let started = Instant::now();
        let deadline = self.core.alarms.deadline_in(timeouts.client_head);
        loop {
            match self.decide() {
                Ok(Some(Decided {
                    info,
                    decision,
                    head_len,
                    id,
                    logged,
                })) => {
                    self.client.consume(head_len);
                    let mut rec = RequestRecorder::new(started, head_len as u64, id);
                    rec.head = logged;
                    let next = self.handle(&info, decision, &mut rec).await;
                    rec.commit(&self.core);
                    // Cut: the client got a status, then the connection was dropped.
                    let cut = matches!(next, Next::Abort) && rec.record.status != 0;
                    rec.log(&self.core, self.peer.ip(), cut);
                    return next;
                }
                Ok(None) => {}
                Err(e) => {
                    let mut rec = RequestRecorder::new(
                        started,
                        self.client.data().len() as u64,
                        self.core.ids.make(),
                    );
                    rec.fail(ErrorKind::Client);
                    self.reply_error(
                        e.status(),
                        e.code(),
                        &e.to_string(),
                        Version::Http11,
                        false,
                        &mut rec,
                    )
                    .await;
                    rec.log(&self.core, self.peer.ip(), false);
                    return Next::Linger;
                }
            }
            match self
                .core
                .alarms
                .timeout(deadline, self.client.fill(0))
                .await
            {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Next::Abort,
                Err(_) => {
                    let mut rec = RequestRecorder::new(started, 0, self.core.ids.make());
                    rec.fail(ErrorKind::Client);
                    // The timed-out read took the buffer with it; answer and close.
                    self.reply_error(
                        408,
                        crate::http::gateway::ErrorCode::RequestTimeout,
                        "request head not received in time",
                        Version::Http11,
                        false,
                        &mut rec,
                    )
                    .await;
                    rec.log(&self.core, self.peer.ip(), false);
                    return Next::Close;
                }
            }
        }
    }

    /// Waits for the first bytes of a request: on a new connection, or on one that just
    /// served a request (the cheapest wait for a busy client: one read into the buffer it
    /// already has).
    ///
    /// After `IDLE_RELEASE_AFTER` without a byte, or when the core drains, that read is
    /// cancelled and awaited — never dropped, so bytes the kernel already handed over are
    /// kept — and the connection is told to rest (`Next::Rest`) for the rest of its
    /// keep-alive time. Meanwhile a connection that has `served` a request counts as idle
    /// (the core may close it to make room); a new one does not.
    async fn await_request(&mut self, served: bool) -> Result<(), Next> {
        let core = self.core.clone();
        let keepalive = core.settings.config.timeouts.keepalive_idle;
        let rest_deadline = || {
            core.alarms
                .deadline_in(keepalive.saturating_sub(IDLE_RELEASE_AFTER))
        };
        if core.alarms.is_draining() {
            return Err(Next::Rest(rest_deadline()));
        }
        let resting = served.then(|| core.clients.rest());
        let closed_by_core = async {
            match &resting {
                Some(r) => r.closed_by_core().await,
                None => std::future::pending().await,
            }
        };
        let canceller = self.canceller.get_or_insert_with(Canceller::new);
        let mut read = std::pin::pin!(self.client.fill_cancelable(canceller.handle()));
        // One alarm for both: the idle release and the core's drain end the wait alike.
        let release = core.alarms.deadline_in(IDLE_RELEASE_AFTER.min(keepalive));
        let wake = monoio::select! {
            r = &mut read => Some(r),
            _ = core.alarms.drain_or(release) => None,
            _ = closed_by_core => None,
        };
        let read = match wake {
            Some(r) => r,
            None => {
                if let Some(canceller) = self.canceller.take() {
                    canceller.cancel();
                }
                read.await
            }
        };
        match read {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(Next::Close),
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                if resting.as_ref().is_some_and(|r| r.was_closed_by_core()) {
                    Err(Next::Close)
                } else {
                    Err(Next::Rest(rest_deadline()))
                }
            }
            Err(_) => Err(Next::Abort),
        }
    }

    /// Rests until the client sends again, holding no buffer: waits for readability (which
    /// can be dropped at any time) until `deadline` — or, once the core drains, for a short
    /// grace, so that a client in the middle of sending still gets its answer (with
    /// `Connection: close`) — then reads what arrived. Meanwhile the core may close it to
    /// make room at its cap: at once if it has `served` a request, else after
    /// `NEW_CONNECTION_GRACE`.
    async fn rest(&mut self, deadline: Deadline, served: bool) -> Result<(), Next> {
        let core = self.core.clone();
        let io = &self.client.io;
        if !served {
            // A new connection has a moment to send its first bytes before it counts as idle.
            let early = monoio::select! {
                r = io.readable(false) => Some(r),
                _ = core.alarms.after(NEW_CONNECTION_GRACE) => None,
                _ = core.alarms.drain() => None,
            };
            if let Some(ready) = early {
                return self.read_after_rest(ready).await;
            }
        }
        let resting = core.clients.rest();
        let ready = monoio::select! {
            r = io.readable(false) => Some(r),
            alarm = core.alarms.drain_or(deadline) => match alarm {
                Alarm::Deadline => return Err(Next::Close),
                Alarm::Drain => None,
            },
            _ = resting.closed_by_core() => return Err(Next::Close),
        };
        let ready = match ready {
            Some(r) => r,
            None => monoio::select! {
                r = io.readable(false) => r,
                _ = core.alarms.after(DRAIN_IDLE_GRACE) => return Err(Next::Close),
            },
        };
        drop(resting);
        self.read_after_rest(ready).await
    }

    /// Reads what made a resting connection readable.
    async fn read_after_rest(&mut self, ready: std::io::Result<()>) -> Result<(), Next> {
        if ready.is_err() {
            return Err(Next::Abort);
        }
        // Readable: a request's bytes, or the client's FIN (a read of 0: close).
        match self.client.fill(0).await {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(Next::Close),
            Err(_) => Err(Next::Abort),
        }
    }
}

/// Empties a head buffer for the next head, with room for a usual one.
fn fresh_head(buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(HEAD_BUFFER_BYTES);
}

/// Half-closes and reads (dropping) what the client still sends, for a bounded time, so
/// the response rgate just wrote is not destroyed by a reset.
async fn linger(mut client: Buffered) {
    let _ = client.io.shutdown().await;
    let deadline = monoio::time::Instant::now() + LINGER_TIMEOUT;
    let mut drained = 0;
    let mut buf = vec![0u8; 4096];
    while drained < LINGER_MAX_BYTES {
        match monoio::time::timeout_at(deadline, client.io.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                drained += n;
                buf = b;
            }
            _ => return,
        }
    }
}
