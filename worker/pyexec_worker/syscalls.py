"""Syscall numbers and seccomp architecture ids of the machines pyexec runs on.

Owns: for x86_64 and aarch64, the ``AUDIT_ARCH_*`` value the kernel puts in
``seccomp_data.arch`` and the number of every syscall the run filter names.
Must not: decide which calls are refused (``seccomp`` does) or guess a
table for any other machine (an unknown machine is an error there).

Sources: the kernel's ``arch/x86/entry/syscalls/syscall_64.tbl`` and, for
aarch64, ``include/uapi/asm-generic/unistd.h`` (arm64 uses the generic
table). The x86_64 numbers were checked against this machine's
``/usr/include/x86_64-linux-gnu/asm/unistd_64.h`` and the aarch64 ones
against ``/usr/include/asm-generic/unistd.h`` (linux-libc-dev 6.1);
``open_tree_attr`` (467, kernel 6.15) is newer than those headers and comes
from the kernel's tables. Since kernel 5.1 new syscalls get the same number
on every architecture, hence the shared 4xx block.
"""

from __future__ import annotations

from dataclasses import dataclass

# include/uapi/linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7

# x86_64: a syscall number with this bit set is an x32-ABI call
# (arch/x86/include/uapi/asm/unistd.h __X32_SYSCALL_BIT); seccomp_data.arch
# still says x86_64 for it, so the filter must look at the number.
X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class Arch:
    """One machine: its seccomp arch id and syscall numbers."""

    machine: str
    audit_arch: int
    numbers: dict[str, int]
    # Numbers at or above this belong to another ABI on the same arch id.
    foreign_abi_floor: int | None = None


# Numbers shared by every architecture (kernel >= 5.1 numbering).
_UNIFIED = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "open_tree_attr": 467,
}

X86_64 = Arch(
    machine="x86_64",
    audit_arch=AUDIT_ARCH_X86_64,
    foreign_abi_floor=X32_SYSCALL_BIT,
    numbers={
        "socket": 41,
        "socketpair": 53,
        "clone": 56,
        "ptrace": 101,
        "syslog": 103,
        "uselib": 134,
        "vhangup": 153,
        "modify_ldt": 154,
        "pivot_root": 155,
        "chroot": 161,
        "acct": 163,
        "mount": 165,
        "umount2": 166,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "iopl": 172,
        "ioperm": 173,
        "init_module": 175,
        "delete_module": 176,
        "quotactl": 179,
        "lookup_dcookie": 212,
        "kexec_load": 246,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "unshare": 272,
        "perf_event_open": 298,
        "fanotify_init": 300,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "setns": 308,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kcmp": 312,
        "finit_module": 313,
        "kexec_file_load": 320,
        "bpf": 321,
        "userfaultfd": 323,
        **_UNIFIED,
    },
)

AARCH64 = Arch(
    machine="aarch64",
    audit_arch=AUDIT_ARCH_AARCH64,
    numbers={
        "lookup_dcookie": 18,
        "umount2": 39,
        "mount": 40,
        "pivot_root": 41,
        "chroot": 51,
        "vhangup": 58,
        "quotactl": 60,
        "acct": 89,
        "unshare": 97,
        "kexec_load": 104,
        "init_module": 105,
        "delete_module": 106,
        "syslog": 116,
        "ptrace": 117,
        "reboot": 142,
        "socket": 198,
        "socketpair": 199,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "clone": 220,
        "swapon": 224,
        "swapoff": 225,
        "perf_event_open": 241,
        "fanotify_init": 262,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "setns": 268,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "kcmp": 272,
        "finit_module": 273,
        "bpf": 280,
        "userfaultfd": 282,
        "kexec_file_load": 294,
        **_UNIFIED,
    },
)

BY_MACHINE = {arch.machine: arch for arch in (X86_64, AARCH64)}
