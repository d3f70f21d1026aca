//! Request routing and the handlers: `/execute`, `/health`, `/ready`,
//! `/metrics`, `/openapi.json`, and the hook that hands `/mcp` to
//! [`crate::mcp`]. Handlers talk to the executor and read the pool's readiness;
//! they never see a worker or a pid.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use super::auth::BearerAuth;
use super::body::{Media, RequestBody};
use super::error::{json_response, output_text, ApiError};
use super::multipart::parse_form;
use super::request::parse_job;
use super::sessions::{self, is_session_path};
use crate::config::{HttpConfig, LimitsConfig};
use crate::executor::{ExecuteError, Executor};
use crate::mcp::{self, McpBody, McpEndpoint};
use crate::metrics::{GaugeGuard, Metrics};
use crate::pool::WorkerPool;
use crate::protocol::{Figure, FigureFormat, Outcome, RunReport, Usage};
use crate::session::Sessions;

/// Everything the handlers share.
pub struct App {
    /// Runs jobs.
    pub executor: Executor,
    /// For readiness and gauges only.
    pub pool: WorkerPool,
    /// Service metrics.
    pub metrics: Metrics,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Notebook sessions (`None`: the session routes answer 404).
    pub sessions: Option<Sessions>,
    /// Guards `/execute`, the session routes and `/mcp` when `--api-token` is set.
    auth: Option<BearerAuth>,
    /// `/mcp`, unless `--mcp off`.
    mcp: Option<McpEndpoint>,
    next_request: AtomicU64,
    boot: u64,
}

impl App {
    /// Handler state.
    pub fn new(
        executor: Executor,
        pool: WorkerPool,
        metrics: Metrics,
        http: HttpConfig,
        limits: LimitsConfig,
    ) -> Self {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() & 0xffff_ffff)
            .unwrap_or(0);
        let auth = http.api_token.as_ref().map(BearerAuth::new);
        let mcp = http
            .mcp
            .then(|| McpEndpoint::new(executor.clone(), limits.clone(), &metrics, http.max_body_bytes));
        let mcp = mcp.and_then(|endpoint| {
            endpoint.inspect_err(|error| tracing::error!(error = %error, "/mcp is off")).ok()
        });
        Self {
            executor,
            pool,
            metrics,
            http,
            limits,
            sessions: None,
            auth,
            mcp,
            next_request: AtomicU64::new(1),
            boot,
        }
    }

    /// Serves the session routes from `sessions`.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.mcp = self.mcp.take().map(|endpoint| endpoint.with_sessions(sessions.clone()));
        self.sessions = Some(sessions);
        self
    }

    fn request_id(&self) -> String {
        format!("{:08x}-{}", self.boot, self.next_request.fetch_add(1, Ordering::Relaxed))
    }
}

/// An answer's body: the API's own JSON, or what the MCP endpoint sends.
pub type ResponseBody = Either<Full<Bytes>, McpBody>;

/// Routes one request.
pub async fn route(app: &App, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, incoming) = request.into_parts();
    let mut body = RequestBody::new(incoming);
    let mut response = match (parts.uri.path(), &app.mcp) {
        (mcp::PATH, Some(endpoint)) => mcp(app, endpoint, parts, &mut body).await,
        _ => api(app, &parts, &mut body).await.map(Either::Left),
    };
    if body.finish() {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `/mcp`: the token and the body limits of `/execute`, then the MCP
/// endpoint. The body is read here so that a slow, oversized or non-JSON
/// POST gets the same answer as on `/execute` (408, 413, 415).
async fn mcp(
    app: &App,
    endpoint: &McpEndpoint,
    parts: hyper::http::request::Parts,
    body: &mut RequestBody,
) -> Response<ResponseBody> {
    let read = async {
        authorize(app, &parts.headers)?;
        if parts.method != Method::POST {
            return Ok(Bytes::new()); // the transport answers 405 itself
        }
        body.read_json(&parts.headers, app.http.max_body_bytes, app.http.body_read_timeout).await
    };
    match read.await {
        Ok(bytes) => endpoint.handle(parts, bytes).await.map(Either::Right),
        Err(error) => {
            app.metrics.request(error.kind().as_str());
            error.into_response().map(Either::Left)
        }
    }
}

async fn api(
    app: &App,
    parts: &hyper::http::request::Parts,
    body: &mut RequestBody,
) -> Response<Full<Bytes>> {
    match (parts.uri.path(), &parts.method) {
        (path, method) if is_session_path(path) => {
            sessions::route(app, method, path, &parts.headers, body).await
        }
        ("/execute", &Method::POST) => execute(app, &parts.headers, body).await,
        ("/health", &Method::GET | &Method::HEAD) => json_response(StatusCode::OK, &Status { status: "ok" }),
        ("/ready", &Method::GET | &Method::HEAD) => ready(app),
        ("/metrics", &Method::GET) => metrics(app),
        ("/openapi.json", &Method::GET) => openapi(),
        (path, _) => {
            let error = match path {
                "/execute" => ApiError::MethodNotAllowed { allow: "POST" },
                "/health" | "/ready" => ApiError::MethodNotAllowed { allow: "GET, HEAD" },
                "/metrics" | "/openapi.json" => ApiError::MethodNotAllowed { allow: "GET" },
                _ => ApiError::NotFound,
            };
            app.metrics.request(error.kind().as_str());
            error.into_response()
        }
    }
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

fn ready(app: &App) -> Response<Full<Bytes>> {
    if app.pool.is_ready() {
        json_response(StatusCode::OK, &Status { status: "ready" })
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &Status { status: "not ready" })
    }
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    app.pool.update_gauges();
    let mut response = Response::new(Full::new(Bytes::from(app.metrics.encode())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The OpenAPI 3.1 description of this API (`docs/openapi.json`), served
/// as is. `tests/openapi.rs` and `tests/api-spec/check.sh` keep it true.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

fn openapi() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI_JSON.as_bytes())));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(Serialize)]
struct Success<'a> {
    result: &'a RawValue,
    /// Session cells only: `repr()` of a last expression that is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
    stdout: String,
    stderr: String,
    duration_ms: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdout_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stderr_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    /// Always present in a 200 (empty when nothing was drawn).
    figures: Vec<FigureJson>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    figures_truncated: bool,
}

/// A figure as the API returns it: the image base64-encoded.
#[derive(Serialize)]
struct FigureJson {
    format: &'static str,
    data: String,
    width: u32,
    height: u32,
}

impl From<&Figure> for FigureJson {
    fn from(figure: &Figure) -> Self {
        use base64::Engine;
        let format = match figure.format {
            FigureFormat::Png => "png",
        };
        let data = base64::engine::general_purpose::STANDARD.encode(&figure.data);
        Self { format, data, width: figure.width, height: figure.height }
    }
}

async fn execute(app: &App, headers: &HeaderMap, body: &mut RequestBody) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let _in_flight = GaugeGuard::new(&app.metrics.in_flight);
    let request_id = app.request_id();
    let (kind, mut response) = match handle_execute(app, headers, body, &request_id).await {
        Ok(response) => ("ok", response),
        Err(error) => (error.kind().as_str(), error.into_response()),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    app.metrics.request(kind);
    app.metrics.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn handle_execute(
    app: &App,
    headers: &HeaderMap,
    body: &mut RequestBody,
    request_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    authorize(app, headers)?;
    let (media, body) =
        body.read_json_or_form(headers, app.http.max_body_bytes, app.http.body_read_timeout).await?;
    let job = match media {
        Media::Json => parse_job(&body, &app.limits)?,
        Media::FormData { boundary } => parse_form(body, &boundary, &app.limits).await?,
    };
    let report = app.executor.execute(job).await.map_err(|error| execute_error(error, request_id))?;
    success(report, request_id)
}

/// The answer to a job that got no verdict, logged once here.
pub fn execute_error(error: ExecuteError, request_id: &str) -> ApiError {
    match error {
        ExecuteError::Overloaded { retry_after } => ApiError::Overloaded { retry_after },
        ExecuteError::Unavailable(why) => {
            tracing::error!(request_id, error = %why, "sandbox unavailable");
            ApiError::Unavailable(why)
        }
        ExecuteError::WorkerLost(why) => {
            tracing::warn!(request_id, error = %why, "worker lost; answered 503 worker_lost");
            ApiError::WorkerLost(why)
        }
        ExecuteError::Internal(why) => {
            tracing::error!(request_id, error = %why, "internal error");
            ApiError::Internal { request_id: request_id.into() }
        }
    }
}

pub(super) fn success(report: RunReport, request_id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    if report.outcome != Outcome::Ok {
        return Err(ApiError::Script(Box::new(report)));
    }
    // The worker is untrusted: its JSON is checked, not just passed through.
    let text = report.result.as_deref().and_then(|bytes| std::str::from_utf8(bytes).ok()).unwrap_or("");
    let result: &RawValue = serde_json::from_str(text).map_err(|error| {
        tracing::error!(request_id, error = %error, "worker sent a result that is not JSON");
        ApiError::Internal { request_id: request_id.into() }
    })?;
    Ok(json_response(
        StatusCode::OK,
        &Success {
            result,
            display: report.display.as_deref(),
            stdout: output_text(&report.stdout),
            stderr: output_text(&report.stderr),
            duration_ms: report.duration_ms,
            stdout_truncated: report.stdout_truncated,
            stderr_truncated: report.stderr_truncated,
            usage: report.usage.as_ref(),
            figures: report.figures.iter().map(FigureJson::from).collect(),
            figures_truncated: report.figures_truncated,
        },
    ))
}

pub(super) fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    match &app.auth {
        Some(auth) if !auth.allows(headers) => Err(ApiError::Unauthorized),
        _ => Ok(()),
    }
}
