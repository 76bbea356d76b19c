//! Replays every file of `corpus/request` and `corpus/response` through the fuzz targets'
//! checks, on stable Rust and without a fuzzer (`make fuzz-replay`). All failures are
//! listed, not just the first: each is a way rgate's forwarding differs from its input.

use std::panic;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files
}

/// Runs `check` on each file; panics listing the files that failed. Returns how many
/// files were checked at all (not refused or incomplete), so an empty run shows.
fn replay(dir: &str, check: fn(&[u8]), reached_checks: fn(&[u8]) -> bool) -> usize {
    let files = files(dir);
    assert!(!files.is_empty(), "corpus/{dir} is empty");
    let mut failed = Vec::new();
    let mut checked = 0;
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        checked += usize::from(reached_checks(&data));
        if panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    println!(
        "corpus/{dir}: {} files, {checked} reached the checks",
        files.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} files in corpus/{dir} fail (messages above): {failed:#?}",
        failed.len(),
        files.len()
    );
    checked
}

#[test]
fn request_corpus() {
    let checked = replay("request", rgate_fuzz::check_request, |d| {
        rgate_fuzz::request::forward(d).is_some()
    });
    assert!(checked >= 5, "too few request seeds reach the checks");
}

#[test]
fn response_corpus() {
    let checked = replay("response", rgate_fuzz::check_response, |d| {
        rgate_fuzz::response::relay(d).is_some()
    });
    assert!(checked >= 5, "too few response seeds reach the checks");
}
