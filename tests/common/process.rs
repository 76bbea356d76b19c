//! Processes the tests start: each in a process group of its own (`ProcessGroup`), so that
//! whatever it starts in turn — a restart's successor, a supervisor's serving processes —
//! is killed with it when the test ends, pass or fail; signals; exit checks from /proc.
//!
//! Not for: what a process says (`gateway::StderrLog`), HTTP.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use super::poll;

/// How long a binary just written may stay busy (ETXTBSY) before spawning it fails the test.
const BUSY_BINARY_LIMIT: Duration = Duration::from_secs(2);

/// A child process leading a process group of its own. Dropping it sends SIGKILL to the whole
/// group — the child and everything it started that kept the group (rgate's successors and
/// serving processes do) — and reaps the child.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub struct ProcessGroup {
    pub child: Child,
}

#[allow(dead_code)] // shared by the test binaries; each uses a part
impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group. A binary this process has just
    /// written may be briefly busy (another test thread forking holds it open for writing:
    /// ETXTBSY); that is retried for a moment.
    pub fn spawn(cmd: &mut Command) -> ProcessGroup {
        cmd.process_group(0);
        let deadline = Instant::now() + BUSY_BINARY_LIMIT;
        loop {
            match cmd.spawn() {
                Err(e)
                    if e.kind() == io::ErrorKind::ExecutableFileBusy
                        && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("start {:?}: {e}", cmd.get_program()),
                Ok(child) => return ProcessGroup { child },
            }
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL to every process of the group, and the leader reaped.
    pub fn kill_all(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) touches no memory of ours. The group id is the leader's pid,
            // which cannot be reused before the leader is reaped below.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the leader to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child_exit(&mut self.child, limit)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// kill(2).
#[allow(dead_code)] // not every test binary uses it
pub fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) touches no memory of ours; the worst outcome is ESRCH.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process has exited (gone, or a zombie waiting to be reaped).
#[allow(dead_code)] // not every test binary uses it
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

/// Waits up to `limit` for `child` to exit.
#[allow(dead_code)] // shared by the test binaries; each uses a part
pub fn wait_child_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll(limit, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".into()),
        Err(e) => Err(e.to_string()),
    })
    .ok()
}

/// The port a process listens on (TCP, IPv4), from /proc: the socket inodes among its file
/// descriptors, looked up in /proc/net/tcp among the sockets in state LISTEN. For a process
/// told to bind port 0 that does not say which port it got.
#[allow(dead_code)] // not every test binary uses it
pub fn listening_port(pid: u32) -> Result<u16, String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())?;
    let inodes: Vec<String> = fds
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let link = link.to_str()?;
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table =
        std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).map_err(|e| e.to_string())?;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
            let port = f[1].rsplit(':').next().unwrap_or("");
            return u16::from_str_radix(port, 16).map_err(|e| e.to_string());
        }
    }
    Err(format!("pid {pid} listens on no TCP port yet"))
}
