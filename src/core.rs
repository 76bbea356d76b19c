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
    pub(crate) drain: DrainSignal,
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
            drain: DrainSignal::default(),
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

/// A core-local, one-way signal: once raised, every waiter wakes and later waits return
/// at once. Single-threaded by construction (it lives in a core's `Rc`). Waiters sit in a
/// small slab and leave it when their wait is dropped, so it never grows past the number
/// of connections waiting at once.
#[derive(Default)]
pub(crate) struct DrainSignal {
    raised: Cell<bool>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl DrainSignal {
    pub(crate) fn raise(&self) {
        self.raised.set(true);
        for w in self.waiters.borrow_mut().iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.get()
    }

    pub(crate) fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            signal: self,
            slot: None,
        }
    }
}

pub(crate) struct DrainWait<'a> {
    signal: &'a DrainSignal,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let waker = Some(cx.waker().clone());
        match self.slot {
            Some(slot) => self.signal.waiters.borrow_mut()[slot] = waker,
            None => {
                let mut waiters = self.signal.waiters.borrow_mut();
                let slot = match self.signal.free.borrow_mut().pop() {
                    Some(slot) => {
                        waiters[slot] = waker;
                        slot
                    }
                    None => {
                        waiters.push(waker);
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.signal.waiters.borrow_mut()[slot] = None;
            self.signal.free.borrow_mut().push(slot);
        }
    }
}
