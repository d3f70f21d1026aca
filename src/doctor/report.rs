//! Renders the checks as lines for a terminal or as one JSON object.
//! Pure: checks in, text out, so both shapes are unit tests.

use serde_json::json;

use super::{Check, Status};

fn counts(checks: &[Check]) -> (usize, usize, usize) {
    let count = |status| checks.iter().filter(|check| check.status == status).count();
    (count(Status::Ok), count(Status::Warn), count(Status::Fail))
}

/// `ok   name   detail` per check, `     fix: ...` under warn and fail, and
/// a closing `doctor: N ok, N warn, N fail` line.
pub fn render_text(checks: &[Check]) -> String {
    let width = checks.iter().map(|check| check.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        out.push_str(&format!("{:<4}  {:<width$}  {}\n", check.status.word(), check.name, check.detail));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let (ok, warn, fail) = counts(checks);
    out.push_str(&format!("doctor: {ok} ok, {warn} warn, {fail} fail\n"));
    out
}

/// `{"ok": bool, "summary": {"ok": N, "warn": N, "fail": N}, "checks":
/// [{"name", "status", "detail", "fix"}], "version"}`: the same content as
/// the text, with `fix` null for a passing check.
pub fn render_json(checks: &[Check]) -> String {
    let (ok, warn, fail) = counts(checks);
    let value = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ok": fail == 0,
        "summary": {"ok": ok, "warn": warn, "fail": fail},
        "checks": checks,
    });
    format!("{value:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Check> {
        vec![
            Check::ok("venv", "numpy 2.3"),
            Check::warn("cpus", "4 workers on 2 CPUs", "lower --workers to 2"),
            Check::fail("cgroup", "no v2 here", "use --cgroup auto"),
        ]
    }

    #[test]
    fn text_has_one_line_per_check_a_fix_under_problems_and_a_summary() {
        let text = render_text(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("ok    venv    numpy 2.3"), "{text}");
        assert!(lines[1].starts_with("warn  cpus"), "{text}");
        assert_eq!(lines[2].trim(), "fix: lower --workers to 2");
        assert!(lines[3].starts_with("fail  cgroup"), "{text}");
        assert_eq!(lines[4].trim(), "fix: use --cgroup auto");
        assert_eq!(lines[5], "doctor: 1 ok, 1 warn, 1 fail");
    }

    #[test]
    fn json_carries_the_same_checks_and_counts() {
        let value: serde_json::Value = serde_json::from_str(&render_json(&sample())).expect("valid JSON");
        assert_eq!(value["ok"], false);
        assert_eq!(value["summary"], json!({"ok": 1, "warn": 1, "fail": 1}));
        assert_eq!(
            value["checks"][0],
            json!({"name": "venv", "status": "ok", "detail": "numpy 2.3", "fix": null})
        );
        assert_eq!(value["checks"][2]["status"], "fail");
        assert_eq!(value["checks"][2]["fix"], "use --cgroup auto");
    }
}
