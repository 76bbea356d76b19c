//! The statistics database (SQLite through rusqlite, WAL mode): totals since the database
//! was created, and per-minute history.
//!
//! Every write adds a delta (`n = n + excluded.n`, maxima by `max(..)`), never an absolute
//! value, so two rgate processes alive at once (a graceful restart) both count correctly.
//! A delta and the reading-back of the totals it produced happen in one transaction, so the
//! caller always holds totals that include exactly the deltas it has written.
//!
//! Tables: `meta` (creation time, histogram layout), `traffic` / `status_counts` /
//! `error_counts` / `latency_buckets` keyed by (scope, name, instance), and `history` /
//! `history_buckets` keyed by the minute (unix seconds / 60).
//!
//! Errors: every failure is a `StoreError` (SQLite's own, or a database rgate will not use).
//! At start-up it is wrapped in a `StatsError` naming the file, and rgate exits 2; later, a
//! failed write is logged by the stats thread and retried (see `collector`).
//!
//! Not for: deciding when to write (see `collector`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use super::histogram::{Histogram, BUCKETS, LAYOUT};
use super::traffic::{Key, Scope, Totals, Traffic, CODE_SLOTS};
use super::ErrorKind;

/// How long a write waits for another process's lock before it fails (and is retried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The statistics database cannot be used at start-up: which file, and why.
#[derive(Debug)]
pub(crate) struct StatsError {
    pub(crate) path: PathBuf,
    pub(crate) reason: StoreError,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot use the statistics database {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for StatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// Why the database cannot be used, or a read or write failed.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// The path names a directory.
    IsDirectory,
    /// SQLite opened the file read-only.
    ReadOnly,
    /// SQLite would not switch to WAL (the journal mode it kept).
    NotWal(String),
    /// The file holds histograms of another bucket layout (the layout it names).
    OtherHistogramLayout(String),
    /// SQLite failed (not a database, locked too long, disk full, …).
    Sqlite(rusqlite::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::IsDirectory => f.write_str("it is a directory"),
            StoreError::ReadOnly => f.write_str("the file is read-only"),
            StoreError::NotWal(mode) => {
                write!(f, "cannot switch to WAL mode (journal mode is {mode})")
            }
            StoreError::OtherHistogramLayout(layout) => write!(
                f,
                "it was written with another latency histogram layout ({layout:?}, expected {LAYOUT:?})"
            ),
            StoreError::Sqlite(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// One minute of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MinuteRow {
    /// Unix seconds / 60.
    pub(crate) minute: i64,
    pub(crate) requests: u64,
    /// 5xx responses given to clients.
    pub(crate) errors: u64,
    pub(crate) latency: Histogram,
}

pub(crate) struct Store {
    conn: Connection,
    /// Unix seconds when the database was created.
    created_at: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traffic (
    scope TEXT NOT NULL, name TEXT NOT NULL, instance TEXT NOT NULL,
    bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL,
    latency_sum_ns INTEGER NOT NULL, latency_max_ns INTEGER NOT NULL,
    PRIMARY KEY (scope, name, instance)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status_counts (
    scope TEXT NOT NULL, name TEXT NOT NULL, instance TEXT NOT NULL,
    code INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, name, instance, code)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS error_counts (
    scope TEXT NOT NULL, name TEXT NOT NULL, instance TEXT NOT NULL,
    kind TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, name, instance, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_buckets (
    scope TEXT NOT NULL, name TEXT NOT NULL, instance TEXT NOT NULL,
    bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, name, instance, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    minute INTEGER PRIMARY KEY, requests INTEGER NOT NULL, errors INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history_buckets (
    minute INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (minute, bucket)) WITHOUT ROWID;
";

/// SQLite integers are signed; counts never get near the limit, but never wrap either.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the database at `path`, in WAL mode, and checks it can be
    /// written. `now` is unix seconds (the creation time of a new database).
    pub(crate) fn open(path: &Path, now: i64) -> Result<Store, StatsError> {
        let fail = |reason: StoreError| StatsError {
            path: path.to_path_buf(),
            reason,
        };
        if path.is_dir() {
            return Err(fail(StoreError::IsDirectory));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(e.into()))?;
        Store::init(conn, now).map_err(fail)
    }

    /// A database in memory, for tests.
    #[cfg(test)]
    pub(crate) fn in_memory(now: i64) -> Store {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        Store::init(conn, now).expect("an in-memory SQLite database")
    }

    fn init(conn: Connection, now: i64) -> Result<Store, StoreError> {
        if conn
            .is_readonly(rusqlite::DatabaseName::Main)
            .unwrap_or(false)
        {
            return Err(StoreError::ReadOnly);
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The first statement reads the header: "file is not a database" shows here.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(StoreError::NotWal(mode));
        }
        // WAL + NORMAL: a committed write survives the process being killed.
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        let mut store = Store {
            conn,
            created_at: now,
        };
        store.created_at = store.init_schema(now)?;
        Ok(store)
    }

    /// Creates the tables and checks the histogram layout; a write, so a database that
    /// cannot be written fails here rather than on the first flush.
    fn init_schema(&mut self, now: i64) -> Result<i64, StoreError> {
        let tx = self.write_transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?1)",
            params![now.to_string()],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('histogram_layout', ?1)",
            params![LAYOUT],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('opened_at', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![now.to_string()],
        )?;
        let meta = |key: &str| -> rusqlite::Result<Option<String>> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        };
        let layout = meta("histogram_layout")?.unwrap_or_default();
        if layout != LAYOUT {
            return Err(StoreError::OtherHistogramLayout(layout));
        }
        let created = meta("created_at")?.and_then(|v| v.parse().ok());
        tx.commit()?;
        Ok(created.unwrap_or(now))
    }

    /// A transaction that takes the write lock when it begins. Two processes write during a
    /// restart; a transaction that read first and then wanted to write would fail at once
    /// ("database is locked", no busy wait) if the other wrote in between, while this one
    /// waits for the lock up to `BUSY_TIMEOUT`.
    fn write_transaction(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
    }

    pub(crate) fn created_at(&self) -> i64 {
        self.created_at
    }

    /// Adds `delta` to the totals and to the history row of `minute`, prunes history older
    /// than `keep_from` (a minute), and returns the totals and the history from
    /// `history_from` on, as they are right after this write — all in one transaction.
    pub(crate) fn add(
        &mut self,
        delta: &Totals,
        minute: i64,
        keep_from: i64,
        history_from: i64,
    ) -> Result<(Totals, Vec<MinuteRow>), StoreError> {
        let tx = self.write_transaction()?;
        if !delta.is_empty() {
            add_totals(&tx, delta)?;
            if let Some(total) = delta.get(&Key::total()) {
                add_minute(&tx, minute, total)?;
            }
        }
        tx.execute("DELETE FROM history WHERE minute < ?1", [keep_from])?;
        tx.execute("DELETE FROM history_buckets WHERE minute < ?1", [keep_from])?;
        let totals = read_totals(&tx)?;
        let history = read_history(&tx, history_from)?;
        tx.commit()?;
        Ok((totals, history))
    }

    /// The totals and history as stored now (no write).
    pub(crate) fn read(
        &mut self,
        history_from: i64,
    ) -> Result<(Totals, Vec<MinuteRow>), StoreError> {
        let tx = self.conn.transaction()?;
        let totals = read_totals(&tx)?;
        let history = read_history(&tx, history_from)?;
        tx.commit()?;
        Ok((totals, history))
    }
}

fn add_totals(tx: &Transaction<'_>, delta: &Totals) -> rusqlite::Result<()> {
    let mut traffic = tx.prepare_cached(
        "INSERT INTO traffic (scope, name, instance, bytes_in, bytes_out, latency_sum_ns, latency_max_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(scope, name, instance) DO UPDATE SET
             bytes_in = bytes_in + excluded.bytes_in,
             bytes_out = bytes_out + excluded.bytes_out,
             latency_sum_ns = latency_sum_ns + excluded.latency_sum_ns,
             latency_max_ns = max(latency_max_ns, excluded.latency_max_ns)",
    )?;
    let mut codes = tx.prepare_cached(
        "INSERT INTO status_counts (scope, name, instance, code, n) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(scope, name, instance, code) DO UPDATE SET n = n + excluded.n",
    )?;
    let mut errors = tx.prepare_cached(
        "INSERT INTO error_counts (scope, name, instance, kind, n) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(scope, name, instance, kind) DO UPDATE SET n = n + excluded.n",
    )?;
    let mut buckets = tx.prepare_cached(
        "INSERT INTO latency_buckets (scope, name, instance, bucket, n) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(scope, name, instance, bucket) DO UPDATE SET n = n + excluded.n",
    )?;
    for (key, t) in &delta.scopes {
        let k = (key.scope.as_str(), key.name.as_str(), key.instance.as_str());
        traffic.execute(params![
            k.0,
            k.1,
            k.2,
            int(t.bytes_in),
            int(t.bytes_out),
            int(t.latency.sum_ns),
            int(t.latency.max_ns)
        ])?;
        for (slot, &n) in t.codes.0.iter().enumerate().filter(|(_, &n)| n > 0) {
            codes.execute(params![k.0, k.1, k.2, slot as i64, int(n)])?;
        }
        for (kind, &n) in ErrorKind::ALL.iter().zip(&t.errors).filter(|(_, &n)| n > 0) {
            errors.execute(params![k.0, k.1, k.2, kind.name(), int(n)])?;
        }
        for (b, &n) in t.latency.buckets.iter().enumerate().filter(|(_, &n)| n > 0) {
            buckets.execute(params![k.0, k.1, k.2, b as i64, int(n)])?;
        }
    }
    Ok(())
}

fn add_minute(tx: &Transaction<'_>, minute: i64, total: &Traffic) -> rusqlite::Result<()> {
    let r = total.requests();
    tx.execute(
        "INSERT INTO history (minute, requests, errors) VALUES (?1, ?2, ?3)
         ON CONFLICT(minute) DO UPDATE SET
             requests = requests + excluded.requests, errors = errors + excluded.errors",
        params![minute, int(r.total), int(r.error)],
    )?;
    let mut buckets = tx.prepare_cached(
        "INSERT INTO history_buckets (minute, bucket, n) VALUES (?1, ?2, ?3)
         ON CONFLICT(minute, bucket) DO UPDATE SET n = n + excluded.n",
    )?;
    for (b, &n) in total
        .latency
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
    {
        buckets.execute(params![minute, b as i64, int(n)])?;
    }
    Ok(())
}

fn key_of(scope: &str, name: String, instance: String) -> Option<Key> {
    Some(Key {
        scope: Scope::parse(scope)?,
        name,
        instance,
    })
}

fn read_totals(tx: &Transaction<'_>) -> rusqlite::Result<Totals> {
    let mut totals = Totals::default();
    let mut rows = tx.prepare_cached(
        "SELECT scope, name, instance, bytes_in, bytes_out, latency_sum_ns, latency_max_ns FROM traffic",
    )?;
    let mut q = rows.query([])?;
    while let Some(row) = q.next()? {
        let Some(key) = key_of(&row.get::<_, String>(0)?, row.get(1)?, row.get(2)?) else {
            continue;
        };
        let t = totals.entry(key);
        t.bytes_in = uint(row.get(3)?);
        t.bytes_out = uint(row.get(4)?);
        t.latency.sum_ns = uint(row.get(5)?);
        t.latency.max_ns = uint(row.get(6)?);
    }
    // Each counting table: (scope, name, instance, index, n) → where `n` goes in a Traffic.
    add_counts(
        tx,
        &mut totals,
        "SELECT scope, name, instance, code, n FROM status_counts",
        |t, slot: i64, n| {
            if let Some(c) = usize::try_from(slot).ok().filter(|&s| s < CODE_SLOTS) {
                t.codes.0[c] += n;
            }
        },
    )?;
    add_counts(
        tx,
        &mut totals,
        "SELECT scope, name, instance, kind, n FROM error_counts",
        |t, kind: String, n| {
            if let Some(k) = ErrorKind::ALL.iter().find(|k| k.name() == kind) {
                t.errors[k.index()] += n;
            }
        },
    )?;
    add_counts(
        tx,
        &mut totals,
        "SELECT scope, name, instance, bucket, n FROM latency_buckets",
        |t, bucket: i64, n| {
            if let Some(b) = usize::try_from(bucket).ok().filter(|&b| b < BUCKETS) {
                t.latency.buckets[b] += n;
            }
        },
    )?;
    Ok(totals)
}

/// Runs `sql` (selecting scope, name, instance, an index, and a count) and hands each row's
/// index and count to `add`, with the Traffic of that row's key.
fn add_counts<I: rusqlite::types::FromSql>(
    tx: &Transaction<'_>,
    totals: &mut Totals,
    sql: &str,
    mut add: impl FnMut(&mut Traffic, I, u64),
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut q = stmt.query([])?;
    while let Some(row) = q.next()? {
        let Some(key) = key_of(&row.get::<_, String>(0)?, row.get(1)?, row.get(2)?) else {
            continue;
        };
        add(totals.entry(key), row.get(3)?, uint(row.get(4)?));
    }
    Ok(())
}

fn read_history(tx: &Transaction<'_>, from: i64) -> rusqlite::Result<Vec<MinuteRow>> {
    let mut rows = tx.prepare_cached(
        "SELECT minute, requests, errors FROM history WHERE minute >= ?1 ORDER BY minute",
    )?;
    let mut out: Vec<MinuteRow> = rows
        .query_map([from], |r| {
            Ok(MinuteRow {
                minute: r.get(0)?,
                requests: uint(r.get(1)?),
                errors: uint(r.get(2)?),
                latency: Histogram::default(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut buckets = tx.prepare_cached(
        "SELECT minute, bucket, n FROM history_buckets WHERE minute >= ?1 ORDER BY minute",
    )?;
    let mut q = buckets.query([from])?;
    while let Some(row) = q.next()? {
        let minute: i64 = row.get(0)?;
        let bucket: i64 = row.get(1)?;
        let row_index = out.binary_search_by_key(&minute, |m| m.minute);
        if let (Ok(i), Some(b)) = (
            row_index,
            usize::try_from(bucket).ok().filter(|&b| b < BUCKETS),
        ) {
            out[i].latency.buckets[b] += uint(row.get(2)?);
        }
    }
    // A minute's slowest request is not stored: its quantiles are not capped by a maximum
    // (a maximum of 0 would make every one of them 0).
    for row in &mut out {
        row.latency.max_ns = u64::MAX;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
