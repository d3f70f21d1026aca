//! Saves the figures of a successful answer as PNG files (`--figures DIR`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::CliError;

/// Writes every figure of `body` (a 200 answer) into `dir` as
/// `figure-N.png` (N from 1, in the answer's order) and returns one line
/// per figure for stderr. Without `dir`, returns a hint when there are
/// figures to save.
///
/// # Errors
/// [`CliError::Unwritable`] when a file cannot be written, or a figure's
/// data is not base64.
pub fn save(body: &Value, dir: Option<&Path>) -> Result<String, CliError> {
    let figures = body.get("figures").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut lines = String::new();
    if figures.is_empty() {
        return Ok(lines);
    }
    let Some(dir) = dir else {
        lines.push_str(&format!(
            "pyexec: the run returned {} figure(s); pass --figures DIR to save them as PNG files\n",
            figures.len()
        ));
        return Ok(lines);
    };
    for (index, figure) in figures.iter().enumerate() {
        let path = dir.join(format!("figure-{}.png", index + 1));
        let unwritable = |reason: String| CliError::Unwritable { path: path.clone(), reason };
        let data = figure.get("data").and_then(Value::as_str).unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| unwritable(format!("the figure's data is not base64: {error}")))?;
        std::fs::write(&path, png).map_err(|error| unwritable(error.to_string()))?;
        let size = |key: &str| figure.get(key).and_then(Value::as_u64).unwrap_or(0);
        lines.push_str(&format!(
            "pyexec: saved figure {} ({}x{}) to {}\n",
            index + 1,
            size("width"),
            size("height"),
            path.display()
        ));
    }
    if body.get("figures_truncated").and_then(Value::as_bool) == Some(true) {
        lines.push_str("pyexec: more figures were open than the service returns (its figure caps)\n");
    }
    Ok(lines)
}

/// The default-less `--figures` value, checked to be a directory.
///
/// # Errors
/// [`CliError::Unwritable`] when `dir` is not an existing directory.
pub fn check_dir(dir: &Path) -> Result<PathBuf, CliError> {
    if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(CliError::Unwritable { path: dir.to_path_buf(), reason: "not an existing directory".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saves_each_figure_as_numbered_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = json!({"figures": [
            {"format": "png", "data": "iVBORw0KGgo=", "width": 640, "height": 480},
            {"format": "png", "data": "AAEC", "width": 10, "height": 20},
        ]});
        let lines = save(&body, Some(dir.path())).expect("saved");
        assert_eq!(std::fs::read(dir.path().join("figure-1.png")).expect("1"), b"\x89PNG\r\n\x1a\n");
        assert_eq!(std::fs::read(dir.path().join("figure-2.png")).expect("2"), [0, 1, 2]);
        assert!(lines.contains("saved figure 1 (640x480)") && lines.contains("figure-2.png"), "{lines}");
    }

    #[test]
    fn without_a_directory_only_hints() {
        let body = json!({"figures": [{"format": "png", "data": "AAEC", "width": 1, "height": 1}]});
        assert!(save(&body, None).expect("hint").contains("pass --figures DIR"));
        assert_eq!(save(&json!({"figures": []}), None).expect("nothing"), "");
    }

    #[test]
    fn bad_data_and_missing_directories_are_errors() {
        let body = json!({"figures": [{"format": "png", "data": "not base64!", "width": 1, "height": 1}]});
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(save(&body, Some(dir.path())), Err(CliError::Unwritable { .. })));
        assert!(check_dir(&dir.path().join("missing")).is_err());
    }
}
