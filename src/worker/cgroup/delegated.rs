//! The worker's cgroup when every run gets a leaf of its own
//! (`--run-cgroup on`): made by the supervisor instead of nsjail, capped
//! for the whole worker, and delegated to the jail's uid so that the fork
//! server can make one leaf per spare under it.
//!
//! Layout (v2 under the prepared parent; v1 under `<controller>/pyexec` of
//! both the memory and the pids hierarchy):
//!
//! ```text
//! w<service pid>.<worker id>/        root-owned caps: the worker cap
//!     zygote/                        nsjail, the zygote, the fork servers
//!     run.<fork server pid>.<n>/     one spare, then its run (made in the jail)
//! ```
//!
//! The nsjail process is moved into `zygote/` between fork and exec (see
//! `spawn.rs`), so everything of the jail starts below the worker cap. The
//! jail gets a directory fd of the worker cgroup (fd 4 memory, fd 5 pids;
//! on v2 both are the unified directory) and mounts no cgroupfs. cgroups(7),
//! "Cgroups v2 delegation", describes the ownership rules relied on here.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupPlan};

/// The child cgroup the jail's own processes (nsjail, zygote) start in.
pub const ZYGOTE_LEAF: &str = "zygote";
/// The fd numbers the jail gets the worker cgroup's directories on.
pub const MEMORY_DIR_FD: i32 = 4;
/// See [`MEMORY_DIR_FD`]; on v2 the same directory as the memory one.
pub const PIDS_DIR_FD: i32 = 5;
/// Source fds are moved at or above this before spawning, so the dup2 onto
/// 3, 4 and 5 between fork and exec can never overwrite one of them.
const HIGH_FD: i32 = 10;

/// A worker cgroup made and delegated by the supervisor.
#[derive(Debug)]
pub struct WorkerCgroup {
    /// The worker's cgroup directories (v1: memory, pids; v2: one).
    pub dirs: Vec<PathBuf>,
    /// Directory fds for the jail: memory, pids (both at or above 10).
    pub dir_fds: [OwnedFd; 2],
    /// `zygote/cgroup.procs` of each hierarchy, opened for writing: the
    /// nsjail process writes `0` to each between fork and exec.
    pub procs_fds: Vec<OwnedFd>,
    /// Where the worker cgroup counts charges that ran into its *own* cap
    /// (not a run leaf's): v2 `memory.events.local` `oom`, v1 its peak at
    /// its limit. It rising during a run that kept within its own
    /// limit means the worker ran short of memory.
    pub cap_hits: CapHits,
}

/// Whether charges ran into one cgroup's own memory limit.
#[derive(Debug, Clone)]
pub enum CapHits {
    /// v2: the `oom` line of `memory.events.local`, a count.
    V2(PathBuf),
    /// v1: the memory cgroup directory. This kernel keeps `memory.failcnt`
    /// at 0, so a hit is the peak (`memory.max_usage_in_bytes`, or its
    /// memsw twin) at the limit: 1, until [`CapHits::reset`].
    V1(PathBuf),
}

impl CapHits {
    /// The count so far (0 when the files cannot be read: the worker is gone).
    pub fn read(&self) -> u64 {
        match self {
            Self::V2(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|line| line.strip_prefix("oom "))
                        .and_then(|n| n.trim().parse().ok())
                })
                .unwrap_or(0),
            Self::V1(dir) => {
                let number = |file: &str| -> Option<u64> {
                    std::fs::read_to_string(dir.join(file)).ok().and_then(|text| text.trim().parse().ok())
                };
                let at_limit = |peak: &str, limit: &str| matches!((number(peak), number(limit)), (Some(p), Some(l)) if p >= l);
                u64::from(
                    at_limit("memory.max_usage_in_bytes", "memory.limit_in_bytes")
                        || at_limit("memory.memsw.max_usage_in_bytes", "memory.memsw.limit_in_bytes"),
                )
            }
        }
    }

    /// Forgets a hit already accounted for (v1: resets the peaks; v2 counts).
    pub fn reset(&self) {
        if let Self::V1(dir) = self {
            for file in ["memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes"] {
                let _ = std::fs::write(dir.join(file), "0");
            }
        }
    }
}

/// The name of worker `id`'s cgroup: our pid tells a stale one (pyexec gone)
/// from one of another pyexec on this host that is still running.
pub fn worker_leaf_name(id: u64) -> String {
    format!("w{}.{id}", std::process::id())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

fn write(path: PathBuf, text: &str) -> Result<(), CgroupError> {
    std::fs::write(&path, text).map_err(|source| CgroupError::Io { path, source })
}

/// Moves `fd` to a number at or above [`HIGH_FD`] (close-on-exec).
fn high(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we own returns a new
    // descriptor (or -1) that nothing else owns; it is wrapped at once.
    unsafe {
        let new = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD);
        if new == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(new))
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_error(dir))?;
    high(file.into()).map_err(io_error(dir))
}

fn open_procs(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let path = dir.join(ZYGOTE_LEAF).join("cgroup.procs");
    let file =
        File::options().write(true).custom_flags(libc::O_CLOEXEC).open(&path).map_err(io_error(&path))?;
    high(file.into()).map_err(io_error(&path))
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        // A leftover of an earlier pyexec with our pid (a restarted
        // container): empty by now, or the mkdir below says why not.
        remove_tree(dir);
    }
    std::fs::create_dir(dir).map_err(|source| CgroupError::Create { path: dir.to_path_buf(), source })
}

fn chown(path: &Path, uid: u32) -> Result<(), CgroupError> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(io_error(path))
}

impl WorkerCgroup {
    /// Makes worker `id`'s cgroup with the worker cap, its `zygote` child,
    /// and delegates it to `uid`. `None` for [`CgroupPlan::Off`].
    ///
    /// # Errors
    /// A directory or file that cannot be made, written or opened (not
    /// root?), or a v1 memory hierarchy that does not count children in
    /// their parent's limit.
    pub fn create(
        plan: &CgroupPlan,
        id: u64,
        uid: u32,
        memory_bytes: u64,
        pids: u64,
    ) -> Result<Option<Self>, CgroupError> {
        let name = worker_leaf_name(id);
        let made = match plan {
            CgroupPlan::Off => return Ok(None),
            CgroupPlan::V2 { parent } => Self::create_v2(&parent.join(&name), uid, memory_bytes, pids),
            CgroupPlan::V1 { memory_root, pids_root } => Self::create_v1(
                &memory_root.join(super::V1_PARENT).join(&name),
                &pids_root.join(super::V1_PARENT).join(&name),
                uid,
                memory_bytes,
                pids,
            ),
        };
        match made {
            Ok(made) => Ok(Some(made)),
            Err(error) => {
                for dir in plan.parents() {
                    remove_tree(&dir.join(&name));
                }
                Err(error)
            }
        }
    }

    fn create_v2(dir: &Path, uid: u32, memory_bytes: u64, pids: u64) -> Result<Self, CgroupError> {
        make_dir(dir)?;
        write(dir.join("memory.max"), &memory_bytes.to_string())?;
        // No swap either, so the memory cap is a real cap.
        write(dir.join("memory.swap.max"), "0")?;
        write(dir.join("pids.max"), &pids.to_string())?;
        // The worker cgroup holds no process yet, so cgroup v2 lets it
        // enable the controllers for its children (the leaves).
        write(dir.join("cgroup.subtree_control"), "+memory +pids")?;
        std::fs::create_dir(dir.join(ZYGOTE_LEAF)).map_err(io_error(dir))?;
        // SECURITY: delegation (cgroups(7), "Cgroups v2 delegation"): the
        // jail uid gets the directory (to make and remove the per-spare
        // leaves) and its cgroup.procs (a move between two of its children
        // needs write access to the common ancestor's cgroup.procs), never
        // memory.*, pids.* or cgroup.subtree_control: it cannot raise the
        // worker cap, nor move a process out of the worker (that needs the
        // cgroup.procs of the parent, root-owned).
        chown(dir, uid)?;
        chown(&dir.join("cgroup.procs"), uid)?;
        let fd = open_dir(dir)?;
        let pids_fd = high(fd.try_clone().map_err(io_error(dir))?).map_err(io_error(dir))?;
        Ok(Self {
            dirs: vec![dir.to_path_buf()],
            dir_fds: [fd, pids_fd],
            procs_fds: vec![open_procs(dir)?],
            cap_hits: CapHits::V2(dir.join("memory.events.local")),
        })
    }

    fn create_v1(
        memory_dir: &Path,
        pids_dir: &Path,
        uid: u32,
        memory_bytes: u64,
        pids: u64,
    ) -> Result<Self, CgroupError> {
        make_dir(memory_dir)?;
        make_dir(pids_dir)?;
        // SECURITY: with use_hierarchy 0 a v1 child is not charged to its
        // parent, and the per-run leaves would escape the worker cap.
        let hierarchy = memory_dir.join("memory.use_hierarchy");
        if std::fs::read_to_string(&hierarchy).map_err(io_error(&hierarchy))?.trim() != "1" {
            return Err(CgroupError::Delegate {
                path: hierarchy,
                reason: "is not 1, so children escape their parent's limit; write 1 to it or use \
                         --run-cgroup off"
                    .into(),
            });
        }
        write(memory_dir.join("memory.limit_in_bytes"), &memory_bytes.to_string())?;
        let memsw = memory_dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            // No swap either (only after limit_in_bytes: memsw may not be lower).
            write(memsw, &memory_bytes.to_string())?;
        }
        write(pids_dir.join("pids.max"), &pids.to_string())?;
        for dir in [memory_dir, pids_dir] {
            std::fs::create_dir(dir.join(ZYGOTE_LEAF)).map_err(io_error(dir))?;
            // SECURITY: the jail uid gets only the directory (to make and
            // remove per-spare leaves, whose files are then its own). The
            // caps and every cgroup.procs above the leaves stay root's, so
            // no process of the jail can raise the worker cap or join a
            // cgroup outside its worker's.
            chown(dir, uid)?;
        }
        Ok(Self {
            dirs: vec![memory_dir.to_path_buf(), pids_dir.to_path_buf()],
            dir_fds: [open_dir(memory_dir)?, open_dir(pids_dir)?],
            procs_fds: vec![open_procs(memory_dir)?, open_procs(pids_dir)?],
            cap_hits: CapHits::V1(memory_dir.to_path_buf()),
        })
    }
}

/// Removes a cgroup and the empty leaves below it (one level: the layout
/// above has no deeper ones). True when it is gone.
pub fn remove_tree(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

/// The service pid in a worker cgroup's name (`w<pid>.<id>`).
pub fn service_pid(name: &str) -> Option<u32> {
    let (pid, id) = name.strip_prefix('w')?.split_once('.')?;
    id.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_service_pid() {
        let name = worker_leaf_name(7);
        assert_eq!(service_pid(&name), Some(std::process::id()));
        assert_eq!(service_pid("w12.3"), Some(12));
        assert_eq!(service_pid("NSJAIL.12"), None);
        assert_eq!(service_pid("w12"), None);
        assert_eq!(service_pid("wx.3"), None);
    }

    #[test]
    fn trees_go_leaves_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let worker = dir.path().join("w1.1");
        std::fs::create_dir_all(worker.join("zygote")).expect("mkdir");
        std::fs::create_dir_all(worker.join("run.5.1")).expect("mkdir");
        assert!(remove_tree(&worker));
        assert!(!worker.exists());
        assert!(remove_tree(&worker), "already gone counts as gone");
    }
}
