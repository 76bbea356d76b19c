//! Where the Docker daemon is and which Engine API version to speak to it.
//!
//! The endpoint is `DOCKER_HOST` (`unix://…` or `tcp://…`), else `/var/run/docker.sock`.
//! The version is `DOCKER_API_VERSION` when set (as the docker CLI does); otherwise it is
//! negotiated: the unversioned `/version` answers on every daemon, and rgate speaks the
//! daemon's own API version capped at [`NEWEST_API`], never below the daemon's minimum.
//! docker-api's fixed default (1.42) is never used: Docker Engine 29 refuses anything
//! below 1.44, and Docker 20.10 knows nothing above 1.41.

use std::fmt;
use std::time::Duration;

use docker_api::{ApiVersion, Docker};

use super::error::DiscoveryError;

/// The default endpoint when `DOCKER_HOST` is not set.
pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The newest Engine API rgate asks for (Docker Engine 29). Discovery reads only fields that
/// have kept their shape from [`OLDEST_API`] to this one, so any version in between works.
pub(crate) const NEWEST_API: ApiVersion = ApiVersion::new(1, Some(52), None);
/// The oldest Engine API rgate can use (Docker 1.12: healthcheck status in inspect).
pub(crate) const OLDEST_API: ApiVersion = ApiVersion::new(1, Some(24), None);
/// How long one `/version` exchange may take.
const VERSION_LIMIT: Duration = Duration::from_secs(5);

/// Where the daemon is, as the user wrote it (for messages) and as docker-api takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) uri: String,
}

impl Endpoint {
    /// From the value of `DOCKER_HOST` (unset or empty: the default socket).
    pub(crate) fn from_docker_host(value: Option<&str>) -> Endpoint {
        let uri = match value.map(str::trim) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => DEFAULT_HOST.to_string(),
        };
        Endpoint { uri }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// A client speaking the negotiated (or requested) version, and that version.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    requested: Option<&str>,
) -> Result<(Docker, ApiVersion), DiscoveryError> {
    if let Some(text) = requested.map(str::trim).filter(|t| !t.is_empty()) {
        let version: ApiVersion = text
            .parse()
            .map_err(|_| DiscoveryError::ApiVersionSetting(text.to_string()))?;
        let docker = Docker::new_versioned(&endpoint.uri, version)
            .map_err(|e| setting_error(endpoint, e))?;
        return Ok((docker, version));
    }
    let probe = Docker::new(&endpoint.uri).map_err(|e| setting_error(endpoint, e))?;
    let answer = tokio::time::timeout(VERSION_LIMIT, probe.version())
        .await
        .map_err(|_| DiscoveryError::NoVersionAnswer {
            within: VERSION_LIMIT,
        })?
        .map_err(|e| DiscoveryError::VersionRequest(e.to_string()))?;
    let version = choose(
        answer.api_version.as_deref(),
        answer.min_api_version.as_deref(),
    )?;
    let docker =
        Docker::new_versioned(&endpoint.uri, version).map_err(|e| setting_error(endpoint, e))?;
    Ok((docker, version))
}

fn setting_error(endpoint: &Endpoint, e: docker_api::Error) -> DiscoveryError {
    DiscoveryError::DockerHostSetting {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    }
}

/// The version to speak, from the daemon's `ApiVersion` and `MinAPIVersion` (both from
/// `/version`; a daemon older than API 1.25 does not report a minimum).
pub(crate) fn choose(
    server: Option<&str>,
    server_min: Option<&str>,
) -> Result<ApiVersion, DiscoveryError> {
    let parse =
        |field: &'static str, text: Option<&str>| -> Result<Option<ApiVersion>, DiscoveryError> {
            match text.map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => {
                    t.parse::<ApiVersion>()
                        .map(Some)
                        .map_err(|_| DiscoveryError::VersionField {
                            field,
                            value: t.to_string(),
                        })
                }
            }
        };
    let server = parse("ApiVersion", server)?.ok_or(DiscoveryError::NoApiVersion)?;
    let server_min = parse("MinAPIVersion", server_min)?;
    if server < OLDEST_API {
        return Err(DiscoveryError::DaemonTooOld {
            speaks: server,
            needed: OLDEST_API,
        });
    }
    let mut chosen = server.min(NEWEST_API);
    if let Some(min) = server_min {
        chosen = chosen.max(min);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    const TOO_OLD: &str = "client version 1.42 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version";

    #[test]
    fn chooses_a_version_both_sides_accept() {
        let v = |s: &str| s.parse::<ApiVersion>().unwrap();
        // Docker 20.10.
        assert_eq!(choose(Some("1.41"), Some("1.12")), Ok(v("1.41")));
        // Docker 29: the newest both know.
        assert_eq!(choose(Some("1.52"), Some("1.44")), Ok(v("1.52")));
        // A daemon newer than rgate: rgate's newest.
        assert_eq!(choose(Some("1.60"), Some("1.44")), Ok(v("1.52")));
        // A daemon newer than rgate that dropped everything rgate knows: its minimum.
        assert_eq!(choose(Some("1.70"), Some("1.55")), Ok(v("1.55")));
        // Old daemons report no minimum.
        assert_eq!(choose(Some("1.24"), None), Ok(v("1.24")));
        assert!(choose(Some("1.23"), None)
            .unwrap_err()
            .to_string()
            .contains("1.24"));
        assert!(choose(None, None).is_err());
        assert!(choose(Some("one"), None).is_err());
    }

    #[test]
    fn endpoint_defaults_to_the_local_socket() {
        assert_eq!(Endpoint::from_docker_host(None).uri, DEFAULT_HOST);
        assert_eq!(Endpoint::from_docker_host(Some("")).uri, DEFAULT_HOST);
        assert_eq!(
            Endpoint::from_docker_host(Some("tcp://127.0.0.1:2375")).uri,
            "tcp://127.0.0.1:2375"
        );
    }

    /// A fake Docker Engine 29 on 127.0.0.1: `/version` answers unversioned; any versioned
    /// path below 1.44 gets Docker's real refusal; `/v1.44+/containers/json` lists nothing.
    /// Returns its `tcp://` address; it serves `requests` requests, then stops.
    fn fake_docker_29(requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let (status, body) = fake_answer(&path);
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.52\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        format!("tcp://{addr}")
    }

    fn fake_answer(path: &str) -> (&'static str, String) {
        if path == "/version" {
            return (
                "200 OK",
                r#"{"Version":"29.0.0","ApiVersion":"1.52","MinAPIVersion":"1.44","Os":"linux","Arch":"amd64"}"#.into(),
            );
        }
        let Some(rest) = path.strip_prefix("/v") else {
            return ("404 Not Found", r#"{"message":"page not found"}"#.into());
        };
        let (version, endpoint) = rest.split_once('/').unwrap_or((rest, ""));
        let version: ApiVersion = version.parse().unwrap();
        if version < ApiVersion::new(1, Some(44), None) {
            let msg = format!(
                "client version {version} is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"
            );
            return (
                "400 Bad Request",
                serde_json::json!({ "message": msg }).to_string(),
            );
        }
        if endpoint.starts_with("containers/json") {
            return ("200 OK", "[]".into());
        }
        ("404 Not Found", r#"{"message":"page not found"}"#.into())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn negotiates_with_a_daemon_that_refuses_old_clients() {
        let uri = fake_docker_29(3);
        let endpoint = Endpoint::from_docker_host(Some(&uri));
        runtime().block_on(async {
            // The fake is faithful: docker-api's default version is refused, with Docker's text.
            let naive = Docker::new_versioned(&uri, docker_api::LATEST_API_VERSION).unwrap();
            let err = naive
                .containers()
                .list(&Default::default())
                .await
                .unwrap_err();
            assert!(err.to_string().contains(TOO_OLD), "{err}");
            // Negotiation picks a version the daemon accepts, and requests then succeed.
            let (docker, version) = connect(&endpoint, None).await.unwrap();
            assert_eq!(version.to_string(), "1.52");
            let listed = docker.containers().list(&Default::default()).await.unwrap();
            assert!(listed.is_empty());
        });
    }

    #[test]
    fn docker_api_version_is_honoured_as_given() {
        let uri = fake_docker_29(1);
        let endpoint = Endpoint::from_docker_host(Some(&uri));
        runtime().block_on(async {
            // As with the docker CLI, the requested version is used without negotiation, so
            // an old one fails with the daemon's own explanation.
            let (docker, version) = connect(&endpoint, Some("1.42")).await.unwrap();
            assert_eq!(version.to_string(), "1.42");
            let err = docker
                .containers()
                .list(&Default::default())
                .await
                .unwrap_err();
            assert!(err.to_string().contains(TOO_OLD), "{err}");
            assert!(matches!(
                connect(&endpoint, Some("latest")).await,
                Err(e) if !e.retry_helps() && e.to_string().contains("DOCKER_API_VERSION")
            ));
        });
    }

    #[test]
    fn unreachable_daemon_is_a_daemon_error_naming_the_cause() {
        let endpoint = Endpoint::from_docker_host(Some("unix:///nonexistent/rgate-test.sock"));
        runtime().block_on(async {
            match connect(&endpoint, None).await {
                Err(e) if e.retry_helps() => assert!(!e.to_string().is_empty()),
                other => panic!("{:?}", other.map(|(_, v)| v)),
            }
            assert!(matches!(
                connect(&Endpoint::from_docker_host(Some("ssh://host")), None).await,
                Err(e) if !e.retry_helps() && e.to_string().contains("ssh://host")
            ));
        });
    }
}
