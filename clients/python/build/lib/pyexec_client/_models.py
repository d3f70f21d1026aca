"""What the API answers, as typed dataclasses (built from the JSON in ``_protocol``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Usage:
    """What a run consumed; ``cpu_ms`` and ``max_rss_kib`` are ``None`` after a timeout."""

    wall_ms: float
    cpu_ms: float | None
    max_rss_kib: int | None


@dataclass(frozen=True)
class Figure:
    """One matplotlib figure the run left open, rendered as PNG."""

    png: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Result:
    """A successful ``POST /execute``: ``result`` is what ``main()`` returned."""

    result: Any
    stdout: str
    stderr: str
    duration_ms: float
    usage: Usage | None = None
    figures: list[Figure] = field(default_factory=list)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    figures_truncated: bool = False


@dataclass(frozen=True)
class CellResult(Result):
    """One session cell: ``result`` is its last expression's value (``None`` after a
    statement); ``display`` is ``repr(value)`` when the value has no JSON form."""

    display: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    """``GET /sessions/{id}``; times are RFC 3339 strings as the API sends them."""

    id: str
    created_at: str
    last_used_at: str
    expires_at: str
    calls: int
