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
//! Not for: spawning, reaping or reading pipes (`supervisor::run` does that).

use std::fmt;
use std::time::{Duration, Instant};

/// A child's pid.
pub type Pid = u32;

/// Exit code when the first serving process cannot be started or will not say ready.
const EXIT_START: i32 = 1;

/// How a child ended, as waitpid(2) tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Code(i32),
    Signal(i32),
}

impl ChildStatus {
    /// The exit code the supervisor passes on: the child's, or 128 + signal as shells do.
    pub fn exit_code(self) -> i32 {
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
pub enum Event {
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
    /// Time passed (deadlines are checked on every event; this one carries nothing else).
    Tick,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
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
pub enum Phase {
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
pub enum ExitWith {
    /// The status of this child, once it is reaped.
    StatusOf(Pid),
    Code(i32),
}

/// Why a child that no longer serves is still waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// An old serving process, told to drain after its successor said ready.
    Draining,
    /// A successor killed because it failed to become ready.
    Killed,
}

/// The supervisor's state: its phase and the children on their way out.
#[derive(Debug)]
pub struct Machine {
    phase: Phase,
    leaving: Vec<(Pid, Leaving)>,
    upgrade_timeout: Duration,
}

impl Machine {
    /// A supervisor about to start its first serving process (the returned action).
    pub fn new(upgrade_timeout: Duration) -> (Machine, Vec<Action>) {
        let machine = Machine {
            phase: Phase::Starting { pid: None },
            leaving: Vec::new(),
            upgrade_timeout,
        };
        (machine, vec![Action::Spawn])
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Children that no longer serve but have not been reaped yet.
    pub fn leaving(&self) -> &[(Pid, Leaving)] {
        &self.leaving
    }

    /// When the machine next needs a `Tick`, if it waits for time at all.
    pub fn deadline(&self) -> Option<Instant> {
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
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
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
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);
    const FIRST: Pid = 100;
    const NEXT: Pid = 200;

    /// A machine driven with fake pids and a fake clock; keeps the actions minus the logs.
    struct Fake {
        m: Machine,
        now: Instant,
        logs: Vec<String>,
    }

    impl Fake {
        fn new() -> (Fake, Vec<Action>) {
            let (m, first) = Machine::new(TIMEOUT);
            let fake = Fake {
                m,
                now: Instant::now(),
                logs: Vec::new(),
            };
            (fake, first)
        }

        /// A machine whose first process `FIRST` serves.
        fn serving() -> Fake {
            let (mut f, first) = Fake::new();
            assert_eq!(first, vec![Action::Spawn]);
            assert_eq!(f.on(Event::Spawned { pid: FIRST }), vec![]);
            assert_eq!(f.on(ready(FIRST)), vec![Action::WritePidFile]);
            assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
            f
        }

        /// `FIRST` serves and `NEXT` is starting after a SIGHUP.
        fn upgrading() -> Fake {
            let mut f = Fake::serving();
            assert_eq!(f.on(Event::Hangup), vec![Action::Spawn]);
            assert_eq!(f.on(Event::Spawned { pid: NEXT }), vec![]);
            assert_eq!(f.m.deadline(), Some(f.now + TIMEOUT));
            f
        }

        fn on(&mut self, event: Event) -> Vec<Action> {
            let mut out = Vec::new();
            for action in self.m.handle(event, self.now) {
                match action {
                    Action::Log { message, .. } => self.logs.push(message),
                    other => out.push(other),
                }
            }
            out
        }

        fn logged(&self, part: &str) -> bool {
            self.logs.iter().any(|l| l.contains(part))
        }
    }

    fn ready(pid: Pid) -> Event {
        Event::Ready {
            pid,
            announced: format!("rgate test pid {pid}"),
        }
    }

    fn exited(pid: Pid, code: i32) -> Event {
        Event::Exited {
            pid,
            status: ChildStatus::Code(code),
        }
    }

    fn signal(pid: Pid, signal: i32) -> Action {
        Action::Signal { pid, signal }
    }

    fn restart_failed(actions: &[Action], pid: Pid) -> String {
        match actions {
            [.., Action::RestartFailed { pid: p, reason }] if *p == pid => reason.clone(),
            other => panic!("no restart failure for {pid} in {other:?}"),
        }
    }

    #[test]
    fn the_first_process_serves_once_ready_and_the_pid_file_is_written_then() {
        let (mut f, first) = Fake::new();
        assert_eq!(first, vec![Action::Spawn]);
        assert_eq!(f.on(Event::Spawned { pid: FIRST }), vec![]);
        assert_eq!(f.m.phase(), &Phase::Starting { pid: Some(FIRST) });
        assert_eq!(f.m.deadline(), None, "no deadline on the first start");
        assert_eq!(f.on(Event::Hangup), vec![], "nothing to restart yet");
        assert!(f.logged("nothing serves yet"));
        assert_eq!(f.on(ready(FIRST)), vec![Action::WritePidFile]);
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
    }

    #[test]
    fn a_first_process_that_exits_before_ready_ends_the_supervisor_with_its_status() {
        let (mut f, _) = Fake::new();
        f.on(Event::Spawned { pid: FIRST });
        // A bad config: rgate exits 2, and so does the container.
        assert_eq!(f.on(exited(FIRST, 2)), vec![Action::Exit { code: 2 }]);
        assert_eq!(f.m.phase(), &Phase::Exited { code: 2 });
    }

    #[test]
    fn a_first_process_that_cannot_be_started_exits_1() {
        let (mut f, _) = Fake::new();
        let out = f.on(Event::SpawnFailed {
            reason: "cannot start /rgate: ENOENT".into(),
        });
        assert_eq!(out, vec![Action::Exit { code: EXIT_START }]);
        assert!(f.logged("ENOENT"));
    }

    #[test]
    fn a_first_process_that_will_not_say_ready_is_killed_and_reaped_before_exit_1() {
        let (mut f, _) = Fake::new();
        f.on(Event::Spawned { pid: FIRST });
        let out = f.on(Event::NotReady {
            pid: FIRST,
            reason: "said \"hello\" instead of ready".into(),
        });
        assert_eq!(out, vec![signal(FIRST, libc::SIGKILL)]);
        let out = f.on(Event::Exited {
            pid: FIRST,
            status: ChildStatus::Signal(libc::SIGKILL),
        });
        assert_eq!(out, vec![Action::Exit { code: EXIT_START }]);
    }

    #[test]
    fn a_stop_while_starting_is_passed_on_and_the_exit_is_the_childs() {
        let (mut f, _) = Fake::new();
        f.on(Event::Spawned { pid: FIRST });
        let out = f.on(Event::Stop {
            signal: libc::SIGTERM,
        });
        assert_eq!(out, vec![signal(FIRST, libc::SIGTERM)]);
        assert_eq!(f.on(exited(FIRST, 0)), vec![Action::Exit { code: 0 }]);
    }

    #[test]
    fn a_restart_hands_over_once_the_successor_is_ready_and_the_old_one_drains() {
        let mut f = Fake::upgrading();
        assert_eq!(
            f.m.phase(),
            &Phase::Upgrading {
                serving: FIRST,
                successor: Some(NEXT),
                deadline: f.now + TIMEOUT
            }
        );
        // Nothing happens to the old one before the successor is ready.
        f.now += Duration::from_secs(5);
        assert_eq!(f.on(Event::Tick), vec![]);
        assert_eq!(f.on(ready(NEXT)), vec![signal(FIRST, libc::SIGTERM)]);
        assert_eq!(f.m.phase(), &Phase::Serving { pid: NEXT });
        assert_eq!(f.m.leaving(), &[(FIRST, Leaving::Draining)]);
        assert_eq!(f.m.deadline(), None);
        // The drained process is reaped without changing anything.
        assert_eq!(f.on(exited(FIRST, 0)), vec![]);
        assert!(f.logged(&format!("pid {FIRST} drained and exited")));
        assert_eq!(f.m.leaving(), &[]);
        assert_eq!(f.m.phase(), &Phase::Serving { pid: NEXT });
    }

    #[test]
    fn ten_restarts_in_a_row_while_old_processes_still_drain() {
        let mut f = Fake::serving();
        let mut serving = FIRST;
        for n in 1..=10 {
            let next = FIRST + n;
            assert_eq!(f.on(Event::Hangup), vec![Action::Spawn]);
            assert_eq!(f.on(Event::Spawned { pid: next }), vec![]);
            assert_eq!(f.on(ready(next)), vec![signal(serving, libc::SIGTERM)]);
            serving = next;
        }
        assert_eq!(f.m.leaving().len(), 10, "all ten old ones still drain");
        for old in FIRST..FIRST + 10 {
            assert_eq!(f.on(exited(old, 0)), vec![]);
        }
        assert_eq!(f.m.leaving(), &[]);
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST + 10 });
    }

    #[test]
    fn a_successor_that_crashes_before_ready_is_reported_and_the_old_one_keeps_serving() {
        let mut f = Fake::upgrading();
        let out = f.on(Event::Exited {
            pid: NEXT,
            status: ChildStatus::Signal(libc::SIGSEGV),
        });
        let reason = restart_failed(&out, NEXT);
        assert_eq!(out.len(), 1, "no signal to anyone: {out:?}");
        assert!(
            reason.contains("exited before it was ready (signal: 11)"),
            "{reason}"
        );
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
        assert_eq!(f.m.leaving(), &[], "it is reaped already");
        // And the next SIGHUP tries again.
        assert_eq!(f.on(Event::Hangup), vec![Action::Spawn]);
    }

    #[test]
    fn a_successor_with_a_bad_config_exits_2_and_the_old_one_keeps_serving() {
        let mut f = Fake::upgrading();
        let out = f.on(exited(NEXT, 2));
        assert!(restart_failed(&out, NEXT).contains("(exit status: 2)"));
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
    }

    #[test]
    fn a_successor_that_hangs_is_killed_at_the_deadline() {
        let mut f = Fake::upgrading();
        f.now += TIMEOUT - Duration::from_millis(1);
        assert_eq!(f.on(Event::Tick), vec![], "not yet");
        f.now += Duration::from_millis(1);
        let out = f.on(Event::Tick);
        assert_eq!(out[0], signal(NEXT, libc::SIGKILL));
        assert!(restart_failed(&out, NEXT).contains("not ready within 30 s"));
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
        assert_eq!(f.m.leaving(), &[(NEXT, Leaving::Killed)]);
        // Its reaping changes nothing; a late word from it neither.
        assert_eq!(f.on(ready(NEXT)), vec![]);
        assert_eq!(
            f.on(Event::Exited {
                pid: NEXT,
                status: ChildStatus::Signal(libc::SIGKILL)
            }),
            vec![]
        );
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
        assert_eq!(f.m.leaving(), &[]);
    }

    #[test]
    fn a_successor_that_gives_up_before_ready_is_killed() {
        let mut f = Fake::upgrading();
        let out = f.on(Event::NotReady {
            pid: NEXT,
            reason: "closed its readiness pipe before it was ready".into(),
        });
        assert_eq!(out[0], signal(NEXT, libc::SIGKILL));
        assert!(restart_failed(&out, NEXT).contains("closed its readiness pipe"));
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
    }

    #[test]
    fn a_successor_that_cannot_be_started_leaves_the_old_one_serving() {
        let mut f = Fake::serving();
        f.on(Event::Hangup);
        let out = f.on(Event::SpawnFailed {
            reason: "cannot start /rgate: text file busy".into(),
        });
        assert_eq!(out, vec![]);
        assert!(f.logged("restart failed, still serving: cannot start"));
        assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
    }

    #[test]
    fn a_second_sighup_during_a_restart_is_ignored() {
        let mut f = Fake::upgrading();
        assert_eq!(f.on(Event::Hangup), vec![]);
        assert!(f.logged("already under way"));
        assert_eq!(f.on(ready(NEXT)), vec![signal(FIRST, libc::SIGTERM)]);
    }

    #[test]
    fn a_stop_during_a_restart_kills_the_successor_and_drains_the_old_one() {
        let mut f = Fake::upgrading();
        let out = f.on(Event::Stop {
            signal: libc::SIGTERM,
        });
        assert_eq!(
            out,
            vec![signal(NEXT, libc::SIGKILL), signal(FIRST, libc::SIGTERM)]
        );
        assert_eq!(f.on(ready(NEXT)), vec![], "too late to hand over");
        assert_eq!(
            f.on(Event::Exited {
                pid: NEXT,
                status: ChildStatus::Signal(libc::SIGKILL)
            }),
            vec![]
        );
        assert_eq!(f.on(exited(FIRST, 0)), vec![Action::Exit { code: 0 }]);
    }

    #[test]
    fn a_stop_waits_for_the_serving_process_and_those_still_draining() {
        let mut f = Fake::upgrading();
        f.on(ready(NEXT));
        let out = f.on(Event::Stop {
            signal: libc::SIGINT,
        });
        assert_eq!(out, vec![signal(NEXT, libc::SIGINT)]);
        assert_eq!(f.on(exited(NEXT, 0)), vec![], "{FIRST} still drains");
        assert_eq!(f.on(Event::Hangup), vec![]);
        assert!(f.logged("already stopping"));
        assert_eq!(f.on(exited(FIRST, 0)), vec![Action::Exit { code: 0 }]);
    }

    #[test]
    fn the_exit_code_is_the_serving_process_not_a_draining_one() {
        let mut f = Fake::upgrading();
        f.on(ready(NEXT));
        f.on(Event::Stop {
            signal: libc::SIGTERM,
        });
        assert_eq!(f.on(exited(NEXT, 0)), vec![]);
        assert_eq!(f.on(exited(FIRST, 1)), vec![Action::Exit { code: 0 }]);
    }

    #[test]
    fn a_serving_process_that_dies_ends_the_supervisor_with_its_status() {
        let mut f = Fake::serving();
        let out = f.on(Event::Exited {
            pid: FIRST,
            status: ChildStatus::Signal(libc::SIGKILL),
        });
        assert_eq!(out, vec![Action::Exit { code: 128 + 9 }]);
        assert!(f.logged("exited unexpectedly"));
    }

    #[test]
    fn a_serving_process_that_dies_while_one_drains_ends_once_that_one_is_done() {
        let mut f = Fake::upgrading();
        f.on(ready(NEXT));
        assert_eq!(f.on(exited(NEXT, 3)), vec![]);
        assert_eq!(f.on(exited(FIRST, 0)), vec![Action::Exit { code: 3 }]);
    }

    #[test]
    fn the_serving_process_dying_during_a_restart_kills_the_successor_and_ends() {
        let mut f = Fake::upgrading();
        let out = f.on(Event::Exited {
            pid: FIRST,
            status: ChildStatus::Signal(libc::SIGSEGV),
        });
        assert_eq!(out, vec![signal(NEXT, libc::SIGKILL)]);
        assert_eq!(
            f.on(Event::Exited {
                pid: NEXT,
                status: ChildStatus::Signal(libc::SIGKILL)
            }),
            vec![Action::Exit { code: 128 + 11 }]
        );
    }

    #[test]
    fn orphans_reaped_by_pid_1_change_nothing() {
        let mut f = Fake::upgrading();
        assert_eq!(f.on(exited(4242, 0)), vec![]);
        assert!(f.logged("reaped pid 4242"));
        assert_eq!(f.on(ready(NEXT)), vec![signal(FIRST, libc::SIGTERM)]);
        assert_eq!(f.on(exited(4243, 1)), vec![]);
        assert_eq!(f.m.phase(), &Phase::Serving { pid: NEXT });
    }

    #[test]
    fn status_codes_pass_on_as_shells_report_them() {
        assert_eq!(ChildStatus::Code(0).exit_code(), 0);
        assert_eq!(ChildStatus::Code(2).exit_code(), 2);
        assert_eq!(ChildStatus::Signal(libc::SIGTERM).exit_code(), 143);
        assert_eq!(ChildStatus::Code(2).to_string(), "exit status: 2");
    }
}
