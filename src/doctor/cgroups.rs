//! The cgroup check: which hierarchy the service would use (the worker's own
//! [`CgroupPlan::detect`]), and whether the memory and pids controllers can
//! be delegated where the workers' leaves go ([`CgroupPlan::leaf_dirs`]).
//! Also reads the memory this process may use (its cgroup's limit or the
//! machine's RAM) for the sizing check. Reads only; never writes a
//! controller file.

use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;

use super::Check;
use crate::config::CgroupMode;
use crate::worker::cgroup::{v2, CgroupError, CgroupPlan};

/// Where the service looks for cgroups (as `main` does).
pub const CGROUP_FS: &str = "/sys/fs/cgroup";
const NAME: &str = "cgroup";

fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().map(String::from).collect()
}

fn writable(path: &Path) -> bool {
    nix::unistd::access(path, AccessFlags::W_OK).is_ok()
}

/// What this host offers, for a fix line: "cgroup v2", "cgroup v1", "no cgroup".
fn host_hierarchy(root: &Path) -> &'static str {
    if root.join("cgroup.controllers").exists() {
        "cgroup v2 (use --cgroup auto or v2)"
    } else if root.join("memory/memory.limit_in_bytes").exists() {
        "cgroup v1 (use --cgroup auto or v1)"
    } else {
        "no memory cgroup (use --cgroup off, or mount the memory and pids controllers)"
    }
}

/// The plan the service would make, without its v2 start-up step: doctor
/// only looks. (`v2::prepare` moves the cgroup's processes into
/// `supervisor` and enables memory and pids; done here, it would leave the
/// pod's cgroup unable to take the next process an operator starts in it.)
///
/// # Errors
/// As [`CgroupPlan::detect`] for v1 and a forced mode whose hierarchy is missing.
pub fn plan(mode: CgroupMode, root: &Path, parent: Option<&Path>) -> Result<CgroupPlan, CgroupError> {
    let v2 = root.join("cgroup.controllers").exists();
    if v2 && matches!(mode, CgroupMode::Auto | CgroupMode::V2) {
        let cgroup = match parent {
            Some(parent) => parent.to_path_buf(),
            None => v2::own_cgroup()?,
        };
        return Ok(CgroupPlan::V2 { parent: v2::under(root, &cgroup) });
    }
    CgroupPlan::detect(mode, root, parent)
}

/// Whether memory and pids are enabled for the children of `parent`.
pub fn v2_enabled(parent: &Path) -> bool {
    let enabled = words(&parent.join("cgroup.subtree_control"));
    ["memory", "pids"].iter().all(|c| enabled.iter().any(|on| on == c))
}

/// `cgroup`: the plan the service would make and whether it can work.
pub fn check(mode: CgroupMode, plan: &Result<CgroupPlan, CgroupError>) -> Check {
    let root = Path::new(CGROUP_FS);
    let plan = match plan {
        Ok(plan) => plan,
        Err(error @ CgroupError::Missing { .. }) => {
            return Check::fail(NAME, error.to_string(), format!("this host has {}", host_hierarchy(root)));
        }
        Err(error) => {
            return Check::fail(
                NAME,
                error.to_string(),
                "run as root in a privileged container, or --cgroup off",
            );
        }
    };
    let leaves = plan.leaf_dirs(std::process::id());
    let parents: Vec<PathBuf> =
        leaves.iter().filter_map(|leaf| leaf.parent().map(Path::to_path_buf)).collect();
    match plan {
        CgroupPlan::Off if mode == CgroupMode::Off => Check::warn(
            NAME,
            "--cgroup off: no cgroup backstop, runs are capped by rlimits only",
            "use --cgroup auto where a memory cgroup exists, so a fork-heavy run cannot take the node's memory",
        ),
        CgroupPlan::Off => Check::warn(
            NAME,
            format!("no usable cgroup under {CGROUP_FS} (neither v2 nor v1 memory+pids): rlimits only"),
            "mount the memory and pids controllers (v1) or run on a cgroup v2 host",
        ),
        CgroupPlan::V1 { memory_root, .. } => v1(memory_root, &parents),
        CgroupPlan::V2 { parent } => v2(root, parent),
    }
}

fn v1(memory_root: &Path, parents: &[PathBuf]) -> Check {
    let unified = words(&Path::new(CGROUP_FS).join("unified/cgroup.controllers"));
    let unified = if unified.is_empty() {
        String::new()
    } else {
        format!("; the unified mount has only {}", unified.join(" "))
    };
    if let Some(parent) = parents.iter().find(|parent| !writable(parent)) {
        return Check::fail(
            NAME,
            format!("cgroup v1: {} is not writable", parent.display()),
            "run as root in a privileged container (the jail's cgroups are created there), or --cgroup off",
        );
    }
    if !memory_root.join("memory.limit_in_bytes").exists() {
        return Check::fail(
            NAME,
            "cgroup v1 without memory.limit_in_bytes",
            "mount the v1 memory controller",
        );
    }
    let shown: Vec<String> = parents.iter().map(|parent| parent.display().to_string()).collect();
    Check::ok(NAME, format!("cgroup v1: memory and pids leaves under {}{unified}", shown.join(" and ")))
}

fn v2(root: &Path, parent: &Path) -> Check {
    let available = words(&parent.join("cgroup.controllers"));
    let enabled = words(&parent.join("cgroup.subtree_control"));
    let lacking: Vec<&str> =
        ["memory", "pids"].into_iter().filter(|c| !available.iter().any(|have| have == c)).collect();
    let at = parent.display();
    if !lacking.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "cgroup v2: {at} is not given the {} controller(s) (has: {})",
                lacking.join(", "),
                available.join(" ")
            ),
            "delegate memory and pids to this cgroup (the parent's cgroup.subtree_control), or --cgroup off",
        );
    }
    if ["memory", "pids"].iter().all(|c| enabled.iter().any(|on| on == c)) {
        return Check::ok(
            NAME,
            format!("cgroup v2 at {}: memory and pids enabled for the leaves under {at}", root.display()),
        );
    }
    // The root cgroup has no cgroup.type and is exempt from the
    // no-internal-processes rule (cgroups(7), "Cgroups v2 'no internal
    // processes' rule"): nsjail may enable the controllers there itself.
    let is_root = !parent.join("cgroup.type").exists();
    let procs = words(&parent.join("cgroup.procs"));
    let ours = v2::own_cgroup().is_ok_and(|own| v2::under(root, &own) == parent);
    if !is_root && !procs.is_empty() && ours {
        return Check::ok(
            NAME,
            format!(
                "cgroup v2: {at} holds {} process(es); at start-up pyexec moves them into {at}/{} and enables +memory +pids for the workers' leaves",
                procs.len(),
                v2::SUPERVISOR_LEAF
            ),
        );
    }
    if !is_root && !procs.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "cgroup v2: {at} holds {} process(es) (pids {}), so +memory +pids cannot be enabled for leaves under it (EBUSY)",
                procs.len(),
                procs.iter().take(5).cloned().collect::<Vec<_>>().join(" ")
            ),
            "move the processes of this cgroup into a child cgroup first, or point pyexec at an empty, delegated cgroup",
        );
    }
    if !writable(&parent.join("cgroup.subtree_control")) {
        return Check::fail(
            NAME,
            format!("cgroup v2: {at}/cgroup.subtree_control is not writable"),
            "run as root in a privileged container (it gets a writable /sys/fs/cgroup), or --cgroup off",
        );
    }
    Check::ok(NAME, format!("cgroup v2: nsjail can enable +memory +pids in {at} (no processes in it)"))
}

/// `run-cgroup`: whether each run gets a leaf of its own under its
/// worker's cgroup (`--run-cgroup`), so that `memory` caps all of a run's
/// processes together, and whether this host's hierarchy can hold them.
pub fn run_check(asked: bool, plan: &Result<CgroupPlan, CgroupError>) -> Check {
    const RUN: &str = "run-cgroup";
    let plan =
        match plan {
            Ok(CgroupPlan::Off) | Err(_) => return Check::warn(
                RUN,
                "no cgroup, so no per-run leaves: a run's memory caps each of its processes only (RLIMIT_AS)",
                "fix the cgroup check above",
            ),
            Ok(plan) => plan,
        };
    if !asked {
        return Check::warn(
            RUN,
            "--run-cgroup off: a run's memory caps each of its processes only (RLIMIT_AS); many children \
             together are stopped only by the worker's cap",
            "use --run-cgroup on (the default) so each run's processes share its memory cap",
        );
    }
    let parents: Vec<String> = plan.parents().iter().map(|p| p.display().to_string()).collect();
    let shown = parents.join(" and ");
    if let CgroupPlan::V1 { memory_root, .. } = plan {
        // A v1 child is charged to its parent only with use_hierarchy 1.
        let file = memory_root.join(crate::worker::cgroup::V1_PARENT).join("memory.use_hierarchy");
        let file = if file.exists() { file } else { memory_root.join("memory.use_hierarchy") };
        let value = std::fs::read_to_string(&file).unwrap_or_default();
        if value.trim() != "1" {
            return Check::fail(
                RUN,
                format!(
                    "cgroup v1: {} is '{}', so run leaves would escape the worker cap",
                    file.display(),
                    value.trim()
                ),
                "write 1 to memory.use_hierarchy of the pyexec cgroup, or use --run-cgroup off",
            );
        }
    }
    Check::ok(
        RUN,
        format!(
            "per-run leaves: w<pid>.<worker>/run.* under {shown}, each capped with its request's memory \
             (the worker cgroup made by pyexec, delegated to the sandbox uid)"
        ),
    )
}

/// The memory this process may use, in MiB, and where the figure comes
/// from: the lowest limit of its memory cgroup and that cgroup's ancestors,
/// or the machine's RAM (MemTotal) when no limit is lower.
pub fn memory_available() -> Option<(u64, String)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())?;
    let total = total_kib * 1024;
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = Path::new(CGROUP_FS);
    let limit = cgroup_limit(&own, root).filter(|(bytes, _)| *bytes < total);
    Some(match limit {
        Some((bytes, file)) => (bytes >> 20, format!("the memory cgroup limit ({})", file.display())),
        None => (total >> 20, "MemTotal".into()),
    })
}

/// The lowest memory limit on the way from this process's cgroup up to the
/// mount root, v2 (`memory.max`) or v1 (`memory.limit_in_bytes`).
fn cgroup_limit(proc_self_cgroup: &str, root: &Path) -> Option<(u64, PathBuf)> {
    let mut best: Option<(u64, PathBuf)> = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (mount, file) = match controllers {
            "" => (root.to_path_buf(), "memory.max"),
            c if c.split(',').any(|c| c == "memory") => (root.join("memory"), "memory.limit_in_bytes"),
            _ => continue,
        };
        // Inside a container the mount may show only its own cgroup, at the
        // mount root: then the path of /proc/self/cgroup is not there.
        let mut dir = mount.join(path.trim_start_matches('/'));
        if !dir.exists() {
            dir = mount.clone();
        }
        loop {
            let candidate = dir.join(file);
            let value =
                std::fs::read_to_string(&candidate).ok().and_then(|text| text.trim().parse::<u64>().ok());
            if let Some(bytes) = value {
                if best.as_ref().is_none_or(|(lowest, _)| bytes < *lowest) {
                    best = Some((bytes, candidate));
                }
            }
            if dir == mount || !dir.pop() {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_limit_on_the_way_up_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = dir.path().join("kubepods/pod1");
        std::fs::create_dir_all(&pod).expect("mkdir");
        std::fs::write(dir.path().join("kubepods/memory.max"), "1073741824\n").expect("write");
        std::fs::write(pod.join("memory.max"), "max\n").expect("write");
        let (bytes, file) = cgroup_limit("0::/kubepods/pod1\n", dir.path()).expect("a limit");
        assert_eq!(bytes, 1 << 30);
        assert_eq!(file, dir.path().join("kubepods/memory.max"));

        let v1 = dir.path().join("memory");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").expect("write");
        let (bytes, _) =
            cgroup_limit("5:memory:/libpod/ctr\n", dir.path()).expect("v1 limit at the mount root");
        assert_eq!(bytes, 512 << 20);
        assert!(cgroup_limit("4:pids:/x\n", dir.path()).is_none());
    }
}
