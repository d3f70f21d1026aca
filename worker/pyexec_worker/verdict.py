"""Decide a run's outcome from what the zygote observed.

Owns: the mapping (deadline hit, runner wait status, runner message) ->
(outcome, result, error, traceback), and validating the runner message as
untrusted input (user code can write anything to the result pipe, or close
it). Must not: raise on any input, or do I/O.

A runner killed by SIGKILL is ``killed`` here; ``after_oom`` turns it into
``memory_limit`` when the run's own cgroup leaf counted an OOM kill (with
``--run-cgroup``), and the supervisor does when the worker cgroup's
``oom_kill`` counter rose during the run (a host-wide counter would blame a
run for an OOM kill anywhere on the node). A run init that vanished without reporting its
runner's end is ``worker_lost``: nothing inside the run can kill its pid
namespace's init (pid_namespaces(7)), so that was done from outside.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import msgpack

from . import isolation, usage
from .figures import png_size
from .outcome import RUNNER_OUTCOMES, Outcome
from .protocol import RunRequest

# error/traceback texts the zygote forwards (the runner caps at 64 KiB).
MAX_TEXT = 128 * 1024

Verdict = tuple[Outcome, "bytes | None", "str | None", "str | None"]


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class RunnerMessage:
    """What the runner wrote to its result pipe, decoded once.

    ``raw`` is the bytes as read (None when they overflowed the pipe's cap),
    ``fields`` the msgpack map they hold (None when they hold no map).
    ``decide`` and ``extras`` both read ``fields``.
    """

    __slots__ = ("fields", "raw")

    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw
        self.fields: dict[str, Any] | None = None
        if raw:
            try:
                fields = msgpack.unpackb(raw, raw=False, strict_map_key=True)
            except Exception:
                return
            if isinstance(fields, dict):
                self.fields = fields


def decide(*, timed_out: bool, exit_status: int | None, message: RunnerMessage, req: RunRequest) -> Verdict:
    """The verdict of one run."""
    if timed_out:
        return Outcome.TIMEOUT, None, f"the run exceeded its timeout of {req.timeout_ms / 1000:g} s", None
    if exit_status is None:
        return Outcome.WORKER_LOST, None, "the service lost the run's sandbox (its init was killed from outside)", None
    if os.WIFSIGNALED(exit_status):
        sig = os.WTERMSIG(exit_status)
        if sig == signal.SIGXCPU:
            return Outcome.TIMEOUT, None, "the run exceeded its CPU time limit", None
        return Outcome.KILLED, None, f"the run was killed by {_signal_name(sig)}", None
    code = os.WEXITSTATUS(exit_status)
    if message.raw is None:
        return Outcome.KILLED, None, "the run wrote an oversized result message", None
    if not message.raw and code == isolation.RESULT_LOST_STATUS:
        error = (
            f"the script closed the run's result channel (file descriptor {isolation.RESULT_FD}), "
            "so its result was lost: close only the file descriptors the script opened itself"
        )
        return Outcome.RUNTIME_ERROR, None, error, None
    if not message.raw:
        return Outcome.KILLED, None, f"the run exited with status {code} without a result", None
    return _from_fields(message.fields, req)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("text field is not a str")
    return value[:MAX_TEXT]


def _from_fields(msg: dict[str, Any] | None, req: RunRequest) -> Verdict:
    try:
        if msg is None:
            raise ValueError("not a msgpack map")
        outcome = msg.get("outcome")
        if not isinstance(outcome, str) or outcome not in RUNNER_OUTCOMES:
            raise ValueError("unknown outcome")
        outcome = Outcome(outcome)
        result = msg.get("result")
        error, tb = _text(msg.get("error")), _text(msg.get("traceback"))
    except Exception:
        return Outcome.KILLED, None, "the run wrote an invalid result message", None
    if outcome != Outcome.OK:
        return outcome, None, error or outcome, tb
    if not isinstance(result, bytes):
        return Outcome.KILLED, None, "the run wrote an invalid result message", None
    if len(result) > req.max_result_bytes:
        limit = req.max_result_bytes
        return Outcome.RESULT_TOO_LARGE, None, f"result is {len(result)} bytes, over the limit of {limit} bytes", None
    if not is_json(result):
        return Outcome.RESULT_NOT_JSON, None, "the run's result bytes are not valid UTF-8 JSON", None
    return Outcome.OK, result, None, None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_json(data: bytes) -> bool:
    """Whether ``data`` is strict UTF-8 JSON (no NaN/Infinity): the supervisor embeds it as is."""
    try:
        json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError, MemoryError):
        return False
    return True


def extras(
    message: RunnerMessage, outcome: str, req: RunRequest
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], bool]:
    """The runner's usage and figures, validated: (usage, figures, truncated).

    Figures count only for an ``ok`` run, within the request's caps; each
    must be a PNG, and its size is read from its own IHDR, not from what
    the runner claims.
    """
    msg = message.fields
    if msg is None:
        return None, [], False
    run_usage = usage.from_runner(msg.get("usage"))
    if outcome != Outcome.OK:
        return run_usage, [], False
    figures: list[dict[str, Any]] = []
    truncated = msg.get("figures_truncated") is True
    raw_figures = msg.get("figures")
    total = 0
    for figure in raw_figures if isinstance(raw_figures, list) else []:
        data = figure.get("data") if isinstance(figure, dict) else None
        size = png_size(data) if isinstance(data, bytes) else None
        if size is None or figure.get("format") != "png":
            continue
        if len(figures) == req.max_figures or total + len(data) > req.max_figures_bytes:
            truncated = True
            break
        total += len(data)
        figures.append({"format": "png", "data": data, "width": size[0], "height": size[1]})
    return run_usage, figures, truncated


# Outcomes an OOM kill in the run's leaf explains: the victim was the runner
# or the init (killed, worker_lost), or only some child while main() still
# returned (ok).
OOM_EXPLAINS = frozenset({Outcome.KILLED, Outcome.WORKER_LOST, Outcome.OK})


def after_oom(
    outcome: str, error: str | None, oom_kills: int, hit_own_limit: bool, memory_bytes: int
) -> tuple[str, str | None, bool]:
    """``(outcome, error, changed)`` once the run's leaf counted ``oom_kills``.

    The leaf is the run's alone (made for it, removed after it). A kill
    there after the leaf's own limit was hit (``hit_own_limit``) was the run's
    doing: its processes together went past its ``memory``. A kill there
    without that hit came from the worker's cap above: the worker ran out
    of memory while the run kept within its own (the zygote grew, or the
    worker's cap was lowered). That is the service's fault, never the
    script's: ``worker_lost``, which the supervisor retries once elsewhere.
    """
    if oom_kills <= 0 or outcome not in OOM_EXPLAINS:
        return outcome, error, False
    if not hit_own_limit:
        return (
            Outcome.WORKER_LOST,
            f"the worker ran out of memory outside this run's own limit; the kernel killed {oom_kills} of the run's "
            "processes",
            True,
        )
    mib = memory_bytes / (1 << 20)
    return (
        Outcome.MEMORY_LIMIT,
        f"the run's processes together exceeded its memory limit of {mib:g} MiB; {oom_kills} of them were killed",
        True,
    )
