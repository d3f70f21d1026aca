//! The cgroup backstop of each worker: detection of v1 or v2 at start-up,
//! the nsjail flags for each, and reading a worker's OOM-kill counter so a
//! run killed by the cgroup OOM killer gets the `memory_limit` verdict.
//!
//! The worker cgroup caps the whole worker; with `--run-cgroup on` (the
//! default) the supervisor makes it ([`delegated`]) and each run gets a leaf
//! under it, capped with the request's memory, so a run that forks many
//! children is stopped at its own `memory` (`RLIMIT_AS` stays the per-process
//! first line). With `--run-cgroup off`, nsjail makes the worker cgroup in
//! its own layout: v1 `<mount>/<parent>/NSJAIL.<pid>`, v2
//! `<parent>/NSJAIL.<pid>` (the parent prepared by [`v2::prepare`]), where
//! pid is the jailed process's host pid.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::CgroupMode;

pub mod delegated;
pub mod v2;

/// Name of our parent cgroup under each v1 controller mount.
pub const V1_PARENT: &str = "pyexec";

/// Which cgroup hierarchy the workers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPlan {
    /// No cgroup: rlimits only.
    Off,
    /// cgroup v1 controllers.
    V1 {
        /// Memory controller mount.
        memory_root: PathBuf,
        /// Pids controller mount.
        pids_root: PathBuf,
    },
    /// cgroup v2 unified hierarchy.
    V2 {
        /// The cgroup directory the workers' cgroups go in, with memory
        /// and pids enabled for its children.
        parent: PathBuf,
    },
}

/// Why the requested cgroup mode cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mode was forced but its hierarchy is missing.
    #[error("--cgroup {mode} requested but {path} does not exist; use --cgroup auto or off")]
    Missing {
        /// The requested mode.
        mode: &'static str,
        /// What we looked for.
        path: PathBuf,
    },
    /// Our parent cgroup cannot be created (not root?).
    #[error("cannot create cgroup {path}: {source}; run as root or use --cgroup off")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A cgroup file cannot be read or written.
    #[error("cgroup file {path}: {source}; run as root (privileged in a pod) or use --cgroup off")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The v2 parent cannot give its children memory and pids.
    #[error("cgroup v2 parent {path} {reason}")]
    Delegate {
        /// The parent cgroup (or the file that told).
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl CgroupPlan {
    /// Chooses the hierarchy under `fs_root` (normally `/sys/fs/cgroup`) and
    /// creates the v1 parent cgroups nsjail expects to exist; on v2 prepares
    /// `v2_parent` (`--cgroup-parent`, default our own cgroup) with
    /// [`v2::prepare`].
    ///
    /// # Errors
    /// A forced mode whose hierarchy is missing, an uncreatable parent, or a
    /// v2 parent that cannot delegate memory and pids.
    pub fn detect(mode: CgroupMode, fs_root: &Path, v2_parent: Option<&Path>) -> Result<Self, CgroupError> {
        let v2 = fs_root.join("cgroup.controllers");
        let v1_memory = fs_root.join("memory");
        let v1_pids = fs_root.join("pids");
        let has_v1 =
            v1_memory.join("memory.limit_in_bytes").exists() && v1_pids.join("cgroup.procs").exists();
        let plan = match mode {
            CgroupMode::Off => Self::Off,
            CgroupMode::V2 if !v2.exists() => return Err(CgroupError::Missing { mode: "v2", path: v2 }),
            CgroupMode::V1 if !has_v1 => return Err(CgroupError::Missing { mode: "v1", path: v1_memory }),
            CgroupMode::V2 => Self::V2 { parent: v2::prepare(fs_root, v2_parent)? },
            CgroupMode::Auto if v2.exists() => Self::V2 { parent: v2::prepare(fs_root, v2_parent)? },
            CgroupMode::V1 | CgroupMode::Auto if has_v1 => {
                Self::V1 { memory_root: v1_memory, pids_root: v1_pids }
            }
            CgroupMode::Auto | CgroupMode::V1 => Self::Off,
        };
        if let Self::V1 { memory_root, pids_root } = &plan {
            for root in [memory_root, pids_root] {
                let parent = root.join(V1_PARENT);
                std::fs::create_dir_all(&parent)
                    .map_err(|source| CgroupError::Create { path: parent, source })?;
            }
        }
        Ok(plan)
    }

    /// Whether runs get leaves of their own: asked for (`--run-cgroup on`)
    /// and a cgroup to put them in.
    pub fn run_leaves(&self, asked: bool) -> bool {
        asked && *self != Self::Off
    }

    /// A short name for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::V1 { .. } => "v1",
            Self::V2 { .. } => "v2",
        }
    }

    /// nsjail flags that put a worker in its own cgroup with these caps.
    pub fn nsjail_flags(&self, memory_bytes: u64, pids: u64) -> Vec<OsString> {
        let mut flags: Vec<String> = Vec::new();
        match self {
            Self::Off => {}
            Self::V1 { memory_root, pids_root } => {
                flags.extend([
                    "--cgroup_mem_max".into(),
                    memory_bytes.to_string(),
                    "--cgroup_mem_mount".into(),
                    memory_root.display().to_string(),
                    "--cgroup_mem_parent".into(),
                    V1_PARENT.into(),
                    "--cgroup_pids_max".into(),
                    pids.to_string(),
                    "--cgroup_pids_mount".into(),
                    pids_root.display().to_string(),
                    "--cgroup_pids_parent".into(),
                    V1_PARENT.into(),
                ]);
            }
            Self::V2 { parent } => {
                flags.extend([
                    "--use_cgroupv2".into(),
                    "--cgroupv2_mount".into(),
                    parent.display().to_string(),
                    "--cgroup_mem_max".into(),
                    memory_bytes.to_string(),
                    // No swap either, so the memory cap is a real cap.
                    "--cgroup_mem_swap_max".into(),
                    "0".into(),
                    "--cgroup_pids_max".into(),
                    pids.to_string(),
                ]);
            }
        }
        flags.into_iter().map(OsString::from).collect()
    }

    /// The file holding the OOM-kill counter of the worker whose jailed
    /// process has host pid `pid`.
    pub fn oom_events_file(&self, pid: u32) -> Option<PathBuf> {
        let leaf = format!("NSJAIL.{pid}");
        match self {
            Self::Off => None,
            Self::V1 { memory_root, .. } => {
                Some(memory_root.join(V1_PARENT).join(leaf).join("memory.oom_control"))
            }
            Self::V2 { parent } => Some(parent.join(leaf).join("memory.events")),
        }
    }
}

impl CgroupPlan {
    /// The cgroup directories nsjail creates for the jailed process `pid`.
    pub fn leaf_dirs(&self, pid: u32) -> Vec<PathBuf> {
        let leaf = format!("NSJAIL.{pid}");
        match self {
            Self::Off => Vec::new(),
            Self::V1 { memory_root, pids_root } => {
                vec![memory_root.join(V1_PARENT).join(&leaf), pids_root.join(V1_PARENT).join(&leaf)]
            }
            Self::V2 { parent } => vec![parent.join(leaf)],
        }
    }

    /// Removes leaf cgroups left by jails that were killed (nsjail removes
    /// its own only when it exits normally).
    ///
    /// A leaf is `NSJAIL.<pid>` of the jailed process. It is stale only when
    /// that process is gone: nsjail creates the leaf empty and moves its
    /// child in a moment later, so an empty leaf of a live pid may belong
    /// to a jail another pyexec on this host is starting right now, and
    /// removing it would make that start fail. rmdir(2) refuses non-empty
    /// cgroups, so a running worker's leaf is never touched either way.
    pub fn sweep_stale(&self) -> usize {
        self.sweep_leaves(|pid| Path::new("/proc").join(pid.to_string()).exists())
    }

    /// The directories the workers' cgroups are made in.
    pub fn parents(&self) -> Vec<PathBuf> {
        match self {
            Self::Off => Vec::new(),
            Self::V1 { memory_root, pids_root } => {
                vec![memory_root.join(V1_PARENT), pids_root.join(V1_PARENT)]
            }
            Self::V2 { parent } => vec![parent.clone()],
        }
    }

    fn sweep_leaves(&self, is_alive: impl Fn(u32) -> bool) -> usize {
        let own = std::process::id();
        let mut removed = 0;
        for parent in self.parents() {
            let Ok(entries) = std::fs::read_dir(&parent) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(pid) = name.strip_prefix("NSJAIL.").and_then(|p| p.parse().ok()) {
                    if !is_alive(pid) && remove_empty(&entry.path()) {
                        removed += 1;
                    }
                } else if let Some(pid) = delegated::service_pid(name) {
                    // A worker cgroup made by a pyexec that is gone, or by
                    // us (swept at start, before any worker, and at
                    // shutdown, after the last): its leaves go first.
                    if (pid == own || !is_alive(pid)) && delegated::remove_tree(&entry.path()) {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }
}

/// The process cap of a whole worker: every run's processes and threads,
/// its spares, the zygote and the fork servers.
pub fn worker_pids(max_processes: u64) -> u64 {
    max_processes.saturating_mul(4) + 16
}

/// The process cap of one run's leaf: its RLIMIT_NPROC (the first line,
/// a clean EAGAIN) plus the run init and room for threads the count of
/// RLIMIT_NPROC shares with them.
pub fn run_pids(max_processes: u64) -> u64 {
    max_processes.saturating_add(8)
}

/// rmdir(2) of a cgroup: succeeds only when it has no processes left.
pub fn remove_empty(dir: &Path) -> bool {
    std::fs::remove_dir(dir).is_ok()
}

/// The `oom_kill N` counter of a v1 `memory.oom_control` or v2
/// `memory.events` file.
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

/// Reads the OOM-kill counter; `None` when there is no cgroup or it vanished.
pub fn read_oom_kills(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok().as_deref().and_then(parse_oom_kills)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_counters() {
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n"), Some(2));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn auto_prefers_v2_then_v1_then_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(CgroupPlan::detect(CgroupMode::Auto, dir.path(), None).expect("off"), CgroupPlan::Off);

        std::fs::create_dir_all(dir.path().join("memory")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("pids")).expect("mkdir");
        std::fs::write(dir.path().join("memory/memory.limit_in_bytes"), "max").expect("write");
        std::fs::write(dir.path().join("pids/cgroup.procs"), "").expect("write");
        let v1 = CgroupPlan::detect(CgroupMode::Auto, dir.path(), None).expect("v1");
        assert_eq!(v1.label(), "v1");
        assert!(dir.path().join("memory/pyexec").is_dir(), "v1 parent created for nsjail");

        std::fs::write(dir.path().join("cgroup.controllers"), "memory pids").expect("write");
        // v2 puts the workers under our own cgroup, once it delegates memory and pids.
        let own = v2::own_cgroup().expect("a cgroup v2 entry in /proc/self/cgroup");
        let parent =
            own.strip_prefix("/").map_or_else(|_| dir.path().to_path_buf(), |rel| dir.path().join(rel));
        std::fs::create_dir_all(&parent).expect("mkdir");
        std::fs::write(parent.join("cgroup.controllers"), "memory pids").expect("write");
        std::fs::write(parent.join("cgroup.subtree_control"), "memory pids").expect("write");
        let v2 = CgroupPlan::detect(CgroupMode::Auto, dir.path(), None).expect("v2");
        assert_eq!(v2, CgroupPlan::V2 { parent });
    }

    #[test]
    fn forced_mode_without_hierarchy_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = CgroupPlan::detect(CgroupMode::V2, dir.path(), None).expect_err("no v2");
        assert!(err.to_string().contains("--cgroup v2 requested"));
        assert!(CgroupPlan::detect(CgroupMode::V1, dir.path(), None).is_err());
    }

    #[test]
    fn stale_empty_leaves_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = CgroupPlan::V2 { parent: dir.path().to_path_buf() };
        std::fs::create_dir(dir.path().join("NSJAIL.7")).expect("mkdir");
        std::fs::create_dir(dir.path().join("NSJAIL.9")).expect("mkdir");
        std::fs::create_dir(dir.path().join("other")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("NSJAIL.8/busy")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("w9.1/run.3.1")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("w7.2/zygote")).expect("mkdir");
        let own = format!("w{}.3", std::process::id());
        std::fs::create_dir_all(dir.path().join(&own).join("zygote")).expect("mkdir");
        let alive = |pid| pid == 9 || pid == std::process::id();
        assert_eq!(plan.sweep_leaves(alive), 3, "only the empty leaf of a dead pid goes, and stale trees");
        assert!(dir.path().join("w9.1/run.3.1").exists(), "a live pyexec's worker stays");
        assert!(!dir.path().join("w7.2").exists() && !dir.path().join(&own).exists());
        assert!(!dir.path().join("NSJAIL.7").exists());
        assert!(dir.path().join("NSJAIL.9").exists(), "a live jail may be starting in it");
        assert!(dir.path().join("other").exists() && dir.path().join("NSJAIL.8").exists());
        assert_eq!(plan.leaf_dirs(8), vec![dir.path().join("NSJAIL.8")]);
    }

    #[test]
    fn oom_files_follow_nsjail_layout() {
        let v1 = CgroupPlan::V1 { memory_root: "/cg/memory".into(), pids_root: "/cg/pids".into() };
        assert_eq!(
            v1.oom_events_file(42),
            Some(PathBuf::from("/cg/memory/pyexec/NSJAIL.42/memory.oom_control"))
        );
        let v2 = CgroupPlan::V2 { parent: "/sys/fs/cgroup".into() };
        assert_eq!(v2.oom_events_file(42), Some(PathBuf::from("/sys/fs/cgroup/NSJAIL.42/memory.events")));
        assert_eq!(CgroupPlan::Off.oom_events_file(42), None);
    }
}
