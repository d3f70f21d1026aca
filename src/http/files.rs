//! The `files` field of a `/execute` body: `{"name": "<base64>", ...}`,
//! validated and decoded into [`InputFile`]s the runner writes into the
//! run's `/tmp`.
//!
//! Owns the file-name rules and the count and size caps; every refusal
//! names the field and the file. Must not: touch the filesystem (the
//! runner writes the files inside the sandbox).

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::Value;

use crate::protocol::InputFile;

/// Longest file name, in bytes (NAME_MAX of Linux filesystems).
pub const MAX_NAME_BYTES: usize = 255;

/// Standard alphabet; padding optional, since clients differ on it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Caps on one request's files.
#[derive(Clone, Copy, Debug)]
pub struct FileCaps {
    /// Most files.
    pub max_files: u64,
    /// Most decoded bytes of all files together.
    pub max_bytes: u64,
}

/// Checks a file name: a single path component the runner can create in
/// `/tmp`, and nothing else.
///
/// # Errors
/// What is wrong with the name, as a sentence.
pub fn check_name(name: &str) -> Result<(), String> {
    // SECURITY: no '/' and not '.' or '..': the name cannot leave /tmp or
    // name /tmp itself (the runner also opens with O_EXCL|O_NOFOLLOW). A
    // NUL would cut the name short in open(2).
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.contains('/') || name == "." || name == ".." {
        return Err("name must not contain '/' or be '.' or '..'".into());
    }
    if name.contains('\0') {
        return Err("name must not contain a NUL character".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("name is {} bytes long, over the limit of {MAX_NAME_BYTES}", name.len()));
    }
    Ok(())
}

/// The files of one request as they are added, from JSON or from
/// multipart parts alike: each is checked against the name rules and the
/// caps as it comes, so the messages are the same for both.
pub struct FileSet {
    caps: FileCaps,
    total: u64,
    files: Vec<InputFile>,
}

impl FileSet {
    pub fn new(caps: FileCaps) -> Self {
        Self { caps, total: 0, files: Vec::new() }
    }

    /// `files["name"]`, as every message names a file.
    pub fn label(name: &str) -> String {
        format!("files[{}]", Value::String(name.to_owned()))
    }

    /// Adds one file, after its name and the caps.
    ///
    /// # Errors
    /// A message naming the file and the cap or rule it breaks.
    pub fn add(&mut self, name: &str, data: Vec<u8>) -> Result<(), String> {
        let at = Self::label(name);
        check_name(name).map_err(|why| format!("{at}: {why}"))?;
        if self.files.len() as u64 >= self.caps.max_files {
            return Err(format!("{at}: more than {} files, the limit (--max-files)", self.caps.max_files));
        }
        self.total = self.total.saturating_add(data.len() as u64);
        if self.total > self.caps.max_bytes {
            return Err(format!(
                "field \"files\": the files decode to more than the limit of {} bytes (--max-files-bytes); over it at {at}",
                self.caps.max_bytes
            ));
        }
        self.files.push(InputFile { name: name.to_owned(), data });
        Ok(())
    }

    pub fn into_files(self) -> Vec<InputFile> {
        self.files
    }
}

/// Validates and decodes the `files` field (`None` or `null`: no files).
///
/// # Errors
/// A message naming `files` or `files["name"]` and what would be accepted.
pub fn parse_files(value: Option<&Value>, caps: FileCaps) -> Result<Vec<InputFile>, String> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => {
            return Err(
                "field \"files\" must be an object mapping file names to base64 contents, like {\"data.csv\": \"YSxiCjEsMgo=\"}"
                    .into(),
            )
        }
    };
    // Counted before anything is decoded.
    if entries.len() as u64 > caps.max_files {
        return Err(format!(
            "field \"files\" has {} files, over the limit of {} (--max-files)",
            entries.len(),
            caps.max_files
        ));
    }
    let mut files = FileSet::new(caps);
    for (name, content) in entries {
        let at = FileSet::label(name);
        check_name(name).map_err(|why| format!("{at}: {why}"))?;
        let Value::String(encoded) = content else {
            return Err(format!("{at}: the content must be a base64 string"));
        };
        let data = LENIENT_BASE64.decode(encoded).map_err(|e| format!("{at}: not valid base64: {e}"))?;
        files.add(name, data)?;
    }
    Ok(files.into_files())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAPS: FileCaps = FileCaps { max_files: 3, max_bytes: 10 };

    fn parse(value: Value) -> Result<Vec<InputFile>, String> {
        parse_files(Some(&value), CAPS)
    }

    #[test]
    fn absent_or_null_means_no_files() {
        assert!(parse_files(None, CAPS).expect("none").is_empty());
        assert!(parse(Value::Null).expect("null").is_empty());
        assert!(parse(json!({})).expect("empty").is_empty());
    }

    #[test]
    fn decodes_padded_and_unpadded_base64() {
        let files = parse(json!({"a.csv": "YSxiCg==", "b.bin": "AP8"})).expect("valid");
        assert_eq!(files[0], InputFile { name: "a.csv".into(), data: b"a,b\n".to_vec() });
        assert_eq!(files[1], InputFile { name: "b.bin".into(), data: vec![0, 255] });
    }

    #[test]
    fn names_are_single_components() {
        for name in ["../x", "a/b", "/etc", ".", ".."] {
            let error = parse(json!({ name: "" })).expect_err(name);
            assert!(error.contains("must not contain '/' or be '.' or '..'"), "{error}");
            assert!(error.starts_with(&format!("files[{}]", json!(name))), "{error}");
        }
        assert!(parse(json!({"": ""})).expect_err("empty").contains("must not be empty"));
        assert!(parse(json!({"a\u{0}b": ""})).expect_err("nul").contains("NUL"));
        let long = "x".repeat(256);
        assert!(parse(json!({ long: "" })).expect_err("long").contains("256 bytes long"));
        // Leading dashes, dots and spaces are ordinary file names.
        assert!(parse(json!({"-rf": "", ".hidden": "", "a b": ""})).is_ok());
    }

    #[test]
    fn caps_and_types_are_enforced() {
        let error = parse(json!({"a": "", "b": "", "c": "", "d": ""})).expect_err("count");
        assert!(error.contains("4 files, over the limit of 3 (--max-files)"), "{error}");
        let error = parse(json!({"a": "AAAAAAAA", "b": "AAAAAAAA"})).expect_err("size");
        assert!(error.contains("--max-files-bytes") && error.contains("files[\"b\"]"), "{error}");
        assert!(parse(json!({"a": "!!"})).expect_err("base64").starts_with("files[\"a\"]: not valid base64"));
        assert!(parse(json!({"a": 5})).expect_err("type").contains("must be a base64 string"));
        assert!(parse(json!(["a"])).expect_err("array").contains("must be an object"));
    }
}
