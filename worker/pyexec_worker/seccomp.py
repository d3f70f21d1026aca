"""The run's seccomp filter: install the program the service compiled.

Owns: checking the machine and installing the filter. The policy (which
calls are refused, EPERM/ENOSYS/kill) and the BPF program itself come from
the service (``src/worker/seccomp_policy.rs``, compiled with seccompiler)
through the zygote's ``--seccomp-bpf``; nothing here knows a syscall
number. Must not: fork, touch pipes or run user code; ``spare`` installs
the filter in the runner right after ``isolation.setup_run`` (capabilities
gone, no_new_privs set), before any user code, so the runner and everything
user code starts carry it (filters are inherited across fork, clone and
execve and can never be removed).
"""

from __future__ import annotations

import os
import struct

from . import libc

# The machines the service compiles a filter for.
SUPPORTED_MACHINES = ("x86_64", "aarch64")

_prepared: libc.SeccompFilter | None = None


class SeccompError(RuntimeError):
    """The filter cannot be installed; no script may run."""


def _check_machine() -> None:
    machine = os.uname().machine
    if machine not in SUPPORTED_MACHINES:
        supported = ", ".join(SUPPORTED_MACHINES)
        raise SeccompError(
            f"seccomp: no syscall table for machine {machine!r} (pyexec supports {supported}); "
            "refusing to run scripts without the syscall filter"
        )
    if struct.calcsize("P") != 8:
        raise SeccompError(f"seccomp: this Python is not a 64-bit {machine} build; its syscalls would use another ABI")


def prepare(program: bytes) -> libc.SeccompFilter:
    """Put ``program`` in C memory for ``install``; the fork server calls it once."""
    global _prepared  # one filter per fork server, inherited by its spares
    _check_machine()
    if not program:
        raise SeccompError(
            "seccomp: the service passed no run filter (--seccomp-bpf); "
            "refusing to run scripts without the syscall filter"
        )
    try:
        _prepared = libc.SeccompFilter(program)
    except ValueError as exc:
        raise SeccompError(f"seccomp: the run filter is malformed: {exc}") from None
    return _prepared


def prepared() -> libc.SeccompFilter | None:
    """The run filter ``prepare`` put in C memory, if any (the run init gets it too)."""
    return _prepared


def install() -> None:
    """Install the prepared run filter on the calling thread (and all it creates).

    Raises ``SeccompError`` on an unsupported machine, without a filter,
    without no_new_privs, or when the kernel refuses the filter; the caller
    must not run user code then.
    """
    _check_machine()
    if _prepared is None:
        raise SeccompError(
            "seccomp: no run filter was prepared (the service passed none); "
            "refusing to run scripts without the syscall filter"
        )
    if libc.prctl(libc.PR_GET_NO_NEW_PRIVS) != 1:
        raise SeccompError("seccomp: no_new_privs is not set (install the filter after isolation.setup_run)")
    try:
        _prepared.install()
    except OSError as exc:
        raise SeccompError(f"seccomp: the kernel refused the run filter: {exc}") from None
    if libc.prctl(libc.PR_GET_SECCOMP) != libc.SECCOMP_MODE_FILTER:
        raise SeccompError("seccomp: the filter is not in effect after installing it")
