//! Headless Chromium for the dashboard tests: found on `PATH` (or the test says loudly that it
//! is skipped, unless `RGATE_REQUIRE_CHROMIUM=1`, set by CI, makes that a failure), run once
//! per page load with a fresh profile, no way out but 127.0.0.1, and a time limit.
//!
//! Chromium is kept off the network three ways: the flags that turn off its own traffic
//! (background networking, component updates, sync, …), a resolver that fails every name and
//! address but 127.0.0.1, and a proxy that refuses, for everything but loopback (which
//! Chromium never sends through a proxy).
//!
//! Not for: reading the DOM it dumps (`dom.rs`).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{dead_port, temp_dir, DeadPort, ProcessGroup, TempDir};

/// The longest one Chromium run may take; then it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// The page's own time (Chromium's virtual clock, which runs as fast as the page lets it):
/// its first render and two refreshes after it (one every 2 s).
const VIRTUAL_TIME_MS: u32 = 5000;
/// Set to 1 (CI) to fail instead of skipping when there is no `chromium`.
const REQUIRE: &str = "RGATE_REQUIRE_CHROMIUM";
/// The lines of Chromium's stderr shown when a run fails.
const STDERR_SHOWN: usize = 40;

/// The flags of every run.
const FLAGS: [&str; 15] = [
    "--headless",
    // Tests run as root in CI containers, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-default-browser-check",
    "--metrics-recording-only",
    // Chromium maps IP literals too: 127.0.0.1 must be left alone.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/// The `chromium` command, with a directory for its profiles and output, and the refusing
/// proxy; all released when dropped.
pub struct Chromium {
    binary: PathBuf,
    proxy: DeadPort,
    dir: TempDir,
    runs: AtomicUsize,
}

impl Chromium {
    /// Chromium, or None once `test` has said (on the terminal, past the test harness's
    /// capture) that it is skipped. With `RGATE_REQUIRE_CHROMIUM=1` a missing Chromium fails
    /// the test instead.
    pub fn find(test: &str) -> Option<Chromium> {
        let Some(binary) = on_path("chromium") else {
            if std::env::var(REQUIRE).as_deref() == Ok("1") {
                panic!("{test}: this test needs `chromium` on PATH, and {REQUIRE}=1");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: no `chromium` on PATH, so the /stats page was not tried \
                 in a browser. Install it (apt-get install chromium), or set {REQUIRE}=1 to \
                 fail instead. ***\n"
            );
            return None;
        };
        Some(Chromium {
            binary,
            proxy: dead_port(),
            dir: temp_dir("chromium"),
            runs: AtomicUsize::new(0),
        })
    }

    /// Loads `url` and returns the document as the page's script left it (`--dump-dom`).
    pub fn dump_dom(&self, url: &str) -> String {
        let out = self.run("dump-dom", &["--dump-dom".into(), url.into()]);
        String::from_utf8(out).unwrap_or_else(|e| panic!("the DOM of {url} is not UTF-8: {e}"))
    }

    /// Loads `url` in a `width`×`height` window and writes what it shows to `png`.
    pub fn screenshot(&self, url: &str, png: &Path, (width, height): (u32, u32)) {
        let _ = std::fs::remove_file(png);
        self.run(
            "screenshot",
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={width},{height}"),
                url.into(),
            ],
        );
    }

    /// One bounded run with a fresh profile; its stdout.
    fn run(&self, what: &str, args: &[String]) -> Vec<u8> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let home = self.dir.join(format!("{what}-{n}"));
        std::fs::create_dir_all(&home).expect("create the profile directory");
        let (out, err) = (home.join("stdout"), home.join("stderr"));
        let mut cmd = Command::new(&self.binary);
        cmd.args(FLAGS)
            .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
            .arg(format!(
                "--user-data-dir={}",
                home.join("profile").display()
            ))
            .arg(format!("--proxy-server=http://{}", self.proxy.addr))
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("XDG_CACHE_HOME", &home)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&err).expect("create stderr file"));
        // Its own process group: whatever it starts dies with it when `process` is dropped.
        let mut process = ProcessGroup::spawn(&mut cmd);
        let stderr_tail = || {
            let text = std::fs::read_to_string(&err).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(STDERR_SHOWN)..].join("\n")
        };
        match process.wait_exit(RUN_LIMIT) {
            None => {
                process.kill_all();
                panic!(
                    "chromium {what} {args:?} did not finish within {RUN_LIMIT:?}; stderr:\n{}",
                    stderr_tail()
                );
            }
            Some(status) if !status.success() => {
                panic!(
                    "chromium {what} {args:?}: {status}; stderr:\n{}",
                    stderr_tail()
                )
            }
            Some(_) => {}
        }
        std::fs::read(&out).expect("read chromium's stdout")
    }
}

/// The first executable file called `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
