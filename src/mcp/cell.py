# The script pyexec's MCP `run_python` tool sends to the sandbox: it runs one
# notebook-style cell (code without main()) and returns the value of its last
# expression. Rendered by src/mcp/cell.rs, which puts the cell's source, as a
# JSON string literal (also a valid Python one), as the value of CELL.
#
# What main() returns is always {"pyexec_cell": {...}}, one of:
#   {"result": VALUE}                     VALUE is JSON as /execute converts it
#   {"result": None, "display": REPR}     the last value has no JSON form
#   {"error": {"kind", "message", "traceback"}}  syntax_error or runtime_error
# MemoryError is not caught: the service reports it as memory_limit, like
# timeouts and kills. This file must not contain the service's drawing words
# (worker/pyexec_worker/figures.py _DRAWING_WORDS): only the cell's own
# source should decide whether the run gets a spare with figures ready.
import ast
import builtins
import linecache
import traceback

CELL = __CELL__
NAME = "<cell>"
MAX_DISPLAY = 64 * 1024
MAX_TRACEBACK = 64 * 1024


def _cut(text, limit):
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-half:]


def _error(kind, exc, frames):
    try:
        message = traceback.format_exception_only(type(exc), exc)[-1].strip()
    except BaseException:
        message = type(exc).__name__
    try:
        if frames is None:
            text = "".join(traceback.format_exception_only(type(exc), exc))
        else:
            text = "".join(traceback.format_exception(type(exc), exc, frames))
    except BaseException:
        text = message + "\n"
    return {"pyexec_cell": {"error": {"kind": kind, "message": message, "traceback": _cut(text, MAX_TRACEBACK)}}}


def _cell_frames(tb):
    # The user sees the cell's frames and what they called, not this file's.
    while tb is not None and tb.tb_frame.f_code.co_filename != NAME:
        tb = tb.tb_next
    return tb


def _has_json_form(value):
    try:
        from pyexec_worker import jsonify
    except ImportError:  # pragma: no cover - the runner always has it loaded
        import json

        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return False
        return True
    try:
        jsonify.dumps(value)
    except jsonify.NotJSON:
        return False
    return True


def _display(value):
    try:
        return _cut(repr(value), MAX_DISPLAY)
    except MemoryError:
        raise
    except BaseException as exc:
        return f"<repr() failed: {type(exc).__name__}>"


def main():
    linecache.cache[NAME] = (len(CELL), None, CELL.splitlines(keepends=True), NAME)
    try:
        tree = ast.parse(CELL, NAME, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, NAME, "exec", dont_inherit=True)
        tail = None if last is None else compile(last, NAME, "eval", dont_inherit=True)
    except MemoryError:
        raise
    except Exception as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        return _error("syntax_error", exc, None)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(body, namespace)
        value = None if tail is None else eval(tail, namespace)
    except MemoryError:
        raise
    except BaseException as exc:  # incl. SystemExit and KeyboardInterrupt, as /execute
        return _error("runtime_error", exc, _cell_frames(exc.__traceback__))
    if value is None or _has_json_form(value):
        return {"pyexec_cell": {"result": value}}
    return {"pyexec_cell": {"result": None, "display": _display(value)}}
