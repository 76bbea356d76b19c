//! One core's client connections, as the accept loop needs to know them: how many are
//! open, how many each address holds, and which are idle (resting between keep-alive
//! requests) — oldest first — so that a core at its cap (`limits`) can close idle ones to
//! serve new clients, and can wait for a connection to close instead of spinning — and
//! when a wave of connections has closed, so that the memory they used goes back to the
//! system (`memory_to_give_back`). Single-threaded: it lives in the core's `Worker`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Clients {
    open: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    /// Resting connections by when they began to rest (a sequence number): oldest first.
    resting: RefCell<BTreeMap<u64, Rc<RestSlot>>>,
    next_rest: Cell<u64>,
    /// Counts closes and connections beginning to rest: what a full core waits for.
    changes: Cell<u64>,
    /// Accept loops waiting for a change.
    waiting: RefCell<Vec<Waker>>,
    /// The most connections open since memory was last given back, and the closes since.
    peak_since_trim: Cell<usize>,
    closes_since_trim: Cell<usize>,
    /// When memory was last given back, or will be by a deferred trim (at most once per
    /// `TRIM_INTERVAL`).
    last_trim: Cell<Option<Instant>>,
    /// A trim is scheduled for when the interval has passed.
    trim_pending: Cell<bool>,
    /// Connections being refused (answered 503, then closed) now.
    refusing: Cell<usize>,
}

/// Connections a core refuses with an answer at once; beyond, a refused connection is closed
/// without one, so that refusing costs bounded descriptors however fast they come.
pub(crate) const MAX_REFUSING: usize = 64;

/// The least time between two trims of one core: a client that opens and closes waves of
/// connections on purpose cannot make the core trim more often.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// A wave of closes this large (from a peak, down to a quarter of it) gives the memory of
/// its connections back to the system.
const TRIM_WAVE: usize = 256;
/// Closes after which a core left with no connection gives their memory back.
const TRIM_WHEN_EMPTY: usize = 64;

/// A resting connection's mark: set when the core closes it to make room.
#[derive(Default)]
pub(crate) struct RestSlot {
    closed: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Clients {
    pub(crate) fn open(&self) -> usize {
        self.open.get()
    }

    /// Connections from `ip` open now.
    pub(crate) fn from(&self, ip: IpAddr) -> u32 {
        self.per_ip.borrow().get(&ip).copied().unwrap_or(0)
    }

    /// A connection from `ip` opened.
    pub(crate) fn opened(&self, ip: IpAddr) {
        self.open.set(self.open.get() + 1);
        self.peak_since_trim
            .set(self.peak_since_trim.get().max(self.open.get()));
        *self.per_ip.borrow_mut().entry(ip).or_default() += 1;
    }

    /// A connection from `ip` closed: wakes the accept loops waiting for room.
    pub(crate) fn closed(&self, ip: IpAddr) {
        self.open.set(self.open.get() - 1);
        self.closes_since_trim.set(self.closes_since_trim.get() + 1);
        let mut per_ip = self.per_ip.borrow_mut();
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
        drop(per_ip);
        self.changed();
    }

    fn changed(&self) {
        self.changes.set(self.changes.get() + 1);
        for w in self.waiting.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Whether enough connections closed that their memory should go back to the system
    /// (after an attack, the allocator would otherwise keep it): a wave down to a quarter of
    /// the peak, or the core empty after a few dozen closes — now, or, within
    /// `TRIM_INTERVAL` of the last trim, once it has passed (then `trim_done` says so).
    pub(crate) fn memory_to_give_back(&self) -> Trim {
        let (open, peak) = (self.open.get(), self.peak_since_trim.get());
        let wave = peak - open >= TRIM_WAVE && open <= peak / 4;
        let emptied = open == 0 && self.closes_since_trim.get() >= TRIM_WHEN_EMPTY;
        if !(wave || emptied) || self.trim_pending.get() {
            return Trim::No;
        }
        self.peak_since_trim.set(open);
        self.closes_since_trim.set(0);
        // The clock is read only here, after a wave.
        let now = Instant::now();
        let next = self.last_trim.get().map_or(now, |t| t + TRIM_INTERVAL);
        if next <= now {
            self.last_trim.set(Some(now));
            return Trim::Now;
        }
        self.last_trim.set(Some(next));
        self.trim_pending.set(true);
        Trim::After(next - now)
    }

    /// The deferred trim ran.
    pub(crate) fn trim_done(&self) {
        self.trim_pending.set(false);
    }

    /// Until a connection closes or begins to rest (and could be closed to make room).
    pub(crate) fn room_may_come(&self) -> impl Future<Output = ()> + '_ {
        let seen = self.changes.get();
        std::future::poll_fn(move |cx| {
            if self.changes.get() != seen {
                Poll::Ready(())
            } else {
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// A refusal with an answer, counted until the guard is dropped; `None` when
    /// `MAX_REFUSING` are under way (close the connection without one).
    pub(crate) fn refusing(&self) -> Option<Refusing<'_>> {
        (self.refusing.get() < MAX_REFUSING).then(|| {
            self.refusing.set(self.refusing.get() + 1);
            Refusing(self)
        })
    }

    /// Marks a connection as resting until the returned guard is dropped.
    pub(crate) fn rest(&self) -> Resting<'_> {
        let id = self.next_rest.get();
        self.next_rest.set(id + 1);
        let slot = Rc::new(RestSlot::default());
        self.resting.borrow_mut().insert(id, slot.clone());
        if !self.waiting.borrow().is_empty() {
            self.changed();
        }
        Resting {
            clients: self,
            id,
            slot,
        }
    }

    /// Closes the connection that has rested longest; false when none rests.
    pub(crate) fn close_oldest_idle(&self) -> bool {
        let Some((_, slot)) = self.resting.borrow_mut().pop_first() else {
            return false;
        };
        slot.closed.set(true);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        true
    }
}

/// When to give memory back (`Clients::memory_to_give_back`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    No,
    Now,
    /// After this long, then call `Clients::trim_done`.
    After(Duration),
}

/// A refusal under way; see `Clients::refusing`.
pub(crate) struct Refusing<'a>(&'a Clients);

impl Drop for Refusing<'_> {
    fn drop(&mut self) {
        self.0.refusing.set(self.0.refusing.get() - 1);
    }
}

/// A connection at rest; see `Clients::rest`.
pub(crate) struct Resting<'a> {
    clients: &'a Clients,
    id: u64,
    slot: Rc<RestSlot>,
}

impl Resting<'_> {
    /// Until the core closes this connection to make room.
    pub(crate) fn closed_by_core(&self) -> ClosedByCore<'_> {
        ClosedByCore(&self.slot)
    }

    pub(crate) fn was_closed_by_core(&self) -> bool {
        self.slot.closed.get()
    }
}

impl Drop for Resting<'_> {
    fn drop(&mut self) {
        self.clients.resting.borrow_mut().remove(&self.id);
    }
}

pub(crate) struct ClosedByCore<'a>(&'a RestSlot);

impl Future for ClosedByCore<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.closed.get() {
            Poll::Ready(())
        } else {
            self.0.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// Returns the allocator's free memory to the system (glibc keeps it otherwise); a few
/// milliseconds at most, and only after a wave of closes.
pub(crate) fn give_memory_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_goes_back_after_a_wave_of_closes_or_when_empty() {
        let c = Clients::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            c.opened(ip);
        }
        let mut trims = Vec::new();
        for n in 0..1000 {
            c.closed(ip);
            match c.memory_to_give_back() {
                Trim::No => {}
                Trim::Now => trims.push((999 - n, "now")),
                Trim::After(d) => {
                    assert!(d <= TRIM_INTERVAL);
                    trims.push((999 - n, "later"));
                }
            }
        }
        // Down to a quarter of the peak of 1000 now; empty soon after, once the interval
        // has passed — one deferred trim, however many waves meanwhile.
        assert_eq!(trims, [(250, "now"), (0, "later")]);
        for _ in 0..1000 {
            c.opened(ip);
        }
        for _ in 0..1000 {
            c.closed(ip);
            assert_eq!(c.memory_to_give_back(), Trim::No);
        }
        c.trim_done();
        c.last_trim.set(Some(Instant::now() - TRIM_INTERVAL));
        for _ in 0..TRIM_WHEN_EMPTY {
            c.opened(ip);
            c.closed(ip);
        }
        assert_eq!(
            c.memory_to_give_back(),
            Trim::Now,
            "empty, after the interval"
        );
        // A few connections opening and closing never trim.
        for _ in 0..10 {
            c.opened(ip);
            c.closed(ip);
            assert_eq!(c.memory_to_give_back(), Trim::No);
        }
    }

    #[test]
    fn the_oldest_resting_connection_is_closed_first() {
        let c = Clients::default();
        let first = c.rest();
        let second = c.rest();
        {
            let gone = c.rest();
            drop(gone);
        }
        assert!(c.close_oldest_idle());
        assert!(first.slot.closed.get());
        assert!(!second.slot.closed.get());
        assert!(c.close_oldest_idle());
        assert!(second.slot.closed.get());
        assert!(
            !c.close_oldest_idle(),
            "a connection that stopped resting is not closed"
        );
    }

    #[test]
    fn connections_are_counted_per_address() {
        let c = Clients::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        c.opened(a);
        c.opened(a);
        c.opened(b);
        assert_eq!((c.open(), c.from(a), c.from(b)), (3, 2, 1));
        c.closed(a);
        c.closed(b);
        assert_eq!((c.open(), c.from(a), c.from(b)), (1, 1, 0));
        assert!(
            c.per_ip.borrow().get(&b).is_none(),
            "a gone address is forgotten"
        );
    }
}
