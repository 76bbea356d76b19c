//! How many client connections rgate takes, derived from the open-files limit.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard one (the soft default of 1024
//! would cap rgate at about 500 proxied requests at once: each needs a client and a backend
//! socket). The connection caps follow from it: every client connection may need a backend
//! socket too, and `RESERVED_DESCRIPTORS` are kept for the rest (listeners, the stats
//! database, the log, Docker's socket, a restart's pipes). `limits:` in the config may set
//! them lower (or higher, at the operator's word).
//!
//! * `max_connections`: the whole process; each core takes its share. A core at its share
//!   first closes its idle keep-alive connections, oldest first, then stops accepting until
//!   one closes (the kernel's backlog holds new clients meanwhile): never an accept loop
//!   spinning on `EMFILE`.
//! * `max_connections_per_ip`: per core, so counting it takes no lock and shares nothing;
//!   a client address can hold at most `cores ×` this many. Over it, a new connection is
//!   answered 503 `too_many_connections` with `Retry-After` and closed.

use std::io;

/// Descriptors kept for everything that is not a client or backend connection.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 64;

/// The open-files limit as rgate found and left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit at start.
    pub before: u64,
    /// The soft limit now (the hard one, unless raising it failed).
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one.
pub fn raise_nofile() -> io::Result<Nofile> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(Nofile {
        before,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The open-files limit they come from.
    pub nofile: u64,
    pub max_connections: u64,
    /// `max_connections` shared out over the cores (at least 1 each).
    pub per_core: u64,
    /// Per client address, on each core; `None`: no cap but the others.
    pub per_ip: Option<u64>,
}

impl ConnectionLimits {
    /// The caps for `cores` cores under `nofile`, unless `configured` says otherwise.
    pub fn derive(
        nofile: u64,
        cores: usize,
        max_connections: Option<u64>,
        per_ip: Option<u64>,
    ) -> ConnectionLimits {
        let derived = (nofile.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(1);
        let max_connections = max_connections.unwrap_or(derived);
        let cores = cores.max(1) as u64;
        ConnectionLimits {
            nofile,
            max_connections,
            per_core: max_connections.div_ceil(cores).max(1),
            per_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_a_backend_socket_per_connection_and_the_reserve() {
        let l = ConnectionLimits::derive(1024, 2, None, None);
        assert_eq!(l.max_connections, (1024 - RESERVED_DESCRIPTORS) / 2);
        assert_eq!(l.per_core, 240);
        assert_eq!(l.per_ip, None);
        let l = ConnectionLimits::derive(10, 4, None, Some(3));
        assert_eq!((l.max_connections, l.per_core, l.per_ip), (1, 1, Some(3)));
        let l = ConnectionLimits::derive(1 << 20, 3, Some(1000), None);
        assert_eq!((l.max_connections, l.per_core), (1000, 334));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let n = raise_nofile().unwrap();
        assert_eq!(n.soft, n.hard);
        assert!(n.before <= n.soft);
    }
}
