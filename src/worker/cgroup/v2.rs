//! cgroup v2 start-up: chooses the parent cgroup of the workers' cgroups and
//! makes the memory and pids controllers available to its children.
//!
//! cgroup v2's no-internal-processes rule (cgroups(7), "Cgroups v2 'no
//! internal processes' rule"): a non-root cgroup that holds processes cannot
//! enable controllers in its `cgroup.subtree_control` (EBUSY). In a
//! Kubernetes pod with a private cgroup namespace, the namespace root is the
//! container's cgroup and pyexec's own processes sit in it, so nsjail's
//! `--use_cgroupv2` fails there. The default parent is the cgroup pyexec
//! runs in; its processes are first moved into the `supervisor` child, as
//! cgroups(7) describes for delegation. Owns only this start-up step; it
//! never creates or removes the workers' own cgroups (nsjail does).

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

/// The child cgroup that receives pyexec's own processes.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// The controllers every worker cgroup needs.
const CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// How often the move of the parent's processes is repeated: a process may
/// fork while we move, leaving a new child behind.
const MOVE_ROUNDS: usize = 10;

/// Our own cgroup as a path in our cgroup namespace (`0::/PATH` of
/// /proc/self/cgroup).
pub fn own_cgroup() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|source| CgroupError::Io { path: "/proc/self/cgroup".into(), source })?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(PathBuf::from).ok_or_else(|| {
        CgroupError::Delegate {
            path: "/proc/self/cgroup".into(),
            reason: "has no cgroup v2 entry (0::); is /sys/fs/cgroup the unified hierarchy?".into(),
        }
    })
}

/// `fs_root` joined with an absolute cgroup path.
pub fn under(fs_root: &Path, cgroup: &Path) -> PathBuf {
    let mut dir = fs_root.to_path_buf();
    dir.extend(cgroup.components().filter(|c| matches!(c, Component::Normal(_))));
    dir
}

fn read(path: PathBuf) -> Result<String, CgroupError> {
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })
}

fn write(path: PathBuf, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Prepares the parent of the workers' cgroups and returns its directory.
///
/// `parent` is `--cgroup-parent`, a path in our cgroup namespace; `None`
/// takes our own cgroup. When the parent lacks `+memory +pids` in its
/// `cgroup.subtree_control` and enabling them fails because it holds
/// processes, those processes are moved into `<parent>/supervisor` first -
/// but only when the parent is our own cgroup: other processes are not ours
/// to move.
///
/// # Errors
/// [`CgroupError`] naming the file and what to do: the parent is missing,
/// its parent does not delegate memory and pids, it holds processes that
/// are not ours, or a write is refused (not root?).
pub fn prepare(fs_root: &Path, parent: Option<&Path>) -> Result<PathBuf, CgroupError> {
    let (chosen, ours) = match parent {
        Some(parent) => (parent.to_path_buf(), own_cgroup().is_ok_and(|own| own == parent)),
        None => (own_cgroup()?, true),
    };
    let dir = under(fs_root, &chosen);
    if !dir.is_dir() {
        return Err(CgroupError::Delegate {
            path: dir,
            reason: "does not exist; create it or pass another --cgroup-parent".into(),
        });
    }
    let available = read(dir.join("cgroup.controllers"))?;
    let missing: Vec<&str> =
        CONTROLLERS.iter().copied().filter(|c| !available.split_whitespace().any(|a| a == *c)).collect();
    if !missing.is_empty() {
        return Err(CgroupError::Delegate {
            path: dir.clone(),
            reason: format!(
                "lacks the {} controller(s) (cgroup.controllers: '{}'); write '+memory +pids' to the \
                 cgroup.subtree_control of its parent, or run with --cgroup off",
                missing.join(" and "),
                available.trim()
            ),
        });
    }
    if enabled(&dir)? {
        return Ok(dir);
    }
    let control = dir.join("cgroup.subtree_control");
    let request = CONTROLLERS.map(|c| format!("+{c}")).join(" ");
    match write(control.clone(), &request) {
        Ok(()) => return Ok(dir),
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) && ours => {}
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
            return Err(CgroupError::Delegate {
                path: dir,
                reason: "holds processes, so cgroup v2 refuses to enable memory and pids for its children \
                         (EBUSY); move them into a child cgroup or pass another --cgroup-parent"
                    .into(),
            })
        }
        Err(source) => return Err(CgroupError::Io { path: control, source }),
    }
    let moved = move_processes(&dir)?;
    tracing::info!(parent = %dir.display(), moved, leaf = SUPERVISOR_LEAF, "moved pyexec's processes to a child cgroup");
    write(control.clone(), &request).map_err(|source| CgroupError::Io { path: control, source })?;
    Ok(dir)
}

/// Whether memory and pids are already enabled for the children of `dir`.
fn enabled(dir: &Path) -> Result<bool, CgroupError> {
    let text = read(dir.join("cgroup.subtree_control"))?;
    Ok(CONTROLLERS.iter().all(|c| text.split_whitespace().any(|e| e == *c)))
}

/// Moves every process of `dir` into `dir/supervisor`; returns how many.
fn move_processes(dir: &Path) -> Result<usize, CgroupError> {
    let leaf = dir.join(SUPERVISOR_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(CgroupError::Create { path: leaf, source }),
    }
    let target = leaf.join("cgroup.procs");
    let mut moved = 0;
    for _ in 0..MOVE_ROUNDS {
        let procs = read(dir.join("cgroup.procs"))?;
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(moved);
        }
        for pid in pids {
            match write(target.clone(), pid) {
                Ok(()) => moved += 1,
                // Gone meanwhile.
                Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => return Err(CgroupError::Io { path: target, source }),
            }
        }
    }
    Err(CgroupError::Delegate {
        path: dir.to_path_buf(),
        reason: format!(
            "still holds processes after {MOVE_ROUNDS} rounds of moving them to {SUPERVISOR_LEAF}/"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_stay_under_the_mount() {
        assert_eq!(under(Path::new("/sys/fs/cgroup"), Path::new("/")), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(
            under(Path::new("/sys/fs/cgroup"), Path::new("/kubepods/pod1")),
            PathBuf::from("/sys/fs/cgroup/kubepods/pod1")
        );
    }

    #[test]
    fn missing_controllers_are_named_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("kubepods/pod1");
        std::fs::create_dir_all(&parent).expect("mkdir");
        std::fs::write(parent.join("cgroup.controllers"), "cpu io\n").expect("write");
        let error = prepare(dir.path(), Some(Path::new("/kubepods/pod1")))
            .expect_err("no memory controller")
            .to_string();
        assert!(error.contains("memory and pids"), "{error}");
        assert!(error.contains("+memory +pids"), "{error}");
    }

    #[test]
    fn already_enabled_parent_is_used_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("kubepods/pod1");
        std::fs::create_dir_all(&parent).expect("mkdir");
        std::fs::write(parent.join("cgroup.controllers"), "cpu memory pids\n").expect("write");
        std::fs::write(parent.join("cgroup.subtree_control"), "memory pids\n").expect("write");
        let got = prepare(dir.path(), Some(Path::new("/kubepods/pod1"))).expect("ready");
        assert_eq!(got, parent);
        assert!(!parent.join(SUPERVISOR_LEAF).exists(), "nothing moved");
        let error = prepare(dir.path(), Some(Path::new("/nope"))).expect_err("missing").to_string();
        assert!(error.contains("does not exist"), "{error}");
    }
}
