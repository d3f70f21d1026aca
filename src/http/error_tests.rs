//! One test per row of the contract's error table.

use super::*;
use http_body_util::BodyExt;

fn body_of(response: Response<Full<Bytes>>) -> serde_json::Value {
    let bytes = futures_util::FutureExt::now_or_never(response.into_body().collect())
        .expect("full body is ready")
        .expect("infallible")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("error bodies are JSON")
}

fn check(error: ApiError, status: u16, kind: &str) -> (hyper::HeaderMap, serde_json::Value) {
    assert_eq!(error.status().as_u16(), status);
    assert_eq!(error.kind().as_str(), kind);
    let response = error.into_response();
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let headers = response.headers().clone();
    let body = body_of(response);
    assert_eq!(body["kind"], kind);
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "error message present");
    (headers, body)
}

fn report(outcome: Outcome) -> Box<RunReport> {
    Box::new(RunReport {
        id: 1,
        outcome,
        result: None,
        error: None,
        traceback: Some("Traceback ...\n  File \"<script>\", line 2, in main\nZeroDivisionError".into()),
        stdout: b"out\xff".to_vec(),
        stderr: b"err".to_vec(),
        stdout_truncated: true,
        stderr_truncated: false,
        duration_ms: 1.0,
        usage: Some(Usage { wall_ms: 1.5, cpu_ms: Some(1.25), max_rss_kib: Some(90_000) }),
        figures: Vec::new(),
        figures_truncated: false,
        display: None,
        session_ended: None,
    })
}

#[test]
fn invalid_json_is_400() {
    check(ApiError::InvalidJson("expected value at line 1".into()), 400, "invalid_json");
}

#[test]
fn invalid_request_is_400_and_names_the_field() {
    let (_, body) =
        check(ApiError::InvalidRequest("field \"script\" is required".into()), 400, "invalid_request");
    assert!(body["error"].as_str().expect("str").contains("script"));
}

#[test]
fn unauthorized_is_401_with_challenge() {
    let (headers, _) = check(ApiError::Unauthorized, 401, "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
}

#[test]
fn not_found_is_404() {
    check(ApiError::NotFound, 404, "not_found");
}

#[test]
fn method_not_allowed_is_405_with_allow() {
    let (headers, _) = check(ApiError::MethodNotAllowed { allow: "POST" }, 405, "method_not_allowed");
    assert_eq!(headers[ALLOW], "POST");
}

#[test]
fn payload_too_large_is_413() {
    let (_, body) = check(ApiError::PayloadTooLarge { max: 1024 }, 413, "payload_too_large");
    assert!(body["error"].as_str().expect("str").contains("1024"));
}

#[test]
fn unsupported_media_type_is_415() {
    check(ApiError::UnsupportedMediaType, 415, "unsupported_media_type");
}

#[test]
fn request_timeout_is_408_and_closes() {
    let (headers, body) =
        check(ApiError::RequestTimeout { limit: Duration::from_millis(1500) }, 408, "request_timeout");
    assert_eq!(headers[CONNECTION], "close");
    assert!(body["error"].as_str().expect("str").contains("1.5 s"), "{body}");
}

#[test]
fn every_script_verdict_is_422_with_output() {
    for (outcome, kind) in [
        (Outcome::SyntaxError, "syntax_error"),
        (Outcome::MissingMain, "missing_main"),
        (Outcome::RuntimeError, "runtime_error"),
        (Outcome::ResultNotJson, "result_not_json"),
        (Outcome::ResultTooLarge, "result_too_large"),
        (Outcome::Timeout, "timeout"),
        (Outcome::MemoryLimit, "memory_limit"),
        (Outcome::Killed, "killed"),
    ] {
        let (_, body) = check(ApiError::Script(report(outcome)), 422, kind);
        assert_eq!(body["stdout"], "out\u{fffd}", "UTF-8 with replacement");
        assert_eq!(body["stderr"], "err");
        assert_eq!(body["stdout_truncated"], true);
        assert!(body.get("stderr_truncated").is_none(), "false flags are left out");
        assert!(body["traceback"].as_str().expect("traceback").contains("<script>"));
        assert_eq!(body["usage"], serde_json::json!({"wall_ms": 1.5, "cpu_ms": 1.25, "max_rss_kib": 90_000}));
    }
}

#[test]
fn usage_unknown_to_the_worker_is_left_out() {
    let mut failed = report(Outcome::Killed);
    failed.usage = None;
    let (_, body) = check(ApiError::Script(failed), 422, "killed");
    assert!(body.get("usage").is_none());
}

#[test]
fn script_error_message_comes_from_the_worker() {
    let mut failed = report(Outcome::MissingMain);
    failed.error = Some("main() is not defined".into());
    let (_, body) = check(ApiError::Script(failed), 422, "missing_main");
    assert_eq!(body["error"], "main() is not defined");
}

#[test]
fn overloaded_is_503_with_retry_after() {
    let (headers, _) = check(ApiError::Overloaded { retry_after: Duration::from_secs(1) }, 503, "overloaded");
    assert_eq!(headers[RETRY_AFTER], "1");
}

#[test]
fn too_many_connections_is_503_overloaded_and_closes() {
    let (headers, body) = check(ApiError::TooManyConnections { max: 64 }, 503, "overloaded");
    assert_eq!(headers[RETRY_AFTER], "1");
    assert_eq!(headers[CONNECTION], "close");
    assert!(body["error"].as_str().expect("str").contains("64"), "{body}");
}

#[test]
fn unavailable_is_503_and_says_what_is_missing() {
    let (_, body) = check(ApiError::Unavailable("nsjail not found".into()), 503, "unavailable");
    assert!(body["error"].as_str().expect("str").contains("nsjail not found"));
}

#[test]
fn internal_is_500_with_request_id() {
    let (_, body) = check(ApiError::Internal { request_id: "abc-1".into() }, 500, "internal");
    assert!(body["error"].as_str().expect("str").contains("abc-1"));
    assert!(body.get("stdout").is_none());
}

#[test]
fn worker_lost_is_a_retriable_503_that_blames_the_service() {
    let (headers, body) =
        check(ApiError::WorkerLost("worker 3 died (zygote gone)".into()), 503, "worker_lost");
    assert_eq!(headers[RETRY_AFTER], "1");
    let message = body["error"].as_str().expect("str");
    assert!(message.contains("lost the worker") && message.contains("not the script"), "{message}");
    assert!(body.get("stdout").is_none());
}

#[test]
fn sessions_disabled_is_404_without_retry_after() {
    let (headers, body) = check(ApiError::SessionsDisabled, 404, "sessions_disabled");
    assert!(headers.get(RETRY_AFTER).is_none(), "waiting does not turn sessions on");
    assert!(body["error"].as_str().expect("str").contains("--max-sessions"), "{body}");
}

#[test]
fn too_many_sessions_is_503_overloaded_with_retry_after_5() {
    let (headers, _) = check(ApiError::TooManySessions { max: 4 }, 503, "overloaded");
    assert_eq!(headers[RETRY_AFTER], "5");
}

#[test]
fn every_example_answers_its_own_kind_with_that_kinds_status() {
    for kind in ErrorKind::ALL {
        let examples = ApiError::examples(*kind);
        assert!(!examples.is_empty(), "{kind} has no example");
        for error in examples {
            let row = error.row();
            assert_eq!((row.kind, row.status), (*kind, kind.status()), "{error:?}");
            check(error, kind.status().as_u16(), kind.as_str());
        }
    }
}
