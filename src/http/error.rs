//! The one table from every failure to an HTTP answer: who caused it decides
//! the class (client -> 4xx, the user's script -> 422 with a kind, capacity
//! -> 503, us -> 500), and every answer has the contract's JSON shape.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub use super::error_kind::ErrorKind;
use crate::protocol::{Outcome, RunReport, Usage};

/// The wait a client is told for a capacity answer that frees up soon (a
/// busy pool, the connection cap, a lost worker).
const SHORT_WAIT: Duration = Duration::from_secs(1);
/// The wait for one that takes longer (a sandbox that cannot start, the
/// session cap).
const LONG_WAIT: Duration = Duration::from_secs(5);

/// One row of the error table: what an [`ApiError`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The HTTP status, always `kind.status()`.
    pub status: StatusCode,
    /// The answer's `kind`.
    pub kind: ErrorKind,
    /// `Retry-After`, for the answers a retry can cure.
    pub retry_after: Option<Duration>,
    /// Whether the answer has `Connection: close` (the connection is not
    /// reused after it).
    pub close: bool,
}

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON.
    InvalidJson(String),
    /// JSON, but not a valid request; the message names the field.
    InvalidRequest(String),
    /// A token is configured and the request lacks it.
    Unauthorized,
    /// No such path.
    NotFound,
    /// Known path, wrong method.
    MethodNotAllowed {
        /// The methods the path takes.
        allow: &'static str,
    },
    /// Body over the limit.
    PayloadTooLarge {
        /// The limit in bytes.
        max: u64,
    },
    /// Not `application/json`.
    UnsupportedMediaType,
    /// The body did not arrive within the body read timeout.
    RequestTimeout {
        /// The timeout.
        limit: Duration,
    },
    /// The script failed; the report holds the verdict and its output.
    Script(Box<RunReport>),
    /// No worker free within the queue timeout.
    Overloaded {
        /// Suggested wait.
        retry_after: Duration,
    },
    /// Every connection slot is taken (`--max-connections`); answered by
    /// the accept loop, which then closes the connection.
    TooManyConnections {
        /// The limit.
        max: usize,
    },
    /// The sandbox cannot start.
    Unavailable(String),
    /// The service lost the worker running the request (its nsjail or
    /// zygote died or hung, not by the script's doing) and a retry on
    /// another worker was lost too, or had no time left.
    WorkerLost(String),
    /// 404 `session_not_found`: no such session (or it ended or expired).
    SessionNotFound,
    /// 409 `session_busy`: the session is running another call.
    SessionBusy,
    /// 503 `overloaded`: `--max-sessions` are open.
    TooManySessions {
        /// The limit.
        max: usize,
    },
    /// 404 `sessions_disabled`: `--max-sessions` is 0.
    SessionsDisabled,
    /// A bug of ours; details are in the log under the request id.
    Internal {
        /// Correlates the answer with the log line.
        request_id: String,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceback: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdout_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stderr_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    /// Session cells only: whether the error ended the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    session_ended: Option<bool>,
}

/// The contract's error kind of a failed run (`ok` for a run that did not fail).
pub fn outcome_kind(outcome: Outcome) -> &'static str {
    ErrorKind::of_outcome(outcome).map_or("ok", ErrorKind::as_str)
}

fn default_message(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::SyntaxError => "the script does not compile",
        Outcome::MissingMain => "main() is not defined",
        Outcome::RuntimeError => "main() raised an exception",
        Outcome::ResultNotJson => "main() returned a value that is not JSON",
        Outcome::ResultTooLarge => "main()'s result is too large",
        Outcome::Timeout => "the run exceeded its timeout",
        Outcome::MemoryLimit => "the run exceeded its memory limit",
        Outcome::Killed => "the run was killed or exited without a result",
        Outcome::WorkerLost => "the service lost the worker running this request; retry",
    }
}

/// The `error` of a failed run: the worker's message, or the verdict's own.
pub fn script_message(report: &RunReport) -> String {
    report.error.clone().unwrap_or_else(|| default_message(report.outcome).into())
}

/// Captured output as text: UTF-8 with replacement characters.
pub fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl ApiError {
    /// The one row of the error table this answer is: its kind (which
    /// decides the status), `Retry-After`, and whether the connection is
    /// closed after it.
    pub fn row(&self) -> Row {
        let (kind, retry_after, close) = match self {
            Self::InvalidJson(_) => (ErrorKind::InvalidJson, None, false),
            Self::InvalidRequest(_) => (ErrorKind::InvalidRequest, None, false),
            Self::Unauthorized => (ErrorKind::Unauthorized, None, false),
            Self::NotFound => (ErrorKind::NotFound, None, false),
            Self::MethodNotAllowed { .. } => (ErrorKind::MethodNotAllowed, None, false),
            Self::PayloadTooLarge { .. } => (ErrorKind::PayloadTooLarge, None, false),
            Self::UnsupportedMediaType => (ErrorKind::UnsupportedMediaType, None, false),
            Self::RequestTimeout { .. } => (ErrorKind::RequestTimeout, None, true),
            // A run that ended `ok` is not an error; answering it as one is
            // a bug of the caller, told as such.
            Self::Script(report) => {
                (ErrorKind::of_outcome(report.outcome).unwrap_or(ErrorKind::Internal), None, false)
            }
            Self::Overloaded { retry_after } => (ErrorKind::Overloaded, Some(*retry_after), false),
            Self::TooManyConnections { .. } => (ErrorKind::Overloaded, Some(SHORT_WAIT), true),
            Self::TooManySessions { .. } => (ErrorKind::Overloaded, Some(LONG_WAIT), false),
            Self::SessionsDisabled => (ErrorKind::SessionsDisabled, None, false),
            Self::SessionNotFound => (ErrorKind::SessionNotFound, None, false),
            Self::SessionBusy => (ErrorKind::SessionBusy, None, false),
            Self::Unavailable(_) => (ErrorKind::Unavailable, Some(LONG_WAIT), false),
            Self::WorkerLost(_) => (ErrorKind::WorkerLost, Some(SHORT_WAIT), false),
            Self::Internal { .. } => (ErrorKind::Internal, None, false),
        };
        Row { status: kind.status(), kind, retry_after, close }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.row().status
    }

    /// The contract's `kind`.
    pub fn kind(&self) -> ErrorKind {
        self.row().kind
    }

    /// How long a client should wait before retrying (`Retry-After`), for
    /// the capacity answers (503) that have one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.row().retry_after
    }

    /// Answers of each kind, one per way the service makes it (the docs
    /// table and the spec test are built from these).
    pub fn examples(kind: ErrorKind) -> Vec<ApiError> {
        let script = |outcome| vec![Self::Script(Box::new(RunReport::synthesized(outcome, None)))];
        match kind {
            ErrorKind::InvalidJson => vec![Self::InvalidJson("expected value at line 1 column 1".into())],
            ErrorKind::InvalidRequest => vec![Self::InvalidRequest("field \"script\" is required".into())],
            ErrorKind::Unauthorized => vec![Self::Unauthorized],
            ErrorKind::NotFound => vec![Self::NotFound],
            ErrorKind::MethodNotAllowed => vec![Self::MethodNotAllowed { allow: "POST" }],
            ErrorKind::RequestTimeout => vec![Self::RequestTimeout { limit: Duration::from_secs(10) }],
            ErrorKind::PayloadTooLarge => vec![Self::PayloadTooLarge { max: 1 << 20 }],
            ErrorKind::UnsupportedMediaType => vec![Self::UnsupportedMediaType],
            ErrorKind::SyntaxError => script(Outcome::SyntaxError),
            ErrorKind::MissingMain => script(Outcome::MissingMain),
            ErrorKind::RuntimeError => script(Outcome::RuntimeError),
            ErrorKind::ResultNotJson => script(Outcome::ResultNotJson),
            ErrorKind::ResultTooLarge => script(Outcome::ResultTooLarge),
            ErrorKind::Timeout => script(Outcome::Timeout),
            ErrorKind::MemoryLimit => script(Outcome::MemoryLimit),
            ErrorKind::Killed => script(Outcome::Killed),
            ErrorKind::Overloaded => vec![
                Self::Overloaded { retry_after: SHORT_WAIT },
                Self::TooManyConnections { max: 256 },
                Self::TooManySessions { max: 4 },
            ],
            ErrorKind::Unavailable => vec![Self::Unavailable("nsjail not found".into())],
            ErrorKind::WorkerLost => vec![Self::WorkerLost("worker 3 died (zygote gone)".into())],
            ErrorKind::Internal => vec![Self::Internal { request_id: "0".into() }],
            ErrorKind::SessionNotFound => vec![Self::SessionNotFound],
            ErrorKind::SessionBusy => vec![Self::SessionBusy],
            ErrorKind::SessionsDisabled => vec![Self::SessionsDisabled],
        }
    }

    /// The human-readable `error` of the answer.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidJson(why) | Self::InvalidRequest(why) => why.clone(),
            Self::Unauthorized => "missing or wrong API token: send 'Authorization: Bearer <token>'".into(),
            Self::NotFound => "no such endpoint; POST /execute runs a script".into(),
            Self::MethodNotAllowed { allow } => format!("method not allowed here; use {allow}"),
            Self::PayloadTooLarge { max } => format!("request body is larger than the {max}-byte limit"),
            Self::UnsupportedMediaType => {
                "send the body as JSON with 'Content-Type: application/json' (POST /execute also takes multipart/form-data, e.g. curl -F script=@job.py)".into()
            }
            Self::Script(report) => script_message(report),
            Self::RequestTimeout { limit } => format!(
                "the request body did not arrive within {} s; send it faster (the connection is closed)",
                limit.as_secs_f64()
            ),
            Self::Overloaded { retry_after } => {
                format!("all workers are busy; retry in {} s", retry_after.as_secs().max(1))
            }
            Self::TooManyConnections { max } => {
                format!("too many open connections (the limit is {max}); retry in 1 s")
            }
            Self::Unavailable(why) => format!("the sandbox cannot start: {why}"),
            Self::WorkerLost(why) => format!(
                "the service lost the worker running this request (not the script's doing): {why}; retry in 1 s"
            ),
            Self::SessionNotFound => {
                "no such session (it never existed, or it ended or expired); create one with POST /sessions".into()
            }
            Self::SessionBusy => "the session is running another call; wait for its answer, then retry".into(),
            Self::SessionsDisabled => {
                "sessions are off on this service (--max-sessions is 0); use POST /execute".into()
            }
            Self::TooManySessions { max } => {
                format!("{max} sessions are open, the most --max-sessions allows; delete one or retry in 5 s")
            }
            Self::Internal { request_id } => format!("internal error; please report request id {request_id}"),
        }
    }

    /// The full HTTP answer.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let message = self.message();
        let row = self.row();
        let kind = row.kind.as_str();
        let body = match &self {
            Self::Script(report) => ErrorBody {
                error: &message,
                kind,
                stdout: Some(output_text(&report.stdout)),
                stderr: Some(output_text(&report.stderr)),
                traceback: report.traceback.as_deref(),
                stdout_truncated: report.stdout_truncated,
                stderr_truncated: report.stderr_truncated,
                usage: report.usage.as_ref(),
                session_ended: report.session_ended,
            },
            _ => ErrorBody {
                error: &message,
                kind,
                stdout: None,
                stderr: None,
                traceback: None,
                stdout_truncated: false,
                stderr_truncated: false,
                usage: None,
                session_ended: None,
            },
        };
        let mut response = json_response(row.status, &body);
        let headers = response.headers_mut();
        if let Some(wait) = row.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        if row.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        match &self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unauthorized => {
                headers.insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON answer with the given status.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    // Serializing our own plain structs cannot fail; fall back to a fixed body.
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"error":"cannot encode the answer","kind":"internal"}"#.to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
