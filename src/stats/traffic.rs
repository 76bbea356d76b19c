//! Plain (non-atomic) traffic counts: what one scope (everything, a route, a backend, a
//! backend instance) carried, and `Totals`, the counts of every scope keyed by name. These
//! are the values the stats thread reads out of the cores, subtracts (deltas), adds to the
//! database and renders. Names, not config indices, are the keys, because they must still
//! mean the same thing after a restart with another config.
//!
//! Not for: the request path (see `counters`), storage (see `store`).

use std::collections::BTreeMap;

use super::histogram::Histogram;
use super::ErrorKind;

/// Slots for status codes: 0 (no response reached the client), 100..=599, and one for any
/// other code a backend sent.
pub(crate) const CODE_SLOTS: usize = 601;
pub(crate) const OTHER_CODE_SLOT: usize = 600;

pub(crate) fn code_slot(status: u16) -> usize {
    match status {
        0 => 0,
        100..=599 => status as usize,
        _ => OTHER_CODE_SLOT,
    }
}

/// What a slot in `Traffic::codes` stands for, as shown in `/stats` and `/metrics`.
pub(crate) fn code_name(slot: usize) -> String {
    match slot {
        0 => "none".into(),
        OTHER_CODE_SLOT => "other".into(),
        code => code.to_string(),
    }
}

/// The traffic of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    /// Requests by status slot (`code_slot`); their sum is the request count.
    pub(crate) codes: Codes,
    pub(crate) errors: [u64; ErrorKind::ALL.len()],
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) latency: Histogram,
}

/// Requests by status slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Codes(pub(crate) Vec<u64>);

impl Default for Codes {
    fn default() -> Self {
        Codes(vec![0; CODE_SLOTS])
    }
}

/// How a scope's requests split for `requests_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestCounts {
    pub(crate) total: u64,
    /// Responses with a status below 500.
    pub(crate) success: u64,
    /// 5xx responses given to the client, whoever made them (rgate or the backend).
    pub(crate) error: u64,
    /// Requests that got no response status at all: the connection was cut first.
    pub(crate) aborted: u64,
}

impl Traffic {
    pub(crate) fn requests(&self) -> RequestCounts {
        let total: u64 = self.codes.0.iter().sum();
        let error: u64 = self.codes.0[500..600].iter().sum();
        let aborted = self.codes.0[0];
        RequestCounts {
            total,
            success: total - error - aborted,
            error,
            aborted,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.codes.0.iter().all(|&n| n == 0)
            && self.errors.iter().all(|&n| n == 0)
            && self.bytes_in == 0
            && self.bytes_out == 0
            && self.latency.count() == 0
    }

    pub(crate) fn merge(&mut self, other: &Traffic) {
        for (a, b) in self.codes.0.iter_mut().zip(&other.codes.0) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.latency.merge(&other.latency);
    }

    /// What was counted since `earlier`, a snapshot of the same monotonic counters.
    pub(crate) fn since(&self, earlier: &Traffic) -> Traffic {
        let mut errors = self.errors;
        for (a, b) in errors.iter_mut().zip(&earlier.errors) {
            *a = a.saturating_sub(*b);
        }
        Traffic {
            codes: Codes(
                self.codes
                    .0
                    .iter()
                    .zip(&earlier.codes.0)
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect(),
            ),
            errors,
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            latency: self.latency.since(&earlier.latency),
        }
    }
}

/// Which kind of scope a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Scope {
    Total,
    Route,
    Backend,
    Instance,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Total => "total",
            Scope::Route => "route",
            Scope::Backend => "backend",
            Scope::Instance => "instance",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Scope> {
        [Scope::Total, Scope::Route, Scope::Backend, Scope::Instance]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }
}

/// One counted scope: `name` is the route prefix or backend name (empty for the total);
/// `instance` is the instance address for `Scope::Instance` (empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) scope: Scope,
    pub(crate) name: String,
    pub(crate) instance: String,
}

impl Key {
    pub(crate) fn total() -> Key {
        Key::new(Scope::Total, "", "")
    }

    pub(crate) fn new(scope: Scope, name: &str, instance: &str) -> Key {
        Key {
            scope,
            name: name.into(),
            instance: instance.into(),
        }
    }
}

/// The traffic of every scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) scopes: BTreeMap<Key, Traffic>,
}

impl Totals {
    pub(crate) fn entry(&mut self, key: Key) -> &mut Traffic {
        self.scopes.entry(key).or_default()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Traffic> {
        self.scopes.get(key)
    }

    pub(crate) fn merge(&mut self, other: &Totals) {
        for (key, traffic) in &other.scopes {
            self.entry(key.clone()).merge(traffic);
        }
    }

    /// What was counted since `earlier`; scopes with nothing new are left out.
    pub(crate) fn since(&self, earlier: &Totals) -> Totals {
        let empty = Traffic::default();
        let scopes = self
            .scopes
            .iter()
            .map(|(key, now)| (key, now.since(earlier.scopes.get(key).unwrap_or(&empty))))
            .filter(|(_, delta)| !delta.is_empty())
            .map(|(key, delta)| (key.clone(), delta))
            .collect();
        Totals { scopes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scopes.values().all(Traffic::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(status: u16, ms: u64) -> Traffic {
        let mut t = Traffic::default();
        t.codes.0[code_slot(status)] += 1;
        t.bytes_in = 10;
        t.bytes_out = 100;
        t.latency.record(ms * 1_000_000);
        t
    }

    #[test]
    fn request_counts_split_by_status() {
        let mut t = traffic(200, 1);
        t.merge(&traffic(404, 1));
        t.merge(&traffic(502, 1));
        t.merge(&traffic(0, 1));
        t.merge(&traffic(999, 1));
        let r = t.requests();
        assert_eq!((r.total, r.success, r.error, r.aborted), (5, 3, 1, 1));
        assert_eq!(t.codes.0[OTHER_CODE_SLOT], 1);
    }

    #[test]
    fn since_then_merge_gives_back_the_later_snapshot() {
        let mut earlier = Totals::default();
        earlier.entry(Key::total()).merge(&traffic(200, 5));
        let mut later = earlier.clone();
        later.entry(Key::total()).merge(&traffic(503, 7));
        later
            .entry(Key::new(Scope::Route, "/a", ""))
            .merge(&traffic(200, 1));
        let delta = later.since(&earlier);
        assert_eq!(delta.scopes.len(), 2);
        assert_eq!(delta.get(&Key::total()).unwrap().requests().total, 1);
        let mut rebuilt = earlier.clone();
        rebuilt.merge(&delta);
        assert_eq!(rebuilt, later);
        assert!(later.since(&later).is_empty());
    }
}
