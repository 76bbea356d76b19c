//! Tests of the supervisor's state machine: fake pids and a fake clock, every path of a
//! restart (ready, crash, hang, early exit, silence), stops, deaths and orphans.
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

#[test]
fn usr1_is_passed_to_every_child_that_may_write_the_access_log() {
    let mut f = Fake::serving();
    assert_eq!(f.on(Event::Reopen), vec![signal(FIRST, libc::SIGUSR1)]);
    assert_eq!(f.m.phase(), &Phase::Serving { pid: FIRST });
    let mut f = Fake::upgrading();
    assert_eq!(
        f.on(Event::Reopen),
        vec![signal(FIRST, libc::SIGUSR1), signal(NEXT, libc::SIGUSR1)]
    );
    assert_eq!(f.m.deadline(), Some(f.now + TIMEOUT), "the restart goes on");
}
