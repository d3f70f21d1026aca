//! The capacity checks: each run's tmpfs `/tmp` against its caps, CPUs
//! against `--workers`, and memory against the pod sizing formula of
//! deploy/README.md, whose measured constants live in deploy/sizing.json
//! (embedded here; tests/container/validate_manifests.py reads the same
//! file for the manifests).

use serde::Deserialize;

use super::Check;
use crate::config::Config;

const MIB: u64 = 1 << 20;

/// The measured constants of the sizing formula.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Sizing {
    /// The supervisor's own memory, MiB.
    pub service_mib: u64,
    /// One idle worker's PSS, MiB.
    pub worker_idle_mib: u64,
    /// Idle workers the pool keeps started beyond `--workers`.
    pub hot_standby_workers: u64,
    /// tmpfs mounts of `--tmp-size-mib` each run gets.
    pub tmpfs_per_run: u64,
}

/// deploy/sizing.json, checked by a unit test to parse.
const SIZING_JSON: &str = include_str!("../../deploy/sizing.json");

impl Sizing {
    /// The constants built into this binary (deploy/sizing.json).
    pub fn embedded() -> Self {
        // A unit test parses the file, so the fallback never applies to a
        // tested build; it keeps the doctor from panicking regardless.
        serde_json::from_str(SIZING_JSON).unwrap_or(Self {
            service_mib: 32,
            worker_idle_mib: 136,
            hot_standby_workers: 1,
            tmpfs_per_run: 2,
        })
    }

    /// The supervisor plus every worker, standbys included, idle.
    fn idle_mib(&self, workers: u64) -> u64 {
        self.service_mib + (workers + self.hot_standby_workers) * self.worker_idle_mib
    }

    /// Memory request: everything idle plus a default-sized run per worker.
    pub fn request_mib(&self, workers: u64, default_memory_mib: u64) -> u64 {
        self.idle_mib(workers) + workers * default_memory_mib
    }

    /// Memory limit: every worker running a maximal run with full tmpfs mounts.
    pub fn limit_mib(&self, workers: u64, max_memory_mib: u64, tmp_mib: u64) -> u64 {
        self.idle_mib(workers) + workers * (max_memory_mib + self.tmpfs_per_run * tmp_mib)
    }
}

/// `tmp`: a run's /tmp is a tmpfs of --tmp-size-mib, held in RAM and not
/// counted by the run's RLIMIT_AS memory cap, so it adds to what a run may
/// pin; and it must hold the largest file a run may write.
pub fn tmp(config: &Config) -> Check {
    const NAME: &str = "tmp";
    let tmp_mib = config.sandbox.tmp_size_bytes / MIB;
    let file_mib = config.sandbox.max_file_size_bytes / MIB;
    let max_mib = config.limits.max_memory_mib;
    let detail = format!(
        "each run's /tmp is a {tmp_mib} MiB tmpfs (RAM, outside the run's {max_mib} MiB memory cap); files up to {file_mib} MiB"
    );
    if tmp_mib > max_mib {
        return Check::warn(
            NAME,
            format!("{detail}: /tmp is larger than the memory cap, a run can pin more RAM in files than it may allocate"),
            format!("lower --tmp-size-mib to at most --max-memory-mib ({max_mib})"),
        );
    }
    if tmp_mib < file_mib {
        return Check::warn(
            NAME,
            format!("{detail}: /tmp fills (ENOSPC) before a file reaches --max-file-size-mib"),
            format!("raise --tmp-size-mib to at least {file_mib}, or lower --max-file-size-mib"),
        );
    }
    Check::ok(NAME, format!("{detail}; the sizing formula counts it per worker"))
}

/// `cpus`: runs are CPU-bound, one per worker: more workers than CPUs make
/// runs share a core and reach their timeouts.
pub fn cpus(workers: usize) -> Check {
    const NAME: &str = "cpus";
    // Counts the affinity mask and the cgroup CPU quota (std's
    // available_parallelism reads both on Linux).
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let detail = format!("{workers} workers on {cpus} CPUs");
    if workers > cpus {
        return Check::warn(
            NAME,
            format!("{detail}: runs will share cores and time out sooner"),
            format!("lower --workers (PYEXEC_WORKERS) to {cpus}, or give the pod {workers} CPUs"),
        );
    }
    Check::ok(NAME, detail)
}

/// `memory`: what this node or pod may use (`available`: MiB and where
/// that figure comes from) against the formula of deploy/README.md.
pub fn memory(config: &Config, sizing: &Sizing, available: Option<(u64, String)>) -> Check {
    const NAME: &str = "memory";
    // Each notebook session holds a worker of its own (plus one started
    // standby once sessions are used): they count like pool workers.
    let sessions = config.sessions.max_sessions as u64;
    let workers = config.pool.workers as u64 + sessions + u64::from(sessions > 0);
    let tmp_mib = config.sandbox.tmp_size_bytes / MIB;
    let request = sizing.request_mib(workers, config.limits.default_memory_mib);
    let limit = sizing.limit_mib(workers, config.limits.max_memory_mib, tmp_mib);
    let Some((have, source)) = available else {
        return Check::warn(NAME, "cannot read /proc/meminfo", "check that /proc is mounted");
    };
    let formula = format!(
        "{} + {workers} x ({} + memory + {tmp_mib} /tmp) MiB (deploy/sizing.json)",
        sizing.service_mib, sizing.worker_idle_mib
    );
    let detail = format!("{have} MiB available ({source}); needs {request} MiB with default-sized runs, {limit} MiB with maximal runs: {formula}");
    if have < request {
        return Check::fail(
            NAME,
            detail,
            format!(
                "give it at least {limit} MiB (limits.memory), or lower --workers / --default-memory-mib"
            ),
        );
    }
    if have < limit {
        return Check::warn(
            NAME,
            detail,
            format!("raise the memory limit to {limit} MiB, or lower --max-memory-mib: maximal runs on every worker at once would OOM-kill the pod"),
        );
    }
    Check::ok(NAME, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;
    use crate::doctor::Status;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["pyexec"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags").validate().expect("valid")
    }

    #[test]
    fn the_embedded_file_parses_and_gives_the_manifest_figures() {
        let sizing: Sizing = serde_json::from_str(SIZING_JSON).expect("deploy/sizing.json parses");
        // The GKE Deployment: 2 workers, default 256 MiB, max 512 MiB, 64 MiB
        // /tmp; its requests/limits are 960Mi/1792Mi, rounded up from these.
        assert!(sizing.request_mib(2, 256) <= 960);
        assert!(sizing.limit_mib(2, 512, 64) <= 1792);
        assert_eq!(
            sizing.limit_mib(2, 512, 64),
            sizing.service_mib + 3 * sizing.worker_idle_mib + 2 * (512 + 2 * 64)
        );
    }

    #[test]
    fn the_file_agrees_with_the_pool_and_the_run_mounts() {
        let sizing = Sizing::embedded();
        assert_eq!(sizing.hot_standby_workers, crate::pool::HOT_STANDBY as u64, "deploy/sizing.json vs pool");
        assert_eq!(sizing.tmpfs_per_run, crate::config::TMPFS_PER_RUN, "deploy/sizing.json vs config");
    }

    #[test]
    fn memory_fails_below_the_request_and_warns_below_the_limit() {
        let cfg = config(&["--workers", "2", "--max-memory-mib", "512"]);
        let sizing =
            Sizing { service_mib: 32, worker_idle_mib: 136, hot_standby_workers: 1, tmpfs_per_run: 2 };
        let at = |mib| memory(&cfg, &sizing, Some((mib, "test".into()))).status;
        // request 32 + 3 x 136 + 2 x 256 = 952; limit 32 + 3 x 136 + 2 x (512 + 128) = 1720
        assert_eq!(at(951), Status::Fail);
        assert_eq!(at(952), Status::Warn);
        assert_eq!(at(1719), Status::Warn);
        assert_eq!(at(1720), Status::Ok);
    }

    #[test]
    fn tmp_warns_when_it_outgrows_the_memory_cap_or_the_file_cap() {
        assert_eq!(tmp(&config(&[])).status, Status::Ok);
        let big = config(&["--tmp-size-mib", "2048", "--max-memory-mib", "1024"]);
        assert_eq!(tmp(&big).status, Status::Warn);
        let small =
            config(&["--tmp-size-mib", "8", "--max-file-size-mib", "16", "--max-files-bytes", "1024"]);
        assert_eq!(tmp(&small).status, Status::Warn);
    }
}
