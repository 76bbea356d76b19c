//! A latency histogram in the manner of HdrHistogram, reduced to what the bench needs:
//! log-linear buckets over nanoseconds (64 linear steps per power of two, so any recorded
//! value is within 1/64 ≈ 1.6 % of the truth), fixed memory, mergeable across threads.

/// Values below this are counted exactly, one bucket each.
const EXACT: u64 = 128;
/// Linear steps within each power of two above `EXACT`.
const STEPS: u64 = 64;
const STEP_BITS: u32 = 6;
/// Enough buckets for every u64.
const BUCKETS: usize = (EXACT + 57 * STEPS) as usize;

pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        if value < EXACT {
            return value as usize;
        }
        let shift = 63 - value.leading_zeros() - STEP_BITS;
        let step = (value >> shift) - STEPS;
        (EXACT + u64::from(shift - 1) * STEPS + step) as usize
    }

    /// The highest value that lands in bucket `index`.
    fn bucket_top(index: usize) -> u64 {
        let index = index as u64;
        if index < EXACT {
            return index;
        }
        let shift = (index - EXACT) / STEPS + 1;
        let step = (index - EXACT) % STEPS + STEPS;
        ((step + 1) << shift) - 1
    }

    pub fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `percent` % of the recorded values lie (bucket top,
    /// never above the maximum seen).
    pub fn percentile(&self, percent: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((percent / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::bucket_top(i).min(self.max);
            }
        }
        self.max
    }
}

/// Checks the bucket arithmetic; the driver runs it before trusting any percentile
/// (a `harness = false` target has no `#[test]` runner).
pub fn self_check() -> Result<(), String> {
    let mut v = 1u64;
    while v < u64::MAX / 3 {
        for probe in [v - 1, v, v + 1, v + v / 3] {
            let i = Histogram::index(probe);
            let covers = i < BUCKETS
                && Histogram::bucket_top(i) >= probe
                && (i == 0 || Histogram::bucket_top(i - 1) < probe);
            if !covers {
                return Err(format!("value {probe} is in the wrong bucket {i}"));
            }
        }
        v = v * 3 / 2 + 1;
    }
    let mut h = Histogram::new();
    for v in 1..=100_000u64 {
        h.record(v * 1000);
    }
    let p99 = h.percentile(99.0) as f64;
    if (p99 / 99_000_000.0 - 1.0).abs() > 1.0 / 60.0 || h.percentile(100.0) != 100_000_000 {
        return Err(format!("p99 of 1..=100000 µs came out as {p99} ns"));
    }
    Ok(())
}
