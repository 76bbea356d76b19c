//! The supervisor's decisions, as a pure state machine: events in (a child started, said
//! ready, exited; a signal; time passed), actions out (start a child, signal one, report,
//! write the pid file, exit). No process, pipe or clock is touched here, so every path —
//! including successors that crash, hang or give up before they are ready — is tested
//! with fake pids and instants (tests at the bottom).
//!
//! Phases: `Starting` (the first serving process is starting) → `Serving` (one process
//! serves) ⇄ `Upgrading` (a successor starts on the same sockets while the old one serves)
//! → `Stopping` (told to stop, or the serving process died: wait for every child) →
//! `Exited`. Old serving processes told to drain, and successors that were killed, are kept
//! in `leaving` (not a phase: a restart may begin while the previous old process still
//! drains, as on a host) until they are reaped.
//!
//! Not for: spawning, reaping or reading pipes (`supervisor::run` does that). (Just over
//! 500 lines: the events and the phases meet in one `handle`, which reads better whole than split.)

use std::fmt;
use std::time::{Duration, Instant};

/// A child's pid.
pub(crate) type Pid = u32;

/// Exit code when the first serving process cannot be started or will not say ready.
const EXIT_START: i32 = 1;

/// How a child ended, as waitpid(2) tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildStatus {
    Code(i32),
    Signal(i32),
}

impl ChildStatus {
    /// The exit code the supervisor passes on: the child's, or 128 + signal as shells do.
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            ChildStatus::Code(c) => c,
            ChildStatus::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildStatus::Code(c) => write!(f, "exit status: {c}"),
            ChildStatus::Signal(s) => write!(f, "signal: {s}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The serving process asked for by `Action::Spawn` started.
    Spawned { pid: Pid },
    /// It could not be started.
    SpawnFailed { reason: String },
    /// A child said `ready` on its readiness pipe.
    Ready { pid: Pid, announced: String },
    /// A child will not become ready (closed its pipe but lives, or said something else).
    NotReady { pid: Pid, reason: String },
    /// A child (or an orphan the supervisor inherited) was reaped.
    Exited { pid: Pid, status: ChildStatus },
    /// SIGHUP: restart.
    Hangup,
    /// SIGTERM or SIGINT: stop, passing the signal on.
    Stop { signal: i32 },
    /// SIGUSR1: reopen the access log; passed on to every child, whatever the phase.
    Reopen,
    /// Time passed (deadlines are checked on every event; this one carries nothing else).
    Tick,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a serving process on the sockets; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// Send `signal` to `pid`, a child not yet reaped.
    Signal {
        pid: Pid,
        signal: i32,
    },
    /// A restart failed and the old process keeps serving: log `reason` with what the
    /// successor `pid` printed.
    RestartFailed {
        pid: Pid,
        reason: String,
    },
    Log {
        level: log::Level,
        message: String,
    },
    /// The first serving process is ready: the pid file names the supervisor from now on.
    WritePidFile,
    /// Every child is gone: exit with `code`.
    Exit {
        code: i32,
    },
}

/// Where the supervisor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The first serving process is starting (`None` until `Spawned`).
    Starting {
        pid: Option<Pid>,
    },
    Serving {
        pid: Pid,
    },
    /// `serving` serves; `successor` (`None` until `Spawned`) starts on the same sockets
    /// and is killed if it is not ready by `deadline`.
    Upgrading {
        serving: Pid,
        successor: Option<Pid>,
        deadline: Instant,
    },
    /// Waiting for `waiting` to exit, then exiting as `exit` says.
    Stopping {
        waiting: Vec<Pid>,
        exit: ExitWith,
    },
    Exited {
        code: i32,
    },
}

/// The code the supervisor will exit with once every child is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitWith {
    /// The status of this child, once it is reaped.
    StatusOf(Pid),
    Code(i32),
}

/// Why a child that no longer serves is still waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// An old serving process, told to drain after its successor said ready.
    Draining,
    /// A successor killed because it failed to become ready.
    Killed,
}

/// The supervisor's state: its phase and the children on their way out.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    leaving: Vec<(Pid, Leaving)>,
    upgrade_timeout: Duration,
}

impl Machine {
    /// A supervisor about to start its first serving process (the returned action).
    pub(crate) fn new(upgrade_timeout: Duration) -> (Machine, Vec<Action>) {
        let machine = Machine {
            phase: Phase::Starting { pid: None },
            leaving: Vec::new(),
            upgrade_timeout,
        };
        (machine, vec![Action::Spawn])
    }

    /// Where it is (the tests observe the machine through this and `leaving`).
    #[cfg(test)]
    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Children that no longer serve but have not been reaped yet.
    #[cfg(test)]
    pub(crate) fn leaving(&self) -> &[(Pid, Leaving)] {
        &self.leaving
    }

    /// When the machine next needs a `Tick`, if it waits for time at all.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Upgrading {
                successor: Some(_),
                deadline,
                ..
            } => Some(deadline),
            _ => None,
        }
    }

    /// Takes one event at time `now`; returns what to do, in order.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Event::Reopen = event {
            let children = match &self.phase {
                Phase::Starting { pid } => pid.iter().copied().collect(),
                Phase::Serving { pid } => vec![*pid],
                Phase::Upgrading {
                    serving, successor, ..
                } => std::iter::once(*serving).chain(*successor).collect(),
                Phase::Stopping { waiting, .. } => waiting.clone(),
                Phase::Exited { .. } => Vec::new(),
            };
            return children
                .into_iter()
                .map(|pid| Action::Signal {
                    pid,
                    signal: libc::SIGUSR1,
                })
                .collect();
        }
        if let Event::Exited { pid, status } = &event {
            if self.forget_leaving(*pid, *status, &mut out) {
                self.finish_if_stopped(&mut out);
                return out;
            }
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Exited { code: 0 });
        self.phase = match phase {
            Phase::Starting { pid } => self.starting(pid, event, &mut out),
            Phase::Serving { pid } => self.serving(pid, event, now, &mut out),
            Phase::Upgrading {
                serving,
                successor,
                deadline,
            } => self.upgrading(serving, successor, deadline, event, now, &mut out),
            Phase::Stopping { waiting, exit } => self.stopping(waiting, exit, event, &mut out),
            exited @ Phase::Exited { .. } => exited,
        };
        self.finish_if_stopped(&mut out);
        out
    }

    fn starting(&mut self, pid: Option<Pid>, event: Event, out: &mut Vec<Action>) -> Phase {
        match (pid, event) {
            (None, Event::Spawned { pid }) => {
                log(
                    out,
                    log::Level::Info,
                    format!("serving process pid {pid} started"),
                );
                Phase::Starting { pid: Some(pid) }
            }
            (None, Event::SpawnFailed { reason }) => {
                log(out, log::Level::Error, reason);
                self.stop_all(Vec::new(), ExitWith::Code(EXIT_START))
            }
            (Some(first), Event::Ready { pid, announced }) if pid == first => {
                log(
                    out,
                    log::Level::Info,
                    format!("serving process pid {pid} is ready ({announced})"),
                );
                out.push(Action::WritePidFile);
                Phase::Serving { pid }
            }
            (Some(first), Event::NotReady { pid, reason }) if pid == first => {
                log(
                    out,
                    log::Level::Error,
                    format!("serving process pid {pid} {reason}; killed"),
                );
                kill(out, pid);
                self.stop_all(vec![pid], ExitWith::Code(EXIT_START))
            }
            (Some(first), Event::Exited { pid, status }) if pid == first => {
                log(
                    out,
                    log::Level::Error,
                    format!("serving process pid {pid} exited before it was ready ({status})"),
                );
                self.stop_all(Vec::new(), ExitWith::Code(status.exit_code()))
            }
            (Some(first), Event::Stop { signal }) => {
                log(
                    out,
                    log::Level::Info,
                    format!("signal {signal}: passed on to pid {first}; stopping"),
                );
                out.push(Action::Signal { pid: first, signal });
                self.stop_all(vec![first], ExitWith::StatusOf(first))
            }
            (pid, Event::Hangup) => {
                log(
                    out,
                    log::Level::Warn,
                    "SIGHUP: nothing serves yet; ignored".into(),
                );
                Phase::Starting { pid }
            }
            (pid, other) => {
                ignore(out, &other);
                Phase::Starting { pid }
            }
        }
    }

    fn serving(
        &mut self,
        serving: Pid,
        event: Event,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Phase {
        match event {
            Event::Hangup => {
                log(
                    out,
                    log::Level::Info,
                    format!("SIGHUP: starting a successor to pid {serving}"),
                );
                out.push(Action::Spawn);
                Phase::Upgrading {
                    serving,
                    successor: None,
                    // Counted again from when the successor has started.
                    deadline: now + self.upgrade_timeout,
                }
            }
            Event::Stop { signal } => {
                log(
                    out,
                    log::Level::Info,
                    format!("signal {signal}: passed on to pid {serving}; stopping"),
                );
                out.push(Action::Signal {
                    pid: serving,
                    signal,
                });
                self.stop_all(vec![serving], ExitWith::StatusOf(serving))
            }
            Event::Exited { pid, status } if pid == serving => self.died(pid, status, out),
            other => {
                ignore(out, &other);
                Phase::Serving { pid: serving }
            }
        }
    }

    fn upgrading(
        &mut self,
        serving: Pid,
        successor: Option<Pid>,
        deadline: Instant,
        event: Event,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Phase {
        let Some(next) = successor else {
            // Waiting for the answer to `Spawn` (it comes before any other event).
            return match event {
                Event::Spawned { pid } => {
                    log(
                        out,
                        log::Level::Info,
                        format!("successor pid {pid} started"),
                    );
                    Phase::Upgrading {
                        serving,
                        successor: Some(pid),
                        deadline: now + self.upgrade_timeout,
                    }
                }
                Event::SpawnFailed { reason } => {
                    log(
                        out,
                        log::Level::Error,
                        format!("restart failed, still serving: {reason}"),
                    );
                    Phase::Serving { pid: serving }
                }
                other => {
                    ignore(out, &other);
                    Phase::Upgrading {
                        serving,
                        successor,
                        deadline,
                    }
                }
            };
        };
        match event {
            Event::Ready { pid, announced } if pid == next => {
                log(
                    out,
                    log::Level::Info,
                    format!(
                        "restart: successor pid {pid} is ready ({announced}); pid {serving} drains"
                    ),
                );
                out.push(Action::Signal {
                    pid: serving,
                    signal: libc::SIGTERM,
                });
                self.leaving.push((serving, Leaving::Draining));
                Phase::Serving { pid: next }
            }
            Event::NotReady { pid, reason } if pid == next => {
                self.reject(serving, next, format!("{reason}; killed"), out)
            }
            Event::Exited { pid, status } if pid == next => {
                out.push(Action::RestartFailed {
                    pid,
                    reason: format!("exited before it was ready ({status})"),
                });
                Phase::Serving { pid: serving }
            }
            Event::Exited { pid, status } if pid == serving => {
                kill(out, next);
                self.leaving.push((next, Leaving::Killed));
                self.died(pid, status, out)
            }
            Event::Hangup => {
                log(
                    out,
                    log::Level::Warn,
                    "SIGHUP: a restart is already under way; ignored".into(),
                );
                Phase::Upgrading {
                    serving,
                    successor,
                    deadline,
                }
            }
            Event::Stop { signal } => {
                log(
                    out,
                    log::Level::Info,
                    format!(
                        "signal {signal}: restart abandoned (successor pid {next} killed); \
                         passed on to pid {serving}; stopping"
                    ),
                );
                kill(out, next);
                out.push(Action::Signal {
                    pid: serving,
                    signal,
                });
                self.stop_all(vec![serving, next], ExitWith::StatusOf(serving))
            }
            other if now >= deadline => {
                ignore(out, &other);
                let reason = crate::upgrade::not_ready_in_time(self.upgrade_timeout);
                self.reject(serving, next, reason, out)
            }
            other => {
                ignore(out, &other);
                Phase::Upgrading {
                    serving,
                    successor,
                    deadline,
                }
            }
        }
    }

    fn stopping(
        &mut self,
        mut waiting: Vec<Pid>,
        mut exit: ExitWith,
        event: Event,
        out: &mut Vec<Action>,
    ) -> Phase {
        match event {
            Event::Exited { pid, status } if waiting.contains(&pid) => {
                waiting.retain(|&p| p != pid);
                if exit == ExitWith::StatusOf(pid) {
                    exit = ExitWith::Code(status.exit_code());
                }
                log(
                    out,
                    log::Level::Info,
                    format!("pid {pid} exited ({status})"),
                );
            }
            Event::Hangup | Event::Stop { .. } => log(
                out,
                log::Level::Info,
                format!("{event:?}: already stopping; waiting for {waiting:?}"),
            ),
            other => ignore(out, &other),
        }
        Phase::Stopping { waiting, exit }
    }

    /// The serving process died on its own: the supervisor stops (once what is still
    /// draining has finished) and exits with its status, so that the container's restart
    /// policy, not a hidden loop in here, decides what happens next.
    fn died(&mut self, pid: Pid, status: ChildStatus, out: &mut Vec<Action>) -> Phase {
        log(
            out,
            log::Level::Error,
            format!("serving process pid {pid} exited unexpectedly ({status}); stopping"),
        );
        self.stop_all(Vec::new(), ExitWith::Code(status.exit_code()))
    }

    /// Kills a successor that will not be ready; the old process keeps serving.
    fn reject(
        &mut self,
        serving: Pid,
        successor: Pid,
        reason: String,
        out: &mut Vec<Action>,
    ) -> Phase {
        kill(out, successor);
        out.push(Action::RestartFailed {
            pid: successor,
            reason,
        });
        self.leaving.push((successor, Leaving::Killed));
        Phase::Serving { pid: serving }
    }

    /// Stopping: waits for `waiting` and for every child still leaving.
    fn stop_all(&mut self, mut waiting: Vec<Pid>, exit: ExitWith) -> Phase {
        waiting.extend(self.leaving.drain(..).map(|(pid, _)| pid));
        Phase::Stopping { waiting, exit }
    }

    /// Whether `pid` was leaving (now forgotten).
    fn forget_leaving(&mut self, pid: Pid, status: ChildStatus, out: &mut Vec<Action>) -> bool {
        let Some(at) = self.leaving.iter().position(|&(p, _)| p == pid) else {
            return false;
        };
        let (_, why) = self.leaving.remove(at);
        let message = match why {
            Leaving::Draining => format!("pid {pid} drained and exited ({status})"),
            Leaving::Killed => format!("failed successor pid {pid} reaped ({status})"),
        };
        let level = match (why, status) {
            (Leaving::Draining, s) if s != ChildStatus::Code(0) => log::Level::Warn,
            _ => log::Level::Info,
        };
        log(out, level, message);
        true
    }

    fn finish_if_stopped(&mut self, out: &mut Vec<Action>) {
        if let Phase::Stopping { waiting, exit } = &self.phase {
            if waiting.is_empty() {
                let code = match *exit {
                    ExitWith::Code(c) => c,
                    // Reaped without being seen (cannot happen): a start failure.
                    ExitWith::StatusOf(_) => EXIT_START,
                };
                out.push(Action::Exit { code });
                self.phase = Phase::Exited { code };
            }
        }
    }
}

fn log(out: &mut Vec<Action>, level: log::Level, message: String) {
    out.push(Action::Log { level, message });
}

fn kill(out: &mut Vec<Action>, pid: Pid) {
    out.push(Action::Signal {
        pid,
        signal: libc::SIGKILL,
    });
}

/// Events with nothing to do in this phase: an orphan reaped (PID 1 inherits them), a
/// late word from a child already given up on, a tick.
fn ignore(out: &mut Vec<Action>, event: &Event) {
    match event {
        Event::Tick => {}
        Event::Exited { pid, status } => log(
            out,
            log::Level::Debug,
            format!("reaped pid {pid} ({status}), not a serving process"),
        ),
        other => log(out, log::Level::Debug, format!("ignored: {other:?}")),
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
