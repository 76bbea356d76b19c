//! `--watch-config`: the serving process reads its config file once a second and, when the
//! text changed and is valid (what `--check` says), restarts exactly as SIGHUP does (the
//! successor reads the file afresh; zero downtime). A change that is not valid is logged
//! once, with the reason, and the running process keeps serving as it was. Off by default.
//!
//! Polling rather than inotify: one small read a second costs nothing, sees a file replaced
//! by rename (how editors and `kubectl`/`docker config` write) as well as one written in
//! place, and needs no descriptor per watched directory.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use crate::config::Config;

/// Watches one config file.
pub(crate) struct ConfigWatch {
    path: PathBuf,
    /// The text the running process was started with (or last refused), hashed.
    seen: Option<u64>,
}

impl ConfigWatch {
    /// Starts from the file as it is now (what this process loaded).
    pub(crate) fn new(path: PathBuf) -> ConfigWatch {
        let seen = fingerprint(&path);
        ConfigWatch { path, seen }
    }

    /// Whether the file changed since the last look into a valid config: time to restart.
    pub(crate) fn poll(&mut self) -> bool {
        let now = fingerprint(&self.path);
        if now.is_none() || now == self.seen {
            // Missing (being replaced) or unchanged: look again next time.
            return false;
        }
        self.seen = now;
        match Config::load(&self.path) {
            Ok(_) => {
                log::info!(
                    "--watch-config: {} changed and is valid; restarting",
                    self.path.display()
                );
                true
            }
            Err(e) => {
                log::error!("--watch-config: the change is not used, still serving: {e}");
                false
            }
        }
    }
}

fn fingerprint(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
}
