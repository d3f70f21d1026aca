"""Resource usage of one run: measured in the runner, or rebuilt by the zygote.

What the numbers count (also in docs/internals.md, "Resource usage"):

- ``wall_ms``: from the runner having read its whole request to it having
  rendered its figures, just before it writes its result (limits, input
  files, compile, the script, ``main()``, JSON, figures). When the runner
  cannot report (killed, timed out), the zygote's span from the hand-off
  to the end of the run.
- ``cpu_ms``: user + system CPU of the runner over that same span, plus
  every child process it waited for (``RUSAGE_CHILDREN``); the spare's
  warm-up before the request (prefault, idle pandas walk) is excluded.
  For a run killed by a signal, the run init's ``wait4`` rusage of the
  runner minus the runner's CPU at request time ("start" status line).
  Unknown (None) after a wall-clock timeout: the zygote kills the whole
  run, nothing is left to ask.
- ``max_rss_kib``: ``ru_maxrss`` of the runner (and of the largest child
  it waited for): its peak resident set over its life. A fork starts with
  the warm zygote's resident pages mapped, so this includes the pages it
  shares with the zygote (~90-110 MiB for a trivial run), not only what
  the run allocated.

Must not: trust what a runner reports (``from_runner`` validates it; a
script can only misreport its own run).
"""

from __future__ import annotations

import math
import resource
import time
from typing import Any

Usage = dict[str, Any]


def cpu_us(ru: resource.struct_rusage) -> int:
    """User + system CPU of an rusage, in microseconds."""
    return round((ru.ru_utime + ru.ru_stime) * 1e6)


class Meter:
    """Started when the runner has its request; ``finish`` gives the usage."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu_start_us = cpu_us(resource.getrusage(resource.RUSAGE_SELF))

    def finish(self) -> Usage:
        wall_ms = (time.monotonic() - self.started) * 1000
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu_us(me) - self.cpu_start_us + cpu_us(children)
        return {
            "wall_ms": wall_ms,
            "cpu_ms": max(cpu, 0) / 1000,
            "max_rss_kib": max(me.ru_maxrss, children.ru_maxrss),
        }


def exit_line(wait_status: int, ru: resource.struct_rusage) -> str:
    """The run init's status line for the runner's end, with its rusage."""
    return f"exit {wait_status} {cpu_us(ru)} {ru.ru_maxrss}"


def from_exit(wall_ms: float, start_cpu_us: int | None, exit_cpu_us: int | None, max_rss_kib: int | None) -> Usage:
    """Usage rebuilt by the zygote for a run whose runner did not report."""
    cpu_ms = None
    if start_cpu_us is not None and exit_cpu_us is not None:
        cpu_ms = max(exit_cpu_us - start_cpu_us, 0) / 1000
    return {"wall_ms": wall_ms, "cpu_ms": cpu_ms, "max_rss_kib": max_rss_kib}


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def from_runner(value: Any) -> Usage | None:
    """The runner's usage map, if well-formed; None otherwise."""
    if not isinstance(value, dict) or set(value) != {"wall_ms", "cpu_ms", "max_rss_kib"}:
        return None
    rss = value["max_rss_kib"]
    if not (_number(value["wall_ms"]) and _number(value["cpu_ms"]) and type(rss) is int and 0 <= rss < 2**63):
        return None
    return {"wall_ms": float(value["wall_ms"]), "cpu_ms": float(value["cpu_ms"]), "max_rss_kib": rss}
