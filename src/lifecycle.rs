//! The process lifecycle: start (config → stats → discovery and health checks → sockets → cores →
//! ready), then wait for signals: SIGTERM/SIGINT drain and exit; SIGHUP starts a successor on the
//! same sockets (`upgrade`) and, once it is ready, drains and exits. SIGHUP is therefore also how a
//! changed configuration is reloaded: the successor reads the config file afresh, and if it is
//! invalid the successor exits 2, the restart fails and this process keeps serving with the
//! configuration it has. Signals are blocked in every thread and taken synchronously here
//! (`signals`), so no handler runs inside a core.
//!
//! As PID 1 or with `--supervise`, the process becomes the `supervisor` instead, which runs
//! this lifecycle in a child. A supervised process (`RGATE_SUPERVISOR_PID` set) leaves
//! restarts and the pid file to its supervisor: SIGHUP is passed up to it, and the
//! supervisor's SIGTERM is what tells it to drain once its successor is ready.
//!
//! Errors: everything that can stop start-up is a `startup::StartError`, which knows its exit
//! code (2 for what the operator asked wrongly, 1 for what the machine refused) and where it
//! is said; `run` is the one place that turns it into the exit code. Once ready, nothing
//! ends the process but a signal: a failed restart is logged and serving goes on.
//!
//! Not for: the handover itself (`upgrade`), the supervisor's decisions (`supervisor`).

use std::io;
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLogSettings, LogFormat, LogTarget, SharedLog};
use crate::backends::{BackendTable, TablePublisher};
use crate::cli::Args;
use crate::clock;
use crate::config::Config;
use crate::config_watch::ConfigWatch;
use crate::limits::{self, ConnectionLimits};
use crate::server::{self, DriverKind};
use crate::signals::SignalSet;
use crate::startup::{remove_pid_file, write_pid_file, StartError};
use crate::stats::{Collector, StatsHub};
use crate::upgrade::{self, Invocation, ReadyNotifier, UpgradeOutcome};
use crate::worker::Settings;
use crate::{discovery, health, listener, logging, supervisor};

/// Runs rgate with parsed arguments; returns the process exit code.
pub fn run(args: Args) -> i32 {
    if args.version {
        println!("rgate {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if let Err(e) = logging::init(&args.log_level) {
        return e.report("");
    }
    if upgrade::supervisor_from_env().is_none()
        && !args.check
        && (args.supervise || supervisor::is_pid_1())
    {
        return supervisor::run(&args);
    }
    // Whatever a predecessor (or systemd) passed us is taken now, before any thread starts.
    let handover = Handover::take();
    crate::clients::fix_allocator_thresholds();
    match start_and_serve(&args, handover) {
        Ok(()) => 0,
        Err(e) => e.report(""),
    }
}

/// Checks the command line and the config, opens the statistics database, then serves until
/// told to stop. `--check` ends after the config.
fn start_and_serve(args: &Args, handover: Handover) -> Result<(), StartError> {
    let mut config = Config::load(&args.config).map_err(StartError::Config)?;
    if args.check {
        println!("rgate: {}: configuration is valid", args.config.display());
        return Ok(());
    }
    if config.docker.label_routes {
        let declared = discovery::declared_at_start();
        config.docker.declared = declared.keys().cloned().collect();
        config = discovery::label_routes::with_label_routes(config, &declared);
    }
    let port = args.port.ok_or(StartError::PortMissing)?;
    let cores = match args.cores {
        Some(0) => return Err(StartError::NoCores),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // The statistics database is opened before anything starts: unusable means exit 2.
    let stats = StatsHub::open(&config, &args.db, cores).map_err(StartError::Stats)?;
    serve(args, config, port, cores, handover, Arc::new(stats))
}

/// The config's `access_log`, with `--access-log` overriding its path (and json the format
/// when the config has no `access_log`).
fn access_log_settings(args: &Args, config: &Config) -> Option<AccessLogSettings> {
    let configured = config.access_log.clone();
    let Some(path) = &args.access_log else {
        return configured;
    };
    let target = if path.as_os_str() == "stderr" {
        LogTarget::Stderr
    } else {
        LogTarget::File(path.clone())
    };
    Some(AccessLogSettings {
        target,
        format: configured.map_or(LogFormat::Json, |c| c.format),
    })
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

/// Raises the open-files limit and derives the connection caps from it; logs both.
fn connection_limits(config: &Config, cores: usize) -> ConnectionLimits {
    let nofile = match limits::raise_nofile() {
        Ok(n) => {
            if n.before < n.soft {
                log::info!(
                    "open files: soft limit raised from {} to {} (the hard limit)",
                    n.before,
                    n.soft
                );
            } else {
                log::info!("open files: soft limit {} (hard {})", n.soft, n.hard);
            }
            n.soft
        }
        Err(e) => {
            log::warn!("open files: cannot read the limit ({e}); assuming 1024");
            1024
        }
    };
    let l = ConnectionLimits::derive(
        nofile,
        cores,
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let per_ip = l
        .per_ip
        .map_or("no cap".to_string(), |n| format!("{n} on each core"));
    let source = if config.limits.max_connections.is_some() {
        "as configured".to_string()
    } else {
        format!(
            "from the open-files limit {nofile}: 2 per connection, {} kept",
            limits::RESERVED_DESCRIPTORS
        )
    };
    log::info!(
        "connections: at most {} ({} per core; {source}); per client address: {per_ip}",
        l.max_connections,
        l.per_core,
    );
    l
}

fn serve(
    args: &Args,
    config: Config,
    port: u16,
    cores: usize,
    handover: Handover,
    stats: Arc<StatsHub>,
) -> Result<(), StartError> {
    let invocation = Invocation::current()?;
    // Signals are blocked before any thread starts, so every thread inherits the mask.
    let signals = SignalSet::block(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1])?;
    // The access log is opened before anything serves: unusable means exit 2.
    let (shared_log, log_writer) = match access_log_settings(args, &config) {
        Some(settings) => {
            let (shared, writer) = SharedLog::start(&settings, cores)
                .map_err(|e| StartError::AccessLog(settings.target.to_string(), e))?;
            log::info!("access log: {} ({:?})", settings.target, settings.format);
            (Some(shared), Some(writer))
        }
        None => (None, None),
    };

    // Dropped on any early return below: the stats thread then writes what was counted.
    let collector = Collector::start(stats.clone())?;
    let (publisher, readers) = TablePublisher::new(BackendTable::from_config(&config), cores);
    let publisher = Arc::new(publisher);
    discovery::start(&config, publisher.clone());
    health::checker::start(&config, publisher.clone());

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
    let limits = connection_limits(&config, cores);
    let mut settings = Settings::new(config, stats, limits);
    settings.access_log = shared_log;
    let settings = Arc::new(settings);
    let (ready_tx, ready_rx) = mpsc::channel();
    let threads = server::start_cores(&listeners, readers, settings, ready_tx)?;
    let mut driver = None;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(d)) => driver = Some(d),
            Ok(Err(reason)) => return Err(StartError::CoreFailed(reason)),
            Err(_) => return Err(StartError::CoreExited),
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

    let mut watch = args
        .watch_config
        .then(|| ConfigWatch::new(args.config.clone()));
    loop {
        let mut signal = signals.wait(Duration::from_secs(1))?;
        if signal.is_none() && watch.as_mut().is_some_and(ConfigWatch::poll) {
            // A changed, valid config restarts the process as SIGHUP does.
            signal = Some(libc::SIGHUP);
        }
        match signal {
            Some(libc::SIGTERM) | Some(libc::SIGINT) => break,
            Some(libc::SIGUSR1) => match &log_writer {
                Some(writer) => writer.reopen(),
                None => log::info!("SIGUSR1: no access log to reopen"),
            },
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
        if !clock::finished_by(&t, deadline) {
            log::warn!("drain timeout reached; closing the connections still open");
            break;
        }
        let _ = t.join();
    }
    drop(listeners);
    // The cores are done (or past the drain timeout): write the last deltas and lines.
    collector.stop();
    if let Some(writer) = log_writer {
        writer.stop();
    }
    if supervisor.is_none() {
        remove_pid_file(&args.pid_file);
    }
    log::info!("stopped");
    Ok(())
}
