//! Tests of `config.rs`.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.yml"), text)
}

const SEED: &str = "
routes:
  - path_prefix: /api/payment
    backend: payment
default_response:
  body: This is not reachable
  status_code: 403
backends:
  - name: payment
    match_labels: [app_name=payment, env=production]
";

#[test]
fn seed_format_parses() {
    let c = parse(SEED).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].prefix, "/api/payment");
    assert_eq!(c.routes[0].backend, 0);
    assert_eq!(c.default_response.status, 403);
    assert_eq!(c.default_response.body, "This is not reachable");
    assert_eq!(
        c.backends[0].discovery,
        Discovery::DockerLabels(vec![
            ("app_name".into(), "payment".into()),
            ("env".into(), "production".into())
        ])
    );
}

#[test]
fn static_addresses_parse() {
    let c = parse(
            "routes: [{path_prefix: /, backend: a}]\nbackends: [{name: a, addresses: ['127.0.0.1:9001']}]",
        )
        .unwrap();
    assert_eq!(
        c.backends[0].discovery,
        Discovery::Static(vec![StaticAddress {
            addr: "127.0.0.1:9001".parse().unwrap(),
            weight: 1
        }])
    );
}

fn expect_err(text: &str, field: &str, reason_part: &str) {
    let e = parse(text).unwrap_err();
    assert_eq!(e.field, field, "{e}");
    assert!(e.reason.contains(reason_part), "{e}");
    assert!(e.to_string().starts_with("test.yml: "), "{e}");
}

#[test]
fn rejects_bad_configs_naming_the_field() {
    expect_err(
            "routes: [{path_prefix: /a, backend: nope}]\nbackends: [{name: a, addresses: ['127.0.0.1:1']}]",
            "routes[0].backend",
            "unknown backend \"nope\"",
        );
    expect_err(
            "routes: [{path_prefix: /a, backend: a}, {path_prefix: /a, backend: a}]\nbackends: [{name: a, addresses: ['127.0.0.1:1']}]",
            "routes[1].path_prefix",
            "duplicate",
        );
    expect_err(
        "backends: [{name: a, addresses: ['127.0.0.1:1']}, {name: a, addresses: ['127.0.0.1:1']}]",
        "backends[1].name",
        "duplicate",
    );
    expect_err(
        "backends: [{name: a, match_labels: [novalue]}]",
        "backends[0].match_labels[0]",
        "key=value",
    );
    expect_err(
        "default_response: {body: x, status_code: 700}",
        "default_response.status_code",
        "100..=599",
    );
    expect_err(
            "routes: [{path_prefix: api, backend: a}]\nbackends: [{name: a, addresses: ['127.0.0.1:1']}]",
            "routes[0].path_prefix",
            "must start with '/'",
        );
    expect_err("backends: [{name: a}]", "backends[0]", "neither");
    expect_err(
        "backends: [{name: a, addresses: ['not an address']}]",
        "backends[0].addresses[0]",
        "host:port",
    );
    expect_err(
        "headers: {underscores: allow}",
        "headers.underscores",
        "not one of drop, forward, reject",
    );
    expect_err(
        "timeouts: {connect_ms: 0}",
        "timeouts.connect_ms",
        "greater than 0",
    );
}

#[test]
fn rejects_unknown_keys() {
    let e = parse("routes: []\nbogus: 1\n").unwrap_err();
    assert!(e.reason.contains("unknown field `bogus`"), "{e}");
    let e = parse("routes: [{path_prefix: /a, backend: a, extra: 1}]").unwrap_err();
    assert_eq!(e.field, "routes[0]", "{e}");
    assert!(e.reason.contains("unknown field `extra`"), "{e}");
}

#[test]
fn docker_mode_defaults_to_auto_polling_swarm_tasks_every_two_seconds() {
    let c = parse(SEED).unwrap();
    assert_eq!(c.docker.mode, DockerMode::Auto);
    assert_eq!(c.docker.swarm_poll, Duration::from_secs(2));
    let c = parse(&format!(
        "{SEED}docker: {{mode: swarm, swarm_poll_ms: 750}}\n"
    ))
    .unwrap();
    assert_eq!(c.docker.mode, DockerMode::Swarm);
    assert_eq!(c.docker.swarm_poll, Duration::from_millis(750));
    let c = parse(&format!("{SEED}docker: {{mode: containers}}\n")).unwrap();
    assert_eq!(c.docker.mode, DockerMode::Containers);
    expect_err(
        &format!("{SEED}docker: {{mode: Swarm}}\n"),
        "docker.mode",
        "not one of containers, swarm, auto",
    );
    expect_err(
        &format!("{SEED}docker: {{swarm_poll_ms: 99}}\n"),
        "docker.swarm_poll_ms",
        "outside 100..=60000",
    );
}
