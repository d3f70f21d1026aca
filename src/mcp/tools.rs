//! The MCP server's tools: what `tools/list` shows and where `tools/call`
//! goes.
//!
//! One [`Tools`] value is made per MCP request (the endpoint is stateless)
//! from cheap clones. Each tool is a module with its `NAME`, its `tool()`
//! description and a function from arguments to a job; this file only
//! lists and dispatches them. `session_run` and `session_close` call the
//! service's session API ([`Sessions`]) and are listed only when sessions
//! are on (`--max-sessions` above 0): a model is not offered a tool that
//! cannot work. Called anyway, they answer a tool error saying sessions are
//! disabled.

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
use super::{result, run_python, session_close, session_run};
use crate::config::LimitsConfig;
use crate::executor::Executor;
use crate::session::{SessionSpec, Sessions};

const INSTRUCTIONS: &str = "pyexec runs Python in isolated sandboxes with numpy, pandas and \
matplotlib. Use run_python for calculations, data analysis and plots; each call starts from a \
clean interpreter.";

const SESSION_INSTRUCTIONS: &str = " To keep variables between calls (a notebook), use \
session_run: its answer's session_id names the session for later calls; close it with \
session_close when done.";

/// What the tools share; cloned into every request's handler.
#[derive(Clone)]
pub struct Tools {
    executor: Executor,
    limits: Arc<LimitsConfig>,
    metrics: McpMetrics,
    next_call: Arc<AtomicU64>,
    sessions: Option<Sessions>,
}

impl Tools {
    /// Tools that run code on `executor` within `limits`.
    pub fn new(executor: Executor, limits: LimitsConfig, metrics: McpMetrics) -> Self {
        let next_call = Arc::new(AtomicU64::new(1));
        Self { executor, limits: Arc::new(limits), metrics, next_call, sessions: None }
    }

    /// The same tools plus the session tools on `sessions`.
    #[must_use]
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The sessions, when they are on.
    fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref().filter(|sessions| sessions.enabled())
    }

    fn list(&self) -> Vec<Tool> {
        let mut tools = vec![run_python::tool(&self.limits)];
        if self.sessions().is_some() {
            tools.push(session_run::tool(&self.limits));
            tools.push(session_close::tool());
        }
        tools
    }

    fn names(&self) -> String {
        self.list().iter().map(|tool| tool.name.to_string()).collect::<Vec<_>>().join(", ")
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

    async fn session_run(&self, request: &CallToolRequestParams) -> CallToolResult {
        let Some(sessions) = self.sessions() else {
            return result::from_session_error(crate::session::SessionError::TooMany { max: 0 });
        };
        let call = match session_run::call(request.arguments.as_ref(), &self.limits) {
            Ok(call) => call,
            Err(error) => return result::from_error(&error),
        };
        let id = match call.session_id {
            Some(id) => id,
            None => {
                let spec = SessionSpec { files: call.files, ..SessionSpec::default() };
                match sessions.create(spec).await {
                    Ok(Ok(created)) => created.id,
                    Ok(Err(report)) => return result::from_cell(None, &report),
                    Err(error) => return result::from_session_error(error),
                }
            }
        };
        match sessions.run(&id, call.code, call.timeout).await {
            Ok(report) => result::from_cell(Some(&id), &report),
            Err(error) => result::from_session_error(error),
        }
    }

    fn session_close(&self, request: &CallToolRequestParams) -> CallToolResult {
        let Some(sessions) = self.sessions() else {
            return result::from_session_error(crate::session::SessionError::TooMany { max: 0 });
        };
        let id = match session_close::session_id(request.arguments.as_ref()) {
            Ok(id) => id,
            Err(error) => return result::from_error(&error),
        };
        match sessions.close(&id) {
            Ok(()) => result::closed(&id),
            Err(error) => result::from_session_error(error),
        }
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pyexec", env!("CARGO_PKG_VERSION")))
            .with_instructions(if self.sessions().is_some() {
                format!("{INSTRUCTIONS}{SESSION_INSTRUCTIONS}")
            } else {
                INSTRUCTIONS.to_string()
            })
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
            session_run::NAME => self.session_run(&request).await,
            session_close::NAME => self.session_close(&request),
            other => {
                // An unknown tool is the client's protocol error (-32602).
                self.metrics.call("unknown", "unknown_tool", started);
                return Err(ErrorData::invalid_params(
                    format!("unknown tool \"{other}\"; tools/list shows the tools: {}", self.names()),
                    None,
                ));
            }
        };
        self.metrics.call(&request.name, result::kind(&answer), started);
        Ok(answer.into())
    }
}
