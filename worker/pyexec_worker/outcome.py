"""How a run ended: the one outcome vocabulary of the worker.

Owns: the outcome names the zygote writes in a ``result`` frame's
``outcome`` (msgpack str; a ``StrEnum`` packs as its plain value, so the
wire is unchanged) and the runner writes to its result pipe. They are the
Rust side's ``protocol::Outcome`` serde names, which ``tests/vocabulary.rs``
checks against this class. Must not: import anything of the worker (the
runner, inside the sandbox, imports it too).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """A run's verdict; every value but ``ok`` is also the API's error ``kind``."""

    OK = "ok"
    SYNTAX_ERROR = "syntax_error"
    MISSING_MAIN = "missing_main"
    RUNTIME_ERROR = "runtime_error"
    RESULT_NOT_JSON = "result_not_json"
    RESULT_TOO_LARGE = "result_too_large"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    KILLED = "killed"
    WORKER_LOST = "worker_lost"


# What the runner itself may report; the zygote decides the rest (timeout,
# killed, worker_lost) from what it observed.
RUNNER_OUTCOMES = frozenset(
    {
        Outcome.OK,
        Outcome.SYNTAX_ERROR,
        Outcome.MISSING_MAIN,
        Outcome.RUNTIME_ERROR,
        Outcome.RESULT_NOT_JSON,
        Outcome.RESULT_TOO_LARGE,
        Outcome.MEMORY_LIMIT,
    }
)
