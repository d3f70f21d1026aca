"""The run's seccomp filter: its program as data, then the real kernel.

The structure tests execute the BPF program with a small interpreter (the
semantics of the four opcodes the filter uses) for every syscall number of
both supported machines. The behaviour tests install the filter in a forked
child of pytest (no_new_privs set, as in the run init) and compare each
refused call with the same call in an unfiltered control child, so an EPERM
is shown to come from the filter and not from a missing privilege.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import json
import mmap
import os
import re
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import sandbox
from pyexec_worker import libc, seccomp

REPO = Path(__file__).resolve().parents[2]
SANDBOX_PYTHON = str(sandbox.VENV / "bin" / "python3")
# linux/seccomp.h, linux/audit.h: the test's own copies of the ABI.
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
ALLOW = 0x7FFF0000
KILL = 0x80000000
X32_SYSCALL_BIT = 0x40000000
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}
MACHINE = os.uname().machine
# What the policy (src/worker/seccomp_policy.rs) must refuse with EPERM: the
# test's expectation, kept apart from the policy on purpose.
REFUSED = (
    *("ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp"),
    *("bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd"),
    *("keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root", "chroot", "open_tree"),
    *("open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"),
    *("unshare", "setns", "open_by_handle_at", "name_to_handle_at", "kexec_load", "kexec_file_load"),
    *("reboot", "init_module", "finit_module", "delete_module", "acct", "swapon", "swapoff", "quotactl"),
    *("quotactl_fd", "lookup_dcookie", "fanotify_init", "syslog", "vhangup"),
)
X86_ONLY = ("modify_ldt", "uselib", "iopl", "ioperm")
CONDITIONAL = {"clone", "clone3", "socket", "socketpair"}
# What glibc passes for pthread_create and for fork (no namespace flag).
THREAD_FLAGS = 0x003D0F00
FORK_FLAGS = 0x01200000 | signal.SIGCHLD

supported = pytest.mark.skipif(MACHINE not in AUDIT_ARCH, reason="pyexec has no run filter for this machine")


def _header_numbers(path: Path) -> dict[str, int]:
    text = path.read_text()
    numbers = {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.M)}
    numbers.setdefault("open_tree_attr", 467)  # kernel 6.15, newer than linux-libc-dev 6.1
    return numbers


NUMBERS = _header_numbers(HEADERS[MACHINE]) if MACHINE in HEADERS and HEADERS[MACHINE].exists() else {}


def program() -> bytes:
    """The run filter exactly as the service passes it to the zygote."""
    return bytes.fromhex(sandbox.run_filter_hex())


@pytest.fixture(autouse=True)
def _prepared() -> None:
    if MACHINE in AUDIT_ARCH:
        seccomp.prepare(program())


# --- the program as data --------------------------------------------------------


def decode(code: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("=HBBI", code, i) for i in range(0, len(code), 8)]


def evaluate(code: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run the classic BPF program on one struct seccomp_data."""
    padded = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *padded)
    insns = decode(code)
    pc, acc = 0, 0
    for _ in range(len(insns)):
        op, jt, jf, k = insns[pc]
        if op == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x06:  # ret k
            return k
        elif op == 0x54:  # and k
            acc &= k
        elif op == 0x05:  # ja k
            pc += k
        elif op in (0x15, 0x25, 0x35, 0x45):  # jeq / jgt / jge / jset k
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc}")
        pc += 1
    raise AssertionError("program ran off its end")


def _needs_numbers() -> None:
    if not NUMBERS:
        pytest.skip(f"no kernel header with syscall numbers for {MACHINE}")


@supported
def test_a_foreign_arch_is_killed() -> None:
    _needs_numbers()
    arch = AUDIT_ARCH[MACHINE]
    for foreign in (0x40000003, 0x40000028, AUDIT_ARCH["x86_64"] ^ AUDIT_ARCH["aarch64"] ^ arch):
        assert evaluate(program(), NUMBERS["ptrace"], foreign) == KILL
        assert evaluate(program(), 0, foreign) == KILL, "even read(2) through another ABI"


@supported
def test_every_refused_call_returns_eperm_and_everything_else_is_allowed() -> None:
    _needs_numbers()
    arch = AUDIT_ARCH[MACHINE]
    names = (*REFUSED, *X86_ONLY) if MACHINE == "x86_64" else REFUSED
    refused = {NUMBERS[name] for name in names}
    for name in names:
        assert evaluate(program(), NUMBERS[name], arch) == EPERM, name
    conditional = {NUMBERS[n] for n in CONDITIONAL}
    allowed = [nr for nr in range(600) if nr not in refused | conditional]
    assert len(allowed) > 400
    for nr in allowed:
        assert evaluate(program(), nr, arch) == ALLOW, nr


@supported
def test_clone3_is_enosys_and_clone_is_checked_for_namespace_flags() -> None:
    _needs_numbers()
    arch, clone = AUDIT_ARCH[MACHINE], NUMBERS["clone"]
    assert evaluate(program(), NUMBERS["clone3"], arch) == ENOSYS
    assert evaluate(program(), clone, arch, (THREAD_FLAGS,)) == ALLOW
    assert evaluate(program(), clone, arch, (FORK_FLAGS,)) == ALLOW
    assert evaluate(program(), clone, arch, (0x4111,)) == ALLOW, "vfork-style"
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert evaluate(program(), clone, arch, (flag | FORK_FLAGS,)) == EPERM, hex(flag)
    # The kernel uses only the low 32 bits of clone's flags, as the filter does.
    assert evaluate(program(), clone, arch, ((1 << 40) | FORK_FLAGS,)) == ALLOW


@supported
def test_sockets_only_for_unix_and_inet() -> None:
    _needs_numbers()
    arch = AUDIT_ARCH[MACHINE]
    for name in ("socket", "socketpair"):
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            assert evaluate(program(), NUMBERS[name], arch, (family,)) == ALLOW
        for family in (socket.AF_NETLINK, socket.AF_PACKET, 40, 38, 0, 255):  # 40 vsock, 38 alg
            assert evaluate(program(), NUMBERS[name], arch, (family,)) == EPERM, family


@pytest.mark.skipif(MACHINE != "x86_64", reason="x32 exists only on x86_64")
def test_x32_numbers_are_killed_on_x86_64() -> None:
    getpid = 39
    assert evaluate(program(), getpid, AUDIT_ARCH["x86_64"]) == ALLOW
    assert evaluate(program(), X32_SYSCALL_BIT | getpid, AUDIT_ARCH["x86_64"]) == KILL
    assert evaluate(program(), 0xFFFFFFFF, AUDIT_ARCH["x86_64"]) == KILL


def test_unknown_machine_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = os.uname_result(("Linux", "h", "6.18", "#1", "riscv64"))
    monkeypatch.setattr(seccomp.os, "uname", lambda: fake)
    with pytest.raises(seccomp.SeccompError, match=r"no syscall table for machine 'riscv64'.*refusing to run"):
        seccomp.install()


def test_no_filter_from_the_service_fails_closed() -> None:
    with pytest.raises(seccomp.SeccompError, match=r"passed no run filter"):
        seccomp.prepare(b"")


def test_docs_list_every_refused_call() -> None:
    doc = (REPO / "docs" / "seccomp.md").read_text()
    for name in (*REFUSED, *X86_ONLY, "clone3", "clone", "socket", "socketpair"):
        assert f"`{name}`" in doc, name


# --- the real kernel ------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(name: str, *args: int) -> int:
    """The call by number; returns the errno, or 0 on success."""
    nr = NUMBERS[name]
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if ret == -1 else 0


def in_child(body: Callable[[], object], filtered: bool, no_new_privs: bool = True) -> tuple[object, int]:
    """Run ``body`` in a forked child (with the run filter if ``filtered``).

    Returns what it returned (JSON round trip) and the child's wait status.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            if no_new_privs:
                libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            if filtered:
                seccomp.install()
            out = json.dumps(body()).encode()
            os.write(write_end, out)
            code = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"child raised": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return (json.loads(b"".join(chunks)) if chunks else None), status


def refused_calls() -> dict[str, int]:
    """Each call with arguments that are harmless even if it ran (errno or 0)."""
    out = {
        # PTRACE_ATTACH to a pid that cannot exist: ESRCH unfiltered. (Not
        # TRACEME: pytest would become the tracer and the child would stop.)
        "ptrace": raw_syscall("ptrace", 16, 2**31 - 1),
        "bpf": raw_syscall("bpf", 0xFFFF, 0, 0),  # invalid command
        "clone3": raw_syscall("clone3", 0, 0),  # size 0: EINVAL unfiltered
    }
    try:
        libc.mount("tmpfs", "/nonexistent-pyexec-seccomp-test", "tmpfs", 0, None)
        out["mount"] = 0
    except OSError as exc:
        out["mount"] = exc.errno
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
        out["socket(AF_NETLINK)"] = 0
    except OSError as exc:
        out["socket(AF_NETLINK)"] = exc.errno
    try:
        pid = libc.clone(libc.CLONE_NEWUSER)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        out["clone(CLONE_NEWUSER)"] = 0
    except OSError as exc:
        out["clone(CLONE_NEWUSER)"] = exc.errno
    # Last: unfiltered, it moves the control child into a new user namespace.
    out["unshare"] = raw_syscall("unshare", libc.CLONE_NEWUSER)
    return out


@supported
def test_refused_calls_get_eperm_from_the_filter() -> None:
    filtered, status = in_child(refused_calls, filtered=True)
    assert os.waitstatus_to_exitcode(status) == 0, filtered
    expected = {name: errno.EPERM for name in filtered}
    expected["clone3"] = errno.ENOSYS
    assert filtered == expected
    control, status = in_child(refused_calls, filtered=False)
    assert os.waitstatus_to_exitcode(status) == 0, control
    # Unfiltered, these calls do something else: the EPERMs above are the filter's.
    assert control["ptrace"] == errno.ESRCH
    assert control["socket(AF_NETLINK)"] == 0
    assert control["clone3"] == errno.EINVAL
    assert control["bpf"] != errno.EPERM or os.geteuid() != 0


def normal_work() -> dict[str, object]:
    out: dict[str, object] = {}
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(sum(range(1000))))
    thread.start()
    thread.join()
    out["thread"] = box
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        out["pool"] = sorted(pool.map(lambda x: x * x, range(8)))
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out["subprocess"] = subprocess.run(["/bin/true"], check=False).returncode
    r, w = os.pipe()
    os.write(w, b"x")
    out["pipe"] = os.read(r, 1).decode()
    a, b = socket.socketpair(socket.AF_UNIX)
    a.sendall(b"y")
    out["socketpair"] = b.recv(1).decode()
    socket.socket(socket.AF_INET6).close()
    # numpy and pandas live in the sandbox venv: exec its Python (the filter
    # survives execve) and let OpenBLAS start its thread pool.
    code = (
        "import numpy, pandas; a = numpy.ones((300, 300)); "
        "df = pandas.DataFrame({'k': [1, 2, 1], 'v': [1.0, 2.0, 3.0]}); "
        "print(int((a @ a).sum()), df.groupby('k')['v'].sum().to_dict())"
    )
    env = {"OPENBLAS_NUM_THREADS": "4", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([SANDBOX_PYTHON, "-c", code], capture_output=True, text=True, env=env, check=False)
    out["numpy"] = done.stdout.strip() or done.stderr[-500:]
    out["seccomp"] = libc.prctl(libc.PR_GET_SECCOMP)
    return out


@supported
@pytest.mark.skipif(not os.path.exists(SANDBOX_PYTHON), reason="needs the sandbox venv (numpy, pandas)")
def test_threads_fork_subprocess_pipes_and_numpy_still_work() -> None:
    out, status = in_child(normal_work, filtered=True)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out == {
        "thread": [499500],
        "pool": [0, 1, 4, 9, 16, 25, 36, 49],
        "fork": 7,
        "subprocess": 0,
        "pipe": "x",
        "socketpair": "y",
        "numpy": "27000000 {1: 4.0, 2: 2.0}",
        "seccomp": libc.SECCOMP_MODE_FILTER,
    }


def _x32_getpid() -> int:
    return _libc.syscall(ctypes.c_long(X32_SYSCALL_BIT | 39))


def _int80_getpid() -> int:
    """getpid through the i386 ABI (int 0x80) from this 64-bit process."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20; int 0x80; ret
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 ABIs")
@pytest.mark.parametrize("call", [_x32_getpid, _int80_getpid], ids=["x32", "int80"])
def test_another_abi_kills_the_process(call: Callable[[], int]) -> None:
    control, status = in_child(call, filtered=False)
    if not os.WIFEXITED(status):
        pytest.skip(f"this kernel does not offer the ABI at all (status {status:#x})")
    assert isinstance(control, int)
    _out, status = in_child(call, filtered=True)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, hex(status)


@supported
def test_install_refuses_without_no_new_privs() -> None:
    def attempt() -> str:
        try:
            seccomp.install()
        except seccomp.SeccompError as exc:
            return str(exc)
        return "installed"

    out, status = in_child(attempt, filtered=False, no_new_privs=False)
    assert os.waitstatus_to_exitcode(status) == 0
    assert isinstance(out, str) and "no_new_privs is not set" in out
