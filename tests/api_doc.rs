//! `docs/api.md` against `docs/openapi.json`, so that the prose reference
//! cannot drift from the spec (which `tests/openapi.rs` and schemathesis
//! hold to the code):
//! - every route of the spec is named in api.md as `` `METHOD /path` ``, and
//!   every route api.md names so is in the spec;
//! - every request and answer field of the spec is named in api.md, and
//!   every field api.md names (its field tables, its JSON examples, its
//!   `` `"field": value` `` snippets) is a field of the spec;
//! - every JSON example in api.md parses.
//!
//! No service is started: this is a fast test.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// The spec's schemas whose properties are the public fields.
const FIELD_SCHEMAS: &[&str] = &[
    "ExecuteRequest",
    "ExecuteForm",
    "ExecuteSuccess",
    "Usage",
    "Figure",
    "Error",
    "SessionCreateRequest",
    "SessionCreated",
    "SessionInfo",
    "CellRequest",
    "CellSuccess",
];

/// Keys of a JSON example whose value is the user's data, not the API's.
const USER_DATA: &[&str] = &["result", "files"];

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn spec() -> Value {
    serde_json::from_str(&read("docs/openapi.json")).expect("docs/openapi.json is JSON")
}

/// The spec's routes as "METHOD /path".
fn spec_routes(spec: &Value) -> BTreeSet<String> {
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods
                .filter(|method| *method != "parameters")
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

/// The spec's public field names.
fn spec_fields(spec: &Value) -> BTreeSet<String> {
    FIELD_SCHEMAS
        .iter()
        .flat_map(|name| {
            let schema = &spec["components"]["schemas"][*name];
            let properties =
                schema["properties"].as_object().unwrap_or_else(|| panic!("{name} has properties"));
            properties.keys().cloned().collect::<Vec<_>>()
        })
        .collect()
}

/// The inline code spans of a markdown text (outside fenced blocks).
fn code_spans(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    let mut prose = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            prose.push_str(line);
            prose.push(' ');
        }
    }
    let mut parts = prose.split('`');
    parts.next();
    while let (Some(span), Some(_)) = (parts.next(), parts.next()) {
        spans.push(span.to_owned());
    }
    spans
}

/// The bodies of the ```json blocks.
fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Every key of a JSON example, skipping the user's own data.
fn example_keys(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                keys.insert(key.clone());
                if !USER_DATA.contains(&key.as_str()) {
                    example_keys(inner, keys);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| example_keys(item, keys)),
        _ => {}
    }
}

/// The routes api.md names as `METHOD /path`.
fn doc_routes(spans: &[String]) -> BTreeSet<String> {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
    spans
        .iter()
        .filter(|span| {
            span.split_once(' ')
                .is_some_and(|(method, path)| METHODS.contains(&method) && path.starts_with('/'))
        })
        .cloned()
        .collect()
}

/// The keys of a `{"id", "expires_at"}` or `{"code": "...", "timeout": s}`
/// snippet: quoted words followed by `:`, `,` or `}`.
fn object_keys(span: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut parts = span.split('"');
    parts.next();
    while let (Some(word), Some(after)) = (parts.next(), parts.next()) {
        let is_key = after.trim_start().starts_with([':', ',', '}']);
        if is_key && !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            keys.push(word.to_owned());
        }
    }
    keys
}

/// The fields api.md names: first cells of its `| field |` tables, keys of
/// its JSON examples and of its `"field": value` snippets.
fn doc_fields(markdown: &str, spans: &[String]) -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    let mut in_field_table = false;
    for line in markdown.lines() {
        if line.starts_with("| field |") {
            in_field_table = true;
        } else if !line.starts_with('|') {
            in_field_table = false;
        } else if in_field_table && !line.starts_with("|---") {
            let first = line.split('|').nth(1).unwrap_or_default().trim();
            fields.insert(first.trim_matches('`').to_owned());
        }
    }
    for block in json_blocks(markdown) {
        let value: Value = serde_json::from_str(&block)
            .unwrap_or_else(|err| panic!("a JSON example of api.md: {err}\n{block}"));
        example_keys(&value, &mut fields);
    }
    for span in spans {
        if let Some((key, _)) = span.strip_prefix('"').and_then(|rest| rest.split_once("\": ")) {
            fields.insert(key.to_owned());
        }
        if span.starts_with('{') {
            fields.extend(object_keys(span));
        }
    }
    fields
}

/// `in_spec` all named by the doc (loosely: any mention), and all the doc
/// names strictly (as a route or field) in `in_spec`.
fn assert_agree(
    what: &str,
    loosely: &BTreeSet<String>,
    strictly: &BTreeSet<String>,
    in_spec: &BTreeSet<String>,
) {
    let undocumented: Vec<_> =
        in_spec.iter().filter(|name| !loosely.contains(*name) && !strictly.contains(*name)).collect();
    assert!(
        undocumented.is_empty(),
        "{what} of docs/openapi.json that the doc never names: {undocumented:?}"
    );
    let unknown: Vec<_> = strictly.difference(in_spec).collect();
    assert!(unknown.is_empty(), "{what} the doc names that docs/openapi.json lacks: {unknown:?}");
}

#[test]
fn api_md_names_every_route_of_the_spec_and_no_other() {
    let spec = spec();
    let doc = read("docs/api.md");
    let named = doc_routes(&code_spans(&doc));
    assert_agree("routes (docs/api.md)", &named, &named, &spec_routes(&spec));
}

#[test]
fn api_md_names_every_field_of_the_spec_and_no_other() {
    let spec = spec();
    let doc = read("docs/api.md");
    let spans = code_spans(&doc);
    let mentioned: BTreeSet<String> = spans.iter().map(|span| span.trim_matches('"').to_owned()).collect();
    assert_agree("fields (docs/api.md)", &mentioned, &doc_fields(&doc, &spans), &spec_fields(&spec));
}

#[test]
fn the_readme_error_table_has_exactly_the_spec_kinds() {
    let spec = spec();
    let kinds: BTreeSet<String> = spec["components"]["schemas"]["ErrorKind"]["enum"]
        .as_array()
        .expect("ErrorKind is an enum")
        .iter()
        .map(|kind| kind.as_str().expect("a kind is a string").to_owned())
        .collect();
    let readme = read("README.md");
    let table: BTreeSet<String> = readme
        .lines()
        .filter(|line| line.starts_with("| 4") || line.starts_with("| 5"))
        .filter_map(|line| line.split('|').nth(2))
        .map(|cell| cell.trim().trim_matches('`').to_owned())
        .collect();
    assert_agree("error kinds (the README's error table)", &table, &table, &kinds);
}
