"""Zygote side of a notebook session: one spare kept alive, fed cells.

A worker that hosts a session (the service gives each session a worker of
its own, see docs/sessions.md) turns one ready spare into the session on a
``session`` frame and sends it each ``cell`` frame. The spare is a run like
any other (its own namespaces, tmpfs, seccomp filter and rlimits); it only
lives longer. A script error keeps it; a timeout, a memory error or a death
ends it (SIGKILL to its init ends its whole pid namespace), and the answer
says ``session_ended``.

Owns: the hand-off of the session's opening and of each cell (framed, see
``cells``), reading the answer and the cell's output under caps, the
per-cell wall-clock deadline, and the verdict. Must not: fork, run user
code, or trust anything the session wrote.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from . import cells, usage, verdict
from .capture import CappedPipe
from .outcome import Outcome
from .protocol import CellRequest, RunRequest, RunResult, SessionOpen
from .session import RESULT_SLACK, TEARDOWN_GRACE_S, Spare

# Outcomes after which the session's interpreter cannot be trusted to go on.
ENDING_OUTCOMES = frozenset({Outcome.TIMEOUT, Outcome.MEMORY_LIMIT, Outcome.KILLED, Outcome.WORKER_LOST})
# How long the opening (limits + input files) may take.
OPEN_TIMEOUT_S = 10.0
# Caps of the opening's answer (it carries no output worth keeping).
_OPEN_LIMITS = CellRequest(id=0, script="", timeout_ms=0, max_output_bytes=64 * 1024, max_result_bytes=1024)


class NotebookError(Exception):
    """The spare died before it took the session (no user code ran)."""


@dataclass
class _Exchange:
    """What one hand-off gave: the runner's frame (if any) and the output."""

    frame: bytes | None
    out: CappedPipe
    err: CappedPipe
    timed_out: bool
    overflow: bool
    started: float
    ended: float


class Notebook:
    """The worker's session: its spare, and whether it is still alive."""

    def __init__(self, spare: Spare) -> None:
        self.spare = spare
        self.alive = True

    def open(self, req: SessionOpen, control_fd: int, on_control: Callable[[], None]) -> RunResult:
        """Give the spare its limits and files; raises ``NotebookError`` if it died first."""
        payload = msgpack.packb(
            {
                "memory_bytes": req.memory_bytes,
                "timeout_ms": req.timeout_ms,
                "files": [(f.name, f.data) for f in req.files],
            },
            use_bin_type=True,
        )
        sent = cells.SESSION_MARK + cells.FRAME.pack(len(payload)) + payload
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        exchange = self._exchange(sent, deadline, _OPEN_LIMITS, control_fd, on_control)
        if exchange.frame is None and self.spare.start_cpu_us is None:
            self.alive = False
            raise NotebookError("the spare died before it took the session")
        result = self._result(req.id, exchange, _OPEN_LIMITS)
        if result.outcome != Outcome.OK:
            # The runner exits after a failed opening (e.g. a bad file).
            self.alive = False
            self.spare.kill()
            result.session_ended = True
        return result

    def cell(self, req: CellRequest, control_fd: int, on_control: Callable[[], None]) -> RunResult:
        """Run the next cell; a verdict in ``ENDING_OUTCOMES`` ends the session."""
        payload = msgpack.packb(
            {
                "script": req.script,
                "max_result_bytes": req.max_result_bytes,
                "max_figures": req.max_figures,
                "max_figures_bytes": req.max_figures_bytes,
            },
            use_bin_type=True,
        )
        sent = cells.FRAME.pack(len(payload)) + payload
        deadline = time.monotonic() + req.timeout_ms / 1000
        exchange = self._exchange(sent, deadline, req, control_fd, on_control)
        return self._result(req.id, exchange, req)

    def _exchange(
        self, sent: bytes, deadline: float, limits: CellRequest, control_fd: int, on_control: Callable[[], None]
    ) -> _Exchange:
        spare = self.spare
        started = time.monotonic()
        out = CappedPipe(spare.ends.stdout, limits.max_output_bytes)
        err = CappedPipe(spare.ends.stderr, limits.max_output_bytes)
        res = CappedPipe(spare.ends.result, limits.max_result_bytes + limits.max_figures_bytes + RESULT_SLACK)
        os.set_blocking(spare.ends.request, False)
        view = memoryview(sent)
        timed_out = False
        killed_at: float | None = None
        frame: bytes | None = None
        while True:
            frame = _whole_frame(res.data)
            if frame is not None or res.truncated:
                break
            now = time.monotonic()
            if spare.status.eof and (res.eof or killed_at is not None):
                break  # the init is gone: every writer is gone
            if killed_at is None and now >= deadline:
                # SECURITY: SIGKILL to pid 1 of the session's pid namespace
                # kills every process of it, sleeping or spinning alike.
                timed_out = spare.exit_status is None
                spare.kill()
                killed_at = now
            if killed_at is not None and now - killed_at > TEARDOWN_GRACE_S:
                break  # cannot happen short of a kernel bug; do not hang
            wait = deadline - now if killed_at is None else 0.05
            view = self._step(max(wait, 0), view, (out, err, res), control_fd, on_control)
        # The runner flushed fd 1/2 before its frame: their bytes are in the
        # pipes now (a child of the cell still writing may add more later,
        # which the next cell drains).
        out.read_ready()
        err.read_ready()
        return _Exchange(frame, out, err, timed_out, res.truncated, started, time.monotonic())

    def _step(
        self,
        wait_s: float,
        view: memoryview,
        pipes: tuple[CappedPipe, ...],
        control_fd: int,
        on_control: Callable[[], None],
    ) -> memoryview:
        """Handle what becomes readable (or writable) within ``wait_s``; return what is left to send."""
        spare = self.spare
        poller = select.poll()
        poller.register(control_fd, select.POLLIN)
        if not spare.status.eof:
            poller.register(spare.status.fd, select.POLLIN)
        by_fd = {pipe.fd: pipe for pipe in pipes if not pipe.eof}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        if view:
            poller.register(spare.ends.request, select.POLLOUT)
        for fd, events in poller.poll(wait_s * 1000 + 1):
            if fd == control_fd:
                on_control()
            elif fd == spare.status.fd:
                for line in spare.status.read_lines():
                    with contextlib.suppress(ValueError):
                        spare.status_line(line)
            elif fd in by_fd:
                by_fd[fd].read_ready()
            elif events & (select.POLLERR | select.POLLHUP):
                view = memoryview(b"")  # the runner is gone
            else:
                with contextlib.suppress(BlockingIOError, BrokenPipeError):
                    view = view[os.write(spare.ends.request, view) :]
        return view

    def _result(self, id_: int, exchange: _Exchange, limits: CellRequest) -> RunResult:
        spare = self.spare
        req = RunRequest(
            id=id_,
            script="",
            timeout_ms=limits.timeout_ms,
            memory_bytes=0,
            max_output_bytes=limits.max_output_bytes,
            max_result_bytes=limits.max_result_bytes,
            max_figures=limits.max_figures,
            max_figures_bytes=limits.max_figures_bytes,
        )
        display: str | None = None
        if exchange.timed_out:
            message = verdict.RunnerMessage(b"")
            outcome, result, error, tb = verdict.decide(timed_out=True, exit_status=None, message=message, req=req)
        elif exchange.frame is None:
            message = verdict.RunnerMessage(None if exchange.overflow else b"")
            outcome, result, error, tb = verdict.decide(
                timed_out=False, exit_status=spare.exit_status, message=message, req=req
            )
            if exchange.overflow and outcome == Outcome.KILLED:
                error = "the session wrote an oversized answer"
        else:
            message = verdict.RunnerMessage(exchange.frame)
            outcome, result, error, tb = verdict.decide(timed_out=False, exit_status=0, message=message, req=req)
            shown = message.fields.get("display") if message.fields else None
            if outcome == Outcome.OK and isinstance(shown, str):
                display = shown[: cells.MAX_DISPLAY]
        run_usage, figures, figures_truncated = verdict.extras(message, outcome, req)
        wall_ms = (exchange.ended - exchange.started) * 1000
        if run_usage is None:
            run_usage = usage.from_exit(wall_ms, None, None, None)
        if outcome in ENDING_OUTCOMES:
            self.alive = False
            spare.kill()
        return RunResult(
            id=id_,
            outcome=outcome,
            result=result,
            error=error,
            traceback=tb,
            stdout=bytes(exchange.out.data),
            stderr=bytes(exchange.err.data),
            stdout_truncated=exchange.out.truncated,
            stderr_truncated=exchange.err.truncated,
            duration_ms=wall_ms,
            usage=run_usage,
            figures=figures,
            figures_truncated=figures_truncated,
            display=display,
            session_ended=not self.alive,
        )


def _whole_frame(data: bytearray) -> bytes | None:
    """The frame's body once all of it arrived (the runner writes one per answer)."""
    if len(data) < cells.FRAME.size:
        return None
    (length,) = cells.FRAME.unpack_from(data)
    if len(data) < cells.FRAME.size + length:
        return None
    body = bytes(data[cells.FRAME.size : cells.FRAME.size + length])
    del data[: cells.FRAME.size + length]
    return body


def ended_result(id_: int, error: str) -> RunResult:
    """The answer to a cell for a worker that has no live session."""
    return RunResult(id=id_, outcome=Outcome.KILLED, error=error, session_ended=True)


def lost_result(id_: int, error: str) -> RunResult:
    """The answer when no spare could take the session."""
    return RunResult(id=id_, outcome=Outcome.WORKER_LOST, error=error, session_ended=True)
