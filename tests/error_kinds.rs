//! Every file outside `src/` that names the error kinds knows exactly the
//! kinds of `src/http/error_kind.rs`: the generated error tables
//! (`docs/errors.md`, the README's copy), the spec's `ErrorKind`
//! description, and the dashboards (their label docs, and every `kind`
//! their queries and alert rules select). `tests/openapi.rs` checks the
//! spec's enum and statuses; the metrics' unit test checks the labels.
//!
//! `PYEXEC_BLESS=1 cargo test --test error_kinds` rewrites the generated
//! tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use pyexec::http::error::ErrorKind;
use pyexec::http::error_table;

fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn kinds() -> BTreeSet<String> {
    ErrorKind::ALL.iter().map(ToString::to_string).collect()
}

/// `relative` holds `generated` (written there first under `PYEXEC_BLESS`).
fn assert_current(relative: &str, generated: &str) {
    if std::env::var_os("PYEXEC_BLESS").is_some() {
        std::fs::write(path(relative), generated).unwrap_or_else(|e| panic!("write {relative}: {e}"));
    }
    assert!(
        read(relative) == generated,
        "{relative} is stale: run `PYEXEC_BLESS=1 cargo test --test error_kinds` and commit it"
    );
}

#[test]
fn errors_md_is_generated_from_the_kinds() {
    assert_current("docs/errors.md", &error_table::markdown());
}

#[test]
fn readme_error_table_is_generated_from_the_kinds() {
    let generated = error_table::readme_with_table(&read("README.md")).unwrap_or_else(|| {
        panic!(
            "README.md has no generated error table: put the lines {:?} and {:?} where it goes",
            error_table::README_BEGIN,
            error_table::README_END
        )
    });
    assert_current("README.md", &generated);
}

/// The spec's `ErrorKind` description ("400: invalid_json, invalid_request.
/// 401: ..."), which clients read (`clients/python/tests/test_kinds.py`).
#[test]
fn spec_error_kind_description_lists_every_kind_under_its_status() {
    let spec: serde_json::Value = serde_json::from_str(&read("docs/openapi.json")).expect("JSON");
    let description =
        spec["components"]["schemas"]["ErrorKind"]["description"].as_str().expect("description");
    let mut documented: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for part in description.trim_start_matches("What went wrong.").split(". ") {
        let Some((status, names)) = part.trim().trim_end_matches('.').split_once(": ") else { continue };
        let status: u16 = status.parse().unwrap_or_else(|_| panic!("{status:?} in {description:?}"));
        documented.entry(status).or_default().extend(names.split(", ").map(str::to_string));
    }
    let mut code: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for kind in ErrorKind::ALL {
        code.entry(kind.status().as_u16()).or_default().insert(kind.to_string());
    }
    assert_eq!(documented, code, "docs/openapi.json ErrorKind description vs src/http/error_kind.rs");
}

/// `docs/operations.md` (the one metrics table, which `dashboards/README.md`
/// links) documents the label values of `pyexec_requests_total{kind}`.
#[test]
fn metrics_docs_list_every_request_kind() {
    let readme = read("docs/operations.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `pyexec_requests_total` |"))
        .expect("docs/operations.md has a pyexec_requests_total row");
    let listed: BTreeSet<String> = row
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .filter(|name| !["pyexec_requests_total", "kind"].contains(name))
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = pyexec::metrics::request_kinds().map(str::to_string).collect();
    assert_eq!(listed, expected, "docs/operations.md's pyexec_requests_total kinds vs the service's");
}

/// Every `kind` a dashboard panel, recording rule, alert or rule test
/// selects is one the service answers (a renamed kind is not left
/// matching nothing).
#[test]
fn dashboards_select_only_kinds_the_service_answers() {
    let mut known = kinds();
    known.insert("ok".into());
    let files = [
        "dashboards/pyexec.json",
        "dashboards/prometheus/pyexec-rules.yml",
        "dashboards/prometheus/pyexec-rules.test.yml",
    ];
    let mut selected = BTreeSet::new();
    for file in files {
        // Unescape the JSON's \" so both formats read kind="a" / kind=~"a|b".
        let text = read(file).replace("\\\"", "\"");
        for (at, _) in text.match_indices("kind") {
            let rest = &text[at + "kind".len()..];
            let rest = rest.trim_start_matches(['!', '=', '~']);
            if rest.len() == text.len() - at - "kind".len() || !rest.starts_with('"') {
                continue; // "kind" as a word, not a label matcher
            }
            let value = rest[1..].split('"').next().unwrap_or_default();
            for name in value.split('|') {
                selected.insert((file, name.to_string()));
            }
        }
    }
    assert!(selected.len() >= 5, "found the kind matchers: {selected:?}");
    let unknown: Vec<_> = selected.iter().filter(|(_, name)| !known.contains(name)).collect();
    assert!(unknown.is_empty(), "kinds the service does not answer: {unknown:?}");
}
