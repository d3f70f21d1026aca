"""Thin ctypes bindings to the libc calls Python 3.11 lacks.

Owns: unshare, mount, prctl, capset and seccomp-filter wrappers that raise
``OSError`` with errno and a message naming the call. Must not: decide
policy (which flags, which mounts, which syscalls); that lives in
``isolation`` and ``seccomp``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import signal

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

CLONE_NAMES = {
    CLONE_NEWUSER: "CLONE_NEWUSER",
    CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWNS: "CLONE_NEWNS",
    CLONE_NEWNET: "CLONE_NEWNET",
    CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_MODE_FILTER = 2

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the length (in instructions) and the program."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long

# clone(2) by number: glibc's clone() wrapper wants a new stack; the raw
# syscall with stack 0 behaves like fork(). The other arguments are 0, so
# their order (which differs between architectures) does not matter.
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())

_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        name = errno.errorcode.get(err, str(err))
        raise OSError(err, f"{what} failed: {name} ({os.strerror(err)})")
    return ret


def clone_flag_names(flags: int) -> str:
    """Render a CLONE_NEW* mask as ``CLONE_NEWPID|CLONE_NEWNS``."""
    return "|".join(name for bit, name in CLONE_NAMES.items() if flags & bit)


def unshare(flags: int) -> None:
    """unshare(2); the error names the flags."""
    _check(_libc.unshare(flags), f"unshare({clone_flag_names(flags)})")


def clone(flags: int) -> int:
    """fork(2) with clone flags: 0 in the child, the child's pid in the parent.

    Runs CPython's own before/after-fork hooks (as ``os.fork`` does), so
    the interpreter state of both processes stays consistent.
    """
    if _SYS_CLONE is None:
        raise OSError(errno.ENOSYS, f"clone: unsupported architecture {platform.machine()}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc.syscall(_SYS_CLONE, ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone({clone_flag_names(flags)}) failed: {os.strerror(err)}")
    return pid


class RunSpawner:
    """``pyexec_spawn_run`` from the native helper (worker/native/spawn.c).

    Loaded once by the fork server: one call makes a run init in fresh
    namespaces (exec'ing ``init_path``) and its runner, the only copy of the
    caller's memory. Returns 0 in the runner and the init's pid in the
    caller, and runs CPython's before/after-fork hooks as ``os.fork`` does.
    """

    def __init__(self, library: str, init_path: str) -> None:
        try:
            lib = ctypes.CDLL(library, use_errno=True)
        except OSError as exc:
            raise OSError(errno.ENOENT, f"{exc} - run scripts/install.sh to build the native helpers") from None
        if not os.access(init_path, os.X_OK):
            raise OSError(errno.ENOENT, f"{init_path} is missing - run scripts/install.sh to build the native helpers")
        self._call = lib.pyexec_spawn_run
        self._call.restype = ctypes.c_long
        self._call.argtypes = [
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        # Kept alive here: the init reads them while the caller waits.
        self._path = init_path.encode()
        self._argv = (ctypes.c_char_p * 2)(self._path, None)

    def spawn(self, flags: int, status_fd: int, init_filter: SeccompFilter | None) -> int:
        """0 in the runner, the init's pid in the caller; OSError on failure.

        ``init_filter`` goes on the init before its exec.
        """
        api = ctypes.pythonapi
        api.PyOS_BeforeFork()
        fprog = None if init_filter is None else init_filter.address
        ret = self._call(flags, self._path, self._argv, status_fd, fprog)
        if ret == 0:
            api.PyOS_AfterFork_Child()
            return 0
        api.PyOS_AfterFork_Parent()
        if ret < 0:
            raise OSError(-ret, f"spawning a run ({clone_flag_names(flags)}) failed: {os.strerror(-ret)}")
        return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2); the error names the target and the filesystem type."""
    ret = _libc.mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        flags,
        data.encode() if data is not None else None,
    )
    _check(ret, f"mount({fstype or 'remount'} on {target})")


M_ARENA_MAX = -8  # <malloc.h>


def limit_malloc_arenas(count: int) -> None:
    """At most ``count`` malloc arenas, for this process and all it forks.

    glibc gives each new thread its own arena, reserving 64 MiB of address
    space apiece. A run's memory cap is RLIMIT_AS (address space), so a
    library that starts a few threads (pandas 3 reads a CSV in parallel)
    used up a 256 MiB cap on reservations it never touched.
    """
    if _libc.mallopt(M_ARENA_MAX, count) != 1:
        raise OSError("mallopt(M_ARENA_MAX) failed")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def capset_zero() -> None:
    """Clear the effective, permitted and inheritable capability sets."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset(0)")


class SeccompFilter:
    """A seccomp program in C memory (``struct sock_fprog``), ready to install.

    Built before forking (the fork server does), so that installing it in
    each run init is one prctl(2) with nothing to allocate.
    """

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % 8:
            raise ValueError(f"seccomp program must be whole 8-byte instructions, got {len(program)} bytes")
        self._code = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._code))

    @property
    def address(self) -> int:
        """The ``struct sock_fprog``'s address (for the native spawn)."""
        return ctypes.addressof(self._fprog)

    def install(self) -> None:
        """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog); needs no_new_privs (or CAP_SYS_ADMIN)."""
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog))
