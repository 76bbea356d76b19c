//! The new process's side of a handover: the listening sockets it inherits (from an rgate
//! predecessor, a supervisor, or systemd socket activation), the `ready` line it writes
//! once it has started completely (`ReadyNotifier`), whether a supervisor runs it, and
//! forgetting the handover's environment so that its own successors start clean.

use std::fs::File;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{
    ENV_LISTEN_FDNAMES, ENV_LISTEN_FDS, ENV_LISTEN_PID, ENV_READY_FD, ENV_STDERR_FD,
    ENV_SUPERVISOR_PID, LISTEN_FDS_START,
};

/// Listening sockets passed to this process: by an rgate predecessor, or by systemd socket
/// activation (`LISTEN_FDS`, with `LISTEN_PID` naming this process). `None` when there are
/// none and rgate should bind its own.
pub(crate) fn inherited_listeners() -> io::Result<Option<Vec<TcpListener>>> {
    let Some(count) = std::env::var_os(ENV_LISTEN_FDS) else {
        return Ok(None);
    };
    if let Some(pid) = std::env::var_os(ENV_LISTEN_PID) {
        if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            // Meant for another process (systemd's rule): not ours.
            return Ok(None);
        }
    }
    let count: RawFd = count
        .to_str()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "LISTEN_FDS is not a positive number",
            )
        })?;
    let mut listeners = Vec::with_capacity(count as usize);
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        if !is_listening_socket(fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inherited fd {fd} is not a listening TCP socket"),
            ));
        }
        // SAFETY: the fd was passed to us for this purpose and checked to be a listening
        // socket; from here the listener owns it.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        set_cloexec(fd)?;
        listener.set_nonblocking(true)?;
        listeners.push(listener);
    }
    Ok(Some(listeners))
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the right size; a bad fd just fails.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0 && value == 1
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The successor's end of the handover: told once when this process is ready.
pub(crate) struct ReadyNotifier {
    ready: File,
    real_stderr: OwnedFd,
}

impl ReadyNotifier {
    /// Present when a predecessor started this process (and is waiting to hear from it).
    pub(crate) fn from_env() -> Option<ReadyNotifier> {
        let fd_of = |name: &str| -> Option<RawFd> {
            std::env::var(name).ok()?.parse().ok().filter(|&fd| fd > 2)
        };
        let (ready, stderr) = (fd_of(ENV_READY_FD)?, fd_of(ENV_STDERR_FD)?);
        for fd in [ready, stderr] {
            let _ = set_cloexec(fd);
        }
        // SAFETY: both fds were passed to us by the predecessor for exactly this use, and
        // nothing else in this process refers to them.
        let (ready, real_stderr) =
            unsafe { (File::from_raw_fd(ready), OwnedFd::from_raw_fd(stderr)) };
        Some(ReadyNotifier { ready, real_stderr })
    }

    /// Moves stderr back to the real one and tells the predecessor we are ready.
    pub(crate) fn notify(mut self, announcement: &str) -> io::Result<()> {
        // SAFETY: dup2 between two fds we own; stderr is replaced atomically.
        if unsafe { libc::dup2(self.real_stderr.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(self.real_stderr);
        self.ready
            .write_all(format!("ready {announcement}\n").as_bytes())
    }
}

/// The supervisor's pid when this process was started by one (`--supervise`, or PID 1).
pub(crate) fn supervisor_from_env() -> Option<u32> {
    std::env::var(ENV_SUPERVISOR_PID).ok()?.parse().ok()
}

/// Clears the handover variables so they never leak into anything this process starts.
pub(crate) fn forget_environment() {
    for name in [
        ENV_SUPERVISOR_PID,
        ENV_LISTEN_FDS,
        ENV_LISTEN_PID,
        ENV_LISTEN_FDNAMES,
        ENV_READY_FD,
        ENV_STDERR_FD,
    ] {
        // Called at start-up, before any other thread exists.
        std::env::remove_var(name);
    }
}
