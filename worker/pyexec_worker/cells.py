"""Inside a notebook session's runner (pid 2): run cells, keep their globals.

A notebook session is a spare that is kept alive: the runner, instead of
one script and ``main()``, serves cells until its request pipe closes.
Every cell runs in one namespace (the module ``__session__``), so globals,
imports and ``/tmp`` files persist; the value of a cell's last expression
is its result (converted like ``main()``'s), or ``display`` (its ``repr``)
when it is not JSON.

Framing (both pipes): a u32 big-endian length, then one msgpack map. The
zygote sends ``SESSION_MARK`` first, so a runner can tell a session from a
one-shot run by its request's first byte (a one-shot request is a bare
msgpack map, whose first byte is never ``S``).

Owns: the session's limits (applied once: the memory cap covers the whole
session), its input files, and the cell loop. Must not: touch any zygote fd
(it has none), or trust that a cell left the interpreter intact (every step
after user code is guarded).
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import shutil
import struct
import sys
import traceback
import types
from typing import Any, NoReturn

import msgpack

from . import inputs, isolation, jsonify, runner, tracebacks
from .outcome import Outcome
from .usage import Meter

SESSION_MARK = b"S"
FRAME = struct.Struct(">I")
MODULE_NAME = "__session__"
# repr() of a non-JSON value is cut here.
MAX_DISPLAY = 64 * 1024
# matplotlib's writable config dir in the session's own tmpfs.
MATPLOTLIB_DIR = "/dev/shm/pyexec-mplconfig"
# Largest cell frame a runner accepts (the zygote capped the control frame).
MAX_CELL = 1 << 30


class CellChannelClosed(Exception):
    """The zygote closed the request pipe: the session ends."""


def read_frame(fd: int) -> dict[str, Any]:
    """One length-prefixed msgpack map from ``fd`` (blocking)."""
    head = _read_exact(fd, FRAME.size)
    (length,) = FRAME.unpack(head)
    if length > MAX_CELL:
        raise ValueError(f"cell frame of {length} bytes is too large")
    value = msgpack.unpackb(_read_exact(fd, length), raw=False)
    if not isinstance(value, dict):
        raise ValueError("cell frame is not a map")
    return value


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 16))
        if not chunk:
            raise CellChannelClosed
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return FRAME.pack(len(body)) + body


def write_frame(fd: int, message: dict[str, Any]) -> None:
    view = memoryview(encode_frame(message))
    while view:
        view = view[os.write(fd, view) :]


def serve(request_fd: int, result_fd: int, status_fd: int, report: Any) -> NoReturn:
    """The session's life: open (limits, files), then cells until EOF."""
    try:
        opening = read_frame(request_fd)
        meter = Meter()
        report(status_fd, f"start {meter.cpu_start_us}")
        # SECURITY: user code must not be able to forge "exit" lines.
        os.close(status_fd)
    except BaseException as exc:
        report(status_fd, f"error runner: {exc}")
        os._exit(1)
    # SECURITY: the memory cap is set once, for the whole session (every
    # cell's allocations count against it); the CPU cap is the session's
    # whole lifetime, a backstop behind the zygote's per-cell wall clock.
    _writable_matplotlib_config()
    isolation.limit_run(opening["memory_bytes"], opening["timeout_ms"])
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    try:
        inputs.place(opening.get("files", ()))
        answer: dict[str, Any] = {"outcome": Outcome.OK, "result": b"null"}
    except inputs.InputFileError as exc:
        answer = {"outcome": Outcome.RUNTIME_ERROR, "error": str(exc)}
    except MemoryError as exc:
        answer = {"outcome": Outcome.MEMORY_LIMIT, "error": tracebacks.error_line(exc)}
    answer["usage"] = meter.finish()
    _answer(result_fd, answer)
    if answer["outcome"] != Outcome.OK:
        os._exit(0)
    number = 0
    while True:
        try:
            cell = read_frame(request_fd)
        except CellChannelClosed:
            os._exit(0)
        except BaseException:
            os._exit(1)
        number += 1
        meter = Meter()
        message = run_cell(module.__dict__, cell, number)
        message["usage"] = meter.finish()
        _answer(result_fd, message)


def _writable_matplotlib_config() -> None:
    """Give a cell that imports matplotlib a writable copy of the prebuilt config.

    A session runs on a plain spare (no matplotlib imported). matplotlib
    accepts only a writable MPLCONFIGDIR: given the read-only prebuilt one it
    warns on stderr and rebuilds its font cache. The copy (a few hundred KiB)
    goes into the session's own /dev/shm, not its /tmp (the user's files).
    """
    prebuilt = os.environ.get("MPLCONFIGDIR", "")
    if not prebuilt or not os.path.isdir(prebuilt) or not os.path.isdir(MATPLOTLIB_DIR.rsplit("/", 1)[0]):
        return
    with contextlib.suppress(OSError):
        shutil.copytree(prebuilt, MATPLOTLIB_DIR)
        os.environ["MPLCONFIGDIR"] = MATPLOTLIB_DIR


def _answer(fd: int, message: dict[str, Any]) -> None:
    """Flush fd 1/2 first (so the zygote has the output), then the frame."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    try:
        write_frame(fd, message)
    except OSError:
        # Only user code closes (or replaces) this fd: the session is lost.
        os._exit(isolation.RESULT_LOST_STATUS)


def cell_name(number: int) -> str:
    return f"<cell {number}>"


def split_last_expression(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    """The cell's statements, and its last expression (if it ends with one)."""
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        assert isinstance(last, ast.Expr)
        return tree, ast.Expression(last.value)
    return tree, None


def run_cell(namespace: dict[str, Any], cell: dict[str, Any], number: int) -> dict[str, Any]:
    """Run one cell in ``namespace``; never raises."""
    code = cell.get("script", "")
    name = cell_name(number)
    try:
        tree = ast.parse(code, name, "exec")
        body, last = split_last_expression(tree)
        compiled = compile(body, name, "exec", dont_inherit=True)
        compiled_last = compile(last, name, "eval", dont_inherit=True) if last is not None else None
    except MemoryError as exc:
        return {"outcome": Outcome.MEMORY_LIMIT, "error": tracebacks.error_line(exc)}
    except Exception as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        return {
            "outcome": Outcome.SYNTAX_ERROR,
            "error": tracebacks.syntax_error_line(exc),
            "traceback": tracebacks.format_syntax_error(exc),
        }
    lines = code.splitlines(keepends=True)
    # Kept for the session's life: a function defined here and failing in a
    # later cell still shows its own lines.
    linecache.cache[name] = (len(code), None, lines, name)
    try:
        exec(compiled, namespace)
        value = eval(compiled_last, namespace) if compiled_last is not None else None
    except BaseException as exc:  # incl. SystemExit and KeyboardInterrupt
        outcome = Outcome.MEMORY_LIMIT if isinstance(exc, MemoryError) else Outcome.RUNTIME_ERROR
        return {"outcome": outcome, "error": tracebacks.error_line(exc), "traceback": _cell_traceback(exc)}
    message = _convert(value, cell.get("max_result_bytes", 0))
    if message["outcome"] == Outcome.OK and cell.get("max_figures", 0) > 0:
        runner._add_figures(message, cell["max_figures"], cell.get("max_figures_bytes", 0))
    # Shown once, like a notebook: the next cell starts with no open figure.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        with contextlib.suppress(BaseException):
            pyplot.close("all")
    return message


def _cell_traceback(exc: BaseException) -> str:
    """The traceback from the first frame in a cell on (cell line numbers)."""
    try:
        cur = exc.__traceback__
        while cur is not None and not cur.tb_frame.f_code.co_filename.startswith("<cell "):
            cur = cur.tb_next
        exc.__traceback__ = cur
        return tracebacks.cap("".join(traceback.format_exception(type(exc), exc, cur)))
    except BaseException:
        return tracebacks.error_line(exc) + "\n"


def _convert(value: Any, max_result_bytes: int) -> dict[str, Any]:
    """``result`` (JSON) for a JSON value, ``display`` (repr) for any other."""
    if value is None:
        return {"outcome": Outcome.OK, "result": b"null"}
    try:
        data = jsonify.dumps(value)
    except MemoryError as exc:
        return {"outcome": Outcome.MEMORY_LIMIT, "error": tracebacks.error_line(exc)}
    except BaseException:  # not JSON (or its conversion raised): show it
        return {"outcome": Outcome.OK, "result": b"null", "display": _display(value)}
    if len(data) > max_result_bytes:
        return {
            "outcome": Outcome.RESULT_TOO_LARGE,
            "error": f"result is {len(data)} bytes of JSON, over the limit of {max_result_bytes} bytes",
        }
    return {"outcome": Outcome.OK, "result": data}


def _display(value: Any) -> str:
    try:
        text = repr(value)
    except BaseException as exc:
        return f"<repr() failed: {tracebacks.error_line(exc)}>"
    if not isinstance(text, str):
        return "<repr() did not return a str>"
    return text[:MAX_DISPLAY]
