//! The MCP server's tools: what `tools/list` shows and where `tools/call`
//! goes.
//!
//! One [`Tools`] value is made per MCP request (the endpoint is stateless)
//! from cheap clones. Each tool is a module with its `NAME`, its `tool()`
//! description and a function from arguments to a job; this file only
//! lists and dispatches them. `session_run` and `session_close` will sit
//! beside `run_python` once the service has a session API: they call it
//! and answer through [`super::result`], which is why nothing here is
//! specific to one tool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::metrics::McpMetrics;
use super::{result, run_python};
use crate::config::LimitsConfig;
use crate::executor::Executor;

const INSTRUCTIONS: &str = "pyexec runs Python in isolated sandboxes with numpy, pandas and \
matplotlib. Use run_python for calculations, data analysis and plots; each call starts from a \
clean interpreter.";

/// What the tools share; cloned into every request's handler.
#[derive(Clone)]
pub struct Tools {
    executor: Executor,
    limits: Arc<LimitsConfig>,
    metrics: McpMetrics,
    next_call: Arc<AtomicU64>,
}

impl Tools {
    /// Tools that run code on `executor` within `limits`.
    pub fn new(executor: Executor, limits: LimitsConfig, metrics: McpMetrics) -> Self {
        Self { executor, limits: Arc::new(limits), metrics, next_call: Arc::new(AtomicU64::new(1)) }
    }

    fn list(&self) -> Vec<Tool> {
        vec![run_python::tool(&self.limits)]
    }

    async fn run_python(&self, request: &CallToolRequestParams) -> CallToolResult {
        let call_id = format!("mcp-{}", self.next_call.fetch_add(1, Ordering::Relaxed));
        let job = match run_python::job(request.arguments.as_ref(), &self.limits) {
            Ok(job) => job,
            Err(error) => return result::from_error(&error),
        };
        match self.executor.execute(job).await {
            Ok(report) => result::from_report(&report),
            Err(error) => result::from_error(&crate::http::routes::execute_error(error, &call_id)),
        }
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pyexec", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let answer = match request.name.as_ref() {
            run_python::NAME => self.run_python(&request).await,
            other => {
                // An unknown tool is the client's protocol error (-32602).
                self.metrics.call("unknown", "unknown_tool", started);
                return Err(ErrorData::invalid_params(
                    format!("unknown tool \"{other}\"; tools/list shows the tools: run_python"),
                    None,
                ));
            }
        };
        self.metrics.call(&request.name, result::kind(&answer), started);
        Ok(answer.into())
    }
}
