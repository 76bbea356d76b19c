//! The access log: one line per request rgate handled (its own endpoints apart), to a file
//! or stderr, in nginx's `combined` format or as JSON (`format`).
//!
//! The data plane never waits for it and shares no lock with other cores: each core
//! formats its lines into its own batch (`CoreLog`) and hands a full batch — or, within
//! `FLUSH_AFTER`, a partial one — to the writer thread (`writer`) over its own bounded
//! queue. When the writer falls behind and a core's queue is full, the batch is dropped
//! and its lines counted (`rgate_access_log_dropped_total`), never queued without bound.
//! A batch holds whole lines and is written with one `write` to a file opened in append
//! mode, so lines of different cores — or of the old and the new process during a restart —
//! never interleave. `kill -USR1` reopens the file (logrotate's convention).
//!
//! A process logs exactly the requests it answered: a restart hands over the listening
//! sockets, not requests, and a draining core hands each line over as soon as it is made,
//! so the old process's last lines are written before it exits.

pub(crate) mod format;
mod writer;

use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use format::LogFormat;
use format::{write_line, Clock, Entry};
pub(crate) use writer::WriterHandle;

/// A core hands its batch over once it holds this many bytes...
const BATCH_BYTES: usize = 32 * 1024;
/// ...or this long after its first line.
const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// Batches waiting for the writer, per core; past them, batches are dropped (and counted).
const QUEUED_BATCHES: usize = 64;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Stderr => f.write_str("stderr"),
            LogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The validated `access_log` section (or `--access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub target: LogTarget,
    pub format: LogFormat,
}

/// Lines handed to the writer.
pub(crate) struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// Counts since this process started, shown in `/stats` and `/metrics`.
#[derive(Default)]
pub(crate) struct LogCounters {
    pub(crate) written: AtomicU64,
    /// Lines dropped because the writer was behind (a core's queue was full)...
    pub(crate) dropped_queue_full: AtomicU64,
    /// ...or because writing them failed.
    pub(crate) dropped_write_error: AtomicU64,
}

impl LogCounters {
    /// Lines written, dropped with the queue full, dropped on a write error.
    pub(crate) fn read(&self) -> (u64, u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.dropped_queue_full.load(Ordering::Relaxed),
            self.dropped_write_error.load(Ordering::Relaxed),
        )
    }
}

/// What the cores share of the log: their queues' ends, the format, the counters. Taken
/// by each core once, at its start (`CoreLog::new`).
pub(crate) struct SharedLog {
    format: LogFormat,
    queues: Vec<SyncSender<Batch>>,
    writer: std::thread::Thread,
    pub(crate) counters: Arc<LogCounters>,
}

impl SharedLog {
    /// Opens the log (an error here stops rgate's start: exit 2 with the path and why) and
    /// starts its writer thread, with one queue per core.
    pub(crate) fn start(
        settings: &AccessLogSettings,
        cores: usize,
    ) -> io::Result<(SharedLog, WriterHandle)> {
        let counters = Arc::new(LogCounters::default());
        let (queues, receivers): (Vec<_>, Vec<_>) = (0..cores)
            .map(|_| mpsc::sync_channel(QUEUED_BATCHES))
            .unzip();
        let handle = writer::start(settings.target.clone(), receivers, counters.clone())?;
        Ok((
            SharedLog {
                format: settings.format,
                queues,
                writer: handle.thread().clone(),
                counters,
            },
            handle,
        ))
    }
}

/// One core's end of the log.
pub(crate) struct CoreLog {
    format: LogFormat,
    queue: SyncSender<Batch>,
    writer: std::thread::Thread,
    counters: Arc<LogCounters>,
    batch: RefCell<Batch>,
    clock: RefCell<Clock>,
    flush_armed: Cell<bool>,
}

impl CoreLog {
    pub(crate) fn new(shared: &SharedLog, core: usize) -> CoreLog {
        CoreLog {
            format: shared.format,
            queue: shared.queues[core].clone(),
            writer: shared.writer.clone(),
            counters: shared.counters.clone(),
            batch: RefCell::new(Batch {
                bytes: Vec::new(),
                lines: 0,
            }),
            clock: RefCell::new(Clock::default()),
            flush_armed: Cell::new(false),
        }
    }

    /// Formats one request's line. `now`: hand it over at once (the core drains).
    pub(crate) fn write(self: &Rc<Self>, entry: &mut Entry<'_>, now: bool) {
        entry.unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let full = {
            let mut batch = self.batch.borrow_mut();
            if batch.bytes.capacity() == 0 {
                batch.bytes.reserve(BATCH_BYTES + 1024);
            }
            write_line(
                &mut batch.bytes,
                self.format,
                &mut self.clock.borrow_mut(),
                entry,
            );
            batch.lines += 1;
            batch.bytes.len() >= BATCH_BYTES
        };
        if full || now {
            self.flush();
        } else if !self.flush_armed.replace(true) {
            let log = self.clone();
            monoio::spawn(async move {
                monoio::time::sleep(FLUSH_AFTER).await;
                log.flush_armed.set(false);
                log.flush();
            });
        }
    }

    /// Hands the batch to the writer; drops and counts it when the core's queue is full.
    pub(crate) fn flush(&self) {
        let batch = std::mem::replace(
            &mut *self.batch.borrow_mut(),
            Batch {
                bytes: Vec::new(),
                lines: 0,
            },
        );
        if batch.lines == 0 {
            return;
        }
        match self.queue.try_send(batch) {
            Ok(()) => self.writer.unpark(),
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(b.lines, Ordering::Relaxed);
            }
        }
    }
}

/// How long a core that stops waits for room in its queue for its last lines.
const LAST_BATCH_WAIT: Duration = Duration::from_secs(1);

impl Drop for CoreLog {
    /// The core stops: its last lines wait a moment for room rather than being dropped.
    fn drop(&mut self) {
        let mut batch = std::mem::replace(
            self.batch.get_mut(),
            Batch {
                bytes: Vec::new(),
                lines: 0,
            },
        );
        if batch.lines == 0 {
            return;
        }
        let until = std::time::Instant::now() + LAST_BATCH_WAIT;
        loop {
            match self.queue.try_send(batch) {
                Ok(()) => return self.writer.unpark(),
                Err(TrySendError::Full(b)) if std::time::Instant::now() < until => {
                    batch = b;
                    self.writer.unpark();
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                    self.counters
                        .dropped_queue_full
                        .fetch_add(b.lines, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}
