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
from pyexec_worker import libc, seccomp, syscalls

REPO = Path(__file__).resolve().parents[2]
SANDBOX_PYTHON = str(sandbox.VENV / "bin" / "python3")
EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS
ALLOW = seccomp.RET_ALLOW
KILL = seccomp.RET_KILL_PROCESS
ARCHES = [syscalls.X86_64, syscalls.AARCH64]
CONDITIONAL = {"clone", "clone3", "socket", "socketpair"}
# What glibc passes for pthread_create and for fork (no namespace flag).
THREAD_FLAGS = 0x003D0F00
FORK_FLAGS = 0x01200000 | signal.SIGCHLD

# --- the program as data --------------------------------------------------------


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def evaluate(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run the classic BPF program on one struct seccomp_data."""
    padded = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *padded)
    code = decode(program)
    pc, acc = 0, 0
    for _ in range(len(code)):
        op, jt, jf, k = code[pc]
        if op == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x06:  # ret k
            return k
        elif op in (0x15, 0x35, 0x45):  # jeq / jge / jset k
            taken = acc == k if op == 0x15 else acc >= k if op == 0x35 else bool(acc & k)
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc}")
        pc += 1
    raise AssertionError("program ran off its end")


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.machine)
def test_arch_is_checked_first_and_a_foreign_arch_is_killed(arch: syscalls.Arch) -> None:
    program = seccomp.build_program(arch)
    first, second = decode(program)[:2]
    assert first == (0x20, 0, 0, 4), "load seccomp_data.arch"
    assert second[0] == 0x15 and second[3] == arch.audit_arch
    for foreign in (0x40000003, 0x40000028, syscalls.AUDIT_ARCH_X86_64 ^ syscalls.AUDIT_ARCH_AARCH64 ^ arch.audit_arch):
        assert evaluate(program, arch.numbers["ptrace"], foreign) == KILL
        assert evaluate(program, 0, foreign) == KILL, "even read(2) through another ABI"


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.machine)
def test_every_refused_call_returns_eperm(arch: syscalls.Arch) -> None:
    program = seccomp.build_program(arch)
    present = [name for name in seccomp.REFUSED if name in arch.numbers]
    missing = set(seccomp.REFUSED) - set(present)
    assert missing <= seccomp.ARCH_SPECIFIC, missing
    assert len(present) >= 45
    for name in present:
        assert evaluate(program, arch.numbers[name], arch.audit_arch) == EPERM, name


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.machine)
def test_everything_else_is_allowed(arch: syscalls.Arch) -> None:
    program = seccomp.build_program(arch)
    refused = {arch.numbers[n] for n in seccomp.REFUSED if n in arch.numbers}
    conditional = {arch.numbers[n] for n in CONDITIONAL}
    allowed = [nr for nr in range(600) if nr not in refused | conditional]
    assert len(allowed) > 400
    for nr in allowed:
        assert evaluate(program, nr, arch.audit_arch) == ALLOW, nr


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.machine)
def test_clone3_is_enosys_and_clone_is_checked_for_namespace_flags(arch: syscalls.Arch) -> None:
    program = seccomp.build_program(arch)
    clone = arch.numbers["clone"]
    assert evaluate(program, arch.numbers["clone3"], arch.audit_arch) == ENOSYS
    assert evaluate(program, clone, arch.audit_arch, (THREAD_FLAGS,)) == ALLOW
    assert evaluate(program, clone, arch.audit_arch, (FORK_FLAGS,)) == ALLOW
    assert evaluate(program, clone, arch.audit_arch, (0x4111,)) == ALLOW, "vfork-style"
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert evaluate(program, clone, arch.audit_arch, (flag | FORK_FLAGS,)) == EPERM, hex(flag)
    # The kernel uses only the low 32 bits of clone's flags, as the filter does.
    assert evaluate(program, clone, arch.audit_arch, ((1 << 40) | FORK_FLAGS,)) == ALLOW


@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.machine)
def test_sockets_only_for_unix_and_inet(arch: syscalls.Arch) -> None:
    program = seccomp.build_program(arch)
    for name in ("socket", "socketpair"):
        nr = arch.numbers[name]
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            assert evaluate(program, nr, arch.audit_arch, (family, socket.SOCK_STREAM)) == ALLOW
        # netlink, packet, AF_ALG, vsock, bluetooth, AF_UNSPEC, nonsense
        for family in (16, 17, 38, 40, 31, 0, 2**31 - 1):
            assert evaluate(program, nr, arch.audit_arch, (family, socket.SOCK_RAW)) == EPERM, (name, family)
        # socket's domain is an int: high bits do not change the verdict.
        assert evaluate(program, nr, arch.audit_arch, ((1 << 32) | 16,)) == EPERM


def test_x32_numbers_are_killed_on_x86_64() -> None:
    program = seccomp.build_program(syscalls.X86_64)
    getpid = 39
    assert evaluate(program, getpid, syscalls.AUDIT_ARCH_X86_64) == ALLOW
    assert evaluate(program, syscalls.X32_SYSCALL_BIT | getpid, syscalls.AUDIT_ARCH_X86_64) == KILL
    assert evaluate(program, 0xFFFFFFFF, syscalls.AUDIT_ARCH_X86_64) == KILL


def _header_numbers(path: Path, prefix: str) -> dict[str, int]:
    text = path.read_text()
    return {m[1]: int(m[2]) for m in re.finditer(rf"^#define {prefix}(\w+)\s+(\d+)\s*$", text, re.M)}


@pytest.mark.parametrize(
    ("arch", "header"),
    [
        (syscalls.X86_64, Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")),
        (syscalls.AARCH64, Path("/usr/include/asm-generic/unistd.h")),
    ],
    ids=["x86_64", "aarch64"],
)
def test_numbers_match_the_kernel_headers(arch: syscalls.Arch, header: Path) -> None:
    if not header.exists():
        pytest.skip(f"{header} not installed")
    known = _header_numbers(header, "__NR_")
    checked = [name for name in arch.numbers if name in known]
    assert len(checked) >= len(arch.numbers) - 1, "only syscalls newer than the headers may be missing"
    for name in checked:
        assert arch.numbers[name] == known[name], name


def test_unknown_machine_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = os.uname_result(("Linux", "h", "6.18", "#1", "riscv64"))
    monkeypatch.setattr(seccomp.os, "uname", lambda: fake)
    with pytest.raises(seccomp.SeccompError, match=r"no syscall table for machine 'riscv64'.*refusing to run"):
        seccomp.arch_for_this_machine()


def test_docs_list_every_refused_call() -> None:
    doc = (REPO / "docs" / "seccomp.md").read_text()
    for name in (*seccomp.REFUSED, "clone3", "clone", "socket", "socketpair"):
        assert f"`{name}`" in doc, name


# --- the real kernel ------------------------------------------------------------

supported = pytest.mark.skipif(os.uname().machine not in syscalls.BY_MACHINE, reason="no syscall table here")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(name: str, *args: int) -> int:
    """The call by number; returns the errno, or 0 on success."""
    nr = seccomp.arch_for_this_machine().numbers[name]
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
    return _libc.syscall(ctypes.c_long(syscalls.X32_SYSCALL_BIT | 39))


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
