//! A notebook-style cell as an `/execute` script: the cell's code (no
//! `main()` needed), run in a fresh namespace, answering with the value of
//! its last expression, as `run_python` promises.
//!
//! The script is `cell.py` with the cell's source put in as a string
//! literal; it runs like any other script (same sandbox, limits, figures,
//! stdout/stderr capture). This module owns rendering that script and
//! reading back what it returns; it must not decide anything about the
//! sandbox. `run_python` keeps it rather than a throwaway one-cell session:
//! sessions are off by default and each takes a worker of its own, where
//! this runs on a pool worker's pre-forked spare (docs/sessions.md).

use crate::http::error_kind::ErrorKind;
use serde::Deserialize;
use serde_json::Value;

/// The wrapper; `__CELL__` is replaced by the cell's source.
const WRAPPER: &str = include_str!("cell.py");
const PLACEHOLDER: &str = "__CELL__";

/// What a cell came to, when the run itself finished (`outcome: ok`).
#[derive(Debug, PartialEq)]
pub enum CellAnswer {
    /// The cell ran; `result` is its last expression's value (`null` after a
    /// statement, or when the value has no JSON form: then `display` holds
    /// its `repr`).
    Value {
        /// The value, converted like `main()`'s result.
        result: Value,
        /// `repr(value)` when it has no JSON form, cut at 64 KiB.
        display: Option<String>,
    },
    /// The cell did not compile or raised.
    Failed(CellError),
}

/// A script error inside the cell, with the cell's own line numbers.
#[derive(Debug, PartialEq, Deserialize)]
pub struct CellError {
    /// `syntax_error` or `runtime_error`, as the API names them.
    pub kind: String,
    /// The exception's last line.
    pub message: String,
    /// The traceback from the cell's first frame on (caret report for a
    /// syntax error).
    pub traceback: String,
}

/// The wrapper's answer; anything else means the run was tampered with.
#[derive(Deserialize)]
struct Envelope {
    pyexec_cell: Inner,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inner {
    #[serde(default)]
    result: Value,
    display: Option<String>,
    error: Option<CellError>,
}

/// The `/execute` script that runs `code` as one cell.
pub fn script(code: &str) -> String {
    // A JSON string is a valid Python string literal: `"` and `\` are
    // escaped, control characters become \n or \uXXXX, and the rest is
    // UTF-8 text, which Python source is. Serializing a &str cannot fail.
    let literal = serde_json::to_string(code).unwrap_or_else(|_| "\"\"".into());
    WRAPPER.replacen(PLACEHOLDER, &literal, 1)
}

/// Reads the wrapper's answer from a successful run's JSON result.
///
/// # Errors
/// A message when the result is not the wrapper's envelope: the cell's code
/// can reach the wrapper's module and change what it returns, which only
/// spoils its own answer.
pub fn answer(result: &[u8]) -> Result<CellAnswer, String> {
    let envelope: Envelope = serde_json::from_slice(result)
        .map_err(|error| format!("the cell's run did not answer as the wrapper does: {error}"))?;
    let inner = envelope.pyexec_cell;
    Ok(match inner.error {
        // The kind becomes a metric label: only the wrapper's two count.
        Some(error)
            if ![ErrorKind::SyntaxError, ErrorKind::RuntimeError]
                .iter()
                .any(|kind| kind.as_str() == error.kind) =>
        {
            return Err(format!("the cell's run answered an unknown error kind {:?}", error.kind));
        }
        Some(error) => CellAnswer::Failed(error),
        None => CellAnswer::Value { result: inner.result, display: inner.display },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cell_becomes_a_python_literal() {
        let code = "x = \"a\\b\"\nprint('''t\u{e9}''')\n\u{7}";
        assert_eq!(WRAPPER.matches(PLACEHOLDER).count(), 1, "one placeholder, in `CELL = ...`");
        let rendered = script(code);
        assert_eq!(rendered.matches(PLACEHOLDER).count(), 0, "the placeholder is replaced");
        let literal = serde_json::to_string(code).expect("json");
        assert!(rendered.contains(&format!("CELL = {literal}\n")), "{rendered}");
    }

    #[test]
    fn the_wrapper_has_no_drawing_words() {
        // worker/pyexec_worker/figures.py _DRAWING_WORDS: the cell alone
        // decides whether its run gets a spare ready for figures.
        for word in ["matplotlib", "pyplot", "plt.", ".plot", ".hist(", ".boxplot(", "plotting", "seaborn"] {
            assert!(!WRAPPER.contains(word), "cell.py contains {word:?}");
        }
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            answer(br#"{"pyexec_cell":{"result":{"a":1}}}"#),
            Ok(CellAnswer::Value { result: serde_json::json!({"a": 1}), display: None })
        );
        assert_eq!(
            answer(br#"{"pyexec_cell":{"result":null,"display":"{1, 2}"}}"#),
            Ok(CellAnswer::Value { result: Value::Null, display: Some("{1, 2}".into()) })
        );
        let failed = answer(
            br#"{"pyexec_cell":{"error":{"kind":"runtime_error","message":"ZeroDivisionError: division by zero","traceback":"T"}}}"#,
        );
        assert!(
            matches!(failed, Ok(CellAnswer::Failed(CellError { ref kind, .. })) if kind == "runtime_error")
        );
        assert!(answer(b"42").is_err());
        assert!(answer(br#"{"pyexec_cell":{"error":{"kind":"x","message":"m","traceback":"t"}}}"#).is_err());
        assert!(answer(br#"{"pyexec_cell":{"surprise":1}}"#).is_err());
    }
}
