//! `pyexec doctor`: the self-check a platform engineer runs on a node, or
//! in a pod, before going live. Each check says ok, warn or fail; a failure
//! carries its fix in one line. Exit 0 when nothing fails, 1 otherwise, 64
//! for a bad flag (the server's own validation).
//!
//! It takes the server's flags and `PYEXEC_*` twins ([`Flags`], validated by
//! [`Flags::validate`]), so it checks the paths and sizes the service would
//! use. It reuses the worker's public API read-only: cgroup detection
//! ([`CgroupPlan::detect`], [`CgroupPlan::leaf_dirs`]) and the nsjail command
//! line ([`crate::worker::nsjail::render`]), so the jail it starts is the one
//! the service starts. Must not: serve, start a pool, or change the host
//! beyond what the service itself does at start-up (the v1 parent cgroups).
//!
//! The checks, in order: `userns`, `privileges`, `cgroup`, `nsjail`, `venv`,
//! `seccomp`, `jail`, `tmp`, `cpus`, `memory`.

mod cgroups;
mod kernel;
mod probe;
mod report;
mod sandbox;
mod sizing;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::config::{Config, Flags};
use crate::worker::cgroup::CgroupPlan;

pub use report::{render_json, render_text};
pub use sizing::Sizing;

/// sysexits.h `EX_USAGE`: a flag the server would refuse.
const EX_USAGE: u8 = 64;

/// `pyexec doctor [server flags] [--json]`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pyexec doctor",
    bin_name = "pyexec doctor",
    version,
    about = "Checks that this node or pod can run pyexec with these flags: user namespaces, \
             cgroups, privileges, nsjail, the sandbox venv, seccomp, /tmp, CPUs and memory",
    after_help = "Takes the server's flags and PYEXEC_* variables. Exit status: 0 nothing failed \
                  (warnings allowed), 1 a check failed, 64 a flag is invalid."
)]
pub struct DoctorArgs {
    /// Print the checks as one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// The server's flags, with the same environment variables and defaults.
    #[command(flatten)]
    pub server: Flags,
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ready for production.
    Ok,
    /// Works, but something will hurt (capacity, a missing backstop).
    Warn,
    /// pyexec will not start, or a run will not be contained.
    Fail,
}

impl Status {
    /// The word printed in the first column.
    pub fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short stable name (`cgroup`, `venv`, ...).
    pub name: &'static str,
    /// ok, warn or fail.
    pub status: Status,
    /// What was found, in one line.
    pub detail: String,
    /// What to do, in one line; always set for warn and fail.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Ok, detail: detail.into(), fix: None }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Runs every check against `config` (the validated server flags).
pub fn run_checks(config: &Config) -> Vec<Check> {
    let cgroup_root = Path::new(cgroups::CGROUP_FS);
    let plan = cgroups::plan(config.sandbox.cgroup, cgroup_root, config.sandbox.cgroup_parent.as_deref());
    let mut checks = vec![kernel::user_namespaces(config.pool.workers), kernel::privileges()];
    checks.push(cgroups::check(config.sandbox.cgroup, &plan));
    checks.push(cgroups::run_check(config.sandbox.run_cgroup, &plan));
    let nsjail = sandbox::nsjail(&config.sandbox.nsjail);
    let venv = sandbox::venv(&config.sandbox.python);
    let can_jail = nsjail.status != Status::Fail && venv.status != Status::Fail;
    checks.extend([nsjail, venv, sandbox::seccomp(&config.sandbox)]);
    checks.push(match &plan {
        // The server's v2 start-up step would enable memory and pids first;
        // doctor only looks, so it tries the jail without a cgroup then.
        Ok(CgroupPlan::V2 { parent }) if can_jail && !cgroups::v2_enabled(parent) => {
            sandbox::jail(&config.sandbox, &CgroupPlan::Off)
        }
        Ok(plan) if can_jail => sandbox::jail(&config.sandbox, plan),
        // Still try the jail, without a cgroup, to report what else is wrong.
        Err(_) if can_jail => sandbox::jail(&config.sandbox, &CgroupPlan::Off),
        _ => Check::warn(
            "jail",
            "not tried: nsjail or the sandbox venv is missing",
            "fix the nsjail and venv checks above",
        ),
    });
    let sizing = Sizing::embedded();
    checks.push(sizing::tmp(config));
    checks.push(sizing::cpus(config.pool.workers));
    checks.push(sizing::memory(config, &sizing, cgroups::memory_available()));
    checks
}

/// Entry point of `pyexec doctor`; `args` starts with the word `doctor`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match DoctorArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    let json = args.json;
    let config = match args.server.validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pyexec doctor: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let checks = run_checks(&config);
    let text = if json { render_json(&checks) } else { render_text(&checks) };
    print!("{text}");
    if checks.iter().any(|check| check.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
