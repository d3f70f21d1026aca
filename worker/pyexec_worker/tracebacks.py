"""Tracebacks and error lines as the user should see them.

Owns: registering the script's source with ``linecache`` under
``SCRIPT_NAME``, cutting the runner's own frames off a traceback (the user
sees their frames and the library frames they called, with their own line
numbers), and capping the text. Must not: raise (formatting a hostile
exception falls back to a plain line).
"""

from __future__ import annotations

import linecache
import traceback
from types import TracebackType

SCRIPT_NAME = "<script>"
MAX_TEXT = 64 * 1024


def register_source(source: str) -> None:
    """Make ``linecache`` (and so tracebacks) show the script's lines."""
    lines = source.splitlines(keepends=True)
    # mtime None: linecache.checkcache() keeps the entry (it is not a file).
    linecache.cache[SCRIPT_NAME] = (len(source), None, lines, SCRIPT_NAME)


def forget_source() -> None:
    """Drop the registered script lines."""
    linecache.cache.pop(SCRIPT_NAME, None)


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Skip leading frames until the first one in the user's script."""
    cur = tb
    while cur is not None:
        if cur.tb_frame.f_code.co_filename == SCRIPT_NAME:
            return cur
        cur = cur.tb_next
    return None


def cap(text: str, limit: int = MAX_TEXT) -> str:
    """Keep the head and the tail (where the exception line is)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-half:]


def error_line(exc: BaseException) -> str:
    """``ZeroDivisionError: division by zero`` (last line of the exception)."""
    try:
        lines = traceback.format_exception_only(type(exc), exc)
        return cap(lines[-1].strip() if lines else type(exc).__name__, 8192)
    except BaseException:
        return type(exc).__name__


def format_user_traceback(exc: BaseException) -> str:
    """The traceback from the user's first frame on; chained causes kept."""
    try:
        exc.__traceback__ = user_frames(exc.__traceback__)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cap(text)
    except BaseException:
        return error_line(exc) + "\n"


def syntax_error_line(exc: BaseException) -> str:
    """``SyntaxError: invalid syntax (line 3)``: the message names the line."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    return error_line(exc)


def format_syntax_error(exc: BaseException) -> str:
    """The caret-style report of a compile error (no traceback frames)."""
    try:
        return cap("".join(traceback.format_exception_only(type(exc), exc)))
    except BaseException:
        return error_line(exc) + "\n"
