//! What a tool call returns: a run's output as MCP content, and every
//! failure as a tool result with `isError: true` that a model can act on.
//!
//! Shared by every tool that runs code: `run_python`'s answers, and a
//! session's (`session_run`: the same shape plus `session_id` and
//! `session_ended`, [`from_cell`], [`from_session_error`]). A
//! script error, a refused argument and a capacity error are all tool
//! results, never protocol errors: the model sees the kind, the message and
//! what to do. Protocol errors are left to rmcp (unknown tool, malformed
//! JSON-RPC).

use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Map, Value};

use super::cell::{CellAnswer, CellError};
use crate::http::error::{output_text, ApiError, ErrorKind};
use crate::protocol::{FigureFormat, Outcome, RunReport};
use crate::session::SessionError;

/// One finished run as a tool result: the answer's JSON as structured
/// content and as text (for clients without structured output), each
/// figure as an `image/png` content block.
pub fn from_report(report: &RunReport) -> CallToolResult {
    if report.outcome != Outcome::Ok {
        // timeout, memory_limit, killed, ...: the service's own verdicts.
        let message = crate::http::error::script_message(report);
        let kind = crate::http::error::outcome_kind(report.outcome);
        return failure(Map::new(), kind, message, report.traceback.clone(), Some(report), None);
    }
    let answer = report
        .result
        .as_deref()
        .ok_or_else(|| "the run answered without a result".to_string())
        .and_then(super::cell::answer);
    match answer {
        Ok(CellAnswer::Value { result, display }) => success(Map::new(), report, result, display),
        Ok(CellAnswer::Failed(CellError { kind, message, traceback })) => {
            failure(Map::new(), &kind, message, Some(traceback), Some(report), None)
        }
        Err(why) => failure(Map::new(), ErrorKind::RuntimeError.as_str(), why, None, Some(report), None),
    }
}

/// One session cell's answer (`Sessions::run`, or a create refused by the
/// sandbox) as a tool result carrying `session_id` and whether the
/// session lives on.
pub fn from_cell(session_id: Option<&str>, report: &RunReport) -> CallToolResult {
    let ended = report.session_ended != Some(false);
    let mut head = Map::new();
    if let Some(id) = session_id {
        head.insert("session_id".into(), Value::String(id.into()));
        head.insert("session_ended".into(), Value::Bool(ended));
    }
    if report.outcome == Outcome::Ok {
        let value = match report.result.as_deref() {
            None => Ok(Value::Null),
            Some(bytes) => serde_json::from_slice(bytes),
        };
        return match value {
            Ok(result) => success(head, report, result, report.display.clone()),
            Err(error) => {
                let why = format!("the cell's value could not be read: {error}");
                failure(head, ErrorKind::RuntimeError.as_str(), why, None, Some(report), None)
            }
        };
    }
    let kind = crate::http::error::outcome_kind(report.outcome);
    let mut message = crate::http::error::script_message(report);
    match session_id {
        Some(_) if ended => message.push_str(
            "\nThe session has ended and its state is lost: call session_run without session_id \
             to open a new one and re-run what you need.",
        ),
        Some(_) => message.push_str(
            "\nThe session lives on with everything earlier cells made: fix the code and call \
             session_run again with the same session_id.",
        ),
        None => message.push_str("\nNo session was opened."),
    }
    failure(head, kind, message, report.traceback.clone(), Some(report), None)
}

/// A session call that got no verdict (unknown id, busy, sessions off or
/// full, ...), told so that a model knows what to do next.
pub fn from_session_error(error: SessionError) -> CallToolResult {
    let (kind, message, retry_after) = match error {
        SessionError::NotFound => (
            ErrorKind::SessionNotFound,
            "no such session: it never existed, or it ended (closed, idle too long, past its \
             lifetime, or the service restarted) and its state is lost. Call session_run without \
             session_id to open a new session and re-run what you need."
                .to_string(),
            None,
        ),
        SessionError::Busy => (
            ErrorKind::SessionBusy,
            "the session is still running another call; wait for that call's answer, then call \
             again (one call at a time per session)."
                .to_string(),
            Some(1),
        ),
        SessionError::TooMany { max: 0 } => (ErrorKind::SessionsDisabled, DISABLED.to_string(), None),
        SessionError::TooMany { max } => (
            ErrorKind::Overloaded,
            format!(
                "{max} sessions are open, the most this server allows: close one you no longer \
                 need with session_close, or call again in 5 s."
            ),
            Some(5),
        ),
        other => return from_error(&crate::http::sessions::api_error(other)),
    };
    failure(Map::new(), kind.as_str(), message, None, None, retry_after)
}

/// A closed session's answer.
pub fn closed(session_id: &str) -> CallToolResult {
    let answer = json!({"session_id": session_id, "closed": true});
    let mut tool_result = CallToolResult::success(vec![ContentBlock::text(answer.to_string())]);
    tool_result.structured_content = Some(answer);
    tool_result
}

/// The message when `--max-sessions` is 0.
pub const DISABLED: &str = "sessions are disabled on this server (--max-sessions is 0), so no \
state can be kept between calls; use run_python, which runs each call in a fresh interpreter \
(send everything the code needs in that call).";

/// A failure before or instead of a run (a bad argument, no worker free).
pub fn from_error(error: &ApiError) -> CallToolResult {
    let retry_after = error.retry_after().map(|wait| wait.as_secs().max(1));
    let mut message = error.message();
    if let Some(secs) = retry_after {
        message = format!("{message} (pyexec is at capacity: call the tool again in {secs} s)");
    }
    failure(Map::new(), error.kind().as_str(), message, None, None, retry_after)
}

fn success(
    mut answer: Map<String, Value>,
    report: &RunReport,
    result: Value,
    display: Option<String>,
) -> CallToolResult {
    answer.insert("result".into(), result);
    if let Some(display) = display {
        answer.insert("display".into(), Value::String(display));
    }
    output_fields(&mut answer, report);
    answer.insert("duration_ms".into(), json!(report.duration_ms));
    answer.insert("figures".into(), json!(report.figures.len()));
    if report.figures_truncated {
        answer.insert("figures_truncated".into(), Value::Bool(true));
    }
    let answer = Value::Object(answer);
    let mut content = vec![ContentBlock::text(answer.to_string())];
    for figure in &report.figures {
        let mime = match figure.format {
            FigureFormat::Png => "image/png",
        };
        content
            .push(ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(&figure.data), mime));
    }
    let mut tool_result = CallToolResult::success(content);
    tool_result.structured_content = Some(answer);
    tool_result
}

fn failure(
    mut answer: Map<String, Value>,
    kind: &str,
    message: String,
    traceback: Option<String>,
    report: Option<&RunReport>,
    retry_after_secs: Option<u64>,
) -> CallToolResult {
    answer.insert("kind".into(), Value::String(kind.into()));
    answer.insert("message".into(), Value::String(message));
    if let Some(traceback) = traceback {
        answer.insert("traceback".into(), Value::String(traceback));
    }
    if let Some(report) = report {
        output_fields(&mut answer, report);
    }
    if let Some(secs) = retry_after_secs {
        answer.insert("retry_after_secs".into(), json!(secs));
    }
    let answer = Value::Object(answer);
    let mut tool_result = CallToolResult::error(vec![ContentBlock::text(answer.to_string())]);
    tool_result.structured_content = Some(answer);
    tool_result
}

fn output_fields(answer: &mut Map<String, Value>, report: &RunReport) {
    answer.insert("stdout".into(), Value::String(output_text(&report.stdout)));
    answer.insert("stderr".into(), Value::String(output_text(&report.stderr)));
    if report.stdout_truncated {
        answer.insert("stdout_truncated".into(), Value::Bool(true));
    }
    if report.stderr_truncated {
        answer.insert("stderr_truncated".into(), Value::Bool(true));
    }
}

/// The kind a tool result is counted under: `ok`, or its error's `kind`.
pub fn kind(answer: &CallToolResult) -> &str {
    if answer.is_error != Some(true) {
        return "ok";
    }
    answer
        .structured_content
        .as_ref()
        .and_then(|content| content.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("error")
}
