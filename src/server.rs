//! The data plane's threads: one per core, each running its own monoio runtime (io_uring,
//! or the legacy epoll driver when io_uring is unavailable) and accepting on its own
//! duplicate of every listening socket. The sockets themselves belong to the process
//! (see `listener`); a core closing its duplicate never closes the socket.
//!
//! A core runs three kinds of task: the command task (`obey`: new tables, start accepting,
//! drain — sent by the control plane on the core's mailbox, so a core never polls a flag),
//! the tick (the alarm clock and the pool sweep; it rests while nothing waits), and one
//! task per accepting socket and per client connection (`proxy`).

use std::fmt;
use std::io;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Canceller};
use monoio::net::TcpListener;

use crate::alarms::TICK;
use crate::backends::{CommandFeed, CoreCommand};
use crate::http::gateway::{self, ErrorCode, Reply};
use crate::proxy::{self, serve_client};
use crate::throttle::{and_more, Throttle, WARNING_INTERVAL};
use crate::wire::stream::write_all;
use crate::worker::{Settings, Worker};

/// The idle pool is swept every this many ticks.
const POOL_SWEEP_EVERY_TICKS: u32 = 20;
/// io_uring submission queue size per core.
const URING_ENTRIES: u32 = 4096;
/// Back-off after an accept error such as EMFILE, so a full fd table does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// How long a connection refused for its address's cap is given to take its answer.
const REFUSE_LIMIT: Duration = Duration::from_secs(1);
/// Reads of what a refused client still sends before it is closed anyway.
const REFUSE_MAX_READS: usize = 16;

/// The I/O driver a core runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Legacy,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Legacy => "legacy epoll",
        })
    }
}

/// Starts one thread per command feed. Each reports once on `ready` (its driver, or why it
/// could not start), accepts once told to, and serves until told to drain and its
/// connections have finished.
pub fn start_cores(
    listeners: &[StdListener],
    feeds: Vec<CommandFeed>,
    settings: Arc<Settings>,
    ready: mpsc::Sender<Result<DriverKind, String>>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let cpus = allowed_cpus();
    let mut threads = Vec::with_capacity(feeds.len());
    for (id, feed) in feeds.into_iter().enumerate() {
        let dups = listeners
            .iter()
            .map(StdListener::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        let settings = settings.clone();
        let ready = ready.clone();
        let cpu = cpus.get(id % cpus.len().max(1)).copied();
        let thread = std::thread::Builder::new()
            .name(format!("rgate-core-{id}"))
            .spawn(move || {
                // Core i runs on the i-th CPU this process may use (taskset, cgroups).
                if let Some(cpu) = cpu {
                    let _ = monoio::utils::bind_to_cpu_set([cpu]);
                }
                run_core(id, dups, feed, settings, ready)
            })?;
        threads.push(thread);
    }
    Ok(threads)
}

/// The CPUs this process may run on, in order (empty if the kernel will not say).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread, whose
    // mask every core thread inherits; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn wants_legacy() -> bool {
    std::env::var("RGATE_DRIVER").is_ok_and(|v| v == "legacy") || !monoio::utils::detect_uring()
}

fn run_core(
    id: usize,
    listeners: Vec<StdListener>,
    feed: CommandFeed,
    settings: Arc<Settings>,
    ready: mpsc::Sender<Result<DriverKind, String>>,
) {
    if !wants_legacy() {
        // First with the flags that suit a thread-per-core ring (only this thread submits;
        // completions are run when it enters the kernel anyway, so no interrupting it),
        // then plain, for kernels that lack them.
        for tuned in [true, false] {
            let mut urb = io_uring::IoUring::builder();
            if tuned {
                urb.setup_single_issuer()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag();
            }
            match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build()
            {
                Ok(mut rt) => {
                    return rt.block_on(core_main(
                        id,
                        listeners,
                        feed,
                        settings,
                        ready,
                        DriverKind::IoUring,
                    ))
                }
                Err(e) if tuned => log::debug!("core {id}: io_uring with setup flags: {e}"),
                Err(e) => {
                    log::warn!("core {id}: io_uring unavailable ({e}); using the legacy driver")
                }
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(core_main(
            id,
            listeners,
            feed,
            settings,
            ready,
            DriverKind::Legacy,
        )),
        Err(e) => {
            let _ = ready.send(Err(format!("core {id}: cannot start a runtime: {e}")));
        }
    }
}

async fn core_main(
    id: usize,
    listeners: Vec<StdListener>,
    feed: CommandFeed,
    settings: Arc<Settings>,
    ready: mpsc::Sender<Result<DriverKind, String>>,
    driver: DriverKind,
) {
    let worker = Rc::new(Worker::new(id, settings, feed.initial));
    let mut sockets = Vec::with_capacity(listeners.len());
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => sockets.push(l),
            Err(e) => {
                let _ = ready.send(Err(format!("core {id}: cannot use listening socket: {e}")));
                return;
            }
        }
    }
    let _ = ready.send(Ok(driver));
    drop(ready);
    let ticking = monoio::spawn(tick(worker.clone()));
    let watching_parked = monoio::spawn(proxy::parked::watch(worker.clone()));
    let accepting = obey(&worker, &feed.rx, sockets).await;
    // Drained: the accept loops end (each serves what it had just accepted), idle pooled
    // connections close, and the core waits for its open client connections.
    worker.alarms.raise_drain();
    // Access-log lines made before the drain go now; those made during it go one by one.
    if let Some(log) = &worker.access_log {
        log.flush();
    }
    for task in accepting {
        task.await;
    }
    worker.pool.borrow_mut().clear();
    // Parked connections close after their drain grace, when the watcher ends.
    watching_parked.await;
    while worker.clients.open() > 0 {
        monoio::time::sleep(TICK).await;
    }
    drop(ticking);
    if let Some(log) = &worker.access_log {
        log.flush();
    }
    log::debug!("core {id}: drained");
}

/// Applies the control plane's commands in order until told to drain (or until the
/// control plane is gone); returns the accept loops it started.
async fn obey(
    worker: &Rc<Worker>,
    commands: &crate::mailbox::Receiver<CoreCommand>,
    sockets: Vec<TcpListener>,
) -> Vec<monoio::task::JoinHandle<()>> {
    let mut sockets = Some(sockets);
    let mut accepting = Vec::new();
    while let Some(command) = commands.recv().await {
        match command {
            CoreCommand::Table(table) => worker.set_table(table),
            CoreCommand::StartAccepting => {
                for l in sockets.take().into_iter().flatten() {
                    accepting.push(monoio::spawn(accept_loop(worker.clone(), l)));
                }
            }
            CoreCommand::Drain => break,
        }
    }
    accepting
}

/// The core's clock: rings the alarms every `TICK` and sweeps the idle pool now and then,
/// resting while nothing waits on the clock and the pool is empty.
async fn tick(worker: Rc<Worker>) {
    let mut ticks = 0u32;
    loop {
        if worker.pool.borrow().is_empty() {
            worker.alarms.until_needed().await;
        }
        monoio::time::sleep(TICK).await;
        worker.alarms.tick();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(POOL_SWEEP_EVERY_TICKS) {
            worker.pool.borrow_mut().evict_expired();
        }
    }
}

enum Accepted {
    Conn(io::Result<(monoio::net::TcpStream, std::net::SocketAddr)>),
    Drain,
}

/// Accepts until the core drains, while the core is under its connection cap (see
/// `limits`). On drain the pending accept is cancelled and awaited, so a connection the
/// kernel handed over at that very moment is still served.
async fn accept_loop(core: Rc<Worker>, listener: TcpListener) {
    let canceller = Canceller::new();
    let failures = Throttle::new(WARNING_INTERVAL);
    loop {
        if !room_for_one_more(&core).await {
            return;
        }
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let got = monoio::select! {
            res = &mut accept => Accepted::Conn(res),
            _ = core.alarms.drain() => Accepted::Drain,
        };
        let res = match got {
            Accepted::Conn(res) => res,
            Accepted::Drain => {
                let _ = canceller.cancel();
                if let Ok((stream, peer)) = accept.await {
                    monoio::spawn(serve_client(core.clone(), stream, peer));
                }
                return;
            }
        };
        match res {
            Ok((stream, peer)) => {
                let cap = core.settings.limits.per_ip;
                if cap.is_some_and(|cap| u64::from(core.clients.from(peer.ip())) >= cap) {
                    core.counters.connections.refused_per_ip();
                    if core.clients.refusing().is_some() {
                        monoio::spawn(refuse(core.clone(), stream));
                    }
                    // Else closed here, unanswered: too many refusals are under way.
                } else {
                    monoio::spawn(serve_client(core.clone(), stream, peer));
                }
            }
            Err(e) => {
                core.counters.connections.accept_failed();
                let out_of_descriptors =
                    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if let Some(more) = failures.allow() {
                    log::warn!(
                        "core {}: accept failed: {e}{}",
                        core.id,
                        and_more(more, WARNING_INTERVAL)
                    );
                }
                // Out of descriptors: an idle client gives one back.
                if out_of_descriptors && close_oldest_idle(&core) {
                    core.counters.connections.idle_closed_at_cap();
                }
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// Waits until the core is under its share of `max_connections`: closes its idle
/// connections, oldest first, one at a time, else waits until one closes or begins to rest.
/// False when the core drains meanwhile.
async fn room_for_one_more(core: &Rc<Worker>) -> bool {
    let cap = core.settings.limits.per_core;
    while core.clients.open() as u64 >= cap {
        if close_oldest_idle(core) {
            core.counters.connections.idle_closed_at_cap();
        } else {
            core.counters.connections.accept_paused();
        }
        monoio::select! {
            _ = core.clients.room_may_come() => {},
            _ = core.alarms.drain() => return false,
        }
    }
    true
}

/// Closes the connection idle longest: a parked one, else one resting with its task.
fn close_oldest_idle(core: &Rc<Worker>) -> bool {
    proxy::parked::close_oldest(core) || core.clients.close_oldest_idle()
}

/// Answers a connection over its address's cap with 503 and closes it, without reading;
/// counted among the core's refusals under way while it lasts.
async fn refuse(core: Rc<Worker>, mut stream: monoio::net::TcpStream) {
    let Some(_refusing) = core.clients.refusing() else {
        return;
    };
    let id = core.ids.make();
    let body = gateway::error_body(
        503,
        ErrorCode::TooManyConnections,
        "too many connections from this address; try again later",
        &id,
    );
    let reply = Reply {
        request_id: Some(&id),
        retry_after: ErrorCode::TooManyConnections.retry_after(),
        ..Reply::of(503, "application/json", &body)
    };
    let mut out = Vec::with_capacity(256);
    gateway::write_response(&mut out, &reply);
    let _ = monoio::time::timeout(REFUSE_LIMIT, write_all(&mut stream, out)).await;
    // Half-close, then read what the client sent until it closes too (bounded), so that
    // closing with its request unread does not reset the answer away.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 4096];
    let deadline = monoio::time::Instant::now() + REFUSE_LIMIT;
    for _ in 0..REFUSE_MAX_READS {
        match monoio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => buf = b,
            _ => return,
        }
    }
}
