//! Command-line interface (argh). Parsing only: what the flags mean is decided in `lifecycle`.

use std::path::PathBuf;

use argh::FromArgs;

/// rgate: a thread-per-core HTTP/1.1 gateway for services running in Docker.
#[derive(FromArgs, Debug, Clone)]
pub struct Args {
    /// port to listen on (0 picks a free one and logs it)
    #[argh(option)]
    pub port: Option<u16>,

    /// path of the YAML config file
    #[argh(option, default = "PathBuf::from(\"config.yml\")")]
    pub config: PathBuf,

    /// number of cores (worker threads) to serve on; default: the cores available
    #[argh(option)]
    pub cores: Option<usize>,

    /// address to bind the listening socket to
    #[argh(option, default = "String::from(\"0.0.0.0\")")]
    pub bind: String,

    /// path of the SQLite statistics database
    #[argh(option, default = "PathBuf::from(\"rgate.db\")")]
    pub db: PathBuf,

    /// log level: error, warn, info, debug or trace
    #[argh(option, default = "String::from(\"info\")")]
    pub log_level: String,

    /// write the access log to this file ("stderr" for stderr), overriding the config's
    /// `access_log.path`; the format is json unless the config says otherwise
    #[argh(option)]
    pub access_log: Option<PathBuf>,

    /// path of the pid file written once rgate is ready
    #[argh(option, default = "PathBuf::from(\"rgate.pid\")")]
    pub pid_file: PathBuf,

    /// seconds a draining process waits for open connections before closing them
    #[argh(option, default = "30")]
    pub drain_timeout: u64,

    /// seconds a restart waits for the successor to say it is ready
    #[argh(option, default = "30")]
    pub upgrade_timeout: u64,

    /// run a small supervisor that holds the sockets and restarts the serving process on
    /// SIGHUP (the default when rgate is PID 1, as in its container image)
    #[argh(switch)]
    pub supervise: bool,

    /// restart (as SIGHUP does) when the config file changes into a valid config; an
    /// invalid change is logged and the running process keeps serving
    #[argh(switch)]
    pub watch_config: bool,

    /// validate the config and exit: 0 when valid, 2 with the reason when not
    #[argh(switch)]
    pub check: bool,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}
