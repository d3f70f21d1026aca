"""Makes every syscall the run filter refuses, inside a real run.

Used by tests/seccomp.rs. main() returns {"errno": {call: errno (0 if it
succeeded)}, "unlisted": [refused names this script does not call],
"status": the run's Seccomp lines}. The numbers are this script's own copy
of the kernel's tables, independent of the policy in src/worker/seccomp_policy.rs (libc numbers).
Every call gets arguments that would do nothing harmful even unfiltered.
"""

import ctypes
import os
import socket

X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "process_madvise": 440,
    "pidfd_getfd": 438, "kcmp": 312, "bpf": 321, "perf_event_open": 298, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 323, "keyctl": 250,
    "add_key": 248, "request_key": 249, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "open_tree_attr": 467, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 272,
    "setns": 308, "open_by_handle_at": 304, "name_to_handle_at": 303, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "acct": 163, "swapon": 167, "swapoff": 168, "quotactl": 179,
    "quotactl_fd": 443, "lookup_dcookie": 212, "fanotify_init": 300, "syslog": 103,
    "vhangup": 153, "modify_ldt": 154, "uselib": 134, "iopl": 172, "ioperm": 173,
    "clone": 56, "clone3": 435,
}
AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "process_madvise": 440,
    "pidfd_getfd": 438, "kcmp": 272, "bpf": 280, "perf_event_open": 241, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 282, "keyctl": 219,
    "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "pivot_root": 41,
    "chroot": 51, "open_tree": 428, "open_tree_attr": 467, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 97,
    "setns": 268, "open_by_handle_at": 265, "name_to_handle_at": 264, "kexec_load": 104,
    "kexec_file_load": 294, "reboot": 142, "init_module": 105, "finit_module": 273,
    "delete_module": 106, "acct": 89, "swapon": 224, "swapoff": 225, "quotactl": 60,
    "quotactl_fd": 443, "lookup_dcookie": 18, "fanotify_init": 262, "syslog": 116,
    "vhangup": 58, "clone": 220, "clone3": 435,
}
# Arguments other than all zeros, where zeros could do something if unfiltered.
ARGS = {
    "ptrace": (16, 2**31 - 1),  # PTRACE_ATTACH to a pid that cannot exist (not TRACEME)
    "process_vm_readv": (2**31 - 1,),
    "process_vm_writev": (2**31 - 1,),
    "process_madvise": (-1,),
    "pidfd_getfd": (-1,),
    "kcmp": (2**31 - 1, 2**31 - 1),
    "bpf": (0xFFFF,),  # no such command
    "setns": (-1,),
    "syslog": (10,),  # SYSLOG_ACTION_SIZE_BUFFER: read-only
    "modify_ldt": (0,),  # read the (empty) LDT into NULL, 0 bytes
    "kexec_file_load": (-1, -1),
    "finit_module": (-1,),
    "quotactl_fd": (-1,),
    "open_by_handle_at": (-1,),
    "name_to_handle_at": (-1,),
    "clone3": (0, 0),  # size 0: EINVAL if it ran
}
CLONE_NEW = {"CLONE_NEWUSER": 0x10000000, "CLONE_NEWNET": 0x40000000, "CLONE_NEWNS": 0x00020000,
             "CLONE_NEWPID": 0x20000000, "CLONE_NEWCGROUP": 0x02000000}
SIGCHLD = 17

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def raw(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if ret == -1 else 0


def clone_errno(nr, flags):
    ctypes.set_errno(0)
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_long(flags | SIGCHLD), None, None, None, None)
    if pid == 0:
        os._exit(0)  # only if the filter let it through: the child leaves at once
    if pid > 0:
        os.waitpid(pid, 0)
        return 0
    return ctypes.get_errno()


def socket_errno(make, family):
    try:
        for s in make(family):
            s.close()
        return 0
    except OSError as exc:
        return exc.errno


def main():
    table = {"x86_64": X86_64, "aarch64": AARCH64}[os.uname().machine]
    out = {}
    for name, nr in table.items():
        if name != "clone":
            out[name] = raw(nr, *ARGS.get(name, ()))
    for flag, bit in CLONE_NEW.items():
        out[f"clone({flag})"] = clone_errno(table["clone"], bit)
    for family in ("AF_NETLINK", "AF_PACKET", "AF_VSOCK", "AF_ALG"):
        number = getattr(socket, family)
        out[f"socket({family})"] = socket_errno(lambda f: [socket.socket(f, socket.SOCK_RAW)], number)
        out[f"socketpair({family})"] = socket_errno(lambda f: socket.socketpair(f, socket.SOCK_DGRAM), number)
    with open("/proc/self/status") as f:
        status = [line.strip() for line in f if line.startswith("Seccomp")]
    return {"errno": out, "status": status}
