//! Signals, taken synchronously: blocked in every thread (a `SignalSet` is made before any
//! thread starts, so every thread inherits the mask) and read where the control plane waits,
//! so no signal handler ever runs, least of all inside a core.
//!
//! What each signal means is decided by whoever holds the set:
//! * the serving process (`lifecycle`): SIGTERM/SIGINT drain and exit; SIGHUP starts a
//!   successor (`upgrade`) — which is also how a changed configuration is reloaded, since the
//!   successor reads the config file afresh — or, when supervised, is passed to the supervisor;
//! * a restart under way (`upgrade::start_successor`): SIGHUP is ignored, SIGTERM/SIGINT abort;
//! * the supervisor: reads its set through a signalfd, with SIGCHLD, beside its children's pipes.
//!
//! Not for: deciding anything (the holders above do).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Signals read from a signalfd in one read.
const SIGNALS_PER_READ: usize = 8;

/// A set of signals blocked in this thread (and inherited by threads started after).
pub(crate) struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    pub(crate) fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it; the pointers
        // are to locals that live across the calls.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(SignalSet { set })
        }
    }

    /// A non-blocking signalfd(2) that reads these (blocked) signals, to poll(2) with other fds.
    pub(crate) fn signalfd(&self) -> io::Result<SignalFd> {
        // SAFETY: `self.set` is an initialised sigset; -1 asks for a new fd.
        let fd = unsafe { libc::signalfd(-1, &self.set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(SignalFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Waits up to `timeout` for one of the signals; `None` when none came.
    pub(crate) fn wait(&self, timeout: Duration) -> io::Result<Option<libc::c_int>> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `self.set` is an initialised sigset; `ts` lives across the call; a null
        // siginfo pointer is allowed.
        let rc = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        if rc >= 0 {
            return Ok(Some(rc));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        }
    }
}

/// A non-blocking signalfd: poll its fd, then `read_all`.
pub(crate) struct SignalFd(OwnedFd);

impl SignalFd {
    /// Every signal the signalfd holds now (empty when none).
    pub(crate) fn read_all(&self) -> io::Result<Vec<libc::c_int>> {
        const INFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut file = File::from(self.0.try_clone()?);
        let mut buf = [0u8; INFO * SIGNALS_PER_READ];
        let mut signals = Vec::new();
        loop {
            match file.read(&mut buf) {
                Ok(n) if n >= INFO => {
                    for info in buf[..n].chunks_exact(INFO) {
                        // ssi_signo is the first field: a u32 in native byte order.
                        let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                        signals.push(signo as libc::c_int);
                    }
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(signals)
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
