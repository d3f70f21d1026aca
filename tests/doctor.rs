//! `pyexec doctor` on this host, with the real sandbox (nsjail, the venv, a
//! real jail): it passes as configured, and fails, with a fix, when forced
//! onto the cgroup hierarchy this host lacks, when the sandbox Python is
//! wrong, or when the memory the flags need is not there.

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

const CHECKS: [&str; 11] = [
    "userns",
    "privileges",
    "cgroup",
    "run-cgroup",
    "nsjail",
    "venv",
    "seccomp",
    "jail",
    "tmp",
    "cpus",
    "memory",
];

/// Runs `pyexec doctor ARGS` with the repository's worker code and the
/// environment's sandbox paths (`PYEXEC_NSJAIL`, `PYEXEC_SANDBOX_PYTHON`).
fn doctor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let worker = common::worker_copy();
    std::process::Command::new(common::binary())
        .arg("doctor")
        .arg("--worker-dir")
        .arg(worker.path())
        .args(args)
        .env_remove("PYEXEC_CGROUP")
        .env_remove("PYEXEC_WORKERS")
        .envs(env.iter().copied())
        .output()
        .expect("run pyexec doctor")
}

fn json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{stdout}"))
}

/// The shape of `--json`, asserted on every report: all checks, in order,
/// each with a status and a detail, a one-line fix exactly when not ok, and
/// a summary that adds up and agrees with `ok` and the exit status.
fn assert_shape(report: &Value, output: &Output) {
    let checks = report["checks"].as_array().expect("checks is an array");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, CHECKS, "{report:#}");
    let mut counts = std::collections::HashMap::new();
    for check in checks {
        let status = check["status"].as_str().expect("status is a string");
        assert!(["ok", "warn", "fail"].contains(&status), "{check}");
        assert!(check["detail"].as_str().is_some_and(|d| !d.is_empty() && !d.contains('\n')), "{check}");
        match (status, &check["fix"]) {
            ("ok", Value::Null) => {}
            ("warn" | "fail", Value::String(fix)) => {
                assert!(!fix.is_empty() && !fix.contains('\n'), "{check}")
            }
            _ => panic!("fix must be null for ok and one line for warn/fail: {check}"),
        }
        *counts.entry(status).or_insert(0u64) += 1;
    }
    for status in ["ok", "warn", "fail"] {
        assert_eq!(
            report["summary"][status].as_u64(),
            Some(counts.get(status).copied().unwrap_or(0)),
            "{report:#}"
        );
    }
    let failed = counts.get("fail").copied().unwrap_or(0) > 0;
    assert_eq!(report["ok"], Value::Bool(!failed), "{report:#}");
    assert_eq!(output.status.code(), Some(if failed { 1 } else { 0 }), "{report:#}");
}

fn status<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).expect(name)
}

#[test]
fn passes_on_this_host_with_the_real_sandbox() {
    let output = doctor(&["--workers", "1", "--json"], &[]);
    let report = json(&output);
    assert_shape(&report, &output);
    assert_eq!(report["summary"]["fail"], 0, "{report:#}");
    let jail = status(&report, "jail");
    assert_eq!(jail["status"], "ok", "{jail}");
    for module in ["numpy", "pandas", "matplotlib"] {
        assert!(jail["detail"].as_str().is_some_and(|d| d.contains(module)), "{jail}");
    }
    assert_eq!(status(&report, "venv")["status"], "ok");
    let run = status(&report, "run-cgroup");
    assert_eq!(run["status"], "ok", "{run}");
    assert!(run["detail"].as_str().is_some_and(|d| d.contains("per-run leaves")), "{run}");

    // The same run as text: one line per check, then the summary.
    let text = doctor(&["--workers", "1"], &[]);
    assert_eq!(text.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&text.stdout);
    for name in CHECKS {
        assert!(
            stdout.lines().any(|l| l.split_whitespace().nth(1) == Some(name)
                && ["ok", "warn"].contains(&l.split_whitespace().next().unwrap_or(""))),
            "no ok/warn line for {name}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().last().is_some_and(|l| l.starts_with("doctor: ") && l.ends_with(" 0 fail")),
        "{stdout}"
    );
}

#[test]
fn run_cgroup_off_is_a_warning_with_its_fix() {
    let output = doctor(&["--run-cgroup", "off", "--workers", "1", "--json"], &[]);
    let report = json(&output);
    assert_shape(&report, &output);
    let run = status(&report, "run-cgroup");
    assert_eq!(run["status"], "warn", "{run}");
    assert!(run["detail"].as_str().is_some_and(|d| d.contains("each of its processes only")), "{run}");
    assert!(run["fix"].as_str().is_some_and(|f| f.contains("--run-cgroup on")), "{run}");
}

#[test]
fn forcing_the_cgroup_hierarchy_this_host_lacks_fails_with_a_fix() {
    // This host runs cgroup v1; on a v2 host the missing one is v1.
    let missing = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "v1" } else { "v2" };
    let output = doctor(&["--cgroup", missing, "--workers", "1", "--json"], &[]);
    let report = json(&output);
    assert_shape(&report, &output);
    let cgroup = status(&report, "cgroup");
    assert_eq!(cgroup["status"], "fail", "{cgroup}");
    assert!(
        cgroup["detail"].as_str().is_some_and(|d| d.contains(&format!("--cgroup {missing} requested"))),
        "{cgroup}"
    );
    assert!(cgroup["fix"].as_str().is_some_and(|f| f.contains("--cgroup auto")), "{cgroup}");
    // The rest is still checked: the jail is tried without a cgroup.
    assert_eq!(status(&report, "jail")["status"], "ok", "{report:#}");

    // The text form says `fail` and puts the fix on the next line.
    let text = doctor(&["--cgroup", missing, "--workers", "1"], &[]);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("fail  cgroup")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(lines[at + 1].trim_start().starts_with("fix: "), "{stdout}");
}

#[test]
fn a_wrong_sandbox_python_fails_the_venv_and_skips_the_jail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("venv/bin/python3");
    let missing = missing.to_str().expect("utf-8 path");
    let output = doctor(&["--workers", "1", "--json"], &[("PYEXEC_SANDBOX_PYTHON", missing)]);
    let report = json(&output);
    assert_shape(&report, &output);
    let venv = status(&report, "venv");
    assert_eq!(venv["status"], "fail", "{venv}");
    assert!(venv["detail"].as_str().is_some_and(|d| d.contains(missing)), "{venv}");
    assert!(venv["fix"].as_str().is_some_and(|f| f.contains("PYEXEC_SANDBOX_PYTHON")), "{venv}");
    assert_eq!(status(&report, "jail")["status"], "warn", "{report:#}");

    // A Python that exists but lacks the packages: the host's own.
    let output = doctor(&["--workers", "1", "--json"], &[("PYEXEC_SANDBOX_PYTHON", "/usr/bin/python3")]);
    let report = json(&output);
    assert_shape(&report, &output);
    let venv = status(&report, "venv");
    assert_eq!(venv["status"], "fail", "{venv}");
    assert!(venv["detail"].as_str().is_some_and(|d| d.contains("No module named")), "{venv}");
}

#[test]
fn memory_and_cpus_are_checked_against_the_flags() {
    // Default-sized runs of 64 GiB each on 2 workers: more than any CI host.
    let output = doctor(
        &["--workers", "2", "--default-memory-mib", "65536", "--max-memory-mib", "65536", "--json"],
        &[],
    );
    let report = json(&output);
    assert_shape(&report, &output);
    let memory = status(&report, "memory");
    assert_eq!(memory["status"], "fail", "{memory}");
    assert!(memory["detail"].as_str().is_some_and(|d| d.contains("deploy/sizing.json")), "{memory}");

    // More workers than CPUs is a warning, not a failure.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let many = (cpus * 2).to_string();
    let output = doctor(&["--workers", &many, "--json"], &[]);
    let report = json(&output);
    assert_shape(&report, &output);
    assert_eq!(status(&report, "cpus")["status"], "warn", "{report:#}");
}

#[test]
fn a_bad_flag_exits_64_like_the_server() {
    let output = doctor(&["--workers", "0"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers"));
}
