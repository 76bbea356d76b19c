//! One core's state: a plain struct built inside the core's thread and shared by that
//! core's tasks through an `Rc`. Nothing in it is touched by another core on the request
//! path: the table reader, the pool and the counters are this core's own. `Shared` holds
//! the immutable config and the few cross-thread signals (drain), read between requests.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::backends::{BackendTable, TableReader};
use crate::config::Config;
use crate::proxy::pool::IdlePool;
use crate::router::RouteTable;
use crate::stats::{CoreCounters, StatsHub};

/// What every core reads and nobody changes while it runs (except the drain flag).
pub struct Shared {
    pub config: Config,
    pub routes: RouteTable,
    pub stats: Arc<StatsHub>,
    accepting: AtomicBool,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(config: Config, stats: Arc<StatsHub>) -> Shared {
        let routes = RouteTable::new(&config.routes);
        Shared {
            config,
            routes,
            stats,
            accepting: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Lets the cores accept: only once the process has said it is ready, so a process that
    /// fails during start-up never takes a connection it cannot serve.
    pub fn start_accepting(&self) {
        self.accepting.store(true, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Asks every core to stop accepting and finish what it has (seen within one tick).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

pub(crate) struct Core {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<CoreCounters>,
    pub(crate) pool: RefCell<IdlePool>,
    pub(crate) alarms: Alarms,
    /// Client connections open on this core.
    pub(crate) open_connections: Cell<usize>,
    table: RefCell<TableReader>,
}

impl Core {
    pub(crate) fn new(id: usize, shared: Arc<Shared>, table: TableReader) -> Core {
        Core {
            id,
            counters: shared.stats.core_counters(id),
            pool: RefCell::new(IdlePool::new(shared.config.timeouts.pool_idle)),
            alarms: Alarms::default(),
            open_connections: Cell::new(0),
            table: RefCell::new(table),
            shared,
        }
    }

    /// The newest backend table this core has received.
    pub(crate) fn table(&self) -> Rc<BackendTable> {
        self.table.borrow_mut().current()
    }
}

/// Core-local alarms for waiting tasks: the core's drain wakes every waiter (and later
/// drain waits end at once); the core's tick wakes the waiters whose deadline has passed.
///
/// Deadlines here are coarse — up to one tick late — and that buys memory: a waiter is one
/// slot (waker, deadline) in a small slab, left when its wait is dropped, where a runtime
/// timer would add a cache-padded timer entry of 640 bytes to every waiting connection.
/// The tick passes over the slots once (a few nanoseconds each), so this is for waits that
/// are many and long (idle connections), not for precise ones.
/// Single-threaded by construction (it lives in a core's `Rc`).
#[derive(Default)]
pub(crate) struct Alarms {
    draining: Cell<bool>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
}

#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
    deadline: Option<Instant>,
}

/// Why a wait on `Alarms` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    Drain,
    Deadline,
}

impl Alarms {
    /// Starts the core's drain: wakes every waiter.
    pub(crate) fn raise_drain(&self) {
        self.draining.set(true);
        for slot in self.slots.borrow_mut().iter_mut() {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Until the core drains.
    pub(crate) fn drain(&self) -> AlarmWait<'_> {
        self.wait(true, None)
    }

    /// Until the core drains or `deadline` passes (seen at the next tick).
    pub(crate) fn drain_or(&self, deadline: Instant) -> AlarmWait<'_> {
        self.wait(true, Some(deadline))
    }

    /// Until `deadline` passes (seen at the next tick), drain or not.
    pub(crate) fn deadline(&self, deadline: Instant) -> AlarmWait<'_> {
        self.wait(false, Some(deadline))
    }

    fn wait(&self, on_drain: bool, deadline: Option<Instant>) -> AlarmWait<'_> {
        AlarmWait {
            alarms: self,
            on_drain,
            deadline,
            slot: None,
        }
    }

    /// Wakes the waiters whose deadline is `now` or earlier. Called at every core tick.
    pub(crate) fn expire(&self, now: Instant) {
        for slot in self.slots.borrow_mut().iter_mut() {
            if slot.deadline.is_some_and(|d| d <= now) {
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }
}

pub(crate) struct AlarmWait<'a> {
    alarms: &'a Alarms,
    on_drain: bool,
    deadline: Option<Instant>,
    slot: Option<usize>,
}

impl Future for AlarmWait<'_> {
    type Output = Alarm;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Alarm> {
        if self.on_drain && self.alarms.draining.get() {
            return Poll::Ready(Alarm::Drain);
        }
        if self.deadline.is_some_and(|d| d <= Instant::now()) {
            return Poll::Ready(Alarm::Deadline);
        }
        let entry = Slot {
            waker: Some(cx.waker().clone()),
            deadline: self.deadline,
        };
        let mut slots = self.alarms.slots.borrow_mut();
        match self.slot {
            Some(i) => slots[i] = entry,
            None => {
                let i = match self.alarms.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = entry;
                        i
                    }
                    None => {
                        slots.push(entry);
                        slots.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for AlarmWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.alarms.slots.borrow_mut()[i] = Slot::default();
            self.alarms.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;
    use std::time::Duration;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(wait: &mut Pin<Box<AlarmWait<'_>>>, waker: &Arc<CountingWaker>) -> Poll<Alarm> {
        let waker = Waker::from(waker.clone());
        wait.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn woken(waker: &Arc<CountingWaker>) -> usize {
        waker.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_deadline_rings_at_the_first_tick_after_it() {
        let alarms = Alarms::default();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut wait = Box::pin(alarms.drain_or(deadline));
        assert_eq!(poll(&mut wait, &waker), Poll::Pending);
        alarms.expire(deadline - Duration::from_millis(1));
        assert_eq!(woken(&waker), 0, "not before the deadline");
        alarms.expire(deadline);
        assert_eq!(woken(&waker), 1);
        alarms.expire(deadline);
        assert_eq!(woken(&waker), 1, "woken once, not at every later tick");

        let mut past = Box::pin(alarms.deadline(Instant::now()));
        assert_eq!(poll(&mut past, &waker), Poll::Ready(Alarm::Deadline));
    }

    #[test]
    fn the_drain_wakes_drain_waits_and_later_ones_end_at_once() {
        let alarms = Alarms::default();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let far = Instant::now() + Duration::from_secs(60);
        let mut drain = Box::pin(alarms.drain());
        let mut idle = Box::pin(alarms.drain_or(far));
        let mut grace = Box::pin(alarms.deadline(far));
        for wait in [&mut drain, &mut idle, &mut grace] {
            assert_eq!(poll(wait, &waker), Poll::Pending);
        }
        alarms.raise_drain();
        assert!(alarms.is_draining());
        assert_eq!(poll(&mut drain, &waker), Poll::Ready(Alarm::Drain));
        assert_eq!(poll(&mut idle, &waker), Poll::Ready(Alarm::Drain));
        assert_eq!(
            poll(&mut grace, &waker),
            Poll::Pending,
            "a deadline-only wait outlives the drain"
        );
        let mut late = Box::pin(alarms.drain());
        assert_eq!(poll(&mut late, &waker), Poll::Ready(Alarm::Drain));
    }

    #[test]
    fn a_dropped_wait_gives_its_slot_back() {
        let alarms = Alarms::default();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let far = Instant::now() + Duration::from_secs(60);
        for _ in 0..100 {
            let mut a = Box::pin(alarms.drain_or(far));
            let mut b = Box::pin(alarms.drain_or(far));
            assert_eq!(poll(&mut a, &waker), Poll::Pending);
            assert_eq!(poll(&mut b, &waker), Poll::Pending);
            assert_eq!(alarms.waiting(), 2);
        }
        assert_eq!(alarms.waiting(), 0);
        assert_eq!(alarms.slots.borrow().len(), 2, "slots are reused");
        alarms.raise_drain();
        assert_eq!(woken(&waker), 0, "a dropped wait is never woken");
    }
}
