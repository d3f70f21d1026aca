//! Every relative link of the project's markdown resolves: the file exists
//! inside the repository and, for `file.md#anchor`, the heading does. A
//! section moved or renamed without its links fails here. No service is
//! started: this is a fast test. Also: no file refers to notes outside the
//! repository (the contract is docs/contract.md).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// Directories whose markdown is not the project's own text.
const SKIP: &[&str] = &["target", ".git", "node_modules", "corpus"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text outside fenced code blocks.
fn prose(markdown: &str) -> String {
    let mut in_fence = false;
    let mut text = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    prose(markdown)
        .lines()
        .filter_map(|line| line.trim_start_matches('#').strip_prefix(' ').filter(|_| line.starts_with('#')))
        .map(anchor)
        .collect()
}

/// The targets of `[text](target)` links.
fn link_targets(markdown: &str) -> Vec<String> {
    prose(markdown)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:") && !target.contains(' '))
        .collect()
}

/// `path` without `.` and `..` components; `None` if it climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[test]
fn every_relative_markdown_link_resolves_inside_the_repository() {
    let root = root();
    let mut files = Vec::new();
    files_ending(&root, &[".md"], &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        let relative = file.strip_prefix(&root).expect("under the root");
        for target in link_targets(&text) {
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                Some(relative.to_path_buf())
            } else {
                normalize(&relative.parent().unwrap_or(Path::new("")).join(path))
            };
            let Some(resolved) = resolved.filter(|resolved| root.join(resolved).exists()) else {
                broken.push(format!("{}: {target}: no such file in the repository", relative.display()));
                continue;
            };
            if !fragment.is_empty() && resolved.extension().is_some_and(|ext| ext == "md") {
                let linked = std::fs::read_to_string(root.join(&resolved)).expect("read linked markdown");
                if !anchors(&linked).contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading", relative.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor("Faults of the service's own processes"), "faults-of-the-services-own-processes");
    assert_eq!(anchor("`GET /health`, `GET /ready`"), "get-health-get-ready");
    assert_eq!(
        anchor("Measured cost (A/B in one run on one host)"),
        "measured-cost-ab-in-one-run-on-one-host"
    );
}

/// Files under `dir` (recursively, skipping `SKIP`) whose name ends with one of `suffixes`.
fn files_ending(dir: &Path, suffixes: &[&str], found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display()));
    for entry in entries.map(|entry| entry.expect("a directory entry")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIP.contains(&name.as_str()) {
                files_ending(&path, suffixes, found);
            }
        } else if suffixes.iter().any(|suffix| name.ends_with(suffix)) {
            found.push(path);
        }
    }
}

#[test]
fn nothing_points_at_the_notes_outside_the_repository() {
    // The contract lives in docs/contract.md; the development machine's
    // shared notes are not part of the repository. Spelled in two halves so
    // that this file does not match itself.
    let outside =
        [concat!("../", "shared/"), concat!("shared/", "CONTRACT.md"), concat!("SANDBOX-", "FACTS")];
    let root = root();
    let mut files = Vec::new();
    files_ending(&root, &[".md", ".rs", ".py", ".sh", ".toml", "Dockerfile"], &mut files);
    let hits: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(file).ok()?;
            let hit = outside.iter().find(|needle| text.contains(*needle))?;
            Some(format!("{}: {hit}", file.strip_prefix(&root).unwrap_or(file).display()))
        })
        .collect();
    assert!(hits.is_empty(), "references outside the repository (use docs/contract.md): {hits:?}");
}
