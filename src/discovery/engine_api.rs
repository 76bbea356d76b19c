//! Plain `GET`s of the Engine API that answer JSON, for the swarm objects docker-api does not
//! model well enough: `/info` (is this node a swarm manager), `/services` and `/tasks`.
//!
//! Why not docker-api here: its `Task` model (docker-api-stubs 0.5) has no
//! `NetworksAttachments`, the only place the API gives a task's IP, and its raw requests are
//! private to the crate. So swarm discovery reads these three answers into its own serde
//! types (`swarm_facts`), over the same endpoint (`DOCKER_HOST`) and the same negotiated API
//! version as the rest of discovery. Events still come from docker-api's stream.
//!
//! The exchange is HTTP/1.0 on purpose: the daemon (Go's net/http) then answers without
//! chunked framing, with a `Content-Length` or ending the body by closing the connection
//! (RFC 9112 §6.3, rules 6 and 8), so the whole client is "send one head, read to the end".
//! Bounded in time and size.
//!
//! Not for: anything that streams (events), or writes.

use std::path::PathBuf;
use std::time::Duration;

use docker_api::ApiVersion;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::DiscoveryError;
use super::version::Endpoint;

/// How long one request may take, connect to last byte.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);
/// The largest answer read (a `/tasks` list of a big swarm is a few MB).
const ANSWER_LIMIT: usize = 32 << 20;
/// The most response header fields parsed.
const MAX_HEADERS: usize = 32;
/// How much one read takes.
const READ_CHUNK: usize = 64 * 1024;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Socket {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

/// The Engine API at one endpoint, spoken at one version.
#[derive(Debug, Clone)]
pub(crate) struct EngineApi {
    socket: Socket,
    version: ApiVersion,
}

impl EngineApi {
    pub(crate) fn new(
        endpoint: &Endpoint,
        version: ApiVersion,
    ) -> Result<EngineApi, DiscoveryError> {
        let socket = if let Some(path) = endpoint.uri.strip_prefix("unix://") {
            Socket::Unix(PathBuf::from(path))
        } else if let Some(host) = endpoint.uri.strip_prefix("tcp://") {
            Socket::Tcp(host.trim_end_matches('/').to_string())
        } else {
            return Err(DiscoveryError::DockerHostSetting {
                endpoint: endpoint.uri.clone(),
                reason: "not unix:// nor tcp://".into(),
            });
        };
        Ok(EngineApi { socket, version })
    }

    /// `GET /v<version><path>`, its JSON answer read as `T`. `path` holds its query, already
    /// encoded (see `query_value`).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, DiscoveryError> {
        let body = tokio::time::timeout(REQUEST_LIMIT, self.get(path))
            .await
            .map_err(|_| request_error(path, format!("no answer within {REQUEST_LIMIT:?}")))??;
        serde_json::from_slice(&body)
            .map_err(|e| request_error(path, format!("the answer is not the JSON expected: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, DiscoveryError> {
        let head = format!(
            "GET /v{}{path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: rgate\r\nAccept: application/json\r\n\r\n",
            self.version
        );
        let answer = match &self.socket {
            Socket::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                    request_error(path, format!("connecting to {}: {e}", p.display()))
                })?;
                exchange(stream, head.as_bytes()).await
            }
            Socket::Tcp(host) => {
                let stream = tokio::net::TcpStream::connect(host.as_str())
                    .await
                    .map_err(|e| request_error(path, format!("connecting to {host}: {e}")))?;
                exchange(stream, head.as_bytes()).await
            }
        }
        .map_err(|e| request_error(path, e))?;
        body_of(path, &answer)
    }
}

/// Writes the request head, reads the answer to its end: the end of its `Content-Length`
/// when it has one (a daemon, or a proxy, may keep the connection open), else the close.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
) -> Result<Vec<u8>, String> {
    stream
        .write_all(head)
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Ok(answer);
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > ANSWER_LIMIT {
            return Err(format!("the answer is over {ANSWER_LIMIT} bytes"));
        }
        if declared_end(&answer).is_some_and(|end| answer.len() >= end) {
            return Ok(answer);
        }
    }
}

/// Where an answer ends by its head's `Content-Length`, once the head is complete.
fn declared_end(answer: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(answer).ok()? else {
        return None;
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    let length: usize = std::str::from_utf8(length.value)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    head_len.checked_add(length)
}

/// The body of a whole answer: its status must be 200; a `Content-Length` bounds it.
fn body_of(path: &str, answer: &[u8]) -> Result<Vec<u8>, DiscoveryError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(request_error(
                path,
                "the answer ended inside its head".into(),
            ))
        }
        Err(e) => {
            return Err(request_error(
                path,
                format!("the answer's head is not HTTP: {e}"),
            ))
        }
    };
    let status = response.code.unwrap_or(0);
    let mut body = &answer[head_len..];
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Never sent to an HTTP/1.0 client; refused rather than misread.
            return Err(request_error(
                path,
                "the answer is chunked, to an HTTP/1.0 request".into(),
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let length: usize = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    request_error(path, "the answer's Content-Length is not a number".into())
                })?;
            body = body.get(..length).ok_or_else(|| {
                request_error(path, format!("the answer ended before its {length} bytes"))
            })?;
        }
    }
    if status != 200 {
        // Docker's errors are `{"message": "..."}`.
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        return Err(DiscoveryError::EngineAnswer {
            path: path_only(path).to_string(),
            status,
            message,
        });
    }
    Ok(body.to_vec())
}

fn request_error(path: &str, reason: String) -> DiscoveryError {
    DiscoveryError::EngineRequest {
        path: path_only(path).to_string(),
        reason,
    }
}

/// The path without its query, for messages.
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// A query value percent-encoded: every byte but the unreserved ones (RFC 3986 §2.3).
pub(crate) fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200_answer_gives_its_body_bounded_by_content_length() {
        let answer =
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
        assert_eq!(body_of("/tasks", answer).unwrap(), b"[]");
        let to_close = b"HTTP/1.0 200 OK\r\n\r\n[1]";
        assert_eq!(body_of("/tasks", to_close).unwrap(), b"[1]");
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n[]";
        assert!(matches!(
            body_of("/tasks", short),
            Err(DiscoveryError::EngineRequest { .. })
        ));
    }

    #[test]
    fn an_error_answer_carries_the_daemons_message() {
        let answer = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"message\":\"This node is not a swarm manager.\"}\n";
        assert_eq!(
            body_of("/services?x=1", answer),
            Err(DiscoveryError::EngineAnswer {
                path: "/services".into(),
                status: 503,
                message: "This node is not a swarm manager.".into()
            })
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n";
        assert!(body_of("/tasks", chunked).is_err());
    }

    #[test]
    fn an_answer_ends_at_its_content_length_or_at_the_close() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(declared_end(head), Some(head.len() + 2));
        assert_eq!(declared_end(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        assert_eq!(declared_end(b"HTTP/1.0 200 OK\r\n\r\n[]"), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The peer keeps the connection open after a whole answer: no waiting for the close.
        let (mut daemon, client) = tokio::io::duplex(1024);
        let answer = rt.block_on(async {
            daemon
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .await
                .unwrap();
            exchange(client, b"GET / HTTP/1.0\r\n\r\n").await
        });
        assert!(answer.unwrap().ends_with(b"\r\n\r\n[]"));
        drop(daemon);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value(r#"{"service":["a b"]}"#),
            "%7B%22service%22%3A%5B%22a%20b%22%5D%7D"
        );
    }

    #[test]
    fn endpoints_are_unix_or_tcp() {
        let v = ApiVersion::new(1, Some(41), None);
        let api = |uri: &str| EngineApi::new(&Endpoint { uri: uri.into() }, v).map(|a| a.socket);
        assert_eq!(
            api("unix:///var/run/docker.sock"),
            Ok(Socket::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            api("tcp://10.0.0.1:2375"),
            Ok(Socket::Tcp("10.0.0.1:2375".into()))
        );
        assert!(api("ssh://host").is_err());
    }
}
