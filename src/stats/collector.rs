//! The stats thread: every interval it reads the cores' counters, adds what is new to the
//! database, and publishes what `/stats` needs to count everything exactly once.
//!
//! The model: each core's counters are cumulative since the process started and never
//! reset. The thread remembers `flushed`, the sum of the counters as of its last successful
//! write. A write adds `live − flushed` and, in the same transaction, reads the database
//! totals back (`base`, which also holds other processes' deltas). `base` and `flushed` are
//! published together, so at any instant
//!
//! ```text
//! /stats = base + (live − flushed)
//! ```
//!
//! counts every request once: those already written are in `base`, the rest in the live
//! counters. A failed write (disk full, lock held too long) is logged; `flushed` stays put,
//! so the unwritten delta grows and the next tick retries it, and `/stats` stays exact.
//!
//! Not for: the request path (the cores only write their own counters).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::{MinuteRow, Store};
use super::traffic::Totals;
use super::StatsHub;
use crate::clock::unix_now;

/// How many times the final flush is tried before the last deltas are given up.
const FINAL_FLUSH_ATTEMPTS: u32 = 5;
const FINAL_FLUSH_PAUSE: Duration = Duration::from_millis(200);
/// After a failed write, log again only every this many failures (one a minute at 1 s).
const LOG_EVERY_FAILURES: u64 = 60;
/// The stats thread's nice value: the lowest priority. Each write is a few milliseconds of
/// SQLite once a second; at a normal priority, a thread that mostly sleeps is run before a
/// busy core on the CPU they share, and the requests arriving meanwhile wait for it.
const STATS_THREAD_NICE: libc::c_int = 19;
/// `/stats` shows this much history.
pub(crate) const HISTORY_SHOWN_MINUTES: i64 = 60;

/// What the stats thread last wrote and read back, as one consistent pair.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// The database totals right after the last successful write.
    pub(crate) base: Totals,
    /// The sum of the cores' counters that write included.
    pub(crate) flushed: Totals,
    /// The last hour of per-minute rows, as of the last write.
    pub(crate) history: Vec<MinuteRow>,
}

/// The slot `/stats` reads; the lock is held only to clone or swap the `Arc`.
pub(crate) type PublishedSlot = Mutex<Arc<Published>>;

/// The running stats thread. `stop` (or dropping it) writes the last deltas and joins.
pub(crate) struct Collector {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts the stats thread for `hub`; its database moves into the thread.
    pub(crate) fn start(hub: Arc<StatsHub>) -> std::io::Result<Collector> {
        let store = hub
            .take_store()
            .ok_or_else(|| std::io::Error::other("the stats thread is already running"))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rgate-stats".into())
            .spawn(move || {
                yield_to_the_cores();
                run(&hub, store, &rx)
            })?;
        Ok(Collector {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Writes the last deltas and waits for the thread to end.
    pub(crate) fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("stats: the stats thread panicked; the last deltas are lost");
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Gives the calling thread the lowest priority (`STATS_THREAD_NICE`): it runs when the
/// cores leave the CPU to it, and still runs when they are saturated, at a small share.
fn yield_to_the_cores() {
    // SAFETY: gettid has no preconditions; setpriority changes only this thread's nice value
    // (on Linux, PRIO_PROCESS with a thread ID applies to that thread).
    let set = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, STATS_THREAD_NICE)
    };
    if set != 0 {
        log::debug!(
            "stats: cannot lower the stats thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn run(hub: &StatsHub, mut store: Store, stop: &mpsc::Receiver<()>) {
    let interval = hub.settings.interval;
    let mut flusher = Flusher::new(hub);
    let mut next = Instant::now() + interval;
    // A message or a closed channel both mean stop.
    while let Err(RecvTimeoutError::Timeout) =
        stop.recv_timeout(next.saturating_duration_since(Instant::now()))
    {
        flusher.flush(hub, &mut store);
        next += interval;
        // After a long stall, do not try to catch up tick by tick.
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
    for attempt in 1..=FINAL_FLUSH_ATTEMPTS {
        if flusher.flush(hub, &mut store) {
            log::debug!("stats: final counters written");
            return;
        }
        if attempt < FINAL_FLUSH_ATTEMPTS {
            std::thread::sleep(FINAL_FLUSH_PAUSE);
        }
    }
    log::error!("stats: the last counters could not be written; they are lost");
}

/// The stats thread's memory: what it has written so far, and its failure streak.
struct Flusher {
    flushed: Totals,
    failures: u64,
}

impl Flusher {
    fn new(hub: &StatsHub) -> Flusher {
        Flusher {
            flushed: hub.published().flushed.clone(),
            failures: 0,
        }
    }

    /// One collection: write `live − flushed`, publish. True when the write succeeded.
    fn flush(&mut self, hub: &StatsHub, store: &mut Store) -> bool {
        let live = hub.live();
        let delta = live.since(&self.flushed);
        let now = unix_now();
        let minute = now.div_euclid(60);
        let retention_minutes = (hub.settings.retention.as_secs() / 60) as i64;
        let keep_from = minute - retention_minutes;
        let history_from = minute - HISTORY_SHOWN_MINUTES + 1;
        match store.add(&delta, minute, keep_from, history_from) {
            Ok((base, history)) => {
                if self.failures > 0 {
                    log::info!(
                        "stats: database writes work again after {} failures",
                        self.failures
                    );
                }
                self.failures = 0;
                self.flushed = live.clone();
                hub.publish(Published {
                    base,
                    flushed: live,
                    history,
                });
                true
            }
            Err(e) => {
                if self.failures.is_multiple_of(LOG_EVERY_FAILURES) {
                    log::error!(
                        "stats: cannot write to the statistics database ({e}); \
                         proxying goes on and the counts are kept to retry"
                    );
                }
                self.failures += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::stats::traffic::Key;
    use crate::stats::RequestRecord;

    fn hub() -> StatsHub {
        let config = Config::parse(
            Path::new("t.yml"),
            "backends: [{name: b, addresses: ['127.0.0.1:1']}]\nroutes: [{path_prefix: /a, backend: b}]\n",
        )
        .unwrap();
        StatsHub::new(&config, 2)
    }

    fn served(hub: &StatsHub, core: usize, n: usize) {
        let record = RequestRecord {
            route: Some(0),
            backend: Some(0),
            instance: Some("127.0.0.1:1".parse().unwrap()),
            status: 200,
            bytes_in: 1,
            bytes_out: 2,
            latency: Duration::from_millis(1),
            error: None,
        };
        for _ in 0..n {
            hub.core_counters(core).record(&record);
        }
    }

    fn shown(hub: &StatsHub) -> u64 {
        let published = hub.published();
        let mut t = published.base.clone();
        t.merge(&hub.live().since(&published.flushed));
        t.get(&Key::total()).map_or(0, |t| t.requests().total)
    }

    #[test]
    fn every_request_is_shown_once_across_flushes() {
        let hub = hub();
        let mut store = hub.take_store().unwrap();
        let mut flusher = Flusher::new(&hub);
        served(&hub, 0, 3);
        assert_eq!(shown(&hub), 3);
        assert!(flusher.flush(&hub, &mut store));
        assert_eq!(shown(&hub), 3, "flushed counts must not be counted twice");
        served(&hub, 1, 2);
        assert_eq!(shown(&hub), 5);
        assert!(flusher.flush(&hub, &mut store));
        assert!(flusher.flush(&hub, &mut store));
        assert_eq!(shown(&hub), 5);
        let (db, history) = store.read(0).unwrap();
        assert_eq!(db.get(&Key::total()).unwrap().requests().total, 5);
        assert_eq!(history.iter().map(|m| m.requests).sum::<u64>(), 5);
    }
}
