//! The session routes: `POST /sessions`, `POST /sessions/{id}/execute`,
//! `GET /sessions/{id}`, `DELETE /sessions/{id}`. Bodies are validated here
//! into `crate::session` calls; the answers reuse `/execute`'s shapes.
//!
//! The id in the path is a capability: it is never logged (the session layer
//! logs a redacted prefix), and a wrong one is a plain 404.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

use super::body::RequestBody;
use super::error::{json_response, ApiError};
use super::files::{parse_files, FileCaps};
use super::request::{type_name, whole_number};
use super::routes::{authorize, success, App};
use crate::session::{rfc3339, SessionError, SessionInfo, SessionSpec, Sessions};

const CREATE_FIELDS: [&str; 4] = ["timeout", "memory", "idle_timeout", "files"];
const EXECUTE_FIELDS: [&str; 2] = ["code", "timeout"];

/// Whether `path` is one of the session routes.
pub fn is_session_path(path: &str) -> bool {
    path == "/sessions" || path.starts_with("/sessions/")
}

/// Routes a request under `/sessions`.
pub async fn route(
    app: &App,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &mut RequestBody,
) -> Response<Full<Bytes>> {
    let result = match app.sessions.as_ref() {
        None => Err(ApiError::NotFound),
        Some(sessions) => match authorize(app, headers) {
            Err(error) => Err(error),
            Ok(()) => dispatch(app, sessions, method, path, headers, body).await,
        },
    };
    match result {
        Ok(response) => {
            app.metrics.request("ok");
            response
        }
        Err(error) => {
            app.metrics.request(error.kind().as_str());
            error.into_response()
        }
    }
}

async fn dispatch(
    app: &App,
    sessions: &Sessions,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &mut RequestBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let rest = path.strip_prefix("/sessions").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    match (parts.as_slice(), method) {
        ([], &Method::POST) => create(app, sessions, headers, body).await,
        ([], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        ([id], &Method::GET) if !id.is_empty() => info(sessions, id),
        ([id], &Method::DELETE) if !id.is_empty() => {
            sessions.close(id).map_err(api_error)?;
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        ([id], _) if !id.is_empty() => Err(ApiError::MethodNotAllowed { allow: "GET, DELETE" }),
        ([id, "execute"], &Method::POST) if !id.is_empty() => execute(app, sessions, id, headers, body).await,
        ([id, "execute"], _) if !id.is_empty() => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        _ => Err(ApiError::NotFound),
    }
}

#[derive(Serialize)]
struct CreatedBody {
    id: String,
    idle_timeout: f64,
    expires_at: String,
}

#[derive(Serialize)]
struct InfoBody<'a> {
    id: &'a str,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    calls: u64,
}

async fn create(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
    body: &mut RequestBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let fields = read_object(app, headers, body, &CREATE_FIELDS).await?;
    let caps = FileCaps { max_files: app.limits.max_files, max_bytes: app.limits.max_files_bytes };
    let spec = SessionSpec {
        timeout: seconds(&fields, "timeout")?,
        memory_mib: mib(&fields, "memory")?,
        idle_timeout: seconds(&fields, "idle_timeout")?,
        files: parse_files(fields.get("files"), caps).map_err(ApiError::InvalidRequest)?,
    };
    let created = sessions.create(spec).await.map_err(api_error)?;
    let created = created.map_err(ApiError::Script)?;
    let body = CreatedBody {
        id: created.id,
        idle_timeout: created.idle_timeout.as_secs_f64(),
        expires_at: rfc3339(created.expires_at),
    };
    Ok(json_response(StatusCode::CREATED, &body))
}

fn info(sessions: &Sessions, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let SessionInfo { created_at, last_used_at, expires_at, calls } = sessions.info(id).map_err(api_error)?;
    let body = InfoBody {
        id,
        created_at: rfc3339(created_at),
        last_used_at: rfc3339(last_used_at),
        expires_at: rfc3339(expires_at),
        calls,
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn execute(
    app: &App,
    sessions: &Sessions,
    id: &str,
    headers: &HeaderMap,
    body: &mut RequestBody,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let started = Instant::now();
    let fields = read_object(app, headers, body, &EXECUTE_FIELDS).await?;
    let code = match fields.get("code") {
        Some(Value::String(code)) => code.clone(),
        None => {
            return Err(ApiError::InvalidRequest(
                "field \"code\" is required: the cell's Python source".into(),
            ))
        }
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "field \"code\" must be a string, got {}",
                type_name(other)
            )))
        }
    };
    let timeout = seconds(&fields, "timeout")?;
    let report = sessions.run(id, code, timeout).await.map_err(api_error)?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "session cell answered");
    success(report, "session")
}

async fn read_object(
    app: &App,
    headers: &HeaderMap,
    body: &mut RequestBody,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.read_json(headers, app.http.max_body_bytes, app.http.body_read_timeout).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::InvalidRequest(format!(
            "request body must be a JSON object, got {}",
            type_name(&value)
        )));
    };
    if let Some(unknown) = fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ApiError::InvalidRequest(format!(
            "unknown field \"{unknown}\"; allowed fields: {}",
            allowed.join(", ")
        )));
    }
    Ok(fields)
}

/// A positive number of seconds (the range is the session layer's to check).
fn seconds(fields: &Map<String, Value>, name: &str) -> Result<Option<Duration>, ApiError> {
    let wrong = |got: String| {
        ApiError::InvalidRequest(format!("field \"{name}\" must be a positive number of seconds, got {got}"))
    };
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 1e9 => {
                Ok(Some(Duration::from_secs_f64(secs).max(crate::http::request::MIN_TIMEOUT)))
            }
            _ => Err(wrong(n.to_string())),
        },
        Some(other) => Err(wrong(type_name(other).into())),
    }
}

fn mib(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    let wrong = |got: String| {
        ApiError::InvalidRequest(format!("field \"{name}\" must be a whole number of MiB, got {got}"))
    };
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => whole_number(n).map(Some).ok_or_else(|| wrong(n.to_string())),
        Some(other) => Err(wrong(type_name(other).into())),
    }
}

/// The API error a session error answers as.
pub(crate) fn api_error(error: SessionError) -> ApiError {
    match error {
        SessionError::NotFound => ApiError::SessionNotFound,
        SessionError::Busy => ApiError::SessionBusy,
        SessionError::TooMany { max: 0 } => ApiError::SessionsDisabled,
        SessionError::TooMany { max } => ApiError::TooManySessions { max },
        SessionError::Invalid(why) => ApiError::InvalidRequest(why),
        SessionError::Unavailable(why) => {
            tracing::error!(error = %why, "session sandbox unavailable");
            ApiError::Unavailable(why)
        }
        SessionError::WorkerLost(why) => {
            tracing::warn!(error = %why, "session worker lost");
            ApiError::WorkerLost(why)
        }
    }
}
