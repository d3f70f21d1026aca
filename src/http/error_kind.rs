//! [`ErrorKind`]: every `kind` an error answer of the service can carry,
//! over HTTP and as an MCP tool error. It is the one list: the HTTP
//! status of each kind, the pre-registered `pyexec_requests_total{kind}`
//! labels ([`crate::metrics::REQUEST_KINDS`]), the spec test
//! (`tests/openapi.rs`), the error table of the docs
//! ([`crate::http::error_table`]) and the dashboards' checks
//! (`tests/error_kinds.rs`) all start from [`ErrorKind::ALL`].
//!
//! The 422 kinds are also [`Outcome`]'s names: `Outcome` is the msgpack
//! wire type, `ErrorKind` the JSON API's, kept apart on purpose and tied by
//! the exhaustive [`ErrorKind::of_outcome`] and its test.
//!
//! Adding a kind: add the variant here (the compiler then asks for its
//! status and its table text), then run `cargo test --test error_kinds
//! --test openapi`; they name every file that does not know it yet.

use hyper::StatusCode;

use crate::protocol::Outcome;
use crate::vocabulary::vocabulary;

vocabulary! {
/// The `kind` of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// 400: the body is not JSON.
    InvalidJson = "invalid_json",
    /// 400: JSON, but not a valid request.
    InvalidRequest = "invalid_request",
    /// 401: the API token is missing or wrong.
    Unauthorized = "unauthorized",
    /// 404: no such path.
    NotFound = "not_found",
    /// 404: no such session.
    SessionNotFound = "session_not_found",
    /// 404: sessions are off (`--max-sessions 0`): no session routes to
    /// create one on (a 4xx, so clients do not retry it as they do a 503).
    SessionsDisabled = "sessions_disabled",
    /// 405: known path, wrong method.
    MethodNotAllowed = "method_not_allowed",
    /// 408: the body did not arrive in time.
    RequestTimeout = "request_timeout",
    /// 409: the session is running another call.
    SessionBusy = "session_busy",
    /// 413: the body is over the limit.
    PayloadTooLarge = "payload_too_large",
    /// 415: not JSON (nor multipart on `/execute`).
    UnsupportedMediaType = "unsupported_media_type",
    /// 422: the script does not compile.
    SyntaxError = "syntax_error",
    /// 422: no callable `main`.
    MissingMain = "missing_main",
    /// 422: an uncaught exception.
    RuntimeError = "runtime_error",
    /// 422: `main()`'s value is not JSON.
    ResultNotJson = "result_not_json",
    /// 422: the result is over the limit.
    ResultTooLarge = "result_too_large",
    /// 422: the run hit its timeout.
    Timeout = "timeout",
    /// 422: the run hit its memory limit.
    MemoryLimit = "memory_limit",
    /// 422: the run died by a signal or exited without a result.
    Killed = "killed",
    /// 500: a bug of the service.
    Internal = "internal",
    /// 503: no capacity now (workers, connections or sessions).
    Overloaded = "overloaded",
    /// 503: the sandbox cannot start.
    Unavailable = "unavailable",
    /// 503: the service lost the worker running the request.
    WorkerLost = "worker_lost",
}
}

impl ErrorKind {
    /// The HTTP status every answer of this kind has.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson | Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::SessionNotFound | Self::SessionsDisabled => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::SessionBusy => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::SyntaxError
            | Self::MissingMain
            | Self::RuntimeError
            | Self::ResultNotJson
            | Self::ResultTooLarge
            | Self::Timeout
            | Self::MemoryLimit
            | Self::Killed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded | Self::Unavailable | Self::WorkerLost => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of a run's verdict; `None` for `ok`.
    pub const fn of_outcome(outcome: Outcome) -> Option<Self> {
        Some(match outcome {
            Outcome::Ok => return None,
            Outcome::SyntaxError => Self::SyntaxError,
            Outcome::MissingMain => Self::MissingMain,
            Outcome::RuntimeError => Self::RuntimeError,
            Outcome::ResultNotJson => Self::ResultNotJson,
            Outcome::ResultTooLarge => Self::ResultTooLarge,
            Outcome::Timeout => Self::Timeout,
            Outcome::MemoryLimit => Self::MemoryLimit,
            Outcome::Killed => Self::Killed,
            Outcome::WorkerLost => Self::WorkerLost,
        })
    }

    /// The kind named `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == text)
    }

    /// When the service answers this kind: the docs table's last column.
    pub const fn when(self) -> &'static str {
        match self {
            Self::InvalidJson => "body is not valid JSON",
            Self::InvalidRequest => {
                "missing/blank/non-string script, unknown field, a key given twice (two `\"script\"`, or \
                 one file name twice), bad limit (the message names the field)"
            }
            Self::Unauthorized => {
                "`--api-token` is set and `Authorization: Bearer <token>` is missing or wrong"
            }
            Self::NotFound => "unknown path",
            Self::MethodNotAllowed => "wrong method (with `Allow`)",
            Self::RequestTimeout => {
                "the body did not arrive within `--body-read-timeout-secs`; the connection is closed"
            }
            Self::PayloadTooLarge => "body over `--max-body-bytes`",
            Self::UnsupportedMediaType => {
                "not `application/json` (`POST /execute` also takes `multipart/form-data`)"
            }
            Self::SyntaxError => "the script does not compile (the message has the line)",
            Self::MissingMain => "no callable `main` after the script ran",
            Self::RuntimeError => {
                "uncaught exception, including `SystemExit`, at import or in `main()`; `traceback` shows \
                 only the script's frames, with its line numbers"
            }
            Self::ResultNotJson => "`main()` returned a value that is not JSON",
            Self::ResultTooLarge => "serialized result over `--max-result-bytes`",
            Self::Timeout => "wall time over the run's timeout (CPU-bound or sleeping alike)",
            Self::MemoryLimit => "the run exceeded its memory limit",
            Self::Killed => "the run died by a signal or exited without a result (`os._exit`, killed itself)",
            Self::Overloaded => {
                "no worker free within `--queue-timeout-secs` (`Retry-After: 1`), `--max-connections` \
                 reached (`Retry-After: 1` and `Connection: close`, on any path), or `--max-sessions` \
                 open (`Retry-After: 5`)"
            }
            Self::Unavailable => "the sandbox cannot start (the message says why)",
            Self::WorkerLost => {
                "the service lost the worker running the request (its nsjail or zygote died or hung, \
                 not by the script's doing) and the one automatic retry was lost too"
            }
            Self::Internal => {
                "a bug of the service; logged with the request id, which is also in the `x-request-id` header"
            }
            Self::SessionNotFound => "no such session: it never existed, or it ended or expired",
            Self::SessionBusy => "the session is running another call; retry after its answer",
            Self::SessionsDisabled => {
                "`POST /sessions` (or an MCP session tool) while sessions are off (`--max-sessions 0`); \
                 use `POST /execute`"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in ErrorKind::ALL {
            let name = kind.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert_eq!(ErrorKind::parse(name), Some(*kind));
        }
        assert_eq!(ErrorKind::parse("ok"), None, "ok is not an error kind");
    }

    #[test]
    fn every_failed_verdict_is_the_kind_of_the_same_name() {
        for outcome in Outcome::ALL {
            match ErrorKind::of_outcome(*outcome) {
                None => assert_eq!(*outcome, Outcome::Ok),
                Some(kind) => assert_eq!(kind.as_str(), outcome.as_str()),
            }
        }
    }
}
