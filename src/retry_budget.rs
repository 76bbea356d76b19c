//! A core's retry budget for one backend: retries may be at most `budget_percent` of the
//! requests sent, so that when a whole backend fails, retrying never multiplies its load.
//!
//! A token bucket, full at first: each request to the backend deposits `budget_percent`
//! hundredths of a retry, up to `BURST` retries' worth; each retry withdraws one. On top of that,
//! `min_per_second` retries per second are always allowed (a quiet backend still gets its
//! retries). Per core, so nothing is shared on the request path; time is read only when a
//! retry is asked for.

use std::cell::Cell;

use crate::config::RetryPolicy;
use crate::health::now_ms;

/// One retry, in the bucket's unit (a thousandth of a retry).
const RETRY: u64 = 1_000;
/// The most retries the bucket holds: a burst of failures after a long healthy run is
/// retried this much beyond the share of the requests that follow.
const BURST: u64 = 10;

#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Thousandths of a retry.
    tokens: Cell<u64>,
    /// The second (on `now_ms`'s clock) of `free_used`.
    second: Cell<u64>,
    /// Retries taken from this second's free allowance.
    free_used: Cell<u32>,
}

/// Full at first: the first failures after a start are retried up to a burst.
impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tokens: Cell::new(BURST * RETRY),
            second: Cell::new(0),
            free_used: Cell::new(0),
        }
    }
}

impl RetryBudget {
    /// A request was sent to the backend.
    pub(crate) fn deposit(&self, policy: &RetryPolicy) {
        let t = self.tokens.get() + u64::from(policy.budget_percent) * RETRY / 100;
        self.tokens.set(t.min(BURST * RETRY));
    }

    /// Takes one retry if the budget allows it.
    pub(crate) fn withdraw(&self, policy: &RetryPolicy) -> bool {
        self.withdraw_at(policy, now_ms() / 1000)
    }

    fn withdraw_at(&self, policy: &RetryPolicy, second: u64) -> bool {
        if self.second.get() != second {
            self.second.set(second);
            self.free_used.set(0);
        }
        if self.free_used.get() < policy.min_per_second {
            self.free_used.set(self.free_used.get() + 1);
            return true;
        }
        match self.tokens.get().checked_sub(RETRY) {
            Some(left) => {
                self.tokens.set(left);
                true
            }
            None => false,
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

    /// Retries granted in one second to `requests` requests that all fail.
    fn granted(b: &RetryBudget, p: &RetryPolicy, requests: u32, second: u64) -> u32 {
        (0..requests)
            .filter(|_| {
                b.deposit(p);
                b.withdraw_at(p, second)
            })
            .count() as u32
    }

    #[test]
    fn retries_stay_within_the_share_of_requests_plus_the_free_allowance() {
        let p = policy(20, 3);
        let b = RetryBudget::default();
        // 1000 failing requests in one second: 3 free, the burst, then one retry per 5
        // requests.
        let got = granted(&b, &p, 1000, 1);
        assert!((210..=213).contains(&got), "{got}");
        // The next second: its own 3, and the share again.
        let got = granted(&b, &p, 100, 2);
        assert!((20..=23).contains(&got), "{got}");
    }

    #[test]
    fn the_bucket_holds_at_most_a_burst() {
        let p = policy(20, 0);
        let b = RetryBudget::default();
        for _ in 0..10_000 {
            b.deposit(&p);
        }
        let got = (0..100).filter(|_| b.withdraw_at(&p, 1)).count() as u64;
        assert_eq!(got, BURST);
    }

    #[test]
    fn a_zero_budget_allows_only_the_free_retries() {
        let p = policy(0, 2);
        let b = RetryBudget::default();
        assert_eq!(granted(&b, &p, 50, 6), 2 + BURST as u32);
        assert_eq!(granted(&b, &p, 50, 7), 2);
        assert_eq!(granted(&b, &p, 50, 8), 2);
    }
}
