//! Turns the service's answer into what `pyexec run` prints and its exit
//! status. Pure: takes the answer, returns the bytes for each stream, so
//! every case is a unit test.

use serde_json::Value;

use super::client::Answer;

/// Exit status: the script ran and `main()` returned.
pub const EXIT_OK: u8 = 0;
/// Exit status: the script failed (422: syntax error, exception, timeout...).
pub const EXIT_SCRIPT_FAILED: u8 = 1;
/// Exit status: the service refused the request (4xx other than 422).
pub const EXIT_REFUSED: u8 = 2;
/// Exit status (sysexits.h `EX_USAGE`): bad flags or an unreadable file.
pub const EXIT_USAGE: u8 = 64;
/// Exit status (sysexits.h `EX_UNAVAILABLE`): no service, or a 5xx.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// What to print and how to exit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// For standard output: the script's stdout, then the result.
    pub stdout: String,
    /// For standard error: the script's stderr, then any diagnosis.
    pub stderr: String,
    /// The process exit status.
    pub code: u8,
}

/// What the request carried that the answer may need to explain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Whether `files` was part of the request.
    pub files: bool,
}

/// Renders an answer of the service at `url`.
pub fn render(answer: &Answer, url: &str, sent: Sent) -> Rendered {
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok().filter(Value::is_object);
    let Some(body) = body else {
        return not_json(answer, url);
    };
    let mut out = Rendered::default();
    // What the script printed comes first, whatever the verdict.
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    out.stdout.push_str(text("stdout"));
    out.stderr.push_str(text("stderr"));
    for stream in ["stdout", "stderr"] {
        if body.get(format!("{stream}_truncated")).and_then(Value::as_bool) == Some(true) {
            ensure_newline(&mut out.stderr);
            out.stderr
                .push_str(&format!("pyexec: the script's {stream} was cut at the service's output limit\n"));
        }
    }
    match (answer.status, body.get("result")) {
        (200, Some(result)) => {
            ensure_newline(&mut out.stdout);
            let pretty = serde_json::to_string_pretty(result).unwrap_or_else(|_| result.to_string());
            // A session cell whose value is not JSON: its repr().
            let shown = body.get("display").and_then(Value::as_str).map(str::to_string);
            out.stdout.push_str(&shown.unwrap_or(pretty));
            out.stdout.push('\n');
            out.code = EXIT_OK;
        }
        (status, _) => {
            ensure_newline(&mut out.stderr);
            out.stderr.push_str(&diagnosis(status, &body, answer, sent));
            out.code = match status {
                422 => EXIT_SCRIPT_FAILED,
                400..=499 => EXIT_REFUSED,
                _ => EXIT_UNAVAILABLE,
            };
        }
    }
    out
}

/// `pyexec: <kind>: <error>`, then the traceback or a hint.
fn diagnosis(status: u16, body: &Value, answer: &Answer, sent: Sent) -> String {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("unknown");
    let error = body.get("error").and_then(Value::as_str).unwrap_or("(the answer has no error message)");
    let mut text = match status {
        422 => format!("pyexec: {kind}: {error}\n"),
        400..=499 => format!("pyexec: the service refused the request ({status} {kind}): {error}\n"),
        200 => format!("pyexec: the service answered 200 without a result ({kind}): {error}\n"),
        _ => format!("pyexec: the service failed ({status} {kind}): {error}\n"),
    };
    if let Some(traceback) = body.get("traceback").and_then(Value::as_str) {
        text.push_str(traceback);
        ensure_newline(&mut text);
    }
    if let Some(seconds) = &answer.retry_after {
        text.push_str(&format!("pyexec: retry after {seconds} s\n"));
    }
    if sent.files && kind == "invalid_request" && error.contains("\"files\"") {
        text.push_str("pyexec: this service does not take files yet; upgrade it, or run without --file\n");
    }
    text
}

fn not_json(answer: &Answer, url: &str) -> Rendered {
    let shown: String = String::from_utf8_lossy(&answer.body).chars().take(300).collect();
    let code = match answer.status {
        400..=499 => EXIT_REFUSED,
        _ => EXIT_UNAVAILABLE,
    };
    Rendered {
        stdout: String::new(),
        stderr: format!(
            "pyexec: {url} answered HTTP {} with a body that is not pyexec's JSON; is it a pyexec service?\n{shown}\n",
            answer.status
        ),
        code,
    }
}

fn ensure_newline(text: &mut String) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: &Value) -> Answer {
        Answer { status, retry_after: None, body: body.to_string().into() }
    }

    fn rendered(status: u16, body: Value) -> Rendered {
        render(&answer(status, &body), "http://127.0.0.1:1", Sent::default())
    }

    #[test]
    fn success_prints_output_then_pretty_result() {
        let out = rendered(
            200,
            json!({"result": {"a": [1]}, "stdout": "hi", "stderr": "warn\n", "duration_ms": 1.0}),
        );
        assert_eq!(out.stdout, "hi\n{\n  \"a\": [\n    1\n  ]\n}\n");
        assert_eq!(out.stderr, "warn\n");
        assert_eq!(out.code, EXIT_OK);
    }

    #[test]
    fn script_error_prints_kind_error_and_traceback() {
        let out = rendered(
            422,
            json!({"kind": "runtime_error", "error": "ZeroDivisionError: division by zero",
                   "traceback": "Traceback...\n  line 2", "stdout": "before\n", "stderr": ""}),
        );
        assert_eq!(out.stdout, "before\n");
        assert_eq!(
            out.stderr,
            "pyexec: runtime_error: ZeroDivisionError: division by zero\nTraceback...\n  line 2\n"
        );
        assert_eq!(out.code, EXIT_SCRIPT_FAILED);
    }

    #[test]
    fn truncation_is_reported_on_stderr() {
        let out = rendered(200, json!({"result": 1, "stdout": "xx", "stderr": "", "stdout_truncated": true}));
        assert!(out.stderr.contains("stdout was cut"), "{}", out.stderr);
    }

    #[test]
    fn refusals_exit_2_and_unknown_files_gets_a_hint() {
        let body =
            json!({"kind": "invalid_request", "error": "unknown field \"files\"; allowed fields: script"});
        let out = render(&answer(400, &body), "u", Sent { files: true });
        assert_eq!(out.code, EXIT_REFUSED);
        assert!(out
            .stderr
            .starts_with("pyexec: the service refused the request (400 invalid_request): unknown field"));
        assert!(out.stderr.contains("does not take files yet"), "{}", out.stderr);
        assert_eq!(rendered(401, json!({"kind": "unauthorized", "error": "token"})).code, EXIT_REFUSED);
    }

    #[test]
    fn server_side_failures_exit_69_with_retry_after() {
        let mut overloaded = answer(503, &json!({"kind": "overloaded", "error": "all workers are busy"}));
        overloaded.retry_after = Some("1".into());
        let out = render(&overloaded, "u", Sent::default());
        assert_eq!(out.code, EXIT_UNAVAILABLE);
        assert!(
            out.stderr.contains("(503 overloaded)") && out.stderr.contains("retry after 1 s"),
            "{}",
            out.stderr
        );
        assert_eq!(rendered(500, json!({"kind": "internal", "error": "bug"})).code, EXIT_UNAVAILABLE);
    }

    #[test]
    fn a_body_that_is_not_pyexec_json_is_shown() {
        let html = Answer { status: 404, retry_after: None, body: "<html>nope</html>".into() };
        let out = render(&html, "http://x", Sent::default());
        assert_eq!(out.code, EXIT_REFUSED);
        assert!(out.stderr.contains("not pyexec's JSON") && out.stderr.contains("<html>"), "{}", out.stderr);
        let odd = Answer { status: 200, retry_after: None, body: "[1]".into() };
        assert_eq!(render(&odd, "http://x", Sent::default()).code, EXIT_UNAVAILABLE);
        assert_eq!(rendered(200, json!({"stdout": ""})).code, EXIT_UNAVAILABLE, "200 without result");
    }
}
