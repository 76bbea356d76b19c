//! The latency histogram: one fixed, log-linear bucket layout shared by every core, every
//! process and the database, so histograms merge by adding bucket counts and percentiles
//! come from the merged buckets.
//!
//! Layout: durations are counted in units of 128 ns. Below 32 units (4.1 µs) each unit is
//! its own bucket; above, every power of two is split into 32 equal buckets. A bucket is
//! thus at most 1/32 as wide as its lower bound, and its midpoint is within 1/64 (1.6 %) of
//! any duration that falls in it, from 4.1 µs up to the top of the range (2^36 ns, 68.7 s).
//! Longer durations land in the last bucket (their exact maximum is still kept). The layout
//! is written into the database (`LAYOUT`); changing it means a new database.
//!
//! Not for: counting anything but durations; per-request allocation (the atomic form is
//! allocated once per counted scope).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Durations are counted in units of 2^UNIT_SHIFT nanoseconds.
const UNIT_SHIFT: u32 = 7;
/// Each power of two is split into 2^SUB_BITS buckets.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// The highest power of two (in units) the layout covers: units < 2^(TOP_POWER + 1).
const TOP_POWER: u32 = 28;
/// Number of buckets: the linear part, then one group of SUB per power of two.
pub(crate) const BUCKETS: usize = SUB + (TOP_POWER - SUB_BITS + 1) as usize * SUB;
/// Names the layout in the database, so a database written with another layout is refused.
pub(crate) const LAYOUT: &str = "log-linear unit=128ns sub=32 buckets=800";

/// The bucket a duration (in nanoseconds) is counted in.
pub(crate) fn bucket_of(ns: u64) -> usize {
    let units = ns >> UNIT_SHIFT;
    if units < SUB as u64 {
        return units as usize;
    }
    let power = 63 - units.leading_zeros();
    if power > TOP_POWER {
        return BUCKETS - 1;
    }
    let group = (power - SUB_BITS) as usize;
    let sub = (units >> (power - SUB_BITS)) as usize - SUB;
    SUB + group * SUB + sub
}

/// The nanosecond range `[low, high)` of a bucket.
pub(crate) fn bucket_range(bucket: usize) -> (u64, u64) {
    if bucket < SUB {
        let low = (bucket as u64) << UNIT_SHIFT;
        return (low, low + (1 << UNIT_SHIFT));
    }
    let group = ((bucket - SUB) / SUB) as u32;
    let sub = ((bucket - SUB) % SUB) as u64;
    let low_units = (SUB as u64 + sub) << group;
    let width_units = 1u64 << group;
    (
        low_units << UNIT_SHIFT,
        (low_units + width_units) << UNIT_SHIFT,
    )
}

/// The value reported for a bucket: its midpoint.
fn bucket_mid(bucket: usize) -> u64 {
    let (low, high) = bucket_range(bucket);
    low + (high - low) / 2
}

/// A plain histogram (a snapshot, a delta, or a merged total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Histogram {
    pub(crate) buckets: Vec<u64>,
    pub(crate) sum_ns: u64,
    /// The longest duration counted (exact, not bucketed); a maximum, so it merges by `max`.
    pub(crate) max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    #[cfg(test)]
    pub(crate) fn record(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// What was counted in `self` since `earlier` (a snapshot of the same counters). The
    /// maximum does not subtract: the delta carries the current one, which merges by `max`.
    pub(crate) fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns: self.max_ns,
        }
    }

    /// The duration at quantile `q` (0..=1), from the buckets: the midpoint of the bucket
    /// holding the ceil(q·n)-th smallest duration, never above the exact maximum.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (bucket, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_mid(bucket).min(self.max_ns)));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    pub(crate) fn mean(&self) -> Option<Duration> {
        let n = self.count();
        (n > 0).then(|| Duration::from_nanos(self.sum_ns / n))
    }
}

/// A histogram one core writes (single writer) and other threads read.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// Adds to a counter that only the calling thread writes: a plain load and store, no
/// read-modify-write instruction, since no other writer can interleave.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl AtomicHistogram {
    /// Counts one duration. Only the owning core calls this.
    pub(crate) fn record(&self, ns: u64) {
        bump(&self.buckets[bucket_of(ns)], 1);
        bump(&self.sum_ns, ns);
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Adds what this histogram holds into `into`.
    pub(crate) fn add_to(&self, into: &mut Histogram) {
        for (a, b) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            *a += b.load(Ordering::Relaxed);
        }
        into.sum_ns = into
            .sum_ns
            .saturating_add(self.sum_ns.load(Ordering::Relaxed));
        into.max_ns = into.max_ns.max(self.max_ns.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_sixty_seconds() {
        assert_eq!(BUCKETS, 800);
        assert!(bucket_of(60_000_000_000) < BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(0), 0);
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut expected_low = 0;
        for b in 0..BUCKETS {
            let (low, high) = bucket_range(b);
            assert_eq!(low, expected_low, "bucket {b}");
            assert!(high > low);
            assert_eq!(bucket_of(low), b);
            assert_eq!(bucket_of(high - 1), b);
            expected_low = high;
        }
    }

    #[test]
    fn relative_error_is_within_two_percent_from_10us_to_60s() {
        let mut worst = 0.0f64;
        let mut ns = 10_000u64;
        while ns <= 60_000_000_000 {
            // Every value at and around a bucket edge, and a geometric sweep between.
            for v in [ns, ns + 1, ns.saturating_sub(1).max(10_000)] {
                let mid = bucket_mid(bucket_of(v)) as f64;
                let err = (mid - v as f64).abs() / v as f64;
                worst = worst.max(err);
            }
            ns = (ns as f64 * 1.0007) as u64 + 1;
        }
        for b in bucket_of(10_000)..=bucket_of(60_000_000_000) {
            let (low, high) = bucket_range(b);
            for v in [low.max(10_000), high - 1] {
                let err = (bucket_mid(b) as f64 - v as f64).abs() / v as f64;
                worst = worst.max(err);
            }
        }
        assert!(worst <= 0.02, "worst relative error {worst}");
        assert!(
            worst > 0.01,
            "the sweep should reach bucket edges ({worst})"
        );
    }

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut h = Histogram::default();
        // 1..=1000 ms: the true p50 is 500 ms, p99 990 ms.
        for ms in 1..=1000u64 {
            h.record(ms * 1_000_000);
        }
        for (q, truth) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = h.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (got - truth).abs() / truth <= 0.02,
                "q{q}: {got} vs {truth}"
            );
        }
        assert_eq!(h.max_ns, 1_000_000_000);
        assert_eq!(h.mean().unwrap(), Duration::from_micros(500_500));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        let mut all = Histogram::default();
        for i in 0..5000u64 {
            let ns = (i * 7919 % 100_000) * 10_000 + 10_000;
            if i % 3 == 0 { &mut a } else { &mut b }.record(ns);
            all.record(ns);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 5000);
    }

    #[test]
    fn since_gives_the_delta_and_atomic_matches_plain() {
        let atomic = AtomicHistogram::default();
        let mut plain = Histogram::default();
        for ns in [15_000, 2_000_000, 2_000_000, 45_000_000_000] {
            atomic.record(ns);
            plain.record(ns);
        }
        let mut first = Histogram::default();
        atomic.add_to(&mut first);
        assert_eq!(first, plain);
        atomic.record(3_000_000);
        let mut second = Histogram::default();
        atomic.add_to(&mut second);
        let delta = second.since(&first);
        assert_eq!(delta.count(), 1);
        assert_eq!(delta.sum_ns, 3_000_000);
        assert_eq!(delta.buckets[bucket_of(3_000_000)], 1);
    }
}
