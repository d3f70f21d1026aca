//! The `session_close` tool: ends a session opened by `session_run`, freeing
//! its sandbox.

use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{json, Map, Value};

use super::session_run::object;
use crate::http::error::ApiError;

/// The tool's name.
pub const NAME: &str = "session_close";

const DESCRIPTION: &str = "Close a session opened by session_run, when its state is no longer \
needed: its variables and files are discarded and its sandbox is freed. Later calls with its \
session_id answer session_not_found. Sessions also end by themselves when unused for a while.";

/// The tool as `tools/list` shows it.
pub fn tool() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "session_id": {"type": "string", "description": "The session to close."},
        },
        "required": ["session_id"],
        "additionalProperties": false,
    });
    Tool::new(NAME, DESCRIPTION, Arc::new(object(input)))
        .with_title("Close a Python session")
        .with_annotations(
            ToolAnnotations::new().read_only(false).destructive(true).idempotent(true).open_world(false),
        )
}

/// The session to close.
///
/// # Errors
/// `invalid_request` when `session_id` is missing or not a string, or
/// another argument is sent.
pub fn session_id(arguments: Option<&Map<String, Value>>) -> Result<String, ApiError> {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    if let Some(unknown) = arguments.keys().find(|key| key.as_str() != "session_id") {
        return Err(ApiError::InvalidRequest(format!(
            "unknown argument \"{unknown}\"; session_close takes session_id"
        )));
    }
    match arguments.get("session_id") {
        Some(Value::String(id)) => Ok(id.clone()),
        _ => Err(ApiError::InvalidRequest(
            "argument \"session_id\" is required: the id a session_run answer gave".into(),
        )),
    }
}
