"""Inside the run (the runner, pid 2): execute the script and report.

Owns: placing the input files, compiling the script, executing it as a
module whose ``__name__`` is not ``"__main__"``, calling ``main()`` once
with no arguments, rendering the figures left open, turning the outcome
into the runner message ``{"outcome", "result", "error", "traceback"}``
(plus ``figures``/``figures_truncated`` when any, and ``usage``) and
writing it to the result pipe. Must not: touch the
control socket or any zygote fd (it never has them), or trust that user
code left the interpreter intact (every step after user code is guarded).
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import msgpack

from . import figures, inputs, isolation, jsonify, tracebacks
from .outcome import Outcome
from .usage import Meter

MODULE_NAME = "__script__"

# The service's own fixed script for ``prefault`` (never user code).
_PREFAULT_SCRIPT = "import json\n\ndef main():\n    return {'ok': [1, 2.5, 'x', None, True, json.dumps([])]}\n"


def _message(
    outcome: str, result: bytes | None = None, error: str | None = None, tb: str | None = None
) -> dict[str, Any]:
    return {"outcome": outcome, "result": result, "error": error, "traceback": tb}


def run_request(raw: bytes, meter: Meter) -> dict[str, Any]:
    """Apply the run's limits, place its files, execute its script."""
    request = msgpack.unpackb(raw, raw=False)
    isolation.limit_run(request["memory_bytes"], request["timeout_ms"])
    try:
        inputs.place(request.get("files", ()))
    except inputs.InputFileError as exc:
        message = _message(Outcome.RUNTIME_ERROR, error=str(exc))
    except MemoryError as exc:
        message = _message(Outcome.MEMORY_LIMIT, error=tracebacks.error_line(exc))
    else:
        # Input files are modules too (`import lib` of a lib.py in `files`):
        # the run's /tmp goes last on sys.path, after the standard library
        # and site-packages, so a file named json.py cannot shadow `json`.
        sys.path.append(inputs.RUN_DIR)
        message = execute(
            request["script"],
            request["max_result_bytes"],
            max_figures=request.get("max_figures", 0),
            max_figures_bytes=request.get("max_figures_bytes", 0),
        )
    message["usage"] = meter.finish()
    return message


def prefault() -> None:
    """Walk the run path once with a fixed script, before the request comes.

    A runner is a fresh fork, so the first write to each page of the warm
    interpreter costs a copy-on-write fault. Taking the common path here
    (unpack, compile, exec, main(), JSON, pack) while the spare waits moves
    those faults off the request's critical path: a trivial run drops from
    ~0.8 ms to ~0.15 ms at no extra CPU, since the run would fault the same
    pages. Leaves nothing behind: the module and its source lines are removed.
    """
    meter = Meter()
    msgpack.unpackb(msgpack.packb({"script": _PREFAULT_SCRIPT, "timeout_ms": 1, "files": []}), raw=False)
    message = execute(_PREFAULT_SCRIPT, 1 << 20, max_figures=1, max_figures_bytes=1)
    message["usage"] = meter.finish()
    msgpack.packb(message, use_bin_type=True)
    sys.modules.pop(MODULE_NAME, None)
    tracebacks.forget_source()


def _exception_message(exc: BaseException) -> dict[str, Any]:
    outcome = Outcome.MEMORY_LIMIT if isinstance(exc, MemoryError) else Outcome.RUNTIME_ERROR
    return _message(outcome, error=tracebacks.error_line(exc), tb=tracebacks.format_user_traceback(exc))


def execute(script: str, max_result_bytes: int, max_figures: int = 0, max_figures_bytes: int = 0) -> dict[str, Any]:
    """Run ``script``, call its ``main()``, render its open figures; never raises."""
    try:
        code = compile(script, tracebacks.SCRIPT_NAME, "exec", dont_inherit=True)
    except MemoryError as exc:
        return _message(Outcome.MEMORY_LIMIT, error=tracebacks.error_line(exc))
    except Exception as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        error = tracebacks.syntax_error_line(exc)
        return _message(Outcome.SYNTAX_ERROR, error=error, tb=tracebacks.format_syntax_error(exc))
    tracebacks.register_source(script)
    module = types.ModuleType(MODULE_NAME)
    # Registered so dataclasses, pickle and typing can find the module.
    sys.modules[MODULE_NAME] = module
    try:
        exec(code, module.__dict__)
        main = module.__dict__.get("main")
        if main is None:
            return _message(Outcome.MISSING_MAIN, error="main() is not defined")
        if not callable(main):
            return _message(Outcome.MISSING_MAIN, error=f"main is not callable (it is a {type(main).__name__})")
        value = main()
    except BaseException as exc:  # incl. SystemExit and KeyboardInterrupt
        return _exception_message(exc)
    message = _serialize(value, max_result_bytes)
    if message["outcome"] == Outcome.OK and max_figures > 0:
        _add_figures(message, max_figures, max_figures_bytes)
    return message


def _add_figures(message: dict[str, Any], max_figures: int, max_bytes: int) -> None:
    """Render the figures still open into ``message`` (after main() returned)."""
    try:
        rendered, truncated = figures.render_open_figures(max_figures, max_bytes)
    except figures.FigureRenderError as exc:
        cause = exc.__cause__ or exc
        message.update(
            _message(
                Outcome.RUNTIME_ERROR,
                error=f"{exc}: {tracebacks.error_line(cause)}",
                tb=tracebacks.format_user_traceback(cause),
            )
        )
        return
    except MemoryError as exc:
        message.update(_message(Outcome.MEMORY_LIMIT, error=f"rendering the figures: {tracebacks.error_line(exc)}"))
        return
    except BaseException as exc:  # user code broke pyplot itself
        message.update(
            _message(Outcome.RUNTIME_ERROR, error=f"rendering the figures failed: {tracebacks.error_line(exc)}")
        )
        return
    if rendered or truncated:
        message["figures"] = rendered
        message["figures_truncated"] = truncated


def _serialize(value: Any, max_result_bytes: int) -> dict[str, Any]:
    try:
        data = jsonify.dumps(value)
    except jsonify.NotJSON as exc:
        return _message(Outcome.RESULT_NOT_JSON, error=tracebacks.cap(str(exc), 8192))
    except MemoryError as exc:
        return _message(Outcome.MEMORY_LIMIT, error=tracebacks.error_line(exc))
    except RecursionError:
        return _message(Outcome.RESULT_NOT_JSON, error="result: nested too deeply to convert to JSON")
    except BaseException as exc:  # user code ran during conversion (__str__, .item())
        return _message(Outcome.RESULT_NOT_JSON, error=f"result: conversion failed: {tracebacks.error_line(exc)}")
    if len(data) > max_result_bytes:
        return _message(
            Outcome.RESULT_TOO_LARGE,
            error=f"result is {len(data)} bytes of JSON, over the limit of {max_result_bytes} bytes",
        )
    return _message(Outcome.OK, result=data)


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write the runner message to the result pipe (all of it, or fail)."""
    view = memoryview(msgpack.packb(message, use_bin_type=True))
    while view:
        written = os.write(fd, view)
        view = view[written:]
