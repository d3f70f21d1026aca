//! The `run_python` tool: one cell of Python in a pristine sandbox, thrown
//! away afterwards.
//!
//! Owns the tool's model-facing description, its input and output JSON
//! Schemas, and turning its arguments into a [`Job`]. The arguments are
//! checked by the same code as `POST /execute` bodies
//! ([`crate::http::request::parse_job`]), so `files` and `timeout` have the
//! same limits and messages.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Map, Value};

use crate::config::LimitsConfig;
use crate::executor::Job;
use crate::http::error::ApiError;

/// The tool's name.
pub const NAME: &str = "run_python";

const DESCRIPTION: &str = "Run Python code in a fresh, isolated sandbox and get back what it printed \
and the value of its last expression, like one notebook cell. numpy (np) and pandas (pd) are \
installed; import them as usual. matplotlib is installed too: every figure still open at the end \
comes back as a PNG image. The sandbox has no network, a private writable /tmp that is also the \
working directory, and limits on time and memory. Nothing is kept between calls: each call starts \
from a clean interpreter, so send everything the code needs (use `files` for input data). \
The result is JSON text with `result` (the last expression's value as JSON, or null), `display` \
(its repr when it is not JSON, e.g. a DataFrame), `stdout` and `stderr`. A Python error returns \
isError with `kind` (syntax_error, runtime_error, timeout, memory_limit, ...), `message`, and \
`traceback` with the cell's line numbers: fix the code and call again. `kind: overloaded` means \
the service is busy: wait `retry_after_secs` and retry the same call.";

/// The tool as `tools/list` shows it.
pub fn tool(limits: &LimitsConfig) -> Tool {
    Tool::new(NAME, DESCRIPTION, Arc::new(object(input_schema(limits))))
        .with_title("Run Python (numpy, pandas, matplotlib)")
        .with_raw_output_schema(Arc::new(object(output_schema())))
        .with_annotations(
            ToolAnnotations::new().read_only(true).destructive(false).idempotent(true).open_world(false),
        )
}

fn input_schema(limits: &LimitsConfig) -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "minLength": 1,
                "description": "Python source, run top to bottom like a notebook cell. If the last \
                    statement is an expression, its value is returned as `result`. No main() needed.",
            },
            "files": {
                "type": "object",
                "description": format!(
                    "Input files written to the working directory (/tmp) before the code runs: \
                     file name -> content in base64. At most {} files, {} bytes in all.",
                    limits.max_files, limits.max_files_bytes
                ),
                "additionalProperties": {"type": "string", "contentEncoding": "base64"},
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": limits.max_timeout.as_secs_f64(),
                "description": format!(
                    "Wall-clock limit in seconds (default {}).",
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
        "required": ["result", "stdout", "stderr", "duration_ms", "figures"],
    })
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The job that runs `arguments` as one cell.
///
/// # Errors
/// `invalid_request` naming the argument when one is missing, unknown or
/// out of its limits.
pub fn job(arguments: Option<&Map<String, Value>>, limits: &LimitsConfig) -> Result<Job, ApiError> {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    if let Some(unknown) = arguments.keys().find(|key| !["code", "files", "timeout"].contains(&key.as_str()))
    {
        return Err(ApiError::InvalidRequest(format!(
            "unknown argument \"{unknown}\"; run_python takes code, files and timeout"
        )));
    }
    let code = match arguments.get("code") {
        Some(Value::String(code)) if !code.trim().is_empty() => code,
        Some(Value::String(_)) => {
            return Err(ApiError::InvalidRequest("argument \"code\" must not be empty".into()))
        }
        Some(_) => return Err(ApiError::InvalidRequest("argument \"code\" must be a string".into())),
        None => {
            return Err(ApiError::InvalidRequest("argument \"code\" is required: the Python to run".into()))
        }
    };
    let mut body = Map::new();
    body.insert("script".into(), Value::String(super::cell::script(code)));
    for field in ["files", "timeout"] {
        if let Some(value) = arguments.get(field) {
            body.insert(field.into(), value.clone());
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|error| ApiError::InvalidRequest(format!("arguments cannot be encoded: {error}")))?;
    crate::http::request::parse_job(&bytes, limits).map_err(|error| match error {
        // parse_job names request fields; here they are the tool's arguments.
        ApiError::InvalidRequest(why) | ApiError::InvalidJson(why) => {
            ApiError::InvalidRequest(why.replace("field \"", "argument \""))
        }
        other => other,
    })
}
