//! A core's retry budget for one backend: the retries of the last `WINDOW_SECONDS` may be
//! `budget_percent` of the requests sent in that window, plus a reserve of `min_per_second`
//! for each second of it (a quiet backend still gets its retries, and a burst of requests
//! that fail together — a hung instance releases them all at its timeout — is retried
//! whole). So when a whole backend fails, retrying adds at most that share to its load.
//!
//! Counted per second in a ring of `WINDOW_SECONDS` buckets, on the core's alarm clock
//! (`Alarms::seconds`, no clock read): a request costs one bucket update; a retry sums the
//! window. Per core, so nothing is shared on the request path.

use std::cell::Cell;

use crate::config::RetryPolicy;

/// The sliding window the share is computed over.
const WINDOW_SECONDS: u64 = 10;

/// One second's counts.
#[derive(Debug, Default, Clone, Copy)]
struct Second {
    /// Which second these counts are of.
    at: u64,
    requests: u64,
    retries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RetryBudget {
    seconds: [Cell<Second>; WINDOW_SECONDS as usize],
}

impl RetryBudget {
    /// The bucket of second `now`, emptied if it still holds an older second.
    fn bucket(&self, now: u64) -> &Cell<Second> {
        let cell = &self.seconds[(now % WINDOW_SECONDS) as usize];
        if cell.get().at != now {
            cell.set(Second {
                at: now,
                ..Second::default()
            });
        }
        cell
    }

    /// A request was sent to the backend, at second `now` of the core's clock.
    pub(crate) fn deposit(&self, now: u64) {
        let cell = self.bucket(now);
        let mut s = cell.get();
        s.requests += 1;
        cell.set(s);
    }

    /// Takes one retry at second `now` if the budget allows it.
    pub(crate) fn withdraw(&self, policy: &RetryPolicy, now: u64) -> bool {
        let cell = self.bucket(now);
        let this_second = cell.get();
        let (requests, retries) = self
            .seconds
            .iter()
            .map(Cell::get)
            .filter(|s| s.at + WINDOW_SECONDS > now)
            .fold((0, 0), |(q, r), s| (q + s.requests, r + s.retries));
        let reserve = u64::from(policy.min_per_second) * WINDOW_SECONDS;
        let share = requests * u64::from(policy.budget_percent) / 100;
        if retries < reserve + share {
            cell.set(Second {
                retries: this_second.retries + 1,
                ..this_second
            });
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: u32, min: u32) -> RetryPolicy {
        RetryPolicy {
            max: 2,
            budget_percent: percent,
            min_per_second: min,
        }
    }

    /// Retries granted at second `now` to `requests` requests that all fail.
    fn granted(b: &RetryBudget, p: &RetryPolicy, requests: u64, now: u64) -> u64 {
        (0..requests)
            .filter(|_| {
                b.deposit(now);
                b.withdraw(p, now)
            })
            .count() as u64
    }

    #[test]
    fn retries_stay_within_the_share_of_requests_plus_the_reserve() {
        let p = policy(20, 3);
        let b = RetryBudget::default();
        // 1000 failing requests in one second: the reserve (30), then one per 5 requests.
        assert_eq!(granted(&b, &p, 1000, 1), 230);
        // The next second, in the same window: the share of its requests only.
        assert_eq!(granted(&b, &p, 100, 2), 20);
        // Once the window has passed, the reserve is there again.
        assert_eq!(granted(&b, &p, 10, 12), 10);
    }

    #[test]
    fn many_requests_failing_at_once_after_a_busy_window_are_all_retried() {
        // Ten requests held by a hung instance time out together: the window's healthy
        // requests pay for their retries (no reserve here).
        let p = policy(20, 0);
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.deposit(5);
        }
        assert_eq!((0..10).filter(|_| b.withdraw(&p, 6)).count(), 10);
    }

    #[test]
    fn the_window_forgets_old_requests() {
        let p = policy(20, 0);
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.deposit(1);
        }
        assert!(b.withdraw(&p, 10));
        // Second 11: second 1 is out of the window; nothing has been sent since.
        assert!(!b.withdraw(&p, 11));
    }

    #[test]
    fn a_zero_budget_allows_only_the_free_retries() {
        let p = policy(0, 2);
        let b = RetryBudget::default();
        assert_eq!(granted(&b, &p, 50, 7), 20);
        assert_eq!(granted(&b, &p, 50, 8), 0);
        assert_eq!(granted(&b, &p, 50, 17), 20);
    }
}
