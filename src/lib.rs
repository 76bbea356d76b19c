//! rgate: a thread-per-core HTTP/1.1 gateway for services that run in Docker.
//!
//! # Layout
//! * Control plane (plain threads, may block):
//!   * `cli`, `config` — command line; YAML config parsed raw, then validated.
//!   * `lifecycle` — start-up order, signals, drain, pid file.
//!   * `discovery` — Docker containers → backend instances (docker-api on its own thread).
//!   * `backends` — the versioned backend table and its per-core publication.
//!   * `stats` — per-core counters collected into SQLite; `/stats`, `/metrics`.
//! * Data plane (one monoio runtime per core, never blocks, shares no lock):
//!   * `server` — core threads, runtime and driver choice, accept loops.
//!   * `core` — one core's state: table reader, backend pool, counters, and its alarms
//!     (the drain, and the coarse clock every request-path timeout runs on).
//!   * `proxy` — the per-connection loop: head → route → backend → stream back.
//!   * `http` — the HTTP/1.1 codec on byte buffers (no sockets).
//!   * `router` — target normalisation and longest-prefix routing.
//! * `listener`, `logging` — sockets owned by the process; the stderr logger.
//! * `upgrade` — zero-downtime restart: sockets handed to a successor process.
//! * `supervisor` — as PID 1 (or `--supervise`): holds the sockets for the container's life,
//!   runs the serving process and restarts it on SIGHUP with `upgrade`'s handover; a pure
//!   state machine (`supervisor::machine`) decides.

pub mod backends;
pub mod cli;
pub mod config;
pub mod core;
pub mod discovery;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod logging;
pub mod proxy;
pub mod router;
pub mod server;
pub mod stats;
pub mod supervisor;
pub mod upgrade;

// Control-plane leaves (added by the control-plane half of the reshape, issue 11): signals,
// start-up errors and the pid file, wall-clock time. Used by `upgrade`, `supervisor`,
// `lifecycle`, `discovery` and `stats`; they import none of those.
pub(crate) mod clock;
pub(crate) mod signals;
pub(crate) mod startup;
