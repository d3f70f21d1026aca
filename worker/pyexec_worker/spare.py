"""One pre-forked, isolated run: the process chain below the fork server.

Owns, in the children only: the runner, from the moment the native spawn
(``isolation.spawn_run``: one clone(2) into fresh namespaces, one copy of
the warm interpreter) returns into it as pid 2, through its isolation and
seccomp filter, up to the point where it blocks for its request. Its init,
pid 1, is the small run-init program (worker/native/run_init.c): it reaps
and reports the runner's end. Must not: hold the control socket or any
zygote fd once isolation starts, or run user code before the filter is on.

Pipes (created by the fork server, zygote ends sent to the zygote):
request (zygote -> runner, closed = end of request), result (runner ->
zygote, one msgpack map), stdout/stderr (the runner's fd 1/2) and status
(text lines to the zygote: ``pid N`` from the fork server, ``ready`` from
the runner, ``exit WAITSTATUS`` from the init, ``error MSG`` from any).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass, replace

from . import cells, idlewalk, isolation, libc, runcgroup, runner, seccomp, usage
from .config import ZygoteConfig

# Largest request a runner accepts (the zygote already capped the frame).
_MAX_REQUEST = 1 << 30


@dataclass(frozen=True)
class ChildEnds:
    """The run's ends of the pipes."""

    request: int
    result: int
    stdout: int
    stderr: int
    status: int


@dataclass(frozen=True)
class ZygoteEnds:
    """The zygote's ends of the pipes, in the order they are passed."""

    request: int
    result: int
    stdout: int
    stderr: int
    status: int

    def as_list(self) -> list[int]:
        return [self.request, self.result, self.stdout, self.stderr, self.status]


def fork_spare(
    cfg: ZygoteConfig, spawner: libc.RunSpawner, outer_uid: int, outer_gid: int, parent_sock: socket.socket
) -> tuple[int, ZygoteEnds]:
    """Spawn a run (init and runner); return the init's pid and the zygote's ends."""
    req_r, req_w = os.pipe()
    res_r, res_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    child = ChildEnds(req_r, res_w, out_w, err_w, st_w)
    theirs = ZygoteEnds(req_w, res_r, out_r, err_r, st_r)
    leaf: runcgroup.Leaf | None = None
    try:
        # The run's own cgroup, made now, while no request waits for it.
        if cfg.run_cgroup:
            leaf = runcgroup.Leaf.make(cfg.run_cgroup, cfg.run_pids)
        pid = isolation.spawn_run(spawner, st_w, seccomp.prepared())
    except OSError:
        for fd in (req_r, req_w, res_r, res_w, out_r, out_w, err_r, err_w, st_r, st_w):
            os.close(fd)
        if leaf is not None:
            leaf.remove()
        raise
    if pid == 0:
        parent_sock.detach()  # its fd is closed below; never let GC close a reused number
        _run_runner(cfg, outer_uid, outer_gid, child, leaf)  # never returns
    # The zygote needs the init's pid to kill it at the deadline, and the
    # leaf to cap, read and remove it.
    _report(st_w, f"pid {pid}{runcgroup.status_field(leaf)}")
    for fd in (req_r, res_w, out_w, err_w, st_w):
        os.close(fd)
    return pid, theirs


def close_fds_except(keep: set[int]) -> None:
    """Close every fd not in ``keep`` (close_range(2) under the hood)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _report(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (line.replace("\n", " ")[:3000] + "\n").encode())


def _isolate(cfg: ZygoteConfig, uid: int, gid: int, ends: ChildEnds, leaf: runcgroup.Leaf | None) -> ChildEnds:
    """The runner's first steps, before anything else: isolate and filter it."""
    if leaf is not None:
        # Before anything else: every process of the run descends from this
        # one, so the leaf's caps and counters cover the whole run.
        leaf.join()
    # SECURITY: the control socket, the fork-server socket, the worker
    # cgroup's directory fds (through which a run could reach all of
    # cgroupfs and raise its own leaf's memory.max) and every other
    # zygote fd are gone before anything else happens.
    close_fds_except({0, 1, 2, ends.request, ends.result, ends.stdout, ends.stderr, ends.status})
    ends = _raise_result_fd(ends)
    # SECURITY: a session and process group of the run's own. Process
    # groups span pid namespaces and kill(2) compares host uids, so
    # without this killpg(0, SIGSTOP) in user code stopped the zygote,
    # the fork server and the other spares (seen in the adversarial suite).
    os.setsid()
    isolation.map_run_ids(uid, gid)
    isolation.setup_run(cfg)
    # SECURITY: the syscall filter goes on the runner before user code
    # exists, so every process of the run inherits it and none can shed it.
    # (The init runs only run-init, which never runs user code and which
    # nothing in the run can signal, trace or read.) A machine without a
    # filter table raises here: the spare reports an error and no script
    # ever runs unfiltered.
    seccomp.install()
    return ends


def _raise_result_fd(ends: ChildEnds) -> ChildEnds:
    """Move the result pipe to ``isolation.RESULT_FD``, above the run's RLIMIT_NOFILE.

    Must run before the rlimits are lowered (dup2 refuses a target at or
    above RLIMIT_NOFILE; an fd already there stays valid). A script that
    closes "every" fd the usual way (``os.closerange(3, 256)``, or up to
    ``SC_OPEN_MAX``) then leaves the result channel alone.
    """
    os.dup2(ends.result, isolation.RESULT_FD, inheritable=False)
    os.close(ends.result)
    return replace(ends, result=isolation.RESULT_FD)


def _run_runner(cfg: ZygoteConfig, uid: int, gid: int, ends: ChildEnds, leaf: runcgroup.Leaf | None) -> None:
    try:
        ends = _isolate(cfg, uid, gid, ends, leaf)
        _prepare_runner(ends)
        runner.prefault()
        _report(ends.status, "ready")
        idlewalk.wait_for_request(ends.request)
        head = os.read(ends.request, 1)
        if head == cells.SESSION_MARK:
            # A notebook session: this runner serves cells until EOF.
            cells.serve(ends.request, ends.result, ends.status, _report)  # never returns
        request = head + _read_all(ends.request)
        # Closed before "start": a runner that still holds its request pipe
        # has not said "start" (the fault suite relies on this to tell a
        # waiting runner from a running one).
        os.close(ends.request)
        meter = usage.Meter()
        _report(ends.status, f"start {meter.cpu_start_us}")
        # SECURITY: user code must not be able to forge "exit" lines.
        os.close(ends.status)
    except BaseException as exc:
        _report(ends.status, f"error runner: {exc}")
        os._exit(1)
    message = runner.run_request(request, meter)
    _flush_stdio()
    try:
        # Closing fd 1/2 and then the result pipe tells the zygote the run
        # is complete (unless a child still holds them) before this large
        # process has finished tearing itself down. The script may have
        # closed 1 or 2 itself: that must not cost it its result.
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            runner.write_message(ends.result, message)
        except OSError:
            # Only user code closes (or replaces) this fd: say so, via the
            # exit status the init reports (verdict.decide names it).
            os._exit(isolation.RESULT_LOST_STATUS)
        with contextlib.suppress(OSError):
            os.close(ends.result)
    finally:
        os._exit(0)


def _prepare_runner(ends: ChildEnds) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(ends.stdout, 1)
    os.dup2(ends.stderr, 2)
    os.close(devnull)
    os.close(ends.stdout)
    os.close(ends.stderr)
    os.chdir("/tmp")
    # SECURITY: the run sees a fixed environment, never the zygote's.
    os.environ.clear()
    os.environ.update(isolation.fixed_environment(sys.prefix))
    sys.argv[:] = ["<script>"]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [p for p in sys.path if p != here]
    # SECURITY: every fork copies the zygote's numpy RNG state: without a
    # reseed two runs would draw the same "random" numbers.
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # None: fresh entropy from the OS
    random.seed(os.urandom(32))
    # The runner is the user's own process: normal /proc/self ownership.
    # The init (run-init) makes itself non-dumpable, so this opens nothing of it.
    libc.prctl(libc.PR_SET_DUMPABLE, 1)


def _read_all(fd: int) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > _MAX_REQUEST:
            raise ValueError("request too large")
        chunks.append(chunk)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(BaseException):
            stream.flush()
