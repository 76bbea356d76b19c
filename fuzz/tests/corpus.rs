//! Replays every file of `corpus/request` and `corpus/response` through the fuzz targets'
//! checks, on stable Rust and without a fuzzer (`make fuzz-replay`). All failures are
//! listed, not just the first: each is a way rgate's output differs from its input.

use std::path::Path;

use rgate_fuzz::{Target, Verdict};

/// Seeds per target that must reach the checks (not be refused), so that a corpus of
/// inputs rgate refuses cannot pass vacuously.
const MIN_CHECKED: usize = 20;

fn replay(target: Target) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target.name());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    // The failures are reported below, once each, without a backtrace per file.
    std::panic::set_hook(Box::new(|_| {}));
    let (mut checked, mut failed) = (0, Vec::new());
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        match target.verdict(&std::fs::read(file).expect("readable corpus file")) {
            Verdict::RefusedOrIncomplete => {}
            Verdict::Agrees => checked += 1,
            Verdict::Differs(why) => {
                println!("DIFFERS corpus/{}/{name}: {why}\n", target.name());
                checked += 1;
                failed.push(name);
            }
        }
    }
    println!(
        "corpus/{}: {} files, {checked} reached the checks, {} differ",
        target.name(),
        files.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} files in corpus/{} differ (DIFFERS lines above): {failed:#?}",
        failed.len(),
        target.name()
    );
    assert!(checked >= MIN_CHECKED, "too few seeds reach the checks");
}

#[test]
fn request_corpus() {
    replay(Target::Request);
}

#[test]
fn response_corpus() {
    replay(Target::Response);
}
