//! One core's counters: written only by that core, on the request path, without a lock;
//! read by the stats thread (every interval) and by `/stats` (on any core).
//!
//! Every counter is an `AtomicU64` with a single writer, so a count is a plain `load` +
//! `store` (Relaxed), never a locked read-modify-write; readers may see a request's counts
//! half-applied for an instant, which the next read completes. Each core's counters are
//! their own allocations and the struct is aligned to 128 bytes, so no two cores write the
//! same cache line.
//!
//! Routes and backends are config indices, so their counters are preallocated arrays.
//! Backend instances (addresses) come and go, so they live in a fixed-capacity,
//! open-addressed table of write-once slots (`OnceLock`): the owning core claims a slot the
//! first time it counts an instance and never moves or frees it; readers see a slot once
//! it is fully built (`OnceLock::get` is an acquire). This keeps the request path free of
//! any lock, at the cost of a bound: after `INSTANCE_SLOTS` distinct instances in one
//! process's life (containers replaced many times), further ones are counted together as
//! the instance `other` of their backend's total — the backend and route counts stay exact.
//!
//! Not for: totals across cores or restarts (see `collector` and `store`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::connections::ConnectionCounters;
use super::histogram::{bump, AtomicHistogram};
use super::traffic::{code_slot, Key, Scope, Totals, Traffic, CODE_SLOTS};
use super::{ErrorKind, RequestRecord};

/// Distinct backend instances one core counts separately (a power of two).
const INSTANCE_SLOTS: usize = 256;
/// The instance name under which instances beyond `INSTANCE_SLOTS` are counted.
pub(crate) const OTHER_INSTANCE: &str = "other";

/// The atomic counterpart of `Traffic`, for one scope on one core.
#[derive(Debug)]
struct TrafficCounters {
    codes: Box<[AtomicU64]>,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency: AtomicHistogram,
}

impl Default for TrafficCounters {
    fn default() -> Self {
        TrafficCounters {
            codes: (0..CODE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            errors: Default::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: AtomicHistogram::default(),
        }
    }
}

impl TrafficCounters {
    fn record(&self, r: &RequestRecord, latency_ns: u64) {
        bump(&self.codes[code_slot(r.status)], 1);
        if let Some(kind) = r.error {
            bump(&self.errors[kind.index()], 1);
        }
        bump(&self.bytes_in, r.bytes_in);
        bump(&self.bytes_out, r.bytes_out);
        self.latency.record(latency_ns);
    }

    fn add_to(&self, into: &mut Traffic) {
        for (a, b) in into.codes.0.iter_mut().zip(self.codes.iter()) {
            *a += b.load(Ordering::Relaxed);
        }
        for (a, b) in into.errors.iter_mut().zip(&self.errors) {
            *a += b.load(Ordering::Relaxed);
        }
        into.bytes_in += self.bytes_in.load(Ordering::Relaxed);
        into.bytes_out += self.bytes_out.load(Ordering::Relaxed);
        self.latency.add_to(&mut into.latency);
    }
}

/// One instance's slot: which backend and address it counts.
#[derive(Debug)]
struct InstanceSlot {
    backend: usize,
    addr: SocketAddr,
    counters: TrafficCounters,
}

/// One core's counters. Only that core writes them (`record`).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct CoreCounters {
    /// Route prefixes and backend names, by config index (for naming what is read).
    route_names: Vec<String>,
    backend_names: Vec<String>,
    total: TrafficCounters,
    routes: Box<[TrafficCounters]>,
    backends: Box<[TrafficCounters]>,
    instances: Box<[OnceLock<Box<InstanceSlot>>]>,
    /// Per backend: instances that found no free slot.
    overflow: Box<[TrafficCounters]>,
    /// The core's client connections.
    pub(crate) connections: ConnectionCounters,
}

impl CoreCounters {
    pub(crate) fn new(route_names: Vec<String>, backend_names: Vec<String>) -> CoreCounters {
        let many = |n: usize| (0..n).map(|_| TrafficCounters::default()).collect();
        CoreCounters {
            routes: many(route_names.len()),
            backends: many(backend_names.len()),
            overflow: many(backend_names.len()),
            instances: (0..INSTANCE_SLOTS).map(|_| OnceLock::new()).collect(),
            total: TrafficCounters::default(),
            connections: ConnectionCounters::default(),
            route_names,
            backend_names,
        }
    }

    /// Counts one finished request. Called only by the core that owns these counters.
    pub(crate) fn record(&self, record: &RequestRecord) {
        let ns = u64::try_from(record.latency.as_nanos()).unwrap_or(u64::MAX);
        self.total.record(record, ns);
        if let Some(route) = record.route.and_then(|i| self.routes.get(i)) {
            route.record(record, ns);
        }
        let Some(backend) = record.backend.filter(|&i| i < self.backends.len()) else {
            return;
        };
        self.backends[backend].record(record, ns);
        if let Some(addr) = record.instance {
            match self.instance_slot(backend, addr) {
                Some(slot) => slot.counters.record(record, ns),
                None => self.overflow[backend].record(record, ns),
            }
        }
    }

    /// The slot of `(backend, addr)`, claimed on first use; None when the table is full.
    fn instance_slot(&self, backend: usize, addr: SocketAddr) -> Option<&InstanceSlot> {
        let start = slot_hash(backend, addr) & (INSTANCE_SLOTS - 1);
        for i in 0..INSTANCE_SLOTS {
            let cell = &self.instances[(start + i) & (INSTANCE_SLOTS - 1)];
            // Only this core sets slots, so `get_or_init` never races another writer.
            let slot = cell.get_or_init(|| {
                Box::new(InstanceSlot {
                    backend,
                    addr,
                    counters: TrafficCounters::default(),
                })
            });
            if slot.backend == backend && slot.addr == addr {
                return Some(slot);
            }
        }
        None
    }

    /// Adds everything this core has counted (since it started) into `into`.
    pub(crate) fn add_to(&self, into: &mut Totals) {
        self.total.add_to(into.entry(Key::total()));
        for (name, c) in self.route_names.iter().zip(self.routes.iter()) {
            c.add_to(into.entry(Key::new(Scope::Route, name, "")));
        }
        for (name, c) in self.backend_names.iter().zip(self.backends.iter()) {
            c.add_to(into.entry(Key::new(Scope::Backend, name, "")));
        }
        for slot in self.instances.iter().filter_map(OnceLock::get) {
            let name = &self.backend_names[slot.backend];
            let key = Key::new(Scope::Instance, name, &slot.addr.to_string());
            slot.counters.add_to(into.entry(key));
        }
        for (name, c) in self.backend_names.iter().zip(self.overflow.iter()) {
            let mut t = Traffic::default();
            c.add_to(&mut t);
            if !t.is_empty() {
                into.entry(Key::new(Scope::Instance, name, OTHER_INSTANCE))
                    .merge(&t);
            }
        }
    }
}

/// A cheap, well-spread hash of an instance key (FNV-1a over its bytes).
fn slot_hash(backend: usize, addr: SocketAddr) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&backend.to_le_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(ip) => eat(&ip.octets()),
        std::net::IpAddr::V6(ip) => eat(&ip.octets()),
    }
    eat(&addr.port().to_le_bytes());
    h as usize
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(status: u16, instance: Option<SocketAddr>) -> RequestRecord {
        RequestRecord {
            route: Some(0),
            backend: Some(1),
            instance,
            status,
            bytes_in: 10,
            bytes_out: 20,
            latency: Duration::from_millis(3),
            error: (status >= 500).then_some(ErrorKind::Connect),
        }
    }

    fn counters() -> CoreCounters {
        CoreCounters::new(vec!["/a".into()], vec!["x".into(), "y".into()])
    }

    #[test]
    fn a_record_counts_in_total_route_backend_and_instance() {
        let c = counters();
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        c.record(&record(200, Some(addr)));
        c.record(&record(503, Some(addr)));
        c.record(&RequestRecord {
            route: None,
            backend: None,
            ..record(404, None)
        });
        let mut t = Totals::default();
        c.add_to(&mut t);
        assert_eq!(t.get(&Key::total()).unwrap().requests().total, 3);
        let route = t.get(&Key::new(Scope::Route, "/a", "")).unwrap();
        assert_eq!(route.requests().total, 2);
        assert_eq!(route.errors[ErrorKind::Connect.index()], 1);
        assert_eq!(route.bytes_out, 40);
        let y = t.get(&Key::new(Scope::Backend, "y", "")).unwrap();
        assert_eq!(y.requests().error, 1);
        let inst = t.get(&Key::new(Scope::Instance, "y", "127.0.0.1:9000"));
        assert_eq!(inst.unwrap().latency.count(), 2);
        assert_eq!(
            t.get(&Key::new(Scope::Backend, "x", ""))
                .unwrap()
                .requests()
                .total,
            0
        );
    }

    #[test]
    fn instances_beyond_the_table_are_counted_as_other() {
        let c = counters();
        let n = INSTANCE_SLOTS + 10;
        for i in 0..n {
            let addr = SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 80));
            c.record(&record(200, Some(addr)));
            c.record(&record(200, Some(addr)));
        }
        let mut t = Totals::default();
        c.add_to(&mut t);
        let instances: Vec<_> = t
            .scopes
            .iter()
            .filter(|(k, _)| k.scope == Scope::Instance && k.instance != OTHER_INSTANCE)
            .collect();
        assert_eq!(instances.len(), INSTANCE_SLOTS);
        assert!(instances.iter().all(|(_, v)| v.requests().total == 2));
        let other = t
            .get(&Key::new(Scope::Instance, "y", OTHER_INSTANCE))
            .unwrap();
        assert_eq!(other.requests().total, 20);
        let backend = t.get(&Key::new(Scope::Backend, "y", "")).unwrap();
        assert_eq!(backend.requests().total, 2 * n as u64);
    }
}
