//! `make bench`'s Rust peer: the smallest Pingora reverse proxy that does what rgate does in
//! the bench — `/api/bench…` (a plain string prefix, like rgate's `path_prefix`) to one
//! backend over pooled keep-alive connections, with the same forwarded fields
//! (`X-Forwarded-For`, `-Host`, `-Proto`), and everything else answered with a 403
//! "This is not reachable" on a connection that stays open.
//!
//! One worker thread by default: `threads: 1` with `work_stealing: false` gives Pingora one
//! single-threaded tokio runtime for the service (with `--threads N`, N of them: Pingora's
//! own idea of thread-per-core). No TLS feature, no logger (so no access log), no config
//! file: everything is set here.
//!
//! Usage: `rgate-bench-pingora --listen 127.0.0.1:PORT --to 127.0.0.1:PORT --run-dir DIR
//! [--threads N]` (`DIR` holds Pingora's pid file and upgrade socket path). It is not a
//! general proxy.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

/// The routed prefix; the same as bench.py's `ROUTE`.
const ROUTE: &str = "/api/bench";
/// The default response's status and body; the same as bench.py's `DEFAULT_BODY`.
const DEFAULT_STATUS: u16 = 403;
const DEFAULT_BODY: &[u8] = b"This is not reachable";
/// Worker threads of the proxy service unless `--threads` says otherwise.
const DEFAULT_THREADS: usize = 1;
/// Idle backend connections kept per process (Pingora's default, stated).
const UPSTREAM_POOL: usize = 128;
/// On SIGTERM, stop accepting at once and give requests in flight this long.
const SHUTDOWN_SECONDS: u64 = 1;

/// The proxy: one backend, no per-request state.
struct BenchProxy {
    backend: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BenchProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    /// Answers everything outside the route itself; `true` means "answered, do not proxy".
    async fn request_filter(&self, session: &mut Session, _ctx: &mut Self::CTX) -> Result<bool> {
        if session.req_header().uri.path().starts_with(ROUTE) {
            return Ok(false);
        }
        // Not `respond_error_with_body`: it closes the client connection, and rgate's and
        // nginx's default response keeps it open.
        let mut head = ResponseHeader::build(DEFAULT_STATUS, Some(2))?;
        head.insert_header("Content-Type", "text/plain; charset=utf-8")?;
        head.insert_header("Content-Length", DEFAULT_BODY.len())?;
        session.write_response_header(Box::new(head), false).await?;
        session
            .write_response_body(Some(Bytes::from_static(DEFAULT_BODY)), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        // Plain HTTP (`tls: false`); connections go back to Pingora's pool after each
        // response that allows it.
        Ok(Box::new(HttpPeer::new(self.backend, false, String::new())))
    }

    /// The forwarded fields rgate and nginx add.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            upstream_request.append_header("X-Forwarded-For", client.ip().to_string())?;
        }
        if let Some(host) = session.req_header().headers.get("host").cloned() {
            upstream_request.insert_header("X-Forwarded-Host", host)?;
        }
        upstream_request.insert_header("X-Forwarded-Proto", "http")?;
        Ok(())
    }
}

/// The command line: `--threads` is optional, the rest required.
struct Args {
    listen: SocketAddr,
    backend: SocketAddr,
    run_dir: String,
    threads: usize,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut listen = None;
    let mut backend = None;
    let mut run_dir = None;
    let mut threads = DEFAULT_THREADS;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let addr = || {
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(addr()?),
            "--to" => backend = Some(addr()?),
            "--run-dir" => run_dir = Some(value),
            "--threads" => {
                threads = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--threads: {value:?} is not a positive number"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        backend: backend.ok_or("--to is required")?,
        run_dir: run_dir.ok_or("--run-dir is required")?,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rgate-bench-pingora: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: false,
        upstream_keepalive_pool_size: UPSTREAM_POOL,
        pid_file: format!("{}/pingora.pid", args.run_dir),
        upgrade_sock: format!("{}/pingora_upgrade.sock", args.run_dir),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_SECONDS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        BenchProxy {
            backend: args.backend,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    eprintln!("rgate-bench-pingora: listening on {}", args.listen);
    server.run_forever()
}
