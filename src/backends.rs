//! The backend table: which live instances each configured backend has right now, and how
//! the control plane hands new versions of it to the cores.
//!
//! The table is an immutable value. The control plane (static config, Docker discovery)
//! builds a new one and calls `TablePublisher::publish`; every core has a mailbox of its
//! own (`CommandFeed`) on which it receives tables and the lifecycle's commands
//! (`CoreCommand`: start accepting, drain), and applies them between requests. A request in
//! flight keeps the `Rc` it started with. Each core receives its own copy, so no reference
//! count or cache line is shared between cores on the request path.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Discovery};
use crate::health::{BackendHealth, InstanceHealth, InstanceName};
use crate::mailbox;

/// One reachable instance of a backend.
#[derive(Debug, Clone)]
pub struct Instance {
    pub addr: SocketAddr,
    /// Where it came from: a container id (short), or `static` for configured addresses.
    pub source: String,
    /// Its share of the traffic against its siblings (1 unless configured or labelled).
    pub weight: u32,
    /// Shared by every core and the health checker; kept across tables for the same address.
    pub(crate) health: Arc<InstanceHealth>,
    /// This core's own view (each core receives its own copy of the table).
    pub(crate) local: InstanceLocal,
}

/// What one core keeps per instance for balancing.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceLocal {
    /// Requests of this core in flight to the instance.
    pub(crate) in_flight: Cell<u32>,
    /// Smooth weighted round robin's running weight.
    pub(crate) current_weight: Cell<i64>,
}

impl Instance {
    pub fn new(addr: SocketAddr, source: String, weight: u32) -> Instance {
        Instance {
            addr,
            source,
            weight,
            health: Arc::default(),
            local: InstanceLocal::default(),
        }
    }

    /// The instance as log lines name it.
    pub(crate) fn name<'a>(&'a self, backend: &'a str) -> InstanceName<'a> {
        InstanceName {
            backend,
            addr: self.addr,
            source: &self.source,
        }
    }
}

/// Same address, origin and weight: the same instance (its health is not compared).
impl PartialEq for Instance {
    fn eq(&self, other: &Instance) -> bool {
        self.addr == other.addr && self.source == other.source && self.weight == other.weight
    }
}

impl Eq for Instance {}

/// The instances of one backend. `index` matches `Config::backends`.
#[derive(Debug, Clone)]
pub struct BackendInstances {
    pub name: String,
    pub instances: Vec<Instance>,
    /// Shared by every core: kept across tables.
    pub(crate) health: Arc<BackendHealth>,
}

impl PartialEq for BackendInstances {
    fn eq(&self, other: &BackendInstances) -> bool {
        self.name == other.name && self.instances == other.instances
    }
}

impl Eq for BackendInstances {}

impl BackendInstances {
    pub fn new(name: String, instances: Vec<Instance>) -> BackendInstances {
        BackendInstances {
            name,
            instances,
            health: Arc::default(),
        }
    }

    /// `(instances, how many are out of rotation)`: what ejecting one more must respect.
    pub(crate) fn rotation(&self) -> (usize, usize) {
        let out = self.instances.iter().filter(|i| i.health.is_out()).count();
        (self.instances.len(), out)
    }

    /// Takes the health state of `previous` (the same backend in the last table) for every
    /// instance at an address it had, so a new table does not forget an ejection.
    fn adopt_health(&mut self, previous: &BackendInstances) {
        self.health = previous.health.clone();
        for instance in &mut self.instances {
            if let Some(old) = previous.instances.iter().find(|o| o.addr == instance.addr) {
                instance.health = old.health.clone();
            }
        }
    }
}

/// Every backend's live instances, at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTable {
    pub version: u64,
    pub backends: Vec<BackendInstances>,
}

impl BackendTable {
    /// The table before any discovery: static backends have their addresses, Docker
    /// backends have no instance yet.
    pub fn from_config(config: &Config) -> BackendTable {
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let instances = match &b.discovery {
                    Discovery::Static(addrs) => addrs
                        .iter()
                        .map(|a| Instance::new(a.addr, "static".into(), a.weight))
                        .collect(),
                    Discovery::DockerLabels(_) | Discovery::LabelRoute(_) => Vec::new(),
                };
                BackendInstances::new(b.name.clone(), instances)
            })
            .collect();
        BackendTable {
            version: 0,
            backends,
        }
    }

    /// Every instance of every backend, with its backend's name.
    pub(crate) fn instances(&self) -> impl Iterator<Item = (&str, &Instance)> {
        self.backends
            .iter()
            .flat_map(|b| b.instances.iter().map(move |i| (b.name.as_str(), i)))
    }
}

/// What the control plane tells a core. Each core receives these in order on its own
/// mailbox and applies them between requests (a request in flight keeps the table it
/// started with).
#[derive(Debug)]
pub(crate) enum CoreCommand {
    /// A new version of the backend table.
    Table(BackendTable),
    /// The process is ready: accept connections.
    StartAccepting,
    /// Stop accepting, finish what is open, then end.
    Drain,
}

/// The control plane's end: sends new tables, and the lifecycle's commands, to every core.
pub struct TablePublisher {
    cores: Vec<mailbox::Sender<CoreCommand>>,
    latest: Mutex<BackendTable>,
}

impl TablePublisher {
    /// A publisher with one command feed per core, all starting at `initial`.
    pub fn new(initial: BackendTable, cores: usize) -> (TablePublisher, Vec<CommandFeed>) {
        let mut senders = Vec::with_capacity(cores);
        let mut feeds = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = mailbox::mailbox();
            senders.push(tx);
            feeds.push(CommandFeed {
                rx,
                initial: initial.clone(),
            });
        }
        let publisher = TablePublisher {
            cores: senders,
            latest: Mutex::new(initial),
        };
        (publisher, feeds)
    }

    /// Publishes `table` (its version is set here, one above the last) to every core.
    /// Returns false, publishing nothing, when its instances are those already published.
    /// Instances at addresses already known keep their health state.
    pub fn publish(&self, mut table: BackendTable) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.backends == table.backends {
            return false;
        }
        for (new, old) in table.backends.iter_mut().zip(&latest.backends) {
            new.adopt_health(old);
        }
        table.version = latest.version + 1;
        // Sent under the lock, so every core sees the versions in order.
        self.tell_all(|| CoreCommand::Table(table.clone()));
        *latest = table;
        true
    }

    /// Calls `f` with the last published table (the health checker reads its instances).
    pub(crate) fn with_latest<R>(&self, f: impl FnOnce(&BackendTable) -> R) -> R {
        f(&self.latest.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Lets the cores accept: only once the process has said it is ready, so a process that
    /// fails during start-up never takes a connection it cannot serve.
    pub fn start_accepting(&self) {
        self.tell_all(|| CoreCommand::StartAccepting);
    }

    /// Asks every core to stop accepting and finish what it has.
    pub fn drain(&self) {
        self.tell_all(|| CoreCommand::Drain);
    }

    fn tell_all(&self, command: impl Fn() -> CoreCommand) {
        for core in &self.cores {
            // A core that has exited no longer listens; sending to it is harmless.
            core.send(command());
        }
    }

    /// The last published table (cores keep their own).
    #[cfg(test)]
    fn latest(&self) -> BackendTable {
        self.with_latest(BackendTable::clone)
    }
}

/// A core's end of its mailbox, with the table it starts from; moved into the core's thread.
pub struct CommandFeed {
    pub(crate) rx: mailbox::Receiver<CoreCommand>,
    pub(crate) initial: BackendTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(addrs: &[&str]) -> BackendTable {
        let instances = addrs
            .iter()
            .map(|a| Instance::new(a.parse().unwrap(), "static".into(), 1))
            .collect();
        BackendTable {
            version: 0,
            backends: vec![BackendInstances::new("a".into(), instances)],
        }
    }

    fn first_port(t: &BackendTable) -> u16 {
        t.backends[0].instances[0].addr.port()
    }

    #[test]
    fn cores_receive_tables_and_commands_in_order() {
        let (publisher, feeds) = TablePublisher::new(table(&[]), 2);
        assert!(feeds[0].initial.backends[0].instances.is_empty());
        publisher.publish(table(&["127.0.0.1:1"]));
        publisher.start_accepting();
        publisher.publish(table(&["127.0.0.1:2"]));
        publisher.drain();
        for feed in &feeds {
            let got: Vec<String> = std::iter::from_fn(|| feed.rx.try_recv())
                .map(|c| match c {
                    CoreCommand::Table(t) => format!("table {} {}", t.version, first_port(&t)),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(got, ["table 1 1", "StartAccepting", "table 2 2", "Drain"]);
        }
        // Publishing the same instances again is not a new version.
        assert!(!publisher.publish(table(&["127.0.0.1:2"])));
        assert_eq!(publisher.latest().version, 2);
    }

    #[test]
    fn a_new_table_keeps_the_health_of_known_addresses() {
        let (publisher, _feeds) = TablePublisher::new(table(&[]), 1);
        publisher.publish(table(&["127.0.0.1:1", "127.0.0.1:2"]));
        let before = publisher.latest();
        publisher.publish(table(&["127.0.0.1:2", "127.0.0.1:3"]));
        let after = publisher.latest();
        let (old, new) = (&before.backends[0], &after.backends[0]);
        assert!(Arc::ptr_eq(&old.health, &new.health));
        assert!(Arc::ptr_eq(
            &old.instances[1].health,
            &new.instances[0].health
        ));
        assert!(!Arc::ptr_eq(
            &old.instances[0].health,
            &new.instances[1].health
        ));
    }
}
