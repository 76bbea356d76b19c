//! Tests of `stats/store.rs`.

use super::*;
use crate::stats::traffic::code_slot;

fn delta(status: u16, ms: u64, n: u64) -> Totals {
    let mut d = Totals::default();
    for key in [
        Key::total(),
        Key::new(Scope::Instance, "api", "10.0.0.1:80"),
    ] {
        let t = d.entry(key);
        for _ in 0..n {
            t.codes.0[code_slot(status)] += 1;
            t.latency.record(ms * 1_000_000);
            t.bytes_in += 100;
        }
        if status >= 500 {
            t.errors[ErrorKind::Connect.index()] += n;
        }
    }
    d
}

/// A database path in a fresh directory of its own, removed (with the database) on drop.
struct TmpDb(PathBuf);

impl TmpDb {
    fn path(&self) -> PathBuf {
        self.0.join("stats.db")
    }
}

impl Drop for TmpDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> TmpDb {
    let dir = std::env::temp_dir().join(format!("rgate-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TmpDb(dir)
}

#[test]
fn deltas_add_up_and_read_back() {
    let mut s = Store::in_memory(1000);
    let (t1, h1) = s.add(&delta(200, 5, 3), 10, 0, 0).unwrap();
    assert_eq!(t1, delta(200, 5, 3));
    assert_eq!(h1.len(), 1);
    let (t2, h2) = s.add(&delta(503, 50, 2), 10, 0, 0).unwrap();
    let mut expected = delta(200, 5, 3);
    expected.merge(&delta(503, 50, 2));
    assert_eq!(t2, expected);
    assert_eq!(h2.len(), 1);
    assert_eq!((h2[0].requests, h2[0].errors), (5, 2));
    assert_eq!(h2[0].latency.count(), 5);
    assert_eq!(s.read(0).unwrap().0, expected);
}

#[test]
fn two_writers_on_one_file_both_count() {
    let dir = tmp("two-writers");
    let path = dir.path();
    let mut a = Store::open(&path, 1).unwrap();
    let mut b = Store::open(&path, 2).unwrap();
    assert_eq!(b.created_at(), 1, "the first creation time is kept");
    a.add(&delta(200, 1, 4), 5, 0, 0).unwrap();
    let (t, _) = b.add(&delta(200, 1, 6), 5, 0, 0).unwrap();
    assert_eq!(t.get(&Key::total()).unwrap().requests().total, 10);
    let mode: String = a
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn old_history_is_pruned() {
    let mut s = Store::in_memory(0);
    s.add(&delta(200, 1, 1), 100, 0, 0).unwrap();
    s.add(&delta(200, 1, 1), 200, 0, 0).unwrap();
    let (_, h) = s.add(&Totals::default(), 300, 150, 0).unwrap();
    assert_eq!(h.iter().map(|m| m.minute).collect::<Vec<_>>(), vec![200]);
    let left: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM history_buckets WHERE minute < 150",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn unusable_files_are_refused_with_a_reason() {
    let dir = tmp("garbage");
    let path = dir.path();
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let e = Store::open(&path, 0).err().expect("garbage refused");
    assert!(e.to_string().contains("not a database"), "{e}");
    let e = Store::open(path.parent().unwrap(), 0).err().unwrap();
    assert!(e.to_string().contains("directory"), "{e}");
    let e = Store::open(Path::new("/nonexistent-dir/x/stats.db"), 0).err();
    assert!(e.is_some());
}
