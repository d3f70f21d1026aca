//! What a tool call returns: a run's output as MCP content, and every
//! failure as a tool result with `isError: true` that a model can act on.
//!
//! Shared by every tool that runs code (`run_python` now; a session's
//! `session_run` later returns the same shape plus its `session_id`). A
//! script error, a refused argument and a capacity error are all tool
//! results, never protocol errors: the model sees the kind, the message and
//! what to do. Protocol errors are left to rmcp (unknown tool, malformed
//! JSON-RPC).

use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Map, Value};

use super::cell::{CellAnswer, CellError};
use crate::http::error::{output_text, ApiError};
use crate::protocol::{FigureFormat, Outcome, RunReport};

/// One finished run as a tool result: the answer's JSON as structured
/// content and as text (for clients without structured output), each
/// figure as an `image/png` content block.
pub fn from_report(report: &RunReport) -> CallToolResult {
    if report.outcome != Outcome::Ok {
        // timeout, memory_limit, killed, ...: the service's own verdicts.
        let message = crate::http::error::script_message(report);
        let kind = crate::http::error::outcome_kind(report.outcome);
        return failure(kind, message, report.traceback.clone(), Some(report), None);
    }
    let answer = report
        .result
        .as_deref()
        .ok_or_else(|| "the run answered without a result".to_string())
        .and_then(super::cell::answer);
    match answer {
        Ok(CellAnswer::Value { result, display }) => success(report, result, display),
        Ok(CellAnswer::Failed(CellError { kind, message, traceback })) => {
            failure(&kind, message, Some(traceback), Some(report), None)
        }
        Err(why) => failure("runtime_error", why, None, Some(report), None),
    }
}

/// A failure before or instead of a run (a bad argument, no worker free).
pub fn from_error(error: &ApiError) -> CallToolResult {
    let retry_after = error.retry_after().map(|wait| wait.as_secs().max(1));
    let mut message = error.message();
    if let Some(secs) = retry_after {
        message = format!("{message} (pyexec is at capacity: call the tool again in {secs} s)");
    }
    failure(error.kind(), message, None, None, retry_after)
}

fn success(report: &RunReport, result: Value, display: Option<String>) -> CallToolResult {
    let mut answer = Map::new();
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
    kind: &str,
    message: String,
    traceback: Option<String>,
    report: Option<&RunReport>,
    retry_after_secs: Option<u64>,
) -> CallToolResult {
    let mut answer = Map::new();
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
