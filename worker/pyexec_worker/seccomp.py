"""The run's seccomp filter: which syscalls a run may not make, as classic BPF.

Owns: the deny-list (each group with a ``# SECURITY:`` note), the BPF
program that enforces it on x86_64 and aarch64, and installing it. Must
not: fork, touch pipes or run user code; ``spare`` installs the filter in
the run init right after ``isolation.setup_run_init`` (capabilities gone,
no_new_privs set), so pid 1, the runner and everything user code starts
carry it (seccomp(2): filters are inherited across fork, clone and execve
and can never be removed).

A refused call returns -1 with errno EPERM (``PermissionError`` in Python),
never a kill: a script that trips over one gets a normal traceback. The
exceptions, each explained below: ``clone3`` fails with ENOSYS, and a
syscall made through another ABI kills the process.
"""

from __future__ import annotations

import errno
import functools
import os
import struct

from . import libc, syscalls

# --- the policy ---------------------------------------------------------------

# SECURITY: each group says what it stops. Analysis code (numpy, pandas, the
# standard library, subprocesses it starts) needs none of these calls.
REFUSED_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # SECURITY: reading, writing or stealing from another process (memory,
    # fds, kernel-object identity). The pid namespace already hides other
    # processes; this is the second lock should one ever become visible.
    (
        "other processes",
        ("ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp"),
    ),
    # SECURITY: the kernel's largest unprivileged attack surfaces, each with
    # a history of privilege escalations: the BPF verifier, perf events
    # (also a side channel), io_uring (whose operations bypass seccomp),
    # userfaultfd (stalls the kernel mid-copy: the usual race-widening
    # primitive of exploits) and the key retention service.
    (
        "kernel attack surface",
        (
            "bpf",
            "perf_event_open",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "keyctl",
            "add_key",
            "request_key",
        ),
    ),
    # SECURITY: changing the mount tree: unmounting the run's /proc or /tmp
    # to uncover the jail's, or remounting something writable. The run has
    # no capability for it today; the filter keeps it so if one leaks.
    (
        "mounts",
        (
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "open_tree",
            "open_tree_attr",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
        ),
    ),
    # SECURITY: new namespaces give a process a full capability set in them
    # and expose namespaced kernel code (netfilter in a new net namespace is
    # the usual path of user-namespace exploits). max_user_namespaces=0
    # already stops the user namespace; this refuses every other kind too.
    # clone is refused only with a CLONE_NEW* flag (see CLONE_NAMESPACE_FLAGS).
    ("namespaces", ("unshare", "setns")),
    # SECURITY: opening any file of a mounted filesystem by handle, around
    # the run's mount view: the 2014 "shocker" container escape. Without the
    # open, handles are only an information leak.
    ("file handles", ("open_by_handle_at", "name_to_handle_at")),
    # SECURITY: host administration. All need capabilities of the initial
    # namespace; refusing them means a capability bug never reaches them.
    # syslog is also the kernel log (kernel addresses) when dmesg_restrict=0;
    # fanotify watches whole filesystems; lookup_dcookie is a path leak.
    (
        "host administration",
        (
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "acct",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fanotify_init",
            "syslog",
            "vhangup",
        ),
    ),
    # SECURITY (x86_64 only): modify_ldt serves 16-bit code (Wine, DOSEMU)
    # and had several kernel bugs; uselib loads a.out libraries (obsolete);
    # iopl/ioperm grant I/O-port access.
    ("x86 legacy", ("modify_ldt", "uselib", "iopl", "ioperm")),
)

REFUSED: tuple[str, ...] = tuple(name for _group, names in REFUSED_GROUPS for name in names)

# Calls that only some architectures have; every other name must be in the table.
ARCH_SPECIFIC = frozenset({"modify_ldt", "uselib", "iopl", "ioperm"})

# SECURITY: clone(2) with any of these in its flags (the first argument on
# both x86_64 and aarch64) is refused like unshare. The kernel reads only the
# low 32 bits of clone's flags (kernel/fork.c: lower_32_bits), which is the
# word the filter checks. CLONE_NEWTIME exists only for unshare and clone3.
CLONE_NAMESPACE_FLAGS = (
    libc.CLONE_NEWNS
    | libc.CLONE_NEWCGROUP
    | libc.CLONE_NEWUTS
    | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUSER
    | libc.CLONE_NEWPID
    | libc.CLONE_NEWNET
)

# SECURITY: socket/socketpair only for AF_UNIX (multiprocessing, local IPC)
# and AF_INET/AF_INET6 (loopback of the run's empty network namespace).
# Refused: netlink (routing, nf_tables, audit, xfrm: the kernel's config
# interfaces), packet (raw frames), vsock (talks to the VM host), AF_ALG
# (kernel crypto) and every other family, each its own attack surface.
# socket's domain is an int: the kernel reads only the low 32 bits.
ALLOWED_SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6

# --- classic BPF ----------------------------------------------------------------

# linux/bpf_common.h: class | size/op | mode/source
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS: A = seccomp_data[k]
_JEQ_K = 0x05 | 0x10  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40  # BPF_JMP | BPF_JSET | BPF_K: A & k
_RET_K = 0x06  # BPF_RET | BPF_K

# linux/seccomp.h
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # both supported machines are little-endian

_INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_MAX_JUMP = 255


class SeccompError(RuntimeError):
    """The filter cannot be built or installed; no script may run."""


def arch_for_this_machine() -> syscalls.Arch:
    """The syscall table of the running machine, or ``SeccompError``."""
    machine = os.uname().machine
    arch = syscalls.BY_MACHINE.get(machine)
    if arch is None:
        supported = ", ".join(sorted(syscalls.BY_MACHINE))
        raise SeccompError(
            f"seccomp: no syscall table for machine {machine!r} (pyexec supports {supported}); "
            "refusing to run scripts without the syscall filter"
        )
    if struct.calcsize("P") != 8:
        raise SeccompError(f"seccomp: this Python is not a 64-bit {machine} build; its syscalls would use another ABI")
    return arch


class _Assembler:
    """Classic BPF with forward jumps to named labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (code, jt, jf, k) in enumerate(self.code):
            out += _INSTRUCTION.pack(code, self._offset(index, jt), self._offset(index, jf), k)
        return bytes(out)

    def _offset(self, index: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - index - 1
        if not 0 <= offset <= _MAX_JUMP:
            raise SeccompError(f"seccomp: jump to {target} out of range ({offset})")
        return offset


def build_program(arch: syscalls.Arch) -> bytes:
    """The filter for ``arch`` as packed ``struct sock_filter`` entries."""
    asm = _Assembler()
    asm.op(_LD_W_ABS, _OFFSET_ARCH)
    # SECURITY: syscall numbers mean something else under another ABI (i386
    # via int 0x80 on x86_64, 32-bit arm on aarch64), so the number checks
    # below would be meaningless: any other arch is killed outright. Kill,
    # not EPERM, because no Python code makes such calls (only hand-made
    # machine code does), and because nsjail's own Kafel filter already
    # kills the thread for a foreign arch; KILL_PROCESS outranks it and takes
    # the whole process down instead of leaving it without that thread.
    asm.op(_JEQ_K, arch.audit_arch, jt=0, jf="kill")
    asm.op(_LD_W_ABS, _OFFSET_NR)
    if arch.foreign_abi_floor is not None:
        # SECURITY: x32 calls carry the x86_64 arch id and bit 30 in the
        # number; killed for the same reason as a foreign arch.
        asm.op(_JGE_K, arch.foreign_abi_floor, jt="kill", jf=0)
    asm.op(_JEQ_K, arch.numbers["clone"], jt="clone_flags")
    # SECURITY: clone3 passes its flags in a struct in memory, which a
    # seccomp filter cannot read, so it cannot be checked for CLONE_NEW*.
    # ENOSYS ("not implemented") makes glibc (>= 2.34: pthread_create,
    # posix_spawn) fall back to clone(2), whose flags are checked below.
    # EPERM would not: glibc falls back only on ENOSYS, so threads would fail.
    asm.op(_JEQ_K, arch.numbers["clone3"], jt="enosys")
    asm.op(_JEQ_K, arch.numbers["socket"], jt="socket_family")
    asm.op(_JEQ_K, arch.numbers["socketpair"], jt="socket_family")
    for name in REFUSED:
        number = arch.numbers.get(name)
        if number is None:
            if name in ARCH_SPECIFIC:
                continue
            raise SeccompError(f"seccomp: no number for {name} on {arch.machine}")
        asm.op(_JEQ_K, number, jt="eperm")
    asm.op(_RET_K, RET_ALLOW)
    asm.label("clone_flags")
    asm.op(_LD_W_ABS, _OFFSET_ARG0_LOW)
    asm.op(_JSET_K, CLONE_NAMESPACE_FLAGS, jt="eperm", jf="allow_late")
    asm.label("socket_family")
    asm.op(_LD_W_ABS, _OFFSET_ARG0_LOW)
    for family in ALLOWED_SOCKET_FAMILIES:
        asm.op(_JEQ_K, family, jt="allow_late")
    asm.label("eperm")
    asm.op(_RET_K, RET_ERRNO | errno.EPERM)
    asm.label("enosys")
    asm.op(_RET_K, RET_ERRNO | errno.ENOSYS)
    asm.label("kill")
    asm.op(_RET_K, RET_KILL_PROCESS)
    asm.label("allow_late")  # BPF jumps only forward: a second ALLOW for the arg checks
    asm.op(_RET_K, RET_ALLOW)
    return asm.assemble()


@functools.cache
def program() -> bytes:
    """This machine's filter as bytes (built once per process that asks)."""
    return build_program(arch_for_this_machine())


@functools.cache
def prepared() -> libc.SeccompFilter:
    """This machine's filter in C memory; the fork server builds it once."""
    return libc.SeccompFilter(program())


def install() -> None:
    """Install the run filter on the calling thread (and all it creates).

    Raises ``SeccompError`` on an unsupported machine, without no_new_privs,
    or when the kernel refuses the filter; the caller must not run user code
    then.
    """
    seccomp_filter = prepared()
    if libc.prctl(libc.PR_GET_NO_NEW_PRIVS) != 1:
        raise SeccompError("seccomp: no_new_privs is not set (install the filter after isolation.setup_run_init)")
    try:
        seccomp_filter.install()
    except OSError as exc:
        raise SeccompError(f"seccomp: the kernel refused the run filter: {exc}") from None
    if libc.prctl(libc.PR_GET_SECCOMP) != libc.SECCOMP_MODE_FILTER:
        raise SeccompError("seccomp: the filter is not in effect after installing it")
