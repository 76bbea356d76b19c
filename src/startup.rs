//! What can stop rgate from starting, the exit code each failure gives, and the pid file.
//!
//! The error model of start-up: one `StartError`, whose variant decides the exit code.
//! * Exit 2 (`EXIT_CONFIG`): the operator asked for something unusable — a bad command line,
//!   an invalid config, an unusable statistics database. Printed plainly to stderr as
//!   `rgate: <reason>`, since it answers the command just typed.
//! * Exit 1 (`EXIT_START`): the request was fine but the machine refused — a socket cannot be
//!   bound or inherited, a thread or a core cannot start, the pid file cannot be written.
//!   Logged as an error line.
//!
//! A failure once serving has begun (a restart that fails, Docker going away) is not a
//! start-up error: rgate logs it and keeps serving.
//!
//! The pid file is written once the process is ready (atomically: a temporary file renamed
//! over) and removed at exit only if it still names this process, so a successor's pid file
//! is never removed by its predecessor.

use std::fmt;
use std::io;
use std::path::Path;

use crate::config::ConfigError;
use crate::stats::StatsError;

/// Exit code for a bad config or bad command line.
pub(crate) const EXIT_CONFIG: i32 = 2;
/// Exit code for a failure to start (cannot bind, cannot start a core).
pub(crate) const EXIT_START: i32 = 1;

/// Why rgate (the serving process or the supervisor) could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// `--log-level` names no level (the value as lower-cased).
    LogLevel(String),
    /// The config file cannot be read or is not valid.
    Config(ConfigError),
    /// `--port` was not given and no listening socket was inherited.
    PortMissing,
    /// `--cores 0`.
    NoCores,
    /// The statistics database cannot be used.
    Stats(StatsError),
    /// The access log cannot be opened: where, and why.
    AccessLog(String, io::Error),
    /// A core reported that it could not start; the text is its reason.
    CoreFailed(String),
    /// A core thread ended before it said whether it started.
    CoreExited,
    /// Sockets, signals, threads, the handover or the pid file.
    Io(io::Error),
}

impl StartError {
    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            StartError::LogLevel(_)
            | StartError::Config(_)
            | StartError::PortMissing
            | StartError::NoCores
            | StartError::Stats(_)
            | StartError::AccessLog(..) => EXIT_CONFIG,
            StartError::CoreFailed(_) | StartError::CoreExited | StartError::Io(_) => EXIT_START,
        }
    }

    /// Says why, where the operator looks for it (see the module doc), and gives the exit
    /// code. `log_prefix` names who failed in a log line (`"supervisor: "`, or nothing).
    pub(crate) fn report(&self, log_prefix: &str) -> i32 {
        let code = self.exit_code();
        if code == EXIT_CONFIG {
            eprintln!("rgate: {self}");
        } else {
            log::error!("{log_prefix}{self}");
        }
        code
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::LogLevel(level) => write!(
                f,
                "--log-level {level:?}: use error, warn, info, debug or trace"
            ),
            StartError::Config(e) => write!(f, "invalid config: {e}"),
            StartError::PortMissing => f.write_str("--port is required (try --help)"),
            StartError::NoCores => f.write_str("--cores must be at least 1"),
            StartError::Stats(e) => write!(f, "{e}"),
            StartError::AccessLog(target, e) => {
                write!(f, "access log {target}: cannot open it: {e}")
            }
            StartError::CoreFailed(reason) => f.write_str(reason),
            StartError::CoreExited => f.write_str("a core exited while starting"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Stats(e) => Some(e),
            StartError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Writes our pid atomically (write a temporary file, rename it over).
pub(crate) fn write_pid_file(path: &Path) -> io::Result<()> {
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
