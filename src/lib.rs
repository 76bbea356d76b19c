//! rgate: a thread-per-core HTTP/1.1 gateway for services that run in Docker.
//!
//! # Layout
//! * Control plane (plain threads, may block):
//!   * `cli`, `config` — command line; YAML config parsed raw, then validated.
//!   * `config_watch` — `--watch-config`: a changed, valid config file restarts as SIGHUP.
//!   * `lifecycle` — start-up order, signals, drain, pid file. SIGHUP is also how the
//!     configuration is reloaded: the successor reads the file anew.
//!   * `discovery` — Docker containers → backend instances (docker-api on its own thread).
//!   * `backends` — the versioned backend table, and the per-core mailboxes (`mailbox`)
//!     on which tables and the lifecycle's commands (start accepting, drain) reach the cores.
//!   * `stats` — per-core counters collected into SQLite; `/stats`, `/metrics`.
//!   * `access_log` — per-core batches of lines handed to a writer thread (file or stderr).
//! * Data plane (one monoio runtime per core, never blocks, shares no lock), bottom up:
//!   * `http` — the HTTP/1.1 codec on byte buffers (no sockets): heads, framing, chunked
//!     re-framing, trailers, Host; rgate's own responses.
//!   * `alarms` — a core's coarse clock (every request-path timeout) and its drain signal.
//!   * `router` — target normalisation and longest-prefix routing.
//!   * `wire` — a buffered stream with owned-buffer I/O, and body relays in any framing.
//!   * `upstream` — the backend session (`Exchange`: phases, retry safety, reusability)
//!     and the per-core keep-alive pool.
//!   * `parking` — a core's lot of idle keep-alive sockets parked without a task (a slot
//!     and an entry in the core's own epoll set), oldest first.
//!   * `worker` — one core's state: backend table, pool, counters, alarms, lot.
//!   * `proxy` — the per-connection loop: read a head, decide (route, or rgate's own
//!     `/stats`, `/metrics`, default response), forward through an `Exchange` or answer,
//!     count the request just before its last byte, keep the connection or close it.
//!   * `server` — core threads, runtime and driver choice, the command task, the tick,
//!     accept loops.
//! * `listener`, `logging` — sockets owned by the process; the stderr logger.
//! * `signals`, `startup`, `clock` — control-plane leaves: the blocked signal set, start-up
//!   errors (each knows its exit code) and the pid file, wall-clock time and waiting on a
//!   thread with a deadline.
//! * `upgrade` — zero-downtime restart: sockets handed to a successor process.
//! * `supervisor` — as PID 1 (or `--supervise`): holds the sockets for the container's life,
//!   runs the serving process and restarts it on SIGHUP with `upgrade`'s handover; a pure
//!   state machine (`supervisor::machine`) decides.
//!
//! # What a client gets when something fails
//! | failure | status, JSON `error` | counted as |
//! | --- | --- | --- |
//! | malformed or ambiguous request, bad Host, bad chunked body | 400 `bad_request` (414, 417, 431, 501 for their cases) | `client` |
//! | head not complete within `client_head_ms` | 408 `request_timeout` | `client` |
//! | route's backend has no instance | 503 `no_instances` | `no_instance` |
//! | connect refused or timed out (`connect_ms`) | 503 `backend_unavailable` | `connect` |
//! | no response head within `response_header_ms` | 504 `gateway_timeout` | `timeout` |
//! | invalid response, or the backend closed before answering | 502 `bad_gateway` | `invalid_response` |
//! | anything after the response head was sent (backend dies, a bad chunk, silence past `body_idle_ms`) | the client connection is cut | `invalid_response` / `timeout` |
//!
//! "Safe to retry" (`upstream::Exchange::retry_is_safe`): a pooled connection that turns out
//! closed before any response byte, for a request none of whose body left, is retried once
//! on a new connection. Timeouts: `connect_ms`, `response_header_ms`, `body_idle_ms`,
//! `client_head_ms`, `keepalive_idle_ms`, `pool_idle_ms` (config), the drain grace and the
//! linger after an error response (`proxy`); all run on the core's `alarms`.

pub mod access_log;
pub(crate) mod alarms;
pub mod backends;
pub(crate) mod balance;
pub mod cli;
pub(crate) mod clients;
pub(crate) mod clock;
pub mod config;
pub(crate) mod config_watch;
pub mod discovery;
pub(crate) mod health;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod listener;
pub mod logging;
pub(crate) mod mailbox;
pub(crate) mod parking;
pub(crate) mod proxy;
pub(crate) mod rest_list;
pub(crate) mod retry_budget;
pub mod router;
pub(crate) mod server;
pub(crate) mod signals;
pub(crate) mod startup;
pub mod stats;
pub mod supervisor;
pub(crate) mod throttle;
pub mod upgrade;
pub(crate) mod upstream;
pub(crate) mod wire;
pub(crate) mod worker;
