//! The backend table: which live instances each configured backend has right now, and how
//! the control plane hands new versions of it to the cores.
//!
//! The table is an immutable value. The control plane (static config, Docker discovery)
//! builds a new one and calls `TablePublisher::publish`; every core has a mailbox of its
//! own (`CommandFeed`) on which it receives tables and the lifecycle's commands
//! (`CoreCommand`: start accepting, drain), and applies them between requests. A request in
//! flight keeps the `Rc` it started with. Each core receives its own copy, so no reference
//! count or cache line is shared between cores on the request path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Discovery};
use crate::mailbox;

/// One reachable instance of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub addr: SocketAddr,
    /// Where it came from: a container id (short), or `static` for configured addresses.
    pub source: String,
}

/// The instances of one backend. `index` matches `Config::backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInstances {
    pub name: String,
    pub instances: Vec<Instance>,
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
            .map(|b| BackendInstances {
                name: b.name.clone(),
                instances: match &b.discovery {
                    Discovery::Static(addrs) => addrs
                        .iter()
                        .map(|&addr| Instance {
                            addr,
                            source: "static".into(),
                        })
                        .collect(),
                    Discovery::DockerLabels(_) => Vec::new(),
                },
            })
            .collect();
        BackendTable {
            version: 0,
            backends,
        }
    }

    /// A random instance of backend `index`, or `None` when it has none.
    pub fn pick(&self, index: usize) -> Option<&Instance> {
        let instances = &self.backends.get(index)?.instances;
        match instances.len() {
            0 => None,
            1 => instances.first(),
            n => instances.get(fastrand::usize(..n)),
        }
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
    latest: Mutex<Arc<BackendTable>>,
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
            latest: Mutex::new(Arc::new(initial)),
        };
        (publisher, feeds)
    }

    /// Publishes `table` (its version is set here, one above the last) to every core.
    /// Returns false, publishing nothing, when its instances are those already published.
    pub fn publish(&self, mut table: BackendTable) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.backends == table.backends {
            return false;
        }
        table.version = latest.version + 1;
        // Sent under the lock, so every core sees the versions in order.
        self.tell_all(|| CoreCommand::Table(table.clone()));
        *latest = Arc::new(table);
        true
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
    fn latest(&self) -> Arc<BackendTable> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        BackendTable {
            version: 0,
            backends: vec![BackendInstances {
                name: "a".into(),
                instances: addrs
                    .iter()
                    .map(|a| Instance {
                        addr: a.parse().unwrap(),
                        source: "static".into(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn cores_receive_tables_and_commands_in_order() {
        let (publisher, feeds) = TablePublisher::new(table(&[]), 2);
        assert!(feeds[0].initial.pick(0).is_none());
        publisher.publish(table(&["127.0.0.1:1"]));
        publisher.start_accepting();
        publisher.publish(table(&["127.0.0.1:2"]));
        publisher.drain();
        for feed in &feeds {
            let got: Vec<String> = std::iter::from_fn(|| feed.rx.try_recv())
                .map(|c| match c {
                    CoreCommand::Table(t) => {
                        format!("table {} {}", t.version, t.pick(0).unwrap().addr.port())
                    }
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
    fn pick_chooses_every_instance_eventually() {
        let t = table(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let mut seen = [false; 3];
        for _ in 0..1000 {
            seen[t.pick(0).unwrap().addr.port() as usize - 1] = true;
        }
        assert_eq!(seen, [true; 3]);
        assert!(t.pick(7).is_none());
    }
}
