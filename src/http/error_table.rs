//! The error table of the docs (`docs/errors.md`, and the copy between
//! markers in `README.md`), generated from [`ErrorKind::ALL`] and the
//! [`ApiError::row`] of each kind's examples, so it cannot drift from what
//! the service answers. `tests/error_kinds.rs` fails when either file is
//! stale and rewrites them with `PYEXEC_BLESS=1`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::error::{ApiError, ErrorKind};

/// The marker line before the generated table in `README.md`.
pub const README_BEGIN: &str =
    "<!-- error table: generated from src/http/error_kind.rs by tests/error_kinds.rs (PYEXEC_BLESS=1) -->";
/// The marker line after it.
pub const README_END: &str = "<!-- end of the error table -->";

/// The table itself: one row per kind, in [`ErrorKind::ALL`]'s order.
pub fn table() -> String {
    let mut out = String::from("| status | kind | `Retry-After` | closes | when |\n|---|---|---|---|---|\n");
    for kind in ErrorKind::ALL {
        let rows: Vec<_> = ApiError::examples(*kind).iter().map(ApiError::row).collect();
        let waits: BTreeSet<u64> =
            rows.iter().filter_map(|row| row.retry_after).map(|w| w.as_secs()).collect();
        let retry_after = match (waits.len(), rows.iter().all(|row| row.retry_after.is_some())) {
            (0, _) => String::new(),
            (_, all) => {
                let secs: Vec<String> = waits.iter().map(|s| format!("{s} s")).collect();
                let some = if all { "" } else { "sometimes: " };
                format!("{some}{}", secs.join(" or "))
            }
        };
        let close = match (rows.iter().filter(|row| row.close).count(), rows.len()) {
            (0, _) => "",
            (closing, all) if closing == all => "yes",
            _ => "sometimes",
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {retry_after} | {close} | {} |",
            kind.status().as_u16(),
            kind.as_str(),
            kind.when().replace('|', "\\|"),
        );
    }
    out
}

/// `docs/errors.md`.
pub fn markdown() -> String {
    format!(
        "# Error kinds\n\n\
         Generated from `src/http/error_kind.rs` by `tests/error_kinds.rs`; do not edit by hand \
         (rerun it with `PYEXEC_BLESS=1` after changing a kind).\n\n\
         Every answer other than 200 (and the probes) is JSON with `error` (for a human) and \
         `kind` (one of these, for a program); the 422 verdicts also carry `stdout`, `stderr`, \
         `traceback` and `usage` where they exist. MCP tool errors carry the same kinds \
         (`isError: true`, `kind`, `message`, `retry_after_secs`). \
         `pyexec_requests_total{{kind}}` counts answers by kind (and `ok`).\n\n{}",
        table()
    )
}

/// `readme` with the text between [`README_BEGIN`] and [`README_END`]
/// replaced by [`table`]; `None` when the markers are missing.
pub fn readme_with_table(readme: &str) -> Option<String> {
    let begin = readme.find(README_BEGIN)? + README_BEGIN.len();
    let end = begin + readme[begin..].find(README_END)?;
    Some(format!("{}\n{}{}", &readme[..begin], table(), &readme[end..]))
}
