"""pyexec-client: call a pyexec service from Python.

``Client`` (blocking) and ``AsyncClient`` (asyncio) run scripts (``execute``) and
stateful sessions (``session``) and return typed results; every error kind the
API answers is its own exception under ``PyexecError`` (see ``_errors`` for the
naming scheme). See the package README.
"""

from ._async import AsyncClient, AsyncSession
from ._errors import (
    KINDS,
    ApiError,
    Internal,
    InvalidJson,
    InvalidRequest,
    Killed,
    MemoryLimit,
    MethodNotAllowed,
    MissingMain,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PyexecError,
    RequestRefused,
    RequestTimeout,
    ResultNotJson,
    ResultTooLarge,
    RuntimeError_,
    ScriptError,
    ServiceUnavailable,
    SessionBusy,
    SessionNotFound,
    SessionsDisabled,
    SyntaxError_,
    Timeout,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WorkerLost,
)
from ._models import CellResult, Figure, Result, SessionInfo, Usage
from ._protocol import FileContent, Retry
from ._sync import Client, Session

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "ApiError",
    "AsyncClient",
    "AsyncSession",
    "CellResult",
    "Client",
    "Figure",
    "FileContent",
    "Internal",
    "InvalidJson",
    "InvalidRequest",
    "Killed",
    "MemoryLimit",
    "MethodNotAllowed",
    "MissingMain",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PyexecError",
    "RequestRefused",
    "RequestTimeout",
    "Result",
    "ResultNotJson",
    "ResultTooLarge",
    "Retry",
    "RuntimeError_",
    "ScriptError",
    "ServiceUnavailable",
    "Session",
    "SessionBusy",
    "SessionInfo",
    "SessionNotFound",
    "SessionsDisabled",
    "SyntaxError_",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "Usage",
    "WorkerLost",
]
