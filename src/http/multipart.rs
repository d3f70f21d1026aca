//! A `multipart/form-data` body of `POST /execute`: what
//! `curl -F script=@job.py -F data.csv=@data.csv` sends.
//!
//! Parts: `script` (required), `timeout` and `memory` (optional, as text),
//! and every other part is an input file, named by its part name (the
//! `name` of its `Content-Disposition`), with its bytes as they are, no
//! base64. The rules are those of a JSON body: the same limits, the same
//! file-name checks and the same messages; a part given twice is refused as
//! a JSON key given twice is. The body has been read up to
//! `--max-body-bytes` already, like a JSON body.

use std::collections::HashSet;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::files::FileSet;
use super::request::{file_caps, invalid, job_from_fields};
use crate::config::LimitsConfig;
use crate::executor::Job;

/// Parts that are fields of the request rather than input files.
const FIELD_PARTS: [&str; 3] = ["script", "timeout", "memory"];

/// Parses a form-data body into a [`Job`].
///
/// # Errors
/// `invalid_request` for a malformed body, a part without a name or given
/// twice, a script that is not UTF-8, and every check a JSON body has.
pub async fn parse_form(body: Bytes, boundary: &str, limits: &LimitsConfig) -> Result<Job, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields = Map::new();
    let mut files = FileSet::new(file_caps(limits));
    let mut seen = HashSet::new();
    while let Some(part) = form.next_field().await.map_err(malformed)? {
        let Some(name) = part.name().map(str::to_owned) else {
            return Err(invalid(
                "a multipart part has no name (Content-Disposition: form-data; name=\"...\")".into(),
            ));
        };
        if !seen.insert(name.clone()) {
            return Err(invalid(format!(
                "part \"{name}\" appears twice in the form; send each field (and each file name) once"
            )));
        }
        let data = part.bytes().await.map_err(malformed)?;
        if FIELD_PARTS.contains(&name.as_str()) {
            let text = String::from_utf8(data.to_vec())
                .map_err(|_| invalid(format!("part \"{name}\" must be UTF-8 text")))?;
            // The script is text as it is ("0" is a script); the limits read as numbers.
            let value = if name == "script" { Value::String(text) } else { field_value(text) };
            fields.insert(name, value);
        } else {
            files.add(&name, data.to_vec()).map_err(invalid)?;
        }
    }
    job_from_fields(&fields, files.into_files(), limits)
}

/// `timeout` and `memory` arrive as text: a number when it reads as one
/// (so `5`, `0.5` and `64` check as in JSON), else the text itself, which
/// the field's check then refuses as "got a string".
fn field_value(text: String) -> Value {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(number @ Value::Number(_)) => number,
        _ => Value::String(text),
    }
}

fn malformed(error: multer::Error) -> ApiError {
    invalid(format!("the multipart/form-data body is malformed: {error}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig { max_files: 2, max_files_bytes: 16, ..LimitsConfig::defaults() }
    }

    /// A form body with boundary `XyZ`; each part is (name, content).
    fn form(parts: &[(&str, &[u8])]) -> Bytes {
        let mut body = Vec::new();
        for (name, content) in parts {
            body.extend_from_slice(
                format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body.into()
    }

    async fn parse(parts: &[(&str, &[u8])]) -> Result<Job, ApiError> {
        parse_form(form(parts), "XyZ", &limits()).await
    }

    async fn message(parts: &[(&str, &[u8])]) -> String {
        match parse(parts).await {
            Err(ApiError::InvalidRequest(message)) => message,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn script_limits_and_raw_files() {
        let job = parse(&[
            ("script", b"def main(): return 1"),
            ("timeout", b"2.5"),
            ("memory", b"64"),
            ("a.csv", b"x,y\n\0\xff"),
        ])
        .await
        .expect("valid");
        assert_eq!(job.script, "def main(): return 1");
        assert_eq!((job.timeout, job.memory_bytes), (Duration::from_millis(2500), 64 << 20));
        assert_eq!(
            (job.files[0].name.as_str(), job.files[0].data.as_slice()),
            ("a.csv", b"x,y\n\0\xff".as_slice())
        );
        let job =
            parse(&[("script", b"0")]).await.expect("a script that reads as a number is still a script");
        assert_eq!(job.script, "0");
        assert_eq!((job.timeout, job.files.len()), (Duration::from_secs(10), 0));
    }

    #[tokio::test]
    async fn refusals_name_the_part_as_json_refusals_name_the_field() {
        assert!(message(&[("a.csv", b"")]).await.contains("\"script\" is required"));
        assert!(message(&[("script", b"x"), ("timeout", b"soon")]).await.contains("\"timeout\""));
        assert!(message(&[("script", b"x"), ("memory", b"8")]).await.contains("from 16 to 1024"));
        assert!(message(&[("script", b"\xff")]).await.contains("part \"script\" must be UTF-8"));
        assert!(message(&[("script", b"x"), ("script", b"y")])
            .await
            .contains("part \"script\" appears twice"));
        assert!(message(&[("script", b"x"), ("a", b""), ("a", b"")])
            .await
            .contains("part \"a\" appears twice"));
        assert!(message(&[("script", b"x"), ("..", b"")]).await.starts_with("files[\"..\"]: name must not"));
        let many = message(&[("script", b"x"), ("a", b""), ("b", b""), ("c", b"")]).await;
        assert!(many.contains("--max-files"), "{many}");
        let big = message(&[("script", b"x"), ("a", &[0; 17])]).await;
        assert!(big.contains("--max-files-bytes"), "{big}");
        let broken = parse_form(Bytes::from_static(b"--XyZ\r\nnonsense"), "XyZ", &limits()).await;
        assert!(matches!(broken, Err(ApiError::InvalidRequest(m)) if m.contains("malformed")));
    }
}
