//! The Model Context Protocol endpoint, `/mcp`: pyexec as a tool server for
//! agents, over MCP's Streamable HTTP transport (the official Rust SDK,
//! `rmcp`), on the same hyper server and port as the HTTP API.
//!
//! What the HTTP layer keeps: its route hook (`http::routes`) checks
//! `--api-token` like `/execute` does and reads a POST body under the same
//! limits (`--max-body-bytes`, `--body-read-timeout-secs`, JSON only), then
//! hands the request here; connection limits, write stalls and draining on
//! shutdown apply as to any other request. This module owns the MCP side:
//! the transport's configuration, the tools ([`tools`], [`run_python`]),
//! how a run becomes a tool result ([`result`]) and its metrics. It must
//! not see a worker: runs go through the [`Executor`] like `/execute`'s.
//!
//! The endpoint is stateless (no `Mcp-Session-Id`): every POST carries
//! one JSON-RPC message and gets one JSON answer, so it holds no memory
//! between requests. State between tool calls is the service's own
//! sessions (`session_run`, `session_close` over [`crate::session`]),
//! named by the `session_id` argument, not MCP's.

mod cell;
pub mod jsonrpc;
pub mod metrics;
pub mod result;
pub mod run_python;
pub mod session_close;
pub mod session_run;
pub mod tools;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::Full;
use hyper::{Request, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::config::LimitsConfig;
use crate::executor::Executor;
use crate::metrics::{Metrics, MetricsError};
use crate::session::Sessions;
use metrics::McpMetrics;
use tools::Tools;

/// The path the endpoint answers on.
pub const PATH: &str = "/mcp";

/// The body of an MCP answer.
pub type McpBody = BoxBody<Bytes, Infallible>;

/// The `/mcp` endpoint.
#[derive(Clone)]
pub struct McpEndpoint {
    tools: Tools,
    max_body_bytes: u64,
    service: StreamableHttpService<Tools, NeverSessionManager>,
}

impl McpEndpoint {
    /// An endpoint whose tools run on `executor` within `limits`.
    ///
    /// # Errors
    /// When its metrics cannot be registered.
    pub fn new(
        executor: Executor,
        limits: LimitsConfig,
        metrics: &Metrics,
        max_body_bytes: u64,
    ) -> Result<Self, MetricsError> {
        let tools = Tools::new(executor, limits, McpMetrics::register(metrics)?);
        let service = service(tools.clone(), max_body_bytes);
        Ok(Self { tools, max_body_bytes, service })
    }

    /// The same endpoint with the session tools on `sessions` (listed only
    /// when sessions are on, `--max-sessions` above 0).
    #[must_use]
    pub fn with_sessions(self, sessions: Sessions) -> Self {
        let tools = self.tools.with_sessions(sessions);
        let service = service(tools.clone(), self.max_body_bytes);
        Self { tools, max_body_bytes: self.max_body_bytes, service }
    }

    /// Answers one request whose body was already read.
    pub async fn handle(&self, parts: hyper::http::request::Parts, body: Bytes) -> Response<McpBody> {
        if parts.method == hyper::Method::POST {
            if let Some(refused) = jsonrpc::refuse(&body) {
                return refused;
            }
        }
        self.service.handle(Request::from_parts(parts, Full::new(body))).await
    }
}

fn service(tools: Tools, max_body_bytes: u64) -> StreamableHttpService<Tools, NeverSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        .with_max_request_body_bytes(usize::try_from(max_body_bytes).unwrap_or(usize::MAX))
        // SECURITY: rmcp's Host allow-list (loopback names only) guards a
        // desktop server against DNS rebinding; pyexec is a network
        // service reached under any name, guarded by --api-token and
        // --listen. A browser page is still stopped: every cross-site
        // (and same-site) POST from a browser carries `Origin`, and any
        // request that carries one is refused (403); MCP clients are
        // not browsers and send none.
        .disable_allowed_hosts()
        .enforce_origin_validation();
    StreamableHttpService::new(move || Ok(tools.clone()), Arc::new(NeverSessionManager::default()), config)
}
