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
    for mode in ["containers", "swarm", "auto"] {
        let yaml = format!(
            "backends:\n  - name: web\n    match_labels: [app_name=web]\ndocker:\n  mode: {mode}\n  swarm_poll_ms: 500\n"
        );
        let (code, text) = check(&dir, &format!("mode-{mode}.yml"), &yaml);
        assert_eq!(code, Some(0), "{mode}: {text}");
    }
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
            "host.yml",
            format!("routes:\n  - {{path_prefix: /, backend: a, host: 'a.*.com'}}\n{backend}"),
            "routes[0].host",
            "is not a host name",
        ),
        (
            "host-port.yml",
            format!("routes:\n  - {{path_prefix: /, backend: a, host: 'a.com:80'}}\n{backend}"),
            "routes[0].host",
            "no port",
        ),
        (
            "same-route.yml",
            format!("routes:\n  - {{path_prefix: /, backend: a, host: A.com}}\n  - {{path_prefix: /, backend: a, host: a.com}}\n{backend}"),
            "routes[1].path_prefix",
            "duplicate path_prefix \"/\" for host \"a.com\"",
        ),
        (
            "strip-and-rewrite.yml",
            format!("routes:\n  - {{path_prefix: /a, backend: a, strip_prefix: true, rewrite_prefix: /b}}\n{backend}"),
            "routes[0].rewrite_prefix",
            "exclude each other",
        ),
        (
            "rewrite.yml",
            format!("routes:\n  - {{path_prefix: /a, backend: a, rewrite_prefix: 'b?x'}}\n{backend}"),
            "routes[0].rewrite_prefix",
            "must start with '/'",
        ),
        (
            "framing-header.yml",
            format!("routes:\n  - path_prefix: /a\n    backend: a\n    request_headers: {{set: {{Content-Length: '5'}}}}\n{backend}"),
            "routes[0].request_headers.set",
            "\"Content-Length\" is framing, routing or set by rgate itself",
        ),
        (
            "forwarded-header.yml",
            format!("routes:\n  - path_prefix: /a\n    backend: a\n    request_headers: {{remove: [X-Forwarded-For]}}\n{backend}"),
            "routes[0].request_headers.remove",
            "set by rgate itself",
        ),
        (
            "response-header.yml",
            format!("routes:\n  - path_prefix: /a\n    backend: a\n    response_headers: {{set: {{'Bad Name': x}}}}\n{backend}"),
            "routes[0].response_headers.set",
            "is not a header field name",
        ),
        (
            "header-value.yml",
            format!("routes:\n  - path_prefix: /a\n    backend: a\n    response_headers: {{set: {{X-A: \"a\\u0001b\"}}}}\n{backend}"),
            "routes[0].response_headers.set.X-A",
            "control characters",
        ),
        (
            "log-format.yml",
            format!("{backend}access_log:\n  path: stderr\n  format: xml\n"),
            "access_log.format",
            "not one of combined, json",
        ),
        (
            "timeout.yml",
            format!("{backend}timeouts:\n  connect_ms: 0\n"),
            "timeouts.connect_ms",
            "greater than 0",
        ),
        (
            "docker-mode.yml",
            format!("{backend}docker:\n  mode: kubernetes\n"),
            "docker.mode",
            "\"kubernetes\" is not one of containers, swarm, auto",
        ),
        (
            "swarm-poll-zero.yml",
            format!("{backend}docker:\n  mode: swarm\n  swarm_poll_ms: 0\n"),
            "docker.swarm_poll_ms",
            "0 ms is outside 100..=60000",
        ),
        (
            "swarm-poll-long.yml",
            format!("{backend}docker:\n  swarm_poll_ms: 3600000\n"),
            "docker.swarm_poll_ms",
            "3600000 ms is outside 100..=60000",
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
}

// ----- the demo configs -----

fn repo_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn yaml(name: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo_file(name)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `make run` without Docker runs rgate on config.local.yml: it must pass `--check`, and be the
/// same demo as config.yml (routes, default response, backend names) with fixed addresses on
/// 127.0.0.1 instead of Docker labels.
/// deploy/stack.yml cannot drift from the image's config: each backend of config.yml is a
/// service whose `deploy.labels` carry its `match_labels` and an `rgate.port`; rgate is a
/// global service on a host-mode port with the Docker socket, on the backends' network.
#[test]
fn the_swarm_stack_runs_rgate_globally_in_front_of_services_labelled_for_config_yml() {
    let stack = yaml("deploy/stack.yml");
    let config = yaml("config.yml");
    let services = &stack["services"];
    for b in config["backends"].as_sequence().unwrap() {
        let name = b["name"].as_str().unwrap();
        let service = &services[name];
        let labels = &service["deploy"]["labels"];
        for pair in b["match_labels"].as_sequence().unwrap() {
            let (k, v) = pair.as_str().unwrap().split_once('=').unwrap();
            assert_eq!(labels[k].as_str(), Some(v), "{name}: service label {k}");
        }
        let port: u16 = labels["rgate.port"].as_str().unwrap().parse().unwrap();
        assert_eq!(port, 8080, "{name}: the demo backend's port");
        assert_eq!(
            service["networks"][0],
            stack["services"]["rgate"]["networks"][0]
        );
        assert!(
            service["deploy"]["replicas"].as_u64().unwrap() >= 2,
            "{name}"
        );
    }
    let rgate = &services["rgate"];
    assert_eq!(rgate["deploy"]["mode"].as_str(), Some("global"));
    assert_eq!(rgate["ports"][0]["mode"].as_str(), Some("host"));
    assert_eq!(rgate["ports"][0]["target"].as_u64(), Some(8080));
    assert_eq!(
        rgate["volumes"][0].as_str(),
        Some("/var/run/docker.sock:/var/run/docker.sock")
    );
    assert_eq!(rgate["hostname"].as_str(), Some("{{.Node.Hostname}}"));
    let network = rgate["networks"][0].as_str().unwrap();
    assert_eq!(
        stack["networks"][network]["driver"].as_str(),
        Some("overlay")
    );
}

#[test]
fn the_demo_configs_pass_check_and_the_local_one_is_the_docker_demo_on_fixed_addresses() {
    for name in ["config.yml", "config.local.yml"] {
        let out = rgate(&["--check", "--config", repo_file(name).to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
    }
    let docker = yaml("config.yml");
    let local = yaml("config.local.yml");
    assert_eq!(local["routes"], docker["routes"]);
    assert_eq!(local["default_response"], docker["default_response"]);
    let names = |v: &serde_yaml::Value| -> Vec<String> {
        v["backends"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&local), names(&docker));
    for b in local["backends"].as_sequence().unwrap() {
        assert!(b.get("match_labels").is_none(), "{b:?}: no Docker");
        let addrs = b["addresses"].as_sequence().expect("fixed addresses");
        assert!(!addrs.is_empty(), "{b:?}");
        for a in addrs {
            let addr: std::net::SocketAddr = a.as_str().unwrap().parse().unwrap();
            assert!(
                addr.ip().is_loopback(),
                "{addr}: the local demo stays on 127.0.0.1"
            );
        }
    }
}

/// A demo backend process on a port of its own choosing, killed (with its process group) on drop.
struct DemoBackend {
    process: common::ProcessGroup,
    addr: std::net::SocketAddr,
}

impl DemoBackend {
    /// `demo-backend` on 127.0.0.1 port 0 (`BIND`, `PORT`, as scripts/demo-local.sh starts it,
    /// but on a port the kernel picks; it is read back from /proc, since the demo backend logs
    /// the port it was given), once its health check answers (bounded).
    fn start(service: &str) -> DemoBackend {
        let bin = env!("CARGO_BIN_EXE_demo-backend");
        let mut cmd = Command::new(bin);
        cmd.env("SERVICE_NAME", service)
            .env("BIND", "127.0.0.1")
            .env("PORT", "0")
            .stderr(std::process::Stdio::null());
        let mut process = common::ProcessGroup::spawn(&mut cmd);
        let pid = process.id();
        let port = common::wait_for(common::limits::START, "demo-backend to listen", || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("demo-backend exited: {status}");
            }
            common::listening_port(pid)
        });
        common::wait_until(common::limits::START, "demo-backend's health check", || {
            Command::new(bin)
                .arg("--check")
                .env("PORT", port.to_string())
                .status()
                .is_ok_and(|s| s.success())
        });
        DemoBackend {
            process,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }
}

/// The local demo end to end, on free ports instead of config.local.yml's fixed ones: the
/// demo backends bound to 127.0.0.1 (`BIND`), rgate on config.local.yml with only the
/// addresses changed, and the README's demo requests.
#[test]
fn the_local_demo_answers_the_readme_requests() {
    let mut text = std::fs::read_to_string(repo_file("config.local.yml")).unwrap();
    let mut backends = Vec::new();
    for (service, fixed) in [("payment", "127.0.0.1:9081"), ("orders", "127.0.0.1:9082")] {
        assert!(text.contains(fixed), "config.local.yml names {fixed}");
        let backend = DemoBackend::start(service);
        text = text.replace(fixed, &backend.addr.to_string());
        backends.push(backend);
    }
    let gw = common::Gateway::start(&text);
    for (path, service) in [("/api/payment/x", "payment"), ("/api/orders/42", "orders")] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["service"], service, "{path}");
        assert_eq!(r.json()["path"], path);
    }
    let r = gw.get("/elsewhere");
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "This is not reachable")
    );
    for mut b in backends {
        assert!(
            b.process.child.try_wait().unwrap().is_none(),
            "a demo backend died"
        );
    }
}
