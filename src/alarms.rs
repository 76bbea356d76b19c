//! A core's alarm clock: every timeout on the request path and every idle wait, and the
//! core's drain signal. Single-threaded (it lives in one core's state); nothing here
//! knows about sockets or HTTP.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a core's tick runs: it rings the alarms that are due and sweeps the idle pool.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Core-local alarms: every timeout on the request path and every idle wait. The core's
/// drain wakes every waiter (and later drain waits end at once); the core's tick advances
/// the alarm clock and wakes the waiters whose deadline it reached.
///
/// The clock counts ticks, so deadlines are coarse: an alarm set for `d` rings between
/// `d` and `d` + two ticks later (later still if the core is too busy to tick on time),
/// never earlier. That buys, per waiter, one slot (waker, deadline) in a small slab instead
/// of a runtime timer — whose entry is cache-padded (640 bytes, and it makes every future
/// holding it 128-byte aligned, which costs an aligned allocation per request) — and no
/// clock read at all. The tick passes over the slots once (a few nanoseconds each).
/// Single-threaded by construction (it lives in a core's `Rc`).
#[derive(Default)]
pub(crate) struct Alarms {
    draining: Cell<bool>,
    ticks: Cell<u64>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    /// The core's tick, while it rests because nothing waits.
    ticker: Cell<Option<Waker>>,
}

/// A point on a core's alarm clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(u64);

#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
    deadline: Option<Deadline>,
    rung: bool,
}

/// Why a wait on `Alarms` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    Drain,
    Deadline,
}

/// A timeout ran out before the future it bounded finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

impl Alarms {
    /// The deadline `d` from now (rounded up to whole ticks, plus the tick under way).
    pub(crate) fn deadline_in(&self, d: Duration) -> Deadline {
        let ticks = d.as_nanos().div_ceil(TICK.as_nanos());
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX / 2);
        Deadline(self.ticks.get().saturating_add(ticks).saturating_add(1))
    }

    /// Whole seconds on this core's alarm clock: it stands still while the core has
    /// nothing to wait for, so it measures time the core was busy, coarsely.
    pub(crate) fn seconds(&self) -> u64 {
        self.ticks.get() * TICK.as_millis() as u64 / 1000
    }

    /// Starts the core's drain: wakes every waiter.
    pub(crate) fn raise_drain(&self) {
        self.draining.set(true);
        for slot in self.slots.borrow_mut().iter_mut() {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Whether the clock has reached `deadline`.
    pub(crate) fn is_due(&self, deadline: Deadline) -> bool {
        deadline.0 <= self.ticks.get()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Until the core drains.
    pub(crate) fn drain(&self) -> AlarmWait<'_> {
        self.wait(true, None)
    }

    /// Until the core drains or `deadline` is reached.
    pub(crate) fn drain_or(&self, deadline: Deadline) -> AlarmWait<'_> {
        self.wait(true, Some(deadline))
    }

    /// Until `deadline` is reached, drain or not.
    pub(crate) fn at(&self, deadline: Deadline) -> AlarmWait<'_> {
        self.wait(false, Some(deadline))
    }

    /// Until `d` from now has passed, drain or not.
    pub(crate) fn after(&self, d: Duration) -> AlarmWait<'_> {
        self.at(self.deadline_in(d))
    }

    fn wait(&self, on_drain: bool, deadline: Option<Deadline>) -> AlarmWait<'_> {
        AlarmWait {
            alarms: self,
            on_drain,
            deadline,
            slot: None,
        }
    }

    /// Runs `fut` until `deadline`; after it, `fut` is dropped and the answer is `TimedOut`.
    pub(crate) async fn timeout<F: Future>(
        &self,
        deadline: Deadline,
        fut: F,
    ) -> Result<F::Output, TimedOut> {
        let mut fut = std::pin::pin!(fut);
        let mut alarm = std::pin::pin!(self.at(deadline));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            alarm.as_mut().poll(cx).map(|_| Err(TimedOut))
        })
        .await
    }

    /// `timeout` with the deadline `d` from now.
    pub(crate) async fn timeout_in<F: Future>(
        &self,
        d: Duration,
        fut: F,
    ) -> Result<F::Output, TimedOut> {
        self.timeout(self.deadline_in(d), fut).await
    }

    /// Advances the clock by one tick and wakes the waiters whose deadline it reached.
    /// Called by the core's tick, every `TICK`.
    pub(crate) fn tick(&self) {
        let now = Deadline(self.ticks.get() + 1);
        self.ticks.set(now.0);
        for slot in self.slots.borrow_mut().iter_mut() {
            if !slot.rung && slot.deadline.is_some_and(|d| d <= now) {
                slot.rung = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// How many waits are registered.
    pub(crate) fn waiting(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    /// Until some wait is registered: the core's tick rests here while nothing waits, so an
    /// idle core is not woken every `TICK`. (The clock stands still meanwhile, which no one
    /// can tell: nobody holds a deadline to compare it with.)
    pub(crate) async fn until_needed(&self) {
        std::future::poll_fn(|cx| {
            if self.waiting() > 0 {
                Poll::Ready(())
            } else {
                self.ticker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

pub(crate) struct AlarmWait<'a> {
    alarms: &'a Alarms,
    on_drain: bool,
    deadline: Option<Deadline>,
    slot: Option<usize>,
}

impl Future for AlarmWait<'_> {
    type Output = Alarm;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Alarm> {
        if self.on_drain && self.alarms.draining.get() {
            return Poll::Ready(Alarm::Drain);
        }
        let mut slots = self.alarms.slots.borrow_mut();
        match self.slot {
            Some(i) => {
                let slot = &mut slots[i];
                if slot.rung {
                    return Poll::Ready(Alarm::Deadline);
                }
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
            }
            None => {
                if self
                    .deadline
                    .is_some_and(|d| d.0 <= self.alarms.ticks.get())
                {
                    return Poll::Ready(Alarm::Deadline);
                }
                let entry = Slot {
                    waker: Some(cx.waker().clone()),
                    deadline: self.deadline,
                    rung: false,
                };
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
                if let Some(ticker) = self.alarms.ticker.take() {
                    ticker.wake();
                }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> Arc<CountingWaker> {
        Arc::new(CountingWaker(AtomicUsize::new(0)))
    }

    fn poll<F: Future + ?Sized>(
        wait: &mut Pin<Box<F>>,
        waker: &Arc<CountingWaker>,
    ) -> Poll<F::Output> {
        let waker = Waker::from(waker.clone());
        wait.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn woken(waker: &Arc<CountingWaker>) -> usize {
        waker.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_deadline_rings_at_the_tick_that_reaches_it_never_before() {
        let alarms = Alarms::default();
        let waker = counting();
        // 120 ms is three ticks of 50 ms rounded up, plus the tick under way.
        let deadline = alarms.deadline_in(Duration::from_millis(120));
        let mut wait = Box::pin(alarms.drain_or(deadline));
        assert_eq!(poll(&mut wait, &waker), Poll::Pending);
        for _ in 0..3 {
            alarms.tick();
        }
        assert_eq!(woken(&waker), 0, "not before the deadline");
        assert_eq!(poll(&mut wait, &waker), Poll::Pending);
        alarms.tick();
        assert_eq!(woken(&waker), 1);
        assert_eq!(poll(&mut wait, &waker), Poll::Ready(Alarm::Deadline));
        alarms.tick();
        assert_eq!(woken(&waker), 1, "woken once, not at every later tick");

        // A wait created after its deadline passed ends at once.
        let mut late = Box::pin(alarms.at(deadline));
        assert_eq!(poll(&mut late, &waker), Poll::Ready(Alarm::Deadline));
    }

    #[test]
    fn a_timeout_gives_the_output_in_time_and_timed_out_after() {
        let alarms = Alarms::default();
        let waker = counting();
        let deadline = alarms.deadline_in(Duration::ZERO);
        let mut done = Box::pin(alarms.timeout(deadline, std::future::ready(7)));
        assert_eq!(poll(&mut done, &waker), Poll::Ready(Ok(7)));
        let mut never = Box::pin(alarms.timeout(deadline, std::future::pending::<()>()));
        assert_eq!(poll(&mut never, &waker), Poll::Pending);
        alarms.tick();
        assert_eq!(woken(&waker), 1);
        assert_eq!(poll(&mut never, &waker), Poll::Ready(Err(TimedOut)));
        assert_eq!(alarms.waiting(), 0, "the finished timeout left its slot");
    }

    #[test]
    fn the_drain_wakes_drain_waits_and_later_ones_end_at_once() {
        let alarms = Alarms::default();
        let waker = counting();
        let far = alarms.deadline_in(Duration::from_secs(60));
        let mut drain = Box::pin(alarms.drain());
        let mut idle = Box::pin(alarms.drain_or(far));
        let mut grace = Box::pin(alarms.at(far));
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
        let waker = counting();
        let far = alarms.deadline_in(Duration::from_secs(60));
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

    #[test]
    fn the_tick_rests_until_someone_waits() {
        let alarms = Alarms::default();
        let ticker = counting();
        let mut rest = Box::pin(alarms.until_needed());
        assert_eq!(poll(&mut rest, &ticker), Poll::Pending);
        let waiter = counting();
        let mut wait = Box::pin(alarms.after(Duration::from_secs(1)));
        assert_eq!(poll(&mut wait, &waiter), Poll::Pending);
        assert_eq!(woken(&ticker), 1, "registering a wait wakes the tick");
        assert_eq!(poll(&mut rest, &ticker), Poll::Ready(()));
        let mut again = Box::pin(alarms.until_needed());
        assert_eq!(poll(&mut again, &ticker), Poll::Ready(()), "someone waits");
    }
}
