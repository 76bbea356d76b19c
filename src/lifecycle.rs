//! The process lifecycle: start (config → stats → discovery → sockets → cores → ready),
//! then wait for signals: SIGTERM/SIGINT drain and exit; SIGHUP starts a successor on the
//! same sockets (`upgrade`) and, once it is ready, drains and exits. Signals are blocked in every
//! thread and taken synchronously here with `sigtimedwait`, so no handler runs inside a core.
//!
//! As PID 1 or with `--supervise`, the process becomes the `supervisor` instead, which runs
//! this lifecycle in a child. A supervised process (`RGATE_SUPERVISOR_PID` set) leaves
//! restarts and the pid file to its supervisor: SIGHUP is passed up to it, and the
//! supervisor's SIGTERM is what tells it to drain once its successor is ready.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::{BackendTable, TablePublisher};
use crate::cli::Args;
use crate::config::Config;
use crate::server::{self, DriverKind};
use crate::stats::{Collector, StatsHub};
use crate::upgrade::{self, Invocation, ReadyNotifier, UpgradeOutcome};
use crate::worker::Settings;
use crate::{discovery, listener, logging, supervisor};
use std::net::TcpListener;

/// Exit code for a bad config or bad command line.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code for a failure to start (cannot bind, cannot start a core).
pub const EXIT_START: i32 = 1;

/// Runs rgate with parsed arguments; returns the process exit code.
pub fn run(args: Args) -> i32 {
    if args.version {
        println!("rgate {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if let Err(e) = logging::init(&args.log_level) {
        eprintln!("rgate: {e}");
        return EXIT_CONFIG;
    }
    if upgrade::supervisor_from_env().is_none()
        && !args.check
        && (args.supervise || supervisor::is_pid_1())
    {
        return supervisor::run(&args);
    }
    // Whatever a predecessor (or systemd) passed us is taken now, before any thread starts.
    let handover = Handover::take();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rgate: invalid config: {e}");
            return EXIT_CONFIG;
        }
    };
    if args.check {
        println!("rgate: {}: configuration is valid", args.config.display());
        return 0;
    }
    let Some(port) = args.port else {
        eprintln!("rgate: --port is required (try --help)");
        return EXIT_CONFIG;
    };
    let cores = match args.cores {
        Some(0) => {
            eprintln!("rgate: --cores must be at least 1");
            return EXIT_CONFIG;
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // The statistics database is opened before anything starts: unusable means exit 2.
    let stats = match StatsHub::open(&config, &args.db, cores) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("rgate: {e}");
            return EXIT_CONFIG;
        }
    };
    match serve(&args, config, port, cores, handover, stats) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            EXIT_START
        }
    }
}

/// What a predecessor process (or systemd) handed to this one.
struct Handover {
    listeners: io::Result<Option<Vec<TcpListener>>>,
    notifier: Option<ReadyNotifier>,
    /// The supervisor's pid, when one started this process.
    supervisor: Option<u32>,
}

impl Handover {
    fn take() -> Handover {
        let handover = Handover {
            listeners: upgrade::inherited_listeners(),
            notifier: ReadyNotifier::from_env(),
            supervisor: upgrade::supervisor_from_env(),
        };
        upgrade::forget_environment();
        handover
    }
}

fn serve(
    args: &Args,
    config: Config,
    port: u16,
    cores: usize,
    handover: Handover,
    stats: Arc<StatsHub>,
) -> io::Result<()> {
    let invocation = Invocation::current()?;
    // Signals are blocked before any thread starts, so every thread inherits the mask.
    let signals = SignalSet::block(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;

    // Dropped on any early return below: the stats thread then writes what was counted.
    let collector = Collector::start(stats.clone())?;
    let (publisher, readers) = TablePublisher::new(BackendTable::from_config(&config), cores);
    let publisher = Arc::new(publisher);
    discovery::start(&config, publisher.clone());

    let listeners = match handover.listeners? {
        Some(inherited) => {
            log::info!(
                "using {} inherited listening socket(s); --port and --bind are not used",
                inherited.len()
            );
            inherited
        }
        None => vec![listener::bind(&args.bind, port)?],
    };
    for l in &listeners {
        listener::set_nodelay_for_accepted(l)?;
    }
    let settings = Arc::new(Settings::new(config, stats));
    let (ready_tx, ready_rx) = mpsc::channel();
    let threads = server::start_cores(&listeners, readers, settings, ready_tx)?;
    let mut driver = None;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(d)) => driver = Some(d),
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => return Err(io::Error::other("a core exited while starting")),
        }
    }
    let driver = driver.unwrap_or(DriverKind::Legacy);
    for l in &listeners {
        log::info!(
            "rgate {} listening on {} ({cores} cores, {driver} driver)",
            env!("CARGO_PKG_VERSION"),
            l.local_addr()?
        );
    }
    // Ready: tell the predecessor (it stops accepting), then claim the pid file, then accept.
    if let Some(notifier) = handover.notifier {
        notifier.notify(&format!(
            "rgate {} pid {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ))?;
    }
    let supervisor = handover.supervisor;
    if supervisor.is_none() {
        write_pid_file(&args.pid_file)?;
    }
    publisher.start_accepting();
    log::info!("ready (pid {})", std::process::id());

    loop {
        match signals.wait(Duration::from_secs(1))? {
            Some(libc::SIGTERM) | Some(libc::SIGINT) => break,
            Some(libc::SIGHUP) if supervisor.is_some() => {
                let pid = supervisor.unwrap_or_default();
                log::info!("SIGHUP: supervised; asking the supervisor (pid {pid}) to restart");
                // SAFETY: kill(2) touches no memory of ours.
                if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } < 0 {
                    log::error!(
                        "cannot signal the supervisor: {}",
                        io::Error::last_os_error()
                    );
                }
            }
            Some(libc::SIGHUP) => {
                log::info!("SIGHUP: starting a successor");
                let timeout = Duration::from_secs(args.upgrade_timeout);
                match upgrade::start_successor(&invocation, &listeners, timeout, &signals) {
                    UpgradeOutcome::Ready { pid, announced } => {
                        log::info!(
                            "restart: successor pid {pid} is ready ({announced}); handing over"
                        );
                        break;
                    }
                    UpgradeOutcome::Failed { reason } => {
                        log::error!("restart failed, still serving: {reason}");
                    }
                    UpgradeOutcome::Interrupted { signal } => {
                        log::info!("restart abandoned: signal {signal} received; stopping");
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    log::info!("draining: no new connections; finishing requests in flight");
    publisher.drain();
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !t.is_finished() {
            log::warn!("drain timeout reached; closing the connections still open");
            break;
        }
        let _ = t.join();
    }
    drop(listeners);
    // The cores are done (or past the drain timeout): write the last deltas.
    collector.stop();
    if supervisor.is_none() {
        remove_pid_file(&args.pid_file);
    }
    log::info!("stopped");
    Ok(())
}

/// Writes our pid atomically (write a temporary file, rename it over).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io::Error::new(
            e.kind(),
            format!("cannot write pid file {}: {e}", path.display()),
        )
    })
}

/// Removes the pid file if it still names this process.
pub(crate) fn remove_pid_file(path: &Path) {
    if std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// A set of signals blocked in this thread (and inherited by threads started after).
pub struct SignalSet {
    set: libc::sigset_t,
}

impl SignalSet {
    pub fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
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
    pub fn signalfd(&self) -> io::Result<OwnedFd> {
        // SAFETY: `self.set` is an initialised sigset; -1 asks for a new fd.
        let fd = unsafe { libc::signalfd(-1, &self.set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Waits up to `timeout` for one of the signals; `None` when none came.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<libc::c_int>> {
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
