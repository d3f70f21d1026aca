//! `docs/openapi.json` against the code: served as is, OpenAPI 3.1, and
//! its error kinds, statuses, request fields and default limits equal
//! what the service does. (`tests/api-spec/check.sh` checks the live
//! answers against it with schemathesis.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use common::Service;
use pyexec::config::Flags;
use pyexec::http::error::{ApiError, ErrorKind};
use serde_json::{json, Value};

fn spec_file() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn spec() -> Value {
    serde_json::from_str(&spec_file()).expect("docs/openapi.json is JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = spec.pointer(pointer.trim_start_matches('#')).unwrap_or_else(|| panic!("{pointer}"));
            resolve(spec, target)
        }
        None => node,
    }
}

/// The `kind` values a response schema allows: the narrowed enum of its
/// `allOf`, or the whole `ErrorKind` enum.
fn kinds_of(spec: &Value, response: &Value) -> BTreeSet<String> {
    let response = resolve(spec, response);
    let schema = resolve(spec, &response["content"]["application/json"]["schema"]);
    let parts = schema["allOf"].as_array().expect("error responses are allOf [Error, narrowing]");
    let narrowed = parts
        .iter()
        .find_map(|part| part.pointer("/properties/kind/enum"))
        .expect("a kind enum narrows the Error schema");
    narrowed.as_array().expect("enum").iter().map(|k| k.as_str().expect("kind").to_string()).collect()
}

/// Every error the service can answer: each [`ErrorKind`]'s examples, made
/// through the same `ApiError` -> response table the handlers use.
fn every_api_error() -> Vec<ApiError> {
    ErrorKind::ALL.iter().flat_map(|kind| ApiError::examples(*kind)).collect()
}

#[test]
fn spec_is_openapi_3_1_with_every_path_the_service_routes() {
    let spec = spec();
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", spec["openapi"]);
    let paths: BTreeSet<&str> =
        spec["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    let routed = [
        "/execute",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/sessions",
        "/sessions/{id}",
        "/sessions/{id}/execute",
    ];
    assert_eq!(paths, BTreeSet::from(routed));
    assert_eq!(pyexec::http::routes::OPENAPI_JSON, spec_file(), "the binary embeds docs/openapi.json");
}

#[test]
fn error_kinds_in_the_spec_are_the_kinds_the_service_produces() {
    let spec = spec();
    let code_kinds: BTreeSet<String> = ErrorKind::ALL.iter().map(ToString::to_string).collect();
    let spec_kinds: BTreeSet<String> = spec["components"]["schemas"]["ErrorKind"]["enum"]
        .as_array()
        .expect("ErrorKind enum")
        .iter()
        .map(|kind| kind.as_str().expect("str").to_string())
        .collect();
    assert_eq!(spec_kinds, code_kinds, "ErrorKind in docs/openapi.json vs src/http/error_kind.rs");

    // Status -> kinds, as the spec documents them: on /execute and the
    // session routes, plus the 404 and 405 every path can answer.
    let mut documented: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for path in ["/execute", "/sessions", "/sessions/{id}", "/sessions/{id}/execute"] {
        for (method, operation) in spec["paths"][path].as_object().expect("path") {
            if method == "parameters" {
                continue;
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let status: u16 = status.parse().expect("numeric status");
                if status >= 400 {
                    documented.entry(status).or_default().extend(kinds_of(&spec, response));
                }
            }
        }
    }
    documented.entry(404).or_default().extend(kinds_of(&spec, &spec["components"]["responses"]["NotFound"]));
    documented.insert(405, kinds_of(&spec, &spec["components"]["responses"]["MethodNotAllowed"]));

    // Status -> kinds, as the code answers them.
    let mut answered: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for error in every_api_error() {
        answered.entry(error.status().as_u16()).or_default().insert(error.kind().to_string());
    }
    let covered: BTreeSet<String> = answered.values().flatten().cloned().collect();
    assert_eq!(covered, code_kinds, "ApiError::examples(kind) answers that kind, for every kind");
    assert_eq!(documented, answered, "status -> kinds: docs/openapi.json vs the ApiError table");
}

#[test]
fn request_limits_in_the_spec_are_the_server_defaults() {
    let spec = spec();
    let fields = &spec["components"]["schemas"]["ExecuteRequest"]["properties"];
    let command = Flags::command();
    let default = |id: &str| -> f64 {
        let arg = command.get_arguments().find(|arg| arg.get_id() == id).unwrap_or_else(|| panic!("{id}"));
        let value = arg.get_default_values().first().unwrap_or_else(|| panic!("{id} has a default"));
        value.to_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{id}: {value:?}"))
    };
    let number = |pointer: &str| {
        fields.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer}"))
    };
    assert_eq!(number("/timeout/maximum"), default("max_timeout_secs"));
    assert_eq!(number("/timeout/default"), default("default_timeout_secs"));
    assert_eq!(number("/timeout/exclusiveMinimum"), 0.0);
    assert_eq!(number("/memory/minimum"), default("min_memory_mib"));
    assert_eq!(number("/memory/maximum"), default("max_memory_mib"));
    assert_eq!(number("/memory/default"), default("default_memory_mib"));
    let session = &spec["components"]["schemas"]["SessionCreateRequest"]["properties"];
    let number = |pointer: &str| {
        session.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer}"))
    };
    // --session-max-memory-mib defaults to --max-memory-mib.
    assert_eq!(number("/memory/maximum"), default("max_memory_mib"));
    assert_eq!(number("/idle_timeout/maximum"), default("session_idle_timeout_secs"));
    assert_eq!(number("/idle_timeout/default"), default("session_idle_timeout_secs"));
}

#[test]
fn script_pattern_is_rusts_notion_of_blank() {
    // The service refuses a script that `str::trim` empties, i.e. one made
    // of `char::is_whitespace` only; the spec's pattern must say the same.
    let blank: Vec<char> =
        (0..=u32::from(char::MAX)).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect();
    let mut class = String::new();
    let mut i = 0;
    while i < blank.len() {
        let start = blank[i];
        while i + 1 < blank.len() && u32::from(blank[i + 1]) == u32::from(blank[i]) + 1 {
            i += 1;
        }
        let escape = |c: char| match c {
            '\t' => "\\t".to_string(),
            '\n' => "\\n".to_string(),
            '\u{c}' => "\\f".to_string(),
            '\r' => "\\r".to_string(),
            ' ' => " ".to_string(),
            c => format!("\\u{:04x}", u32::from(c)),
        };
        class.push_str(&escape(start));
        match u32::from(blank[i]) - u32::from(start) {
            0 => {}
            1 => class.push_str(&escape(blank[i])),
            _ => class.push_str(&format!("-{}", escape(blank[i]))),
        }
        i += 1;
    }
    let pattern = &spec()["components"]["schemas"]["ExecuteRequest"]["properties"]["script"]["pattern"];
    assert_eq!(pattern.as_str(), Some(format!("[^{class}]").as_str()));
}

#[tokio::test]
async fn served_spec_is_the_file_open_without_the_token_and_fields_match() {
    let service = Service::start(&["--api-token", "spec-test-token"]).await;
    let response = service.client.get(service.url("/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(response.status(), 200, "open like /health even with a token");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.expect("body"), spec_file());

    // The service's own list of request fields (from its unknown-field
    // message) is the spec's list of properties.
    let answer = service
        .client
        .post(service.url("/execute"))
        .bearer_auth("spec-test-token")
        .json(&json!({"script": "x", "no_such_field": 1}))
        .send()
        .await
        .expect("POST /execute");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("JSON");
    let message = body["error"].as_str().expect("error");
    let allowed = message.split("allowed fields: ").nth(1).unwrap_or_else(|| panic!("{message}"));
    let served: BTreeSet<&str> = allowed.split(", ").map(str::trim).collect();
    let spec = spec();
    let documented: BTreeSet<&str> = spec["components"]["schemas"]["ExecuteRequest"]["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(served, documented, "request fields: service vs docs/openapi.json");
}
