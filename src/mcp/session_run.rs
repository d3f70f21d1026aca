//! The `session_run` tool: one cell in a notebook session that keeps its
//! globals between calls; without a `session_id` it opens the session first.
//!
//! Owns the tool's model-facing description, its JSON Schemas and reading
//! its arguments. The session itself is [`crate::session::Sessions`]'s
//! (limits, ids, what ends a session); answers are [`super::result`]'s.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Map, Value};

use crate::config::LimitsConfig;
use crate::http::error::ApiError;
use crate::http::files::{parse_files, FileCaps};
use crate::protocol::InputFile;

/// The tool's name.
pub const NAME: &str = "session_run";

const ARGUMENTS: [&str; 4] = ["code", "session_id", "files", "timeout"];

const DESCRIPTION: &str = "Run Python code as the next cell of a persistent session, like a \
Jupyter notebook: variables, imports, functions and files in /tmp stay for later calls. Call \
without session_id to open a new session (optionally with input `files`); the answer's \
`session_id` names it: pass it to every later call to keep the state. numpy, pandas and \
matplotlib are installed; every figure still open at the end of a cell comes back as a PNG image. \
The sandbox has no network and limits on time and memory. The result is JSON with `session_id`, \
`result` (the last expression's value as JSON, or null), `display` (its repr when it is not JSON, \
e.g. a DataFrame), `stdout` and `stderr`. A Python error returns isError with `kind`, `message`, \
`traceback` and `session_ended`: syntax and runtime errors keep the session (fix the code and \
call again with the same session_id); a timeout or memory limit ends it (open a new one). \
`kind: session_not_found` means the session is gone: open a new one and re-run what you need. \
Close sessions you no longer need with session_close.";

/// What a call asks for.
#[derive(Debug)]
pub struct Call {
    /// The session to run in; `None`: open one.
    pub session_id: Option<String>,
    /// The cell's source.
    pub code: String,
    /// This cell's wall-clock limit; `None`: the default.
    pub timeout: Option<Duration>,
    /// Files for a new session's /tmp.
    pub files: Vec<InputFile>,
}

/// The tool as `tools/list` shows it.
pub fn tool(limits: &LimitsConfig) -> Tool {
    Tool::new(NAME, DESCRIPTION, Arc::new(object(input_schema(limits))))
        .with_title("Run Python in a persistent session (numpy, pandas, matplotlib)")
        .with_raw_output_schema(Arc::new(object(output_schema())))
        .with_annotations(
            ToolAnnotations::new().read_only(false).destructive(false).idempotent(false).open_world(false),
        )
}

fn input_schema(limits: &LimitsConfig) -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "minLength": 1,
                "description": "Python source, run top to bottom like a notebook cell in the \
                    session's namespace. If the last statement is an expression, its value is \
                    returned as `result`.",
            },
            "session_id": {
                "type": "string",
                "description": "The session to run in, from an earlier answer. Leave it out to \
                    open a new session.",
            },
            "files": {
                "type": "object",
                "description": format!(
                    "Only when opening a session (no session_id): input files written to its \
                     working directory (/tmp): file name -> content in base64. At most {} files, \
                     {} bytes in all.",
                    limits.max_files, limits.max_files_bytes
                ),
                "additionalProperties": {"type": "string", "contentEncoding": "base64"},
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": limits.max_timeout.as_secs_f64(),
                "description": format!(
                    "This cell's wall-clock limit in seconds (default {}). A cell past it ends \
                     the session.",
                    limits.default_timeout.as_secs_f64()
                ),
            },
        },
        "required": ["code"],
        "additionalProperties": false,
    })
}

fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "session_id": {"type": "string", "description": "Pass it to later calls."},
            "session_ended": {"type": "boolean", "description": "Whether the session ended with \
                this answer (then open a new one)."},
            "result": {"description": "The last expression's value as JSON; null after a statement \
                or when the value has no JSON form."},
            "display": {"type": "string", "description": "repr() of a last value that is not JSON."},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "stdout_truncated": {"type": "boolean"},
            "stderr_truncated": {"type": "boolean"},
            "duration_ms": {"type": "number"},
            "figures": {"type": "integer", "description": "How many PNG images follow the text."},
            "figures_truncated": {"type": "boolean"},
        },
        "required": ["session_id", "session_ended", "result", "stdout", "stderr", "duration_ms", "figures"],
    })
}

pub(super) fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Reads the arguments (ranges of `timeout` and the files' caps are checked
/// here or by the session layer, with its messages).
///
/// # Errors
/// `invalid_request` naming the argument.
pub fn call(arguments: Option<&Map<String, Value>>, limits: &LimitsConfig) -> Result<Call, ApiError> {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    let invalid = |why: String| ApiError::InvalidRequest(why);
    if let Some(unknown) = arguments.keys().find(|key| !ARGUMENTS.contains(&key.as_str())) {
        return Err(invalid(format!(
            "unknown argument \"{unknown}\"; session_run takes code, session_id, files and timeout"
        )));
    }
    let code = match arguments.get("code") {
        Some(Value::String(code)) if !code.trim().is_empty() => code.clone(),
        Some(Value::String(_)) => return Err(invalid("argument \"code\" must not be empty".into())),
        Some(_) => return Err(invalid("argument \"code\" must be a string".into())),
        None => return Err(invalid("argument \"code\" is required: the Python to run".into())),
    };
    let session_id = match arguments.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(invalid(
                "argument \"session_id\" must be a string from an earlier session_run answer".into(),
            ))
        }
    };
    let timeout = match arguments.get("timeout") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 1e9 => {
                Some(Duration::from_secs_f64(secs).max(crate::http::request::MIN_TIMEOUT))
            }
            _ => {
                return Err(invalid(format!(
                    "argument \"timeout\" must be a positive number of seconds, got {n}"
                )))
            }
        },
        Some(_) => return Err(invalid("argument \"timeout\" must be a positive number of seconds".into())),
    };
    let files = arguments.get("files");
    if session_id.is_some() && files.is_some_and(|files| !files.is_null()) {
        return Err(invalid(
            "argument \"files\" is only taken when opening a session (without session_id); write \
             files from the code instead (the session's working directory is /tmp)"
                .into(),
        ));
    }
    let caps = FileCaps { max_files: limits.max_files, max_bytes: limits.max_files_bytes };
    let files = parse_files(files, caps).map_err(|why| invalid(why.replace("field \"", "argument \"")))?;
    Ok(Call { session_id, code, timeout, files })
}
