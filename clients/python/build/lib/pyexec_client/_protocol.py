"""The HTTP API's shapes, shared by the sync and the async client: request bodies,
answers into results or exceptions, and the retry schedule. No I/O here."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

import httpx

from ._errors import KINDS, ApiError, ServiceUnavailable, TransportError
from ._models import CellResult, Figure, Result, SessionInfo, Usage

FileContent = Union[bytes, str, Path]
"""An input file: its bytes, or a path to read them from (``str`` is a path)."""


def encode_files(files: Mapping[str, FileContent] | None) -> dict[str, str] | None:
    if files is None:
        return None
    out = {}
    for name, content in files.items():
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        out[name] = base64.b64encode(data).decode("ascii")
    return out


def body(**fields: Any) -> dict[str, Any]:
    """A JSON body without the ``None`` fields (the API's defaults apply)."""
    return {key: value for key, value in fields.items() if value is not None}


def session_path(session_id: str, tail: str = "") -> str:
    return f"/sessions/{quote(session_id, safe='')}{tail}"


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransportError(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} "
            f"with a body that is not JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise TransportError(f"answer {response.status_code} is JSON but not an object: {value!r:.200}")
    return value


def check(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object when it is a success; its exception otherwise."""
    if response.status_code == 204:
        return {}
    data = _json(response)
    if response.is_success:
        return data
    raise error(response, data)


def error(response: httpx.Response, data: dict[str, Any]) -> ApiError:
    kind = str(data.get("kind", ""))
    cls = KINDS.get(kind, ApiError)
    message = str(data.get("error", f"HTTP {response.status_code}"))
    request_id = response.headers.get("x-request-id")
    if issubclass(cls, ServiceUnavailable):
        return cls(
            message,
            status=response.status_code,
            kind=kind,
            body=data,
            request_id=request_id,
            retry_after=_retry_after(response),
        )
    return cls(message, status=response.status_code, kind=kind, body=data, request_id=request_id)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(wall_ms=float(data["wall_ms"]), cpu_ms=data.get("cpu_ms"), max_rss_kib=data.get("max_rss_kib"))


def _figures(data: Any) -> list[Figure]:
    return [
        Figure(png=base64.b64decode(item["data"]), width=int(item["width"]), height=int(item["height"]))
        for item in data or []
    ]


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "result": data.get("result"),
        "stdout": data.get("stdout", ""),
        "stderr": data.get("stderr", ""),
        "duration_ms": float(data.get("duration_ms", 0.0)),
        "usage": _usage(data.get("usage")),
        "figures": _figures(data.get("figures")),
        "stdout_truncated": bool(data.get("stdout_truncated", False)),
        "stderr_truncated": bool(data.get("stderr_truncated", False)),
        "figures_truncated": bool(data.get("figures_truncated", False)),
    }


def result(data: dict[str, Any]) -> Result:
    return Result(**_fields(data))


def cell_result(data: dict[str, Any]) -> CellResult:
    return CellResult(**_fields(data), display=data.get("display"))


def session_info(data: dict[str, Any]) -> SessionInfo:
    return SessionInfo(
        id=str(data["id"]),
        created_at=str(data["created_at"]),
        last_used_at=str(data["last_used_at"]),
        expires_at=str(data["expires_at"]),
        calls=int(data["calls"]),
    )


@dataclass(frozen=True)
class Retry:
    """How often and how long to wait before sending a call again after a retriable
    answer (``ServiceUnavailable``: overloaded, unavailable, worker_lost). Off when
    ``attempts`` is 0 (the default). The wait is the answer's ``Retry-After`` or the
    exponential backoff (``backoff * 2**n``), whichever is longer, at most ``max_wait``."""

    attempts: int = 0
    backoff: float = 0.1
    max_wait: float = 10.0

    def wait(self, attempt: int, exc: ApiError) -> float | None:
        """Seconds to wait before retry number ``attempt`` (from 0), or ``None`` to give up."""
        if attempt >= self.attempts or not isinstance(exc, ServiceUnavailable):
            return None
        backoff = float(self.backoff * (2**attempt))
        return min(self.max_wait, max(backoff, exc.retry_after or 0.0))


def transport_error(exc: httpx.HTTPError, method: str, url: str) -> TransportError:
    return TransportError(f"{method} {url}: {type(exc).__name__}: {exc}")
