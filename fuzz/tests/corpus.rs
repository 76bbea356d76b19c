//! Replays every file of `corpus/request` and `corpus/response` through the fuzz targets'
//! checks, on stable Rust and without a fuzzer (`make fuzz-replay`). All failures are
//! listed, not just the first: each is a way rgate's forwarding differs from its input.

use std::panic;
use std::path::{Path, PathBuf};
use std::sync::Once;

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
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(file).expect("readable corpus file");
        checked += usize::from(reached_checks(&data));
        if let Err(panic) = quietly(|| check(&data)) {
            println!("FAIL corpus/{dir}/{name}: {panic}\n");
            failed.push(name);
        }
    }
    println!(
        "corpus/{dir}: {} files, {checked} reached the checks",
        files.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} files in corpus/{dir} fail (FAIL lines above): {failed:#?}",
        failed.len(),
        files.len()
    );
    checked
}

/// Runs `f`, turning a panic into its message (printed once by the caller, without the
/// default hook's backtrace for each file).
fn quietly(f: impl FnOnce() + panic::UnwindSafe) -> Result<(), String> {
    static SILENCE: Once = Once::new();
    SILENCE.call_once(|| panic::set_hook(Box::new(|_| {})));
    panic::catch_unwind(f).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic without a message".into())
    })
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
