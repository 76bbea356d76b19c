//! One core's client connections, as the accept loop needs to know them: how many are
//! open, how many each address holds, and which are idle (resting between keep-alive
//! requests) — oldest first — so that a core at its cap (`limits`) can close idle ones to
//! serve new clients, and can wait for a connection to close instead of spinning — and
//! when a wave of connections has closed or parked (`parking`: given up its task), so
//! that the memory they used goes back to the system (`memory_to_give_back`).
//! Single-threaded: it lives in the core's `Worker`.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::rest_list::{Place, RestList};

#[derive(Default)]
pub(crate) struct Clients {
    open: Cell<usize>,
    /// Of the open ones, those parked without a task (`parking`).
    parked: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, u32>>,
    /// Resting connections, oldest first.
    resting: RefCell<RestList>,
    /// Counts closes and connections beginning to rest: what a full core waits for.
    changes: Cell<u64>,
    /// Accept loops waiting for a change.
    waiting: RefCell<Vec<Waker>>,
    /// The most connections with a task since memory was last given back, and the closes
    /// and parkings since (each frees a task's memory).
    peak_since_trim: Cell<usize>,
    closes_since_trim: Cell<usize>,
    /// Every close and parking so far (a pending trim watches it to see a wave end).
    closes: Cell<u64>,
    /// When memory was last given back (at most once per `TRIM_INTERVAL`).
    last_trim: Cell<Option<Instant>>,
    /// A trim is scheduled (`trim_when_settled`).
    trim_pending: Cell<bool>,
    /// Connections being refused (answered 503, then closed) now.
    refusing: Cell<usize>,
}

/// Connections a core refuses with an answer at once; beyond, a refused connection is closed
/// without one, so that refusing costs bounded descriptors however fast they come.
pub(crate) const MAX_REFUSING: usize = 64;

/// The least time between two trims of one core: a client that opens and closes waves of
/// connections on purpose cannot make the core trim more often. A trim costs well under a
/// millisecond (0.1 ms measured for a 95 MB heap of freed buffers among live objects).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// A wave of closes this large (from a peak, down to a quarter of it) gives the memory of
/// its connections back to the system.
const TRIM_WAVE: usize = 256;
/// A wave has ended when no connection closed for this long: the trim waits for it, because
/// memory freed by closes after a trim stays with the allocator until the next one.
const TRIM_SETTLE: Duration = Duration::from_millis(50);
/// The longest a trim waits for its wave to end (a steady stream of closes never settles).
const TRIM_SETTLE_MAX: Duration = Duration::from_secs(2);
/// Closes after which a core left with no connection gives their memory back.
const TRIM_WHEN_EMPTY: usize = 64;

impl Clients {
    pub(crate) fn open(&self) -> usize {
        self.open.get()
    }

    /// Connections from `ip` open now.
    pub(crate) fn from(&self, ip: IpAddr) -> u32 {
        self.per_ip.borrow().get(&ip).copied().unwrap_or(0)
    }

    /// Open connections parked without a task.
    pub(crate) fn parked_now(&self) -> usize {
        self.parked.get()
    }

    /// Open connections that have a task (not parked).
    fn with_task(&self) -> usize {
        self.open.get() - self.parked.get()
    }

    /// A connection from `ip` opened.
    pub(crate) fn opened(&self, ip: IpAddr) {
        self.open.set(self.open.get() + 1);
        *self.per_ip.borrow_mut().entry(ip).or_default() += 1;
        self.peak_since_trim
            .set(self.peak_since_trim.get().max(self.with_task()));
    }

    /// A connection gave up its task and parked: its memory is free, and the core could
    /// close it to make room.
    pub(crate) fn parked(&self) {
        self.parked.set(self.parked.get() + 1);
        self.released();
        if !self.waiting.borrow().is_empty() {
            self.changed();
        }
    }

    /// A parked connection left the lot (to get a task again, or to be closed).
    pub(crate) fn unparked(&self) {
        self.parked.set(self.parked.get() - 1);
        self.peak_since_trim
            .set(self.peak_since_trim.get().max(self.with_task()));
    }

    /// A connection's task ended (closed or parked).
    fn released(&self) {
        self.closes_since_trim.set(self.closes_since_trim.get() + 1);
        self.closes.set(self.closes.get() + 1);
    }

    /// A connection from `ip` closed: wakes the accept loops waiting for room.
    pub(crate) fn closed(&self, ip: IpAddr) {
        self.open.set(self.open.get() - 1);
        self.released();
        // One lookup (one hash of the address), whether the count drops or goes.
        if let Entry::Occupied(mut n) = self.per_ip.borrow_mut().entry(ip) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
        self.changed();
    }

    fn changed(&self) {
        self.changes.set(self.changes.get() + 1);
        for w in self.waiting.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Whether enough connections closed or parked that their memory should go back to
    /// the system (after an attack, or a burst of clients now idle, the allocator would
    /// otherwise keep it): a wave down to a quarter of the peak of connections with a task,
    /// or none left with one after a few dozen. The trim is deferred (run it with
    /// `trim_when_settled`): until the wave has ended, and at least `TRIM_INTERVAL` after
    /// the last one. One trim is pending at a time, however many waves meanwhile.
    pub(crate) fn memory_to_give_back(&self) -> Trim {
        let (open, peak) = (self.with_task(), self.peak_since_trim.get());
        let wave = peak - open >= TRIM_WAVE && open <= peak / 4;
        let emptied = open == 0 && self.closes_since_trim.get() >= TRIM_WHEN_EMPTY;
        if !(wave || emptied) || self.trim_pending.get() {
            return Trim::No;
        }
        self.trim_pending.set(true);
        // The clock is read only here, after a wave.
        let now = Instant::now();
        let next = self.last_trim.get().map_or(now, |t| t + TRIM_INTERVAL);
        Trim::After(next.saturating_duration_since(now))
    }

    /// Gives the memory back once `wait` has passed and connections have stopped closing
    /// (`TRIM_SETTLE` without a close, `TRIM_SETTLE_MAX` at most), then counts the next
    /// wave from here.
    pub(crate) async fn trim_when_settled(&self, wait: Duration) {
        monoio::time::sleep(wait).await;
        let mut waited = Duration::ZERO;
        loop {
            let seen = self.closes.get();
            monoio::time::sleep(TRIM_SETTLE).await;
            waited += TRIM_SETTLE;
            if self.closes.get() == seen || waited >= TRIM_SETTLE_MAX {
                break;
            }
        }
        give_memory_back();
        self.trimmed(Instant::now());
    }

    /// A trim ran at `at`.
    fn trimmed(&self, at: Instant) {
        self.peak_since_trim.set(self.with_task());
        self.closes_since_trim.set(0);
        self.last_trim.set(Some(at));
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
        let place = self.resting.borrow_mut().join();
        if !self.waiting.borrow().is_empty() {
            self.changed();
        }
        Resting {
            clients: self,
            place,
        }
    }

    /// Closes the connection that has rested longest; false when none rests.
    pub(crate) fn close_oldest_idle(&self) -> bool {
        let closed = self.resting.borrow_mut().close_oldest();
        match closed {
            Some(waker) => {
                if let Some(w) = waker {
                    w.wake();
                }
                true
            }
            None => false,
        }
    }
}

/// When to give memory back (`Clients::memory_to_give_back`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    No,
    /// After at least this long, once the wave has ended: `Clients::trim_when_settled`.
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
    place: Place,
}

impl Resting<'_> {
    /// Until the core closes this connection to make room.
    pub(crate) fn closed_by_core(&self) -> ClosedByCore<'_> {
        ClosedByCore(self)
    }

    pub(crate) fn was_closed_by_core(&self) -> bool {
        self.clients.resting.borrow().is_closed(self.place)
    }
}

impl Drop for Resting<'_> {
    fn drop(&mut self) {
        self.clients.resting.borrow_mut().leave(self.place);
    }
}

pub(crate) struct ClosedByCore<'a>(&'a Resting<'a>);

impl Future for ClosedByCore<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut list = self.0.clients.resting.borrow_mut();
        if list.is_closed(self.0.place) {
            Poll::Ready(())
        } else {
            list.set_waker(self.0.place, cx.waker());
            Poll::Pending
        }
    }
}

/// Above this size an allocation is its own mapping, returned to the system when freed.
const MMAP_THRESHOLD: i32 = 256 * 1024;
/// Free memory at the top of an allocator heap beyond this goes back to the system when it
/// is freed.
const TRIM_THRESHOLD: i32 = 256 * 1024;

/// Fixes glibc's two size thresholds (call before any thread starts). glibc otherwise
/// raises both whenever any thread frees a large mapping (to as much as 32 and 64 MiB) —
/// and `malloc_trim` does not shrink the top of a thread's heap, so after such a free the
/// memory of a wave of connections at a core's heap top stayed with the process, or not,
/// depending on what another thread had freed before.
pub(crate) fn fix_allocator_thresholds() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets the allocator's parameters; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns the allocator's free memory to the system (glibc keeps it otherwise); a few
/// milliseconds at most, and only after a wave of closes.
pub(crate) fn give_memory_back() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
        unsafe {
            libc::malloc_trim(0);
        }
        // malloc_trim gives back free pages inside a heap, and merges the small free
        // chunks at a heap's end into its top — but shrinks that top only for the main
        // heap, not for a thread's (each core's). glibc shrinks a thread's heap top when
        // that thread frees a chunk of 64 KiB or more: one is made and freed here.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(
            HEAP_TOP_NUDGE,
        )));
    }
}

/// A free of this size (glibc's `FASTBIN_CONSOLIDATION_THRESHOLD`, 64 KiB, or more; under
/// `MMAP_THRESHOLD`, so that it comes from the heap) makes glibc trim the heap's top.
#[cfg(target_env = "gnu")]
const HEAP_TOP_NUDGE: usize = 128 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

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
                Trim::After(d) => trims.push((999 - n, d)),
            }
        }
        // Down to a quarter of the peak of 1000: one trim, at once (none ran before); it
        // is still pending when the core empties, so emptying schedules no second one.
        assert_eq!(trims, [(250, Duration::ZERO)]);
        c.trimmed(Instant::now());
        for _ in 0..1000 {
            c.opened(ip);
        }
        let mut trims = Vec::new();
        for _ in 0..1000 {
            c.closed(ip);
            if let Trim::After(d) = c.memory_to_give_back() {
                trims.push(d);
            }
        }
        // Within the interval of the last trim: one, deferred until the interval has passed.
        assert_eq!(trims.len(), 1);
        assert!(trims[0] > TRIM_INTERVAL / 2 && trims[0] <= TRIM_INTERVAL);
        c.trimmed(Instant::now() - TRIM_INTERVAL);
        for _ in 0..TRIM_WHEN_EMPTY {
            c.opened(ip);
            c.closed(ip);
        }
        assert_eq!(
            c.memory_to_give_back(),
            Trim::After(Duration::ZERO),
            "empty, after the interval"
        );
        // A few connections opening and closing never trim.
        c.trimmed(Instant::now() - TRIM_INTERVAL);
        for _ in 0..10 {
            c.opened(ip);
            c.closed(ip);
            assert_eq!(c.memory_to_give_back(), Trim::No);
        }
    }

    #[test]
    fn a_wave_of_connections_parking_gives_their_memory_back_too() {
        let c = Clients::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            c.opened(ip);
        }
        let mut trims = Vec::new();
        for n in 0..1000 {
            c.parked();
            if let Trim::After(d) = c.memory_to_give_back() {
                trims.push((999 - n, d));
            }
        }
        // Their tasks are gone, the connections stay open and counted.
        assert_eq!(trims, [(250, Duration::ZERO)]);
        assert_eq!((c.open(), c.parked_now(), c.from(ip)), (1000, 1000, 1000));
        c.trimmed(Instant::now());
        // Coming back out of the lot raises the peak of tasks the next wave counts from.
        for _ in 0..300 {
            c.unparked();
        }
        assert_eq!(c.peak_since_trim.get(), 300);
    }

    #[test]
    fn a_trim_waits_until_the_wave_of_closes_has_ended() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = Rc::new(Clients::default());
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            for _ in 0..400 {
                c.opened(ip);
            }
            for _ in 0..300 {
                c.closed(ip);
            }
            assert_eq!(c.memory_to_give_back(), Trim::After(Duration::ZERO));
            let trim = monoio::spawn({
                let c = c.clone();
                async move { c.trim_when_settled(Duration::ZERO).await }
            });
            // The wave goes on for 10 x 20 ms: closes come faster than `TRIM_SETTLE`.
            let mut last_close = Instant::now();
            for _ in 0..10 {
                monoio::time::sleep(Duration::from_millis(20)).await;
                assert!(c.trim_pending.get(), "trimmed in the middle of the wave");
                c.closed(ip);
                last_close = Instant::now();
            }
            trim.await;
            assert!(!c.trim_pending.get());
            let trimmed = c.last_trim.get().unwrap();
            assert!(
                trimmed >= last_close + TRIM_SETTLE,
                "trimmed before the wave had settled"
            );
            assert!(
                trimmed < last_close + TRIM_SETTLE * 3,
                "waited too long after the wave"
            );
            // The next wave counts from what was left open.
            assert_eq!(c.peak_since_trim.get(), 90);
        });
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
        assert!(first.was_closed_by_core());
        assert!(!second.was_closed_by_core());
        assert!(c.close_oldest_idle());
        assert!(second.was_closed_by_core());
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
