//! The command line of the real binary: `--version`, and `--check` on valid and invalid
//! configs (exit 0, or exit 2 with a message naming the file, the field and why).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn rgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rgate"))
        .args(args)
        .env_remove("RGATE_DRIVER")
        .output()
        .expect("run rgate")
}

fn check(dir: &Path, name: &str, yaml: &str) -> (Option<i32>, String) {
    let file = dir.join(name);
    std::fs::write(&file, yaml).unwrap();
    let out = rgate(&["--check", "--config", file.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn version_prints_the_crate_version() {
    let out = rgate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("rgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_a_valid_config() {
    let dir = common::temp_dir("cli");
    let (code, text) = check(
        &dir,
        "good.yml",
        concat!(
            "routes:\n",
            "  - path_prefix: /api/payment\n",
            "    backend: payment\n",
            "default_response:\n",
            "  body: This is not reachable\n",
            "  status_code: 403\n",
            "backends:\n",
            "  - name: payment\n",
            "    match_labels: [app_name=payment, env=production]\n",
            "  - name: static\n",
            "    addresses: ['127.0.0.1:9']\n",
        ),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("good.yml"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_refuses_bad_configs_with_exit_2_naming_file_field_and_reason() {
    let dir = common::temp_dir("cli");
    let backend = "backends:\n  - name: a\n    addresses: ['127.0.0.1:9']\n";
    for (name, yaml, field, reason) in [
        (
            "unknown-backend.yml",
            format!("routes:\n  - path_prefix: /a\n    backend: nope\n{backend}"),
            "routes[0].backend",
            "unknown backend \"nope\"",
        ),
        (
            "prefix.yml",
            format!("routes:\n  - path_prefix: api\n    backend: a\n{backend}"),
            "routes[0].path_prefix",
            "must start with '/'",
        ),
        (
            "status.yml",
            "default_response:\n  body: x\n  status_code: 1000\n".to_string(),
            "default_response.status_code",
            "not an HTTP status code",
        ),
        (
            "labels.yml",
            "backends:\n  - name: a\n    match_labels: [nokeyvalue]\n".to_string(),
            "backends[0].match_labels[0]",
            "key=value",
        ),
        (
            "timeout.yml",
            format!("{backend}timeouts:\n  connect_ms: 0\n"),
            "timeouts.connect_ms",
            "greater than 0",
        ),
        (
            "unknown-field.yml",
            "routes:\n  - path_prefix: /a\n    backend: a\n    bogus: 1\n".to_string(),
            "routes[0]",
            "unknown field `bogus`",
        ),
    ] {
        let (code, text) = check(&dir, name, &yaml);
        assert_eq!(code, Some(2), "{name}: {text}");
        assert!(text.contains(name), "{name}: the file is named: {text}");
        assert!(text.contains(field), "{name}: the field is named: {text}");
        assert!(text.contains(reason), "{name}: the reason is given: {text}");
    }
    // Not YAML at all, and a file that does not exist.
    let (code, text) = check(&dir, "broken.yml", "routes: [\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("broken.yml"), "{text}");
    let missing = dir.join("missing.yml");
    let out = rgate(&["--check", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yml"));
    let _ = std::fs::remove_dir_all(dir);
}
