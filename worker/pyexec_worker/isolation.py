"""The isolation steps of one run, in the order the spare applies them.

Owns: which namespaces, mounts, rlimits and capabilities a run gets, each
with a ``# SECURITY:`` note saying what it stops. Must not: fork other
than through ``spawn_run``, talk to the zygote or run user code (``spare``
sequences these steps).

Kernel facts relied on: user_namespaces(7) (a process that creates a user
namespace has all capabilities in it; it may map only its own uid without
CAP_SETUID outside, after writing "deny" to setgroups), pid_namespaces(7)
(pid 1 gets only signals it has a handler for from inside its namespace;
when pid 1 exits the kernel SIGKILLs every other process of the namespace),
mount_namespaces(7) (mounts copied into a less privileged mount namespace
are locked: they cannot be unmounted or made writable from inside).
"""

from __future__ import annotations

import fcntl
import os
import resource
import socket
import struct

from . import libc
from .config import ZygoteConfig

# The uid/gid a run has inside its own user namespace (mapped to the jail's).
RUN_UID = 1000
RUN_GID = 1000

# SECURITY: user ns: the run's capabilities and its single mapped uid exist
# only inside it; pid ns: the run sees and signals only its own processes
# (not the zygote, not earlier runs); mount ns: its /tmp and /proc are its
# own (and /dev/shm); net ns: no interface but a down loopback, so no network and no
# listener shared with the next run; ipc ns: no SysV or POSIX message
# queue/shm outlives the run; uts ns: hostname changes stay inside.
RUN_NAMESPACES = (
    libc.CLONE_NEWUSER
    | libc.CLONE_NEWPID
    | libc.CLONE_NEWNS
    | libc.CLONE_NEWNET
    | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUTS
)

# The runner's end of the result pipe: above every RLIMIT_NOFILE a run can
# have (--max-open-files is capped below it) and below the jail's 1024, so
# closing fds 3..SC_OPEN_MAX (the usual "close everything") leaves it open.
RESULT_FD = 1023
# The runner's exit status when its result pipe was closed or replaced by
# user code (os.closerange(0, 1 << 20), os.close(RESULT_FD), dup2 over it).
RESULT_LOST_STATUS = 86

# <linux/sockios.h>, <linux/if.h>: get/set an interface's flags; struct ifreq
# is a 16-byte name and a 24-byte union whose first member is short flags.
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sh22x"

# Inodes of a run's /tmp: tmpfs inodes cost kernel memory that size= does not count.
TMP_MAX_INODES = 16384
# Inodes of a run's /dev/shm: one per semaphore or shared-memory segment.
SHM_MAX_INODES = 4096


def _write(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"writing {text.strip()!r} to {path} failed: {exc.strerror}") from None


def native_dir(prefix: str) -> str:
    """Where scripts/build-native.sh put the native helpers, inside the sandbox venv."""
    return f"{prefix}/lib/pyexec"


def run_spawner(prefix: str) -> libc.RunSpawner:
    """The native spawn of runs (the fork server loads it once)."""
    here = native_dir(prefix)
    return libc.RunSpawner(f"{here}/libpyexec_spawn.so", f"{here}/run-init")


def spawn_run(spawner: libc.RunSpawner, status_fd: int, init_filter: libc.SeccompFilter | None) -> int:
    """Create a run: its init (pid 1, the run-init program) and its runner.

    One clone(2) into all RUN_NAMESPACES. Returns 0 in the runner, pid 2 of
    the new pid namespace and the only copy of the caller's memory, which
    must call ``map_run_ids`` first; the init's pid in the caller. The init
    keeps only ``status_fd`` (as its fd 3) and reports the runner's end
    there; it carries ``init_filter``, the run's syscall filter.
    CLONE_PARENT makes the init the zygote's child (the caller is the fork
    server), so the zygote reaps it.
    """
    try:
        return spawner.spawn(RUN_NAMESPACES | libc.CLONE_PARENT, status_fd, init_filter)
    except OSError as exc:
        raise OSError(
            exc.errno, f"{exc.strerror} - is user.max_user_namespaces 0, or is nsjail missing --proc_rw?"
        ) from None


def map_run_ids(outer_uid: int, outer_gid: int) -> None:
    """In the fresh user namespace, map RUN_UID/RUN_GID to the jail's ids.

    ``outer_uid``/``outer_gid`` must be read before the clone (inside a fresh
    user namespace getuid() is the overflow uid until the map is written).
    """
    # /proc/self/{uid_map,...} of a non-dumpable process belong to global root,
    # which this user namespace cannot map: become dumpable for the writes
    # (the runner is the user's own process and stays dumpable).
    libc.prctl(libc.PR_SET_DUMPABLE, 1)
    # SECURITY: setgroups "deny" is required to write gid_map unprivileged and
    # stops the run from dropping supplementary groups to bypass group-deny ACLs.
    _write("/proc/self/setgroups", "deny")
    # SECURITY: exactly one uid/gid is mapped (the jail's own), so nothing in
    # the run can become any other host uid, and uid 0 does not exist in it.
    _write("/proc/self/uid_map", f"{RUN_UID} {outer_uid} 1\n")
    _write("/proc/self/gid_map", f"{RUN_GID} {outer_gid} 1\n")


def setup_run(cfg: ZygoteConfig) -> None:
    """Run in the runner (pid 2 of the new namespaces), before any user code exists."""
    # SECURITY: private propagation: mounts made here never reach the jail's
    # (or the zygote's) mount namespace.
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE, None)
    # SECURITY: a fresh size- and inode-capped tmpfs per run: files written by
    # a run are gone with its mount namespace and cannot fill the worker.
    libc.mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"size={cfg.tmp_size_bytes},nr_inodes={TMP_MAX_INODES},mode=1777",
    )
    # SECURITY: a private /dev/shm per run (POSIX semaphores and shared
    # memory: multiprocessing's SemLock, shared_memory), a fresh tmpfs over
    # the jail's read-only placeholder: one run's segments are gone with its
    # mount namespace, never seen by the next run, and capped like /tmp
    # (its own size= and nr_inodes=) so it cannot fill the worker's memory.
    libc.mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
        f"size={cfg.tmp_size_bytes},nr_inodes={SHM_MAX_INODES},mode=1777",
    )
    # SECURITY: a proc of the run's own pid namespace: /proc lists only the
    # run's pids, so no /proc/<zygote>/mem, environ or fd of anyone else.
    libc.mount("proc", "/proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, None)
    # SECURITY: no nested user namespaces: a run cannot regain capabilities
    # in a namespace of its own (and with them mount/unshare attack surface).
    _write("/proc/sys/user/max_user_namespaces", "0")
    # SECURITY: under memory pressure the kernel kills run processes first,
    # never the zygote (seen: a fork-heavy run made the zygote the victim).
    _write("/proc/self/oom_score_adj", "1000")
    # SECURITY: read-only /proc: the run cannot lower its oom_score_adj,
    # write sysctls, or write anything else under /proc.
    libc.mount(
        None,
        "/proc",
        None,
        libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
        None,
    )
    # SECURITY: lo up in the run's own network namespace (CAP_NET_ADMIN held
    # here only, over this namespace only): a run can talk to itself on
    # 127.0.0.1/::1 (a server thread, multiprocessing.connection), while
    # the namespace still has no other interface and no route, so nothing
    # else is reachable, and its loopback is not the host's nor the jail's.
    bring_up_loopback()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    _set_rlimits(cfg)
    _drop_capabilities(last_cap)


def bring_up_loopback() -> None:
    """Set IFF_UP on ``lo`` of the current network namespace (needs CAP_NET_ADMIN in it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        reply = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, reply)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))


def _set_rlimits(cfg: ZygoteConfig) -> None:
    # SECURITY: a fork bomb fails with EAGAIN inside the run; the count is per
    # uid in the run's own user namespace, so runs cannot starve each other.
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg.max_processes, cfg.max_processes))
    # SECURITY: bounds fds (and so kernel memory) one run can hold.
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg.max_open_files, cfg.max_open_files))
    # SECURITY: a single file cannot grow past the cap (EFBIG, not a full disk).
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg.max_file_size_bytes, cfg.max_file_size_bytes))
    # SECURITY: no core dumps: a core_pattern pipe helper would run outside.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drop_capabilities(last_cap: int) -> None:
    # SECURITY: the run keeps no capability in its user namespace, so it
    # cannot mount, unmount the fresh /proc//tmp to reveal the jail's,
    # unshare, change its uid, or bypass file permissions; an empty bounding
    # set and ambient set mean no execve can give any back.
    for cap in range(last_cap + 1):
        libc.prctl(libc.PR_CAPBSET_DROP, cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    libc.capset_zero()
    # SECURITY: no setuid/file-capability gains through execve, ever.
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)


def fixed_environment(prefix: str) -> dict[str, str]:
    """The whole environment a run sees (nothing of the service leaks in)."""
    return {
        "PATH": f"{prefix}/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The read-only matplotlib config dir with the font cache built at
        # install time (a run's matplotlib was imported by the zygote).
        "MPLCONFIGDIR": mpl_config_dir(prefix),
    }


def mpl_config_dir(prefix: str) -> str:
    """The prebuilt, read-only matplotlib config dir inside the venv."""
    return f"{prefix}/mplconfig"


def limit_run(memory_bytes: int, timeout_ms: int) -> None:
    """Apply the per-run RLIMIT_AS and RLIMIT_CPU (in the runner, at run time)."""
    with open("/proc/self/statm", "rb") as f:
        vm_pages = int(f.read().split()[0])
    address_space = _clamp(vm_pages * resource.getpagesize() + memory_bytes)
    # SECURITY: memory cap: allocating past it raises MemoryError in the run
    # instead of pushing the worker's cgroup into the OOM killer.
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = _clamp(-(-timeout_ms // 1000) + 1 + int(used.ru_utime + used.ru_stime))
    # SECURITY: CPU backstop should the zygote's wall-clock kill be late
    # (SIGXCPU at the soft limit, SIGKILL a second later).
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, _clamp(cpu + 1)))


def _clamp(value: int) -> int:
    """rlim_t is 64 bits; absurd limits from the supervisor mean "no limit"."""
    return value if value < 2**62 else resource.RLIM_INFINITY
