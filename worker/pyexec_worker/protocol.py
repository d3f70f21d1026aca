"""Supervisor <-> zygote protocol, version 2 (see docs/internals.md).

Owns: framing (u32 big-endian body length + msgpack body), the incremental
frame reader that refuses an oversized frame from its 4-byte header before
reading or allocating the body, and typed builders/parsers for every message
in the exact field order the golden files pin. Must not: touch processes or
sockets beyond reading bytes handed to it, or trust what it decodes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

from . import PROTOCOL_VERSION
from .outcome import Outcome

HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame that is malformed, of an unknown type, or has wrong fields."""


class FrameTooLarge(ProtocolError):
    """A frame header announced a body over the configured maximum."""

    def __init__(self, length: int, max_frame_bytes: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds --max-frame-bytes {max_frame_bytes}")
        self.length = length
        self.max_frame_bytes = max_frame_bytes


def encode_frame(message: dict[str, Any]) -> bytes:
    """Pack one message as a full frame (header + body)."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoder: feed bytes, take whole messages out.

    "Need more bytes" is not an error; an oversized header is (raised from
    ``feed`` before the body is buffered).
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length > self.max_frame_bytes:
                raise FrameTooLarge(length, self.max_frame_bytes)
            if len(self._buf) < HEADER.size + length:
                break
            body = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            out.append(decode_body(body, self.max_frame_bytes))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame buffered so far."""
        return len(self._buf)


def decode_body(body: bytes, max_len: int) -> dict[str, Any]:
    """Unpack one frame body into a map with string keys."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_str_len=max_len,
            max_bin_len=max_len,
            max_array_len=max_len,
            max_map_len=max_len,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable frame body: {exc}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("frame body is not a map with a string 'type'")
    return value


# --- supervisor -> zygote -------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One file the runner writes into the run's /tmp before the script runs."""

    name: str
    data: bytes


@dataclass(frozen=True)
class RunRequest:
    """A ``run`` frame, validated."""

    id: int
    script: str
    timeout_ms: int
    memory_bytes: int
    max_output_bytes: int
    max_result_bytes: int
    files: tuple[InputFile, ...] = ()
    max_figures: int = 0
    max_figures_bytes: int = 0


@dataclass(frozen=True)
class SessionOpen:
    """A ``session`` frame: turn a spare into this worker's notebook session."""

    id: int
    memory_bytes: int
    timeout_ms: int  # the session's CPU backstop (its whole lifetime)
    files: tuple[InputFile, ...] = ()


@dataclass(frozen=True)
class CellRequest:
    """A ``cell`` frame: the next cell of the worker's notebook session."""

    id: int
    script: str
    timeout_ms: int
    max_output_bytes: int
    max_result_bytes: int
    max_figures: int = 0
    max_figures_bytes: int = 0


@dataclass(frozen=True)
class Ping:
    """A ``ping`` frame."""

    id: int


_RUN_FIELDS = (
    "id",
    "timeout_ms",
    "memory_bytes",
    "max_output_bytes",
    "max_result_bytes",
    "max_figures",
    "max_figures_bytes",
)
_U64_MAX = 2**64 - 1


def _u64(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise ProtocolError(f"{msg.get('type')}: field {key!r} must be a u64, got {type(value).__name__}")
    return value


def parse_request(msg: dict[str, Any]) -> RunRequest | SessionOpen | CellRequest | Ping:
    """Turn a decoded supervisor frame into a typed request."""
    kind = msg["type"]
    if kind == "ping":
        return Ping(_u64(msg, "id"))
    if kind == "run":
        script = msg.get("script")
        if not isinstance(script, str):
            raise ProtocolError("run: field 'script' must be a str")
        ints = {key: _u64(msg, key) for key in _RUN_FIELDS}
        return RunRequest(script=script, files=_files(msg.get("files")), **ints)
    if kind == "session":
        ints = {key: _u64(msg, key) for key in ("id", "memory_bytes", "timeout_ms")}
        return SessionOpen(files=_files(msg.get("files")), **ints)
    if kind == "cell":
        script = msg.get("script")
        if not isinstance(script, str):
            raise ProtocolError("cell: field 'script' must be a str")
        keys = ("id", "timeout_ms", "max_output_bytes", "max_result_bytes", "max_figures", "max_figures_bytes")
        return CellRequest(script=script, **{key: _u64(msg, key) for key in keys})
    raise ProtocolError(f"unexpected message type {kind!r}")


def _files(value: Any) -> tuple[InputFile, ...]:
    if not isinstance(value, list):
        raise ProtocolError("run: field 'files' must be an array")
    files = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"name", "data"}:
            raise ProtocolError("run: each of 'files' must be a map with 'name' and 'data'")
        name, data = entry["name"], entry["data"]
        if not isinstance(name, str) or not isinstance(data, bytes):
            raise ProtocolError("run: each of 'files' needs a str 'name' and bin 'data'")
        files.append(InputFile(name, data))
    return tuple(files)


def run_message(req: RunRequest) -> dict[str, Any]:
    """The ``run`` map (used by tests and golden files)."""
    return {
        "type": "run",
        "id": req.id,
        "script": req.script,
        "timeout_ms": req.timeout_ms,
        "memory_bytes": req.memory_bytes,
        "max_output_bytes": req.max_output_bytes,
        "max_result_bytes": req.max_result_bytes,
        "files": [{"name": f.name, "data": f.data} for f in req.files],
        "max_figures": req.max_figures,
        "max_figures_bytes": req.max_figures_bytes,
    }


def ping_message(id_: int) -> dict[str, Any]:
    return {"type": "ping", "id": id_}


# --- zygote -> supervisor -------------------------------------------------


def ready_message(pid: int, python: str, numpy: str, pandas: str) -> dict[str, Any]:
    return {
        "type": "ready",
        "version": PROTOCOL_VERSION,
        "pid": pid,
        "python": python,
        "numpy": numpy,
        "pandas": pandas,
    }


def fatal_message(error: str) -> dict[str, Any]:
    return {"type": "fatal", "error": error}


def pong_message(id_: int) -> dict[str, Any]:
    return {"type": "pong", "id": id_}


@dataclass
class RunResult:
    """A ``result`` frame's content; ``to_message`` fixes the field order."""

    id: int
    outcome: Outcome
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: float = 0.0
    # {"wall_ms": float, "cpu_ms": float | None, "max_rss_kib": int | None}
    usage: dict[str, Any] | None = None
    # [{"format": "png", "data": bytes, "width": int, "height": int}, ...]
    figures: list[dict[str, Any]] = field(default_factory=list)
    figures_truncated: bool = False
    # Notebook session answers only (``session``/``cell`` frames): the
    # repr() of a non-JSON last expression, and whether the session ended.
    display: str | None = None
    session_ended: bool | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "result",
            "id": self.id,
            "outcome": Outcome(self.outcome),  # ValueError for a name outside the vocabulary
            "result": self.result,
            "error": self.error,
            "traceback": self.traceback,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "duration_ms": float(self.duration_ms),
            "usage": self.usage,
            "figures": self.figures,
            "figures_truncated": self.figures_truncated,
            **(
                {"display": self.display, "session_ended": self.session_ended} if self.session_ended is not None else {}
            ),
        }


def fit_result(result: RunResult, max_frame_bytes: int) -> dict:
    """Cut captured output, then figures (then the result) until the frame fits."""
    while True:
        message = result.to_message()
        size = len(encode_frame(message)) - HEADER.size
        if size <= max_frame_bytes or (result.outcome == Outcome.RESULT_TOO_LARGE and not result.result):
            return message
        if result.stdout or result.stderr:
            keep = max(len(result.stdout), len(result.stderr)) // 2
            result.stdout_truncated |= len(result.stdout) > keep
            result.stderr_truncated |= len(result.stderr) > keep
            result.stdout, result.stderr = result.stdout[:keep], result.stderr[:keep]
            continue
        if result.figures:
            result.figures, result.figures_truncated = result.figures[:-1], True
            continue
        result.outcome, result.result, result.traceback = Outcome.RESULT_TOO_LARGE, None, None
        result.error = f"the result frame ({size} bytes) exceeds --max-frame-bytes {max_frame_bytes}"
