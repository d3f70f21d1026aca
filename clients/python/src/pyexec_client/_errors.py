"""One exception class per error ``kind`` the pyexec API answers, under ``PyexecError``.

Naming: the class is the kind in CamelCase (``memory_limit`` -> ``MemoryLimit``);
where that is a Python builtin, a trailing underscore is added
(``syntax_error`` -> ``SyntaxError_``, ``runtime_error`` -> ``RuntimeError_``).
Families: ``RequestRefused`` (4xx: the request was wrong), ``ScriptError`` (422:
the script failed; carries the traceback and output), ``ServiceUnavailable``
(503: capacity, carries ``retry_after``) and ``Internal`` (500). ``TransportError``
is not an answer at all: the service could not be reached or answered no JSON.
``KINDS`` maps every kind to its class; ``tests/test_kinds.py`` ties it to the
service's ``docs/openapi.json``.
"""

from __future__ import annotations

from typing import Any


class PyexecError(Exception):
    """Anything that kept a call from giving a result."""


class TransportError(PyexecError):
    """No usable answer: connection refused or reset, a client-side timeout, a non-JSON body."""


class ApiError(PyexecError):
    """The service answered with an error. ``kind`` is the API's error kind."""

    kind: str = ""
    status: int = 0

    def __init__(self, message: str, *, status: int, kind: str, body: dict[str, Any], request_id: str | None) -> None:
        super().__init__(f"{kind}: {message}")
        self.message = message
        self.status = status
        self.kind = kind
        self.body = body
        self.request_id = request_id


class RequestRefused(ApiError):
    """4xx: the request itself was wrong (fix it before sending it again)."""


class ScriptError(ApiError):
    """422: the script failed. ``traceback``, ``stdout`` and ``stderr`` are what the run left."""

    def __init__(self, message: str, *, status: int, kind: str, body: dict[str, Any], request_id: str | None) -> None:
        super().__init__(message, status=status, kind=kind, body=body, request_id=request_id)
        self.traceback: str | None = body.get("traceback")
        self.stdout: str = body.get("stdout", "")
        self.stderr: str = body.get("stderr", "")
        self.usage: dict[str, Any] | None = body.get("usage")
        # Sessions: a limit (timeout, memory_limit, killed) ended the session.
        self.session_ended: bool = bool(body.get("session_ended", False))


class ServiceUnavailable(ApiError):
    """503: the service cannot take the call now; ``retry_after`` (seconds) says when to try again."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        kind: str,
        body: dict[str, Any],
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, kind=kind, body=body, request_id=request_id)
        self.retry_after = retry_after


class InvalidJson(RequestRefused):
    """400 ``invalid_json``."""


class InvalidRequest(RequestRefused):
    """400 ``invalid_request``: the message names the field."""


class Unauthorized(RequestRefused):
    """401 ``unauthorized``: missing or wrong token."""


class NotFound(RequestRefused):
    """404 ``not_found``."""


class SessionNotFound(RequestRefused):
    """404 ``session_not_found``: unknown, expired, deleted or ended session."""


class MethodNotAllowed(RequestRefused):
    """405 ``method_not_allowed``."""


class RequestTimeout(RequestRefused):
    """408 ``request_timeout``: the body was sent too slowly."""


class SessionsDisabled(RequestRefused):
    """404 ``sessions_disabled``: sessions are off on this service (``--max-sessions 0``); use ``execute``."""


class SessionBusy(RequestRefused):
    """409 ``session_busy``: the session is running another call."""


class PayloadTooLarge(RequestRefused):
    """413 ``payload_too_large``."""


class UnsupportedMediaType(RequestRefused):
    """415 ``unsupported_media_type``."""


class SyntaxError_(ScriptError):  # noqa: N801 - the documented naming scheme
    """422 ``syntax_error``: the script does not compile."""


class MissingMain(ScriptError):
    """422 ``missing_main``."""


class RuntimeError_(ScriptError):  # noqa: N801 - the documented naming scheme
    """422 ``runtime_error``: an uncaught exception."""


class ResultNotJson(ScriptError):
    """422 ``result_not_json``."""


class ResultTooLarge(ScriptError):
    """422 ``result_too_large``."""


class Timeout(ScriptError):
    """422 ``timeout``: the run exceeded its wall-clock limit."""


class MemoryLimit(ScriptError):
    """422 ``memory_limit``."""


class Killed(ScriptError):
    """422 ``killed``: the run died by a signal or exited without a result."""


class Overloaded(ServiceUnavailable):
    """503 ``overloaded``: every worker is busy (retriable)."""


class Unavailable(ServiceUnavailable):
    """503 ``unavailable``: the sandbox cannot start (retriable)."""


class WorkerLost(ServiceUnavailable):
    """503 ``worker_lost``: the service lost the worker running the call (retriable)."""


class Internal(ApiError):
    """500 ``internal``: a bug of the service; report ``request_id``."""


KINDS: dict[str, type[ApiError]] = {
    "invalid_json": InvalidJson,
    "invalid_request": InvalidRequest,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "session_not_found": SessionNotFound,
    "sessions_disabled": SessionsDisabled,
    "method_not_allowed": MethodNotAllowed,
    "request_timeout": RequestTimeout,
    "session_busy": SessionBusy,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "syntax_error": SyntaxError_,
    "missing_main": MissingMain,
    "runtime_error": RuntimeError_,
    "result_not_json": ResultNotJson,
    "result_too_large": ResultTooLarge,
    "timeout": Timeout,
    "memory_limit": MemoryLimit,
    "killed": Killed,
    "overloaded": Overloaded,
    "unavailable": Unavailable,
    "worker_lost": WorkerLost,
    "internal": Internal,
}

# The HTTP status each kind is answered with.
STATUS: dict[str, int] = {
    "invalid_json": 400,
    "invalid_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "session_not_found": 404,
    "sessions_disabled": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "session_busy": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    **{kind: 422 for kind, cls in KINDS.items() if issubclass(cls, ScriptError)},
    "overloaded": 503,
    "unavailable": 503,
    "worker_lost": 503,
    "internal": 500,
}

# Kinds worth sending the same call again for (after ``retry_after``).
RETRIABLE: tuple[type[ApiError], ...] = (ServiceUnavailable,)
