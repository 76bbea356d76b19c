//! The backend table: which live instances each configured backend has right now, and how
//! the control plane hands new versions of it to the cores.
//!
//! The table is an immutable value. The control plane (static config, Docker discovery)
//! builds a new one and calls `TablePublisher::publish`; every core owns a `TableReader`
//! fed by a channel of its own, and picks the newest table up between requests. A request
//! in flight keeps the `Rc` it started with. Each core receives its own copy, so no
//! reference count or cache line is shared between cores on the request path.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Discovery};

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

/// The control plane's end: publishes new tables to every core.
pub struct TablePublisher {
    senders: Vec<mpsc::Sender<BackendTable>>,
    latest: Mutex<Arc<BackendTable>>,
}

impl TablePublisher {
    /// A publisher with one reader per core, all starting at `initial`.
    pub fn new(initial: BackendTable, cores: usize) -> (TablePublisher, Vec<TableFeed>) {
        let mut senders = Vec::with_capacity(cores);
        let mut readers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            readers.push(TableFeed {
                rx,
                initial: initial.clone(),
            });
        }
        let publisher = TablePublisher {
            senders,
            latest: Mutex::new(Arc::new(initial)),
        };
        (publisher, readers)
    }

    /// Publishes `table` (its version is set here, one above the last) to every core.
    /// Returns false, publishing nothing, when its instances are those already published.
    pub fn publish(&self, mut table: BackendTable) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.backends == table.backends {
            return false;
        }
        table.version = latest.version + 1;
        for tx in &self.senders {
            // A core that has exited no longer needs tables.
            let _ = tx.send(table.clone());
        }
        *latest = Arc::new(table);
        true
    }

    /// The last published table (cores use their reader).
    #[cfg(test)]
    fn latest(&self) -> Arc<BackendTable> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A core's end of the channel, before its thread starts (it is `Send`; the reader is not).
pub struct TableFeed {
    rx: mpsc::Receiver<BackendTable>,
    initial: BackendTable,
}

impl TableFeed {
    /// The reader, made inside the core's thread.
    pub fn into_reader(self) -> TableReader {
        TableReader {
            rx: self.rx,
            current: Rc::new(self.initial),
        }
    }
}

/// A core's end: the newest table this core has seen.
pub struct TableReader {
    rx: mpsc::Receiver<BackendTable>,
    current: Rc<BackendTable>,
}

impl TableReader {
    /// The newest table; cheap when nothing changed (one empty-channel check).
    pub fn current(&mut self) -> Rc<BackendTable> {
        while let Ok(table) = self.rx.try_recv() {
            self.current = Rc::new(table);
        }
        self.current.clone()
    }
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
    fn readers_see_published_tables_in_order() {
        let (publisher, feeds) = TablePublisher::new(table(&[]), 2);
        let mut readers: Vec<TableReader> = feeds.into_iter().map(TableFeed::into_reader).collect();
        assert!(readers[0].current().pick(0).is_none());
        publisher.publish(table(&["127.0.0.1:1"]));
        publisher.publish(table(&["127.0.0.1:2"]));
        for r in &mut readers {
            let t = r.current();
            assert_eq!(t.version, 2);
            assert_eq!(t.pick(0).unwrap().addr.port(), 2);
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
