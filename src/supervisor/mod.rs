//! The supervisor: a small process that stays for the container's whole life when rgate is
//! PID 1 (or is given `--supervise`), so that a restart never ends the container.
//!
//! ```text
//! rgate --supervise (or PID 1)       holds the listening sockets; no runtime, no Docker client
//!  ├── rgate (serving)              RGATE_SUPERVISOR_PID set; sockets as LISTEN_FDS 3, 4, …
//!  └── rgate (successor / draining) only while a restart overlaps two of them
//! ```
//!
//! * Sockets: bound (or taken from systemd) here, held open until the supervisor exits, and
//!   handed to every serving process with the same handover a host restart uses
//!   (`upgrade::Successor`: LISTEN_FDS, readiness pipe, stderr relayed until ready). So no
//!   accept queue is ever closed while any process serves.
//! * Signals (all blocked, read from a signalfd): SIGHUP starts a successor; once it says
//!   ready the old process gets SIGTERM and drains; a successor that exits, says something
//!   else, or is not ready within `--upgrade-timeout` is killed and the old one keeps
//!   serving. SIGTERM/SIGINT are passed on to the serving process (a successor still
//!   starting is killed); the supervisor exits with the serving process's status once every
//!   child is gone. SIGCHLD reaps every child, orphans included (PID 1's duty; outside PID 1
//!   the supervisor makes itself a child subreaper).
//! * A serving process that dies on its own ends the supervisor with its status (after what
//!   is still draining has finished): the container's restart policy decides what next.
//! * The pid file names the supervisor, written once the first serving process is ready.
//! * Errors: what stops the supervisor from starting is a `startup::StartError` (no
//!   `--port` and no inherited socket: exit 2; sockets or signals cannot be set up: exit 1),
//!   reported as the serving process reports its own. Once running, failures (a successor
//!   that cannot start, a poll error) are logged and the supervisor goes on.
//!
//! The decisions are `machine::Machine` (pure, tested there); this file only turns pipes,
//! signals and waitpid into its events and carries out its actions.

pub(crate) mod machine;

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::cli::Args;
use crate::listener;
use crate::signals::{SignalFd, SignalSet};
use crate::startup::{self, StartError};
use crate::upgrade::{self, Invocation, Readiness, Successor, ENV_SUPERVISOR_PID};
use machine::{Action, ChildStatus, Event, Machine, Pid};

/// The signals the supervisor takes.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGCHLD,
    libc::SIGUSR1,
];
/// How long a child that closed its readiness pipe without a word is given to be reaped,
/// so that the failure can name its exit status.
const CLOSED_PIPE_EXIT_GRACE: Duration = Duration::from_millis(500);
/// Step of that wait.
const REAP_POLL: Duration = Duration::from_millis(10);
/// Whether this process is PID 1 (a container's init).
pub(crate) fn is_pid_1() -> bool {
    std::process::id() == 1
}

/// Runs the supervisor until it is told to stop (or its serving process dies); returns the
/// exit code: the serving process's.
pub(crate) fn run(args: &Args) -> i32 {
    match Supervisor::start(args) {
        Ok(supervisor) => supervisor.run(),
        Err(e) => e.report("supervisor: "),
    }
}

/// A serving process started by the supervisor, with its readiness pipe while it matters.
struct Child {
    successor: Successor,
    /// Whether its readiness pipe is still read (until ready, closed or refused).
    watching: bool,
}

struct Supervisor<'a> {
    args: &'a Args,
    invocation: Invocation,
    listeners: Vec<TcpListener>,
    signals: SignalFd,
    children: Vec<Child>,
}

impl<'a> Supervisor<'a> {
    fn start(args: &'a Args) -> Result<Supervisor<'a>, StartError> {
        // Before any thread starts (the output relays), so every thread inherits the mask.
        let signals = SignalSet::block(&SIGNALS)?.signalfd()?;
        if !is_pid_1() {
            // Orphans of the serving processes come to us, not to the host's init.
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
                log::warn!(
                    "supervisor: cannot become a child subreaper: {}",
                    io::Error::last_os_error()
                );
            }
        }
        let listeners = match upgrade::inherited_listeners()? {
            Some(inherited) => inherited,
            None => {
                let port = args.port.ok_or(StartError::PortMissing)?;
                vec![listener::bind(&args.bind, port)?]
            }
        };
        upgrade::forget_environment();
        for l in &listeners {
            log::info!(
                "supervisor: rgate {} pid {} holds {} for its serving processes",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                l.local_addr()?
            );
        }
        Ok(Supervisor {
            args,
            invocation: Invocation::current()?,
            listeners,
            signals,
            children: Vec::new(),
        })
    }

    fn run(mut self) -> i32 {
        let (mut machine, first) = Machine::new(Duration::from_secs(self.args.upgrade_timeout));
        let mut events = VecDeque::new();
        let mut actions = first;
        // A reaped child, forgotten once the actions its exit decided (its report) are done.
        let mut reaped = None;
        loop {
            for action in actions {
                if let Some(code) = self.perform(action, &mut events) {
                    startup::remove_pid_file(&self.args.pid_file);
                    log::info!("supervisor: exiting with status {code}");
                    return code;
                }
            }
            if let Some(pid) = reaped.take() {
                self.children.retain(|c| c.successor.pid() != pid);
            }
            let event = match events.pop_front() {
                Some(event) => event,
                None => {
                    if let Err(e) = self.wait_for_events(machine.deadline(), &mut events) {
                        log::error!("supervisor: {e}");
                        // Not a busy loop should the error repeat.
                        std::thread::sleep(REAP_POLL);
                    }
                    Event::Tick
                }
            };
            if let Event::Exited { pid, .. } = event {
                reaped = Some(pid);
            }
            actions = machine.handle(event, Instant::now());
        }
    }

    /// Carries out one action; `Some(code)` when the supervisor should exit.
    fn perform(&mut self, action: Action, events: &mut VecDeque<Event>) -> Option<i32> {
        match action {
            Action::Spawn => {
                let env = [(ENV_SUPERVISOR_PID, std::process::id().to_string())];
                match Successor::start(&self.invocation, &self.listeners, &env) {
                    Ok(successor) => {
                        events.push_back(Event::Spawned {
                            pid: successor.pid(),
                        });
                        self.children.push(Child {
                            successor,
                            watching: true,
                        });
                    }
                    Err(reason) => events.push_back(Event::SpawnFailed { reason }),
                }
            }
            Action::Signal { pid, signal } => {
                // The machine signals only children it has not seen reaped: the pid is theirs.
                // SAFETY: kill(2) touches no memory of ours.
                if unsafe { libc::kill(pid as libc::pid_t, signal) } < 0 {
                    log::debug!(
                        "supervisor: kill({pid}, {signal}): {}",
                        io::Error::last_os_error()
                    );
                }
            }
            Action::RestartFailed { pid, reason } => {
                let report = match self.child(pid) {
                    Some(c) => c.successor.failure_report(&reason),
                    None => format!("successor pid {pid}: {reason}"),
                };
                log::error!("supervisor: restart failed, still serving: {report}");
            }
            Action::Log { level, message } => log::log!(level, "supervisor: {message}"),
            Action::WritePidFile => {
                if let Err(e) = startup::write_pid_file(&self.args.pid_file) {
                    log::error!("supervisor: {e}");
                }
            }
            Action::Exit { code } => return Some(code),
        }
        None
    }

    fn child(&self, pid: Pid) -> Option<&Child> {
        self.children.iter().find(|c| c.successor.pid() == pid)
    }

    /// Sleeps until a signal, a readiness pipe or the deadline; queues what happened.
    /// Readiness is read before signals: a successor that said ready is handed over before a
    /// stop signal that came at the same moment is seen.
    fn wait_for_events(
        &mut self,
        deadline: Option<Instant>,
        events: &mut VecDeque<Event>,
    ) -> io::Result<()> {
        let timeout = match deadline {
            // Rounded up, so the tick after the wake-up is past the deadline.
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .saturating_add(1)
                .min(libc::c_int::MAX as u128) as libc::c_int,
            None => -1,
        };
        let mut fds = vec![pollfd(self.signals.as_raw_fd())];
        let watched: Vec<usize> = (0..self.children.len())
            .filter(|&i| self.children[i].watching)
            .collect();
        fds.extend(
            watched
                .iter()
                .map(|&i| pollfd(self.children[i].successor.ready_fd())),
        );
        // SAFETY: `fds` is a valid array of pollfd of the length given.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        for (slot, &i) in watched.iter().enumerate() {
            if fds[slot + 1].revents != 0 {
                self.read_readiness(i, events);
            }
        }
        if fds[0].revents != 0 {
            for signal in self.signals.read_all()? {
                match signal {
                    libc::SIGCHLD => reap_all(events),
                    libc::SIGHUP => events.push_back(Event::Hangup),
                    libc::SIGUSR1 => events.push_back(Event::Reopen),
                    signal => events.push_back(Event::Stop { signal }),
                }
            }
        }
        Ok(())
    }

    fn read_readiness(&mut self, i: usize, events: &mut VecDeque<Event>) {
        let child = &mut self.children[i];
        let pid = child.successor.pid();
        match child.successor.read_readiness() {
            Readiness::Waiting => {}
            Readiness::Ready { announced } => {
                child.watching = false;
                events.push_back(Event::Ready { pid, announced });
            }
            Readiness::Refused { reason } => {
                child.watching = false;
                events.push_back(Event::NotReady { pid, reason });
            }
            Readiness::Closed => {
                child.watching = false;
                // Almost always: it is exiting. Reaped here, the failure names its status.
                match reap_within(pid, CLOSED_PIPE_EXIT_GRACE) {
                    Reaped::Exited(status) => events.push_back(Event::Exited { pid, status }),
                    Reaped::Gone => {}
                    Reaped::Running => events.push_back(Event::NotReady {
                        pid,
                        reason: "closed its readiness pipe before it was ready".into(),
                    }),
                }
            }
        }
    }
}

fn pollfd(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Reaps every child that has exited: serving processes and any orphan inherited.
fn reap_all(events: &mut VecDeque<Event>) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if let Some(status) = decode(status) {
            events.push_back(Event::Exited {
                pid: pid as Pid,
                status,
            });
        }
    }
}

/// What became of one child given a moment to exit.
enum Reaped {
    Exited(ChildStatus),
    Running,
    /// Reaped already (by `reap_all`), so its exit is an event already.
    Gone,
}

fn reap_within(pid: Pid, limit: Duration) -> Reaped {
    let deadline = Instant::now() + limit;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a valid out-pointer; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if rc == pid as libc::pid_t {
            if let Some(status) = decode(status) {
                return Reaped::Exited(status);
            }
        } else if rc < 0 {
            return Reaped::Gone;
        }
        if Instant::now() >= deadline {
            return Reaped::Running;
        }
        std::thread::sleep(REAP_POLL);
    }
}

fn decode(status: libc::c_int) -> Option<ChildStatus> {
    if libc::WIFEXITED(status) {
        Some(ChildStatus::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(ChildStatus::Signal(libc::WTERMSIG(status)))
    } else {
        None
    }
}
