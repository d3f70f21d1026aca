//! Validation of a `/execute` body into a [`Job`]: every message names the
//! field at fault and what would be accepted.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::files::{parse_files, FileCaps};
use super::strict_json::{self, StrictJsonError};
use crate::config::LimitsConfig;
use crate::executor::Job;
use crate::protocol::InputFile;

const FIELDS: [&str; 4] = ["script", "timeout", "memory", "files"];

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn invalid(message: String) -> ApiError {
    ApiError::InvalidRequest(message)
}

/// Parses and validates a request body.
///
/// # Errors
/// `invalid_json` when the body does not parse, `invalid_request` when a
/// field is missing, unknown, given twice, of the wrong type or out of range.
pub fn parse_job(body: &[u8], limits: &LimitsConfig) -> Result<Job, ApiError> {
    let value = strict_json::from_slice(body).map_err(|e| match e {
        StrictJsonError::Syntax(e) => ApiError::InvalidJson(format!("request body is not valid JSON: {e}")),
        StrictJsonError::DuplicateKey(path) => invalid(format!(
            "key {path} appears twice in the request body; send each field (and each file name) once"
        )),
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid(format!(
            "request body must be a JSON object like {{\"script\": \"...\"}}, got {}",
            type_name(&value)
        )));
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(invalid(format!(
            "unknown field \"{unknown}\"; allowed fields: script, timeout, memory, files"
        )));
    }
    let files = parse_files(fields.get("files"), file_caps(limits)).map_err(invalid)?;
    job_from_fields(&fields, files, limits)
}

/// The caps on a request's input files, from the limits.
pub fn file_caps(limits: &LimitsConfig) -> FileCaps {
    FileCaps { max_files: limits.max_files, max_bytes: limits.max_files_bytes }
}

/// A [`Job`] from the checked `script`, `timeout` and `memory` of `fields`
/// and the already checked files: the one place both body formats (JSON,
/// `multipart/form-data`) end up in.
///
/// # Errors
/// `invalid_request` naming the field that is missing, of the wrong type
/// or out of range.
pub fn job_from_fields(
    fields: &Map<String, Value>,
    files: Vec<InputFile>,
    limits: &LimitsConfig,
) -> Result<Job, ApiError> {
    Ok(Job {
        script: script(fields)?,
        timeout: timeout(fields, limits)?,
        memory_bytes: memory_mib(fields, limits)? * 1024 * 1024,
        max_output_bytes: limits.max_output_bytes,
        max_result_bytes: limits.max_result_bytes,
        files,
        max_figures: limits.max_figures,
        max_figures_bytes: limits.max_figures_bytes,
    })
}

fn script(fields: &Map<String, Value>) -> Result<String, ApiError> {
    match fields.get("script") {
        None => Err(invalid("field \"script\" is required: the Python source defining main()".into())),
        Some(Value::String(script)) if script.trim().is_empty() => {
            Err(invalid("field \"script\" must not be empty".into()))
        }
        Some(Value::String(script)) => Ok(script.clone()),
        Some(other) => Err(invalid(format!("field \"script\" must be a string, got {}", type_name(other)))),
    }
}

/// The shortest run timeout: positive timeouts below it are rounded up to it.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

fn timeout(fields: &Map<String, Value>, limits: &LimitsConfig) -> Result<Duration, ApiError> {
    let max = limits.max_timeout.as_secs_f64();
    let wrong = |got: String| {
        invalid(format!("field \"timeout\" must be a number of seconds in (0, {max}], got {got}"))
    };
    match fields.get("timeout") {
        None | Some(Value::Null) => Ok(limits.default_timeout),
        Some(Value::Number(n)) => match n.as_f64() {
            // The zygote counts in milliseconds: a positive timeout below one
            // (found by the fuzzer: 6e-10 s became a zero Duration) is one.
            Some(secs) if secs.is_finite() && secs > 0.0 && secs <= max => {
                Ok(Duration::from_secs_f64(secs).max(MIN_TIMEOUT))
            }
            _ => Err(wrong(n.to_string())),
        },
        Some(other) => Err(wrong(type_name(other).into())),
    }
}

fn memory_mib(fields: &Map<String, Value>, limits: &LimitsConfig) -> Result<u64, ApiError> {
    let (min, max) = (limits.min_memory_mib, limits.max_memory_mib);
    let wrong = |got: String| {
        invalid(format!("field \"memory\" must be a whole number of MiB from {min} to {max}, got {got}"))
    };
    match fields.get("memory") {
        None | Some(Value::Null) => Ok(limits.default_memory_mib),
        Some(Value::Number(n)) => match whole_number(n) {
            Some(mib) if (min..=max).contains(&mib) => Ok(mib),
            _ => Err(wrong(n.to_string())),
        },
        Some(other) => Err(wrong(type_name(other).into())),
    }
}

/// `64` or `64.0`: JSON (and JSON Schema's `integer`) does not tell them
/// apart, and some clients write every number with a fraction.
pub(super) fn whole_number(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        let float = n.as_f64()?;
        // Below 2^53 every whole f64 converts to u64 exactly.
        (float.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&float)).then_some(float as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig::defaults()
    }

    fn parse(body: &str) -> Result<Job, ApiError> {
        parse_job(body.as_bytes(), &limits())
    }

    fn message(result: Result<Job, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidRequest(message)) => message,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    proptest::proptest! {
        /// Any valid request reads back exactly: the script verbatim (any
        /// Unicode, JSON-escaped by the client) and the limits asked for.
        #[test]
        fn any_valid_request_round_trips(
            script in "\\PC*[a-z]\\PC*",
            timeout_ms in 1u64..=60_000,
            memory in 16u64..=1024,
        ) {
            let timeout = Duration::from_millis(timeout_ms);
            let body = serde_json::json!({"script": script, "timeout": timeout.as_secs_f64(), "memory": memory});
            let job = parse_job(body.to_string().as_bytes(), &limits()).expect("valid");
            proptest::prop_assert_eq!(&job.script, &script);
            // Seconds travel as a JSON float: equal to well under a microsecond.
            let error = job.timeout.abs_diff(timeout);
            proptest::prop_assert!(error < Duration::from_micros(1), "{:?} vs {:?}", job.timeout, timeout);
            proptest::prop_assert_eq!(job.memory_bytes, memory << 20);
        }
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let job = parse(r#"{"script": "def main(): return 1"}"#).expect("valid");
        assert_eq!(job.timeout, Duration::from_secs(10));
        assert_eq!(job.memory_bytes, 256 << 20);
        assert_eq!(job.max_result_bytes, 4 << 20);
        assert!(job.files.is_empty());
        assert_eq!((job.max_figures, job.max_figures_bytes), (8, 4 << 20));
    }

    #[test]
    fn files_are_decoded_and_their_errors_name_the_file() {
        let job = parse(r#"{"script": "x", "files": {"data.csv": "YSxiCjEsMgo="}}"#).expect("valid");
        assert_eq!(job.files[0].name, "data.csv");
        assert_eq!(job.files[0].data, b"a,b\n1,2\n");
        let error = message(parse(r#"{"script": "x", "files": {"../x": ""}}"#));
        assert_eq!(error, r#"files["../x"]: name must not contain '/' or be '.' or '..'"#);
    }

    #[test]
    fn explicit_limits_are_used() {
        let job = parse(r#"{"script": "x", "timeout": 0.5, "memory": 64}"#).expect("valid");
        assert_eq!(job.timeout, Duration::from_millis(500));
        assert_eq!(job.memory_bytes, 64 << 20);
        let job = parse(r#"{"script": "x", "memory": 64.0}"#).expect("a whole number written as a float");
        assert_eq!(job.memory_bytes, 64 << 20);
        assert!(parse(r#"{"script": "x", "timeout": null, "memory": null}"#).is_ok());
    }

    #[test]
    fn broken_json_is_invalid_json() {
        assert!(matches!(parse("{\"script\": "), Err(ApiError::InvalidJson(_))));
        assert!(matches!(parse(""), Err(ApiError::InvalidJson(_))));
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(message(parse("[]")).contains("JSON object"));
        assert!(message(parse("{}")).contains("\"script\" is required"));
        assert!(message(parse(r#"{"script": ""}"#)).contains("must not be empty"));
        assert!(message(parse(r#"{"script": "  \n"}"#)).contains("must not be empty"));
        assert!(message(parse(r#"{"script": 5}"#)).contains("must be a string, got a number"));
        assert!(message(parse(r#"{"script": "x", "code": 1}"#)).contains("unknown field \"code\""));
        assert!(
            message(parse(r#"{"script": "a", "script": "b"}"#)).starts_with("key \"script\" appears twice")
        );
        let twice = message(parse(r#"{"script": "x", "files": {"a.csv": "", "a.csv": "YQ=="}}"#));
        assert!(twice.starts_with("key \"files\"[\"a.csv\"] appears twice"), "{twice}");
        assert!(message(parse(r#"{"script": "x", "timeout": 0}"#)).contains("\"timeout\""));
        let tiny = parse(r#"{"script": "x", "timeout": 0.0000000006}"#).expect("a positive timeout is valid");
        assert_eq!(tiny.timeout, MIN_TIMEOUT);
        assert!(message(parse(r#"{"script": "x", "timeout": -1}"#)).contains("\"timeout\""));
        assert!(message(parse(r#"{"script": "x", "timeout": 61}"#)).contains("(0, 60]"));
        assert!(message(parse(r#"{"script": "x", "timeout": "5"}"#)).contains("got a string"));
        assert!(message(parse(r#"{"script": "x", "memory": 8}"#)).contains("from 16 to 1024"));
        assert!(message(parse(r#"{"script": "x", "memory": 2048}"#)).contains("\"memory\""));
        assert!(message(parse(r#"{"script": "x", "memory": 64.5}"#)).contains("\"memory\""));
    }
}
