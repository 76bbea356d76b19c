//! Repeating warnings, rate-limited: the first is logged; those that follow within
//! `interval` are only counted, and the next line logged after it says how many there were.
//! Single-threaded: each logging loop (a core's accept loop, the discovery thread) has its own.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a repeating warning may be logged.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) struct Throttle {
    interval: Duration,
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: Cell::new(None),
            suppressed: Cell::new(0),
        }
    }

    /// The warning happened again: `Some(n)` to log it now (`n` were suppressed since the
    /// last line), `None` to count it only.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        match self.last.get() {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

/// ` (and N more like it in the last S s)` when some were suppressed, else nothing.
pub(crate) fn and_more(suppressed: u64, interval: Duration) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(
            " (and {suppressed} more like it in the last {} s)",
            interval.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_summary_per_interval() {
        let t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(t.allow_at(at(0)), Some(0));
        let logged: Vec<Option<u64>> = (1..=1000).map(|i| t.allow_at(at(i * 10))).collect();
        // 10 s of a warning every 10 ms: one line at 10 s, summing the 999 before it.
        assert_eq!(logged.iter().flatten().collect::<Vec<_>>(), [&999]);
        assert_eq!(t.allow_at(at(10_020)), None);
        assert_eq!(t.allow_at(at(20_000)), Some(1));
        assert_eq!(and_more(0, Duration::from_secs(10)), "");
        assert_eq!(
            and_more(3, Duration::from_secs(10)),
            " (and 3 more like it in the last 10 s)"
        );
    }
}
