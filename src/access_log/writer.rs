//! The access log's writer thread: takes the cores' batches from their queues and writes
//! each with one `write` (a file is opened in append mode; stderr is written in pieces of
//! whole lines no larger than a pipe writes atomically, under the process's stderr lock, so
//! rgate's own log lines never land inside one). It reopens the file when asked (USR1), and
//! on a write error logs once (until a write succeeds again) and counts the lines lost.
//! Stopping drains every queue first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::{Batch, LogCounters, LogTarget};

/// How long the writer sleeps when no core has handed it anything (a core wakes it).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long a stopping rgate waits for the writer's last lines.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// What a pipe writes in one piece (POSIX `PIPE_BUF` on Linux).
const PIPE_ATOMIC_BYTES: usize = 4096;

/// The writer thread, and how to ask it to reopen or stop.
pub(crate) struct WriterHandle {
    thread: Option<JoinHandle<()>>,
    flags: Arc<Flags>,
}

#[derive(Default)]
struct Flags {
    reopen: AtomicBool,
    stop: AtomicBool,
}

impl WriterHandle {
    pub(crate) fn thread(&self) -> &Thread {
        self.thread
            .as_ref()
            .map(JoinHandle::thread)
            .expect("the writer runs until stopped")
    }

    /// Reopens the file at its path (after logrotate moved it).
    pub(crate) fn reopen(&self) {
        self.flags.reopen.store(true, Ordering::Release);
        self.thread().unpark();
    }

    /// Writes what the cores handed over, then ends the thread — or, when a write hangs
    /// (a stalled disk), gives up after `STOP_WAIT` so that rgate still exits.
    pub(crate) fn stop(mut self) {
        self.flags.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if crate::clock::finished_by(&t, Instant::now() + STOP_WAIT) {
                let _ = t.join();
            } else {
                log::warn!(
                    "access log: the last lines are not written after {STOP_WAIT:?}; exiting"
                );
            }
        }
    }
}

enum Sink {
    Stderr,
    File(File),
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

pub(super) fn start(
    target: LogTarget,
    queues: Vec<Receiver<Batch>>,
    counters: Arc<LogCounters>,
) -> io::Result<WriterHandle> {
    let sink = match &target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(path) => Sink::File(open(path)?),
    };
    let flags = Arc::new(Flags::default());
    let mut writer = Writer {
        target,
        sink,
        counters,
        failing: false,
    };
    let thread = {
        let flags = flags.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&queues, &flags))?
    };
    Ok(WriterHandle {
        thread: Some(thread),
        flags,
    })
}

struct Writer {
    target: LogTarget,
    sink: Sink,
    counters: Arc<LogCounters>,
    /// A write failed and no write succeeded since (the error was logged once).
    failing: bool,
}

impl Writer {
    fn run(&mut self, queues: &[Receiver<Batch>], flags: &Flags) {
        loop {
            if flags.reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            // Read before draining: batches sent before the stop are all taken below.
            let stopping = flags.stop.load(Ordering::Acquire);
            let mut wrote = false;
            for queue in queues {
                while let Ok(batch) = queue.try_recv() {
                    self.write(batch);
                    wrote = true;
                }
            }
            if stopping {
                return;
            }
            if !wrote {
                std::thread::park_timeout(IDLE_WAIT);
            }
        }
    }

    fn reopen(&mut self) {
        let LogTarget::File(path) = &self.target else {
            return;
        };
        match open(path) {
            Ok(f) => {
                self.sink = Sink::File(f);
                log::info!("access log: reopened {}", path.display());
            }
            Err(e) => log::error!(
                "access log: cannot reopen {} ({e}); still writing to the file open before",
                path.display()
            ),
        }
    }

    fn write(&mut self, batch: Batch) {
        let result = match &mut self.sink {
            Sink::File(f) => f.write_all(&batch.bytes),
            Sink::Stderr => write_stderr(&batch.bytes),
        };
        match result {
            Ok(()) => {
                self.counters
                    .written
                    .fetch_add(batch.lines, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    log::info!("access log: writing to {} again", self.target);
                }
            }
            Err(e) => {
                self.counters
                    .dropped_write_error
                    .fetch_add(batch.lines, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    log::error!(
                        "access log: cannot write to {} ({e}); lines are dropped and counted \
                         until a write succeeds; proxying goes on",
                        self.target
                    );
                }
            }
        }
    }
}

/// Writes whole lines to stderr in pieces a pipe keeps whole.
fn write_stderr(bytes: &[u8]) -> io::Result<()> {
    let mut err = io::stderr().lock();
    let mut rest = bytes;
    while !rest.is_empty() {
        let cut = if rest.len() <= PIPE_ATOMIC_BYTES {
            rest.len()
        } else {
            // The last line end within the piece; a longer line goes whole, alone.
            match rest[..PIPE_ATOMIC_BYTES].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        err.write_all(&rest[..cut])?;
        rest = &rest[cut..];
    }
    Ok(())
}
