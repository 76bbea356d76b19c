//! `benchtool`: the processes `benches/bench.py` runs around the proxies — the fast
//! backend, the load generator (used for the fixed-rate run, and for everything when wrk
//! is not installed), the idle-connection holder, the large-body uploader, and the two
//! floors (`relay` on epoll, `relay-uring` on io_uring: bytes copied between paired
//! connections, no HTTP). The clients print one JSON object on stdout; the driver does the
//! bookkeeping.
//!
//! It is a `harness = false` bench target so that it lives in `benches/` and builds with
//! the release profile, but it measures nothing on its own; run it through `make bench`.

mod backend;
mod client;
mod histogram;
mod relay;
mod relay_uring;

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use serde_json::json;

/// Load-test companions for `make bench`.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Backend(BackendArgs),
    Load(LoadArgs),
    Idle(IdleArgs),
    Upload(UploadArgs),
    SelfCheck(SelfCheckArgs),
    Relay(RelayArgs),
    RelayUring(RelayUringArgs),
}

/// serve the fixed response until killed
#[derive(FromArgs)]
#[argh(subcommand, name = "backend")]
struct BackendArgs {
    /// address to listen on
    #[argh(option)]
    listen: SocketAddr,
    /// threads, each with its own listener on the port (default 1)
    #[argh(option, default = "1")]
    threads: usize,
}

/// keep-alive load, closed loop or at a fixed rate
#[derive(FromArgs)]
#[argh(subcommand, name = "load")]
struct LoadArgs {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// request path
    #[argh(option, default = "String::from(\"/\")")]
    path: String,
    /// concurrent connections (one thread each)
    #[argh(option, default = "32")]
    connections: usize,
    /// seconds to run
    #[argh(option, default = "10.0")]
    seconds: f64,
    /// requests per second over all connections (fixed rate); omit for a closed loop
    #[argh(option)]
    rate: Option<f64>,
    /// open a new connection for every request
    #[argh(switch)]
    close: bool,
}

/// open keep-alive connections, one request each, hold them until stdin closes
#[derive(FromArgs)]
#[argh(subcommand, name = "idle")]
struct IdleArgs {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// request path
    #[argh(option, default = "String::from(\"/\")")]
    path: String,
    /// connections to open
    #[argh(option, default = "10000")]
    count: usize,
    /// seconds allowed for opening them
    #[argh(option, default = "30.0")]
    seconds: f64,
}

/// stream one large POST body
#[derive(FromArgs)]
#[argh(subcommand, name = "upload")]
struct UploadArgs {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// request path
    #[argh(option, default = "String::from(\"/\")")]
    path: String,
    /// body size in bytes
    #[argh(option, default = "1 << 30")]
    bytes: u64,
}

/// the floor on epoll: pair each connection with a backend connection, copy bytes both ways
#[derive(FromArgs)]
#[argh(subcommand, name = "relay")]
struct RelayArgs {
    /// address to listen on
    #[argh(option)]
    listen: SocketAddr,
    /// backend address
    #[argh(option)]
    to: SocketAddr,
}

/// the floor on io_uring (monoio): the same as `relay`
#[derive(FromArgs)]
#[argh(subcommand, name = "relay-uring")]
struct RelayUringArgs {
    /// address to listen on
    #[argh(option)]
    listen: SocketAddr,
    /// backend address
    #[argh(option)]
    to: SocketAddr,
}

/// check the histogram arithmetic and exit
#[derive(FromArgs)]
#[argh(subcommand, name = "self-check")]
struct SelfCheckArgs {}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; this target is driven by bench.py instead.
    if std::env::args().nth(1).as_deref() == Some("--bench") {
        eprintln!("benchtool: run through `make bench` (benches/bench.py)");
        return ExitCode::SUCCESS;
    }
    let args: Args = argh::from_env();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchtool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> io::Result<()> {
    match command {
        Command::Backend(a) => backend::run(a.listen, a.threads.max(1)),
        Command::Relay(a) => relay::run(a.listen, a.to),
        Command::RelayUring(a) => relay_uring::run(a.listen, a.to),
        Command::Load(a) => {
            let report = client::load(&client::LoadSpec {
                addr: a.addr,
                path: a.path,
                connections: a.connections.max(1),
                duration: Duration::from_secs_f64(a.seconds),
                rate: a.rate,
                close: a.close,
            })?;
            let us = |p: f64| report.latency.percentile(p) as f64 / 1000.0;
            print_json(json!({
                "requests": report.requests,
                "errors": report.errors,
                "non_2xx": report.non_2xx,
                "seconds": report.seconds,
                "rps": report.requests as f64 / report.seconds,
                "latency_us": {
                    "p50": us(50.0), "p90": us(90.0), "p99": us(99.0), "p99_9": us(99.9),
                    "max": report.latency.max() as f64 / 1000.0,
                    "count": report.latency.count(),
                },
            }))
        }
        Command::Idle(a) => client::idle(
            a.addr,
            &a.path,
            a.count,
            Duration::from_secs_f64(a.seconds),
            |r| {
                let _ = print_json(json!({
                    "opened": r.opened, "failed": r.failed, "seconds": r.seconds,
                }));
            },
            || {
                // Held until the driver closes our stdin (or dies).
                let mut line = String::new();
                let _ = io::stdin().lock().read_line(&mut line);
            },
        ),
        Command::Upload(a) => {
            let r = client::upload(a.addr, &a.path, a.bytes)?;
            print_json(json!({
                "bytes": r.bytes, "seconds": r.seconds, "status": r.status,
                "mib_per_s": r.bytes as f64 / (1024.0 * 1024.0) / r.seconds,
            }))
        }
        Command::SelfCheck(_) => histogram::self_check()
            .map_err(io::Error::other)
            .and_then(|()| print_json(json!({"ok": true}))),
    }
}

fn print_json(value: serde_json::Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}
