"""Zygote side of one spare and of the run it serves.

Owns: waiting for a spare to become ready, handing it a request, reading
its stdout/stderr/result/status pipes under caps, enforcing the wall-clock
deadline (SIGKILL to the run init ends the whole pid namespace), reaping
the init, and deciding the verdict from what the run left (``verdict``).
Must not: fork, run user code, or trust anything the run wrote.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable

import msgpack

from . import runcgroup, usage, verdict
from .capture import CappedPipe, LineReader
from .outcome import Outcome
from .protocol import RunRequest, RunResult
from .spare import ZygoteEnds

# Room for the runner message's own fields around a max-size result.
RESULT_SLACK = 256 * 1024
# How long a run may take to die once its init is gone or killed.
TEARDOWN_GRACE_S = 5.0
# How long a spare's runner may take to take its request and say ``start``.
# It is waiting in poll(2) for it: only a stopped (SIGSTOP) or dying runner
# takes longer. Then no user code ran, and the request goes to another spare.
START_TIMEOUT_S = 1.5


def log_fault(component: str, what: str) -> None:
    """One stderr line the supervisor counts in ``pyexec_worker_faults_total``.

    ``component`` is ``fork_server`` or ``spare``: a fault of a process below
    the zygote that the zygote absorbed (or, for a run init killed from
    outside, answered ``worker_lost``).
    """
    print(f"pyexec zygote: fault {component}: {what}", file=sys.stderr, flush=True)


class SpareError(Exception):
    """The spare could not be set up, or died before it got its request."""


class Spare:
    """A pre-forked run waiting for its request."""

    def __init__(self, ends: ZygoteEnds) -> None:
        self.ends = ends
        self.status = LineReader(ends.status)
        os.set_blocking(ends.status, False)
        self.init_pid: int | None = None
        # The run's cgroup leaf (``--run-cgroup``), named by the fork server.
        self.leaf: runcgroup.Leaf | None = None
        self.exit_status: int | None = None
        # The runner's CPU when its request came; its rusage when it ended.
        self.start_cpu_us: int | None = None
        self.exit_cpu_us: int | None = None
        self.exit_max_rss_kib: int | None = None
        self._reaped = False
        self._runner_ready = False
        self.reported_error = False  # an ``error`` line, not a silent death
        self._open = set(ends.as_list())

    def close(self, fd: int) -> None:
        """Close one of our pipe ends once (a second close could hit a reused fd)."""
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the runner reports ready; raise ``SpareError`` if not."""
        deadline = time.monotonic() + timeout_s
        poller = select.poll()
        poller.register(self.status.fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SpareError(f"spare not ready after {timeout_s:g} s")
            if not poller.poll(remaining * 1000):
                continue
            for line in self.status.read_lines():
                self.status_line(line)
            # Both lines are needed: the runner's "ready" can overtake the
            # fork server's "pid", and without the pid there is no kill.
            if self.is_ready:
                return
            if self.status.eof:
                raise SpareError("the spare exited during setup without saying why")

    @property
    def is_ready(self) -> bool:
        """The runner waits for its request and the init's pid is known."""
        return self._runner_ready and self.init_pid is not None

    @property
    def reaped(self) -> bool:
        return self._reaped

    def poll_setup(self) -> None:
        """Read the status lines available now (the fd polled readable).

        Raises ``SpareError`` when the spare reports an error or exits
        before it is ready.
        """
        for line in self.status.read_lines():
            self.status_line(line)
        if self.status.eof and not self.is_ready:
            raise SpareError("the spare exited during setup without saying why")

    def close_all(self) -> None:
        """Close every pipe end still open."""
        for fd in self.ends.as_list():
            self.close(fd)

    def status_line(self, line: str) -> str:
        word, _, rest = line.partition(" ")
        if word == "pid" and self.init_pid is None:
            pid, *leaf = rest.split()
            self.init_pid = int(pid)
            self.leaf = runcgroup.from_status(leaf)
        elif word == "ready":
            self._runner_ready = True
        elif word == "start" and self.start_cpu_us is None:
            self.start_cpu_us = int(rest)
        elif word == "exit" and self.exit_status is None:
            fields = [int(field) for field in rest.split()]
            self.exit_status = fields[0]
            if len(fields) == 3:
                self.exit_cpu_us, self.exit_max_rss_kib = fields[1], fields[2]
        elif word == "error":
            self.reported_error = True
            raise SpareError(rest)
        return word

    def poll_idle(self) -> bool:
        """A ready spare's status fd polled readable: read it; False if it died.

        A waiting runner writes nothing; an ``exit`` or ``error`` line, or
        EOF (the init is gone), means the spare is dead.
        """
        with contextlib.suppress(SpareError, ValueError):
            for line in self.status.read_lines():
                self.status_line(line)
        return self.exit_status is None and not self.status.eof and not self.reported_error

    def kill(self) -> None:
        """SIGKILL the run init: the kernel then kills its whole pid namespace."""
        if self.init_pid is not None and not self._reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)

    def reap(self) -> None:
        """Wait for the init (our child: the fork server clones it with CLONE_PARENT)."""
        if self.init_pid is None or self._reaped:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.init_pid, 0)
        self._reaped = True

    def discard(self) -> None:
        """Kill, reap and close everything (shutdown or a broken spare)."""
        self.kill()
        self.reap()
        for fd in self.ends.as_list():
            self.close(fd)


def hand_off(spare: Spare, req: RunRequest) -> None:
    """Send the request to the runner and close the pipe (= end of request).

    Raises ``SpareError`` when the runner is gone or does not read it within
    ``START_TIMEOUT_S`` (a stopped runner must not wedge the zygote).
    """
    payload = msgpack.packb(
        {
            "script": req.script,
            "timeout_ms": req.timeout_ms,
            "memory_bytes": req.memory_bytes,
            "max_result_bytes": req.max_result_bytes,
            "files": [(f.name, f.data) for f in req.files],
            "max_figures": req.max_figures,
            "max_figures_bytes": req.max_figures_bytes,
        },
        use_bin_type=True,
    )
    view = memoryview(payload)
    deadline = time.monotonic() + START_TIMEOUT_S
    os.set_blocking(spare.ends.request, False)
    poller = select.poll()
    poller.register(spare.ends.request, select.POLLOUT)
    try:
        while view:
            try:
                view = view[os.write(spare.ends.request, view) :]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpareError(f"the runner did not read its request in {START_TIMEOUT_S:g} s") from None
                poller.poll(remaining * 1000)
    except BrokenPipeError:
        raise SpareError("the spare's runner died before its request") from None
    finally:
        spare.close(spare.ends.request)


class _Watch:
    """The pipes of one run being read until its init is gone."""

    def __init__(self, spare: Spare, req: RunRequest, control_fd: int) -> None:
        self.spare = spare
        self.out = CappedPipe(spare.ends.stdout, req.max_output_bytes)
        self.err = CappedPipe(spare.ends.stderr, req.max_output_bytes)
        self.res = CappedPipe(spare.ends.result, req.max_result_bytes + req.max_figures_bytes + RESULT_SLACK)
        self.pipes = {p.fd: p for p in (self.out, self.err, self.res)}
        self.control_fd = control_fd
        self.poller = select.poll()
        for fd in (*self.pipes, spare.status.fd, control_fd):
            self.poller.register(fd, select.POLLIN)

    def step(self, wait_s: float, on_control: Callable[[], None]) -> None:
        """Handle whatever becomes readable within ``wait_s``."""
        for fd, _events in self.poller.poll(max(wait_s, 0) * 1000):
            if fd == self.control_fd:
                on_control()
            elif fd == self.spare.status.fd:
                for line in self.spare.status.read_lines():
                    # After the runner said ready only the init writes here.
                    with contextlib.suppress(SpareError, ValueError):
                        self.spare.status_line(line)
                if self.spare.status.eof:
                    self.poller.unregister(fd)
            else:
                self.pipes[fd].read_ready()
                if self.pipes[fd].eof:
                    self.poller.unregister(fd)

    def complete(self) -> bool:
        """The runner closed all three pipes after writing a result message.

        Then the run's answer is known without waiting for the (slow, ~3 ms)
        teardown of its processes: the zygote kills the init and replies.
        """
        return self.out.eof and self.err.eof and self.res.eof and bool(self.res.data)

    def drain(self) -> None:
        """Read what is left; every writer is dead once the init is reaped."""
        for pipe in (self.out, self.err, self.res):
            pipe.read_ready()


def run(spare: Spare, req: RunRequest, control_fd: int, on_control: Callable[[], None]) -> RunResult:
    """Serve ``req`` with ``spare``; ``on_control`` handles control-socket input."""
    started = time.monotonic()
    hand_off(spare, req)
    deadline = started + req.timeout_ms / 1000
    start_by = time.monotonic() + START_TIMEOUT_S
    watch = _Watch(spare, req, control_fd)
    timed_out = False
    killed_at: float | None = None
    while not spare.status.eof and not watch.complete():
        now = time.monotonic()
        if spare.start_cpu_us is None and now >= start_by:
            # No ``start``: the runner is stopped or dying, and no user code
            # ran. Another spare takes the request.
            spare.kill()
            raise SpareError(f"the spare's runner did not start within {START_TIMEOUT_S:g} s")
        if killed_at is None and now >= deadline:
            # SECURITY: SIGKILL to pid 1 of the run's pid namespace kills
            # every process of the run, sleeping or spinning alike.
            timed_out = spare.exit_status is None
            spare.kill()
            killed_at = now
        if killed_at is not None and now - killed_at > TEARDOWN_GRACE_S:
            break  # cannot happen short of a kernel bug; do not hang
        wait = deadline - now if killed_at is None else 0.05
        if spare.start_cpu_us is None:
            wait = min(wait, start_by - now)
        watch.step(wait, on_control)
    ended = time.monotonic()
    exit_status = spare.exit_status
    if spare.status.eof:
        spare.reap()  # the init is gone, so are all writers: drain to EOF
        watch.drain()
        if spare.start_cpu_us is None and not timed_out:
            # The runner died before it said ``start``: no user code ran.
            raise SpareError("the spare died before its run started")
    else:
        # Complete early: whatever the run still does is cut off now; the
        # caller reaps the init after replying (off the critical path).
        spare.kill()
        exit_status = 0 if exit_status is None else exit_status
    message = verdict.RunnerMessage(None if watch.res.truncated else bytes(watch.res.data))
    outcome, result, error, tb = verdict.decide(
        timed_out=timed_out,
        exit_status=exit_status,
        message=message,
        req=req,
    )
    if outcome == Outcome.WORKER_LOST:
        log_fault("spare", f"the run init (pid {spare.init_pid}) vanished during the run")
    run_usage, figures, figures_truncated = verdict.extras(message, outcome, req)
    if run_usage is None:
        run_usage = usage.from_exit(
            (ended - started) * 1000, spare.start_cpu_us, spare.exit_cpu_us, spare.exit_max_rss_kib
        )
    for fd in spare.ends.as_list():
        spare.close(fd)
    return RunResult(
        id=req.id,
        outcome=outcome,
        result=result,
        error=error,
        traceback=tb,
        stdout=bytes(watch.out.data),
        stderr=bytes(watch.err.data),
        stdout_truncated=watch.out.truncated,
        stderr_truncated=watch.err.truncated,
        duration_ms=(ended - started) * 1000,
        usage=run_usage,
        figures=figures,
        figures_truncated=figures_truncated,
    )


def lost_result(req: RunRequest, error: str) -> RunResult:
    """The answer when no spare could take ``req``: not the script's verdict."""
    return RunResult(id=req.id, outcome=Outcome.WORKER_LOST, error=error)
