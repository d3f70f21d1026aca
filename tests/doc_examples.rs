//! The examples of README.md and docs/api.md, sent to the real service: the
//! README's "Try it" curl and the request example of docs/api.md get the
//! answers the docs show (same `result`, output and figures, the same
//! fields), and the error example's script gets the shown kind and fields.
//! Timing fields (`duration_ms`, `usage`) are compared by name only. The
//! metrics table of docs/operations.md lists every metric the service exports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::Service;
use serde_json::Value;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The text of `markdown` from the heading `heading` to the next `## `.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown.find(heading).unwrap_or_else(|| panic!("no heading {heading:?}"));
    let rest = &markdown[start + heading.len()..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end])
}

/// The fenced blocks of `text` whose info string is `info`, in order.
fn blocks(text: &str, info: &str) -> Vec<String> {
    let opening = format!("```{info}\n");
    text.split(&opening).skip(1).map(|rest| rest.split("```").next().unwrap_or_default().to_owned()).collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|map| map.keys().cloned().collect()).unwrap_or_default()
}

/// `got` has the shown answer's fields, and the same values except timings.
fn assert_like(got: &Value, shown: &Value) {
    assert_eq!(keys(got), keys(shown), "fields: got {got}, the docs show {shown}");
    assert_eq!(keys(&got["usage"]), keys(&shown["usage"]), "usage fields: got {got}");
    for (field, value) in shown.as_object().expect("an answer object") {
        if field != "duration_ms" && field != "usage" {
            assert_eq!(&got[field], value, "{field}: got {got}, the docs show {shown}");
        }
    }
}

#[tokio::test]
async fn the_readme_and_api_md_examples_answer_as_shown() {
    let readme = read("README.md");
    let api = read("docs/api.md");
    let service = Service::start(&["--workers", "1"]).await;

    // README, Try it: the body of the curl's `-d '...'`, and the answer below it.
    let try_it = section(&readme, "## Try it");
    let curl = blocks(try_it, "sh").into_iter().next().expect("the curl block");
    let body = curl.split("-d '").nth(1).and_then(|rest| rest.split('\'').next()).expect("-d '...'");
    let shown = json(&blocks(try_it, "json")[0]);
    let (status, got) = service.execute_body(json(body)).await;
    assert_eq!(status, 200, "{got}");
    assert_like(&got, &shown);

    // api.md, POST /execute: the request example and the 200 shown for it.
    let execute = section(&api, "## `POST /execute`");
    let examples = blocks(execute, "json");
    let (status, got) = service.execute_body(json(&examples[0])).await;
    assert_eq!(status, 200, "{got}");
    let shown =
        examples.iter().map(|block| json(block)).find(|value| value["result"] == json(r#"{"sum": 4}"#));
    assert_like(&got, &shown.expect("api.md shows the 200 of its request example"));

    // README, Errors: the example is missing_main, which `x = 1` produces.
    let errors = section(&readme, "## Errors");
    let shown = json(&blocks(errors, "json")[0]);
    let got = service.run_expecting("x = 1", 422, "missing_main").await;
    assert_like(&got, &shown);

    // docs/operations.md, Observability: its table names every family the
    // service exports.
    let metrics = service.metrics().await;
    let operations = read("docs/operations.md");
    let observability = section(&operations, "## Observability");
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE pyexec_"))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(exported.len() > 10, "{metrics}");
    let missing: Vec<_> =
        exported.iter().filter(|name| !observability.contains(&format!("`pyexec_{name}"))).collect();
    assert!(missing.is_empty(), "metrics docs/operations.md does not list (as `pyexec_NAME`): {missing:?}");
}
