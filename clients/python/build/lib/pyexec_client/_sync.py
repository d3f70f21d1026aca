"""The blocking client: ``Client`` and its ``Session``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from . import _protocol as p
from ._errors import ApiError, SessionNotFound
from ._models import CellResult, Result, SessionInfo


class Client:
    """A pyexec service at ``url``.

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` (seconds) bounds each
    HTTP exchange on the client side and must exceed the runs' own timeouts;
    ``retry`` (``Retry(attempts=3)``) resends calls answered 503 (off by default).
    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 120.0,
        retry: p.Retry | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or p.Retry()
        self._http = http or httpx.Client(timeout=timeout)
        self._headers = p.headers(token)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        attempt = 0
        while True:
            url = self.url + path
            try:
                response = self._http.request(method, url, json=json, headers=self._headers)
            except httpx.HTTPError as exc:
                raise p.transport_error(exc, method, url) from exc
            try:
                return p.check(response)
            except ApiError as exc:
                wait = self.retry.wait(attempt, exc)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def execute(
        self,
        script: str,
        files: Mapping[str, p.FileContent] | None = None,
        timeout: float | None = None,
        memory: int | None = None,
    ) -> Result:
        """Runs ``script`` (which defines ``main()``); returns what ``main()`` returned.

        Raises the ``ApiError`` subclass of the answer's kind (``ScriptError`` ones for
        a failed script), or ``TransportError``.
        """
        body = p.body(script=script, files=p.encode_files(files), timeout=timeout, memory=memory)
        return p.result(self._call("POST", "/execute", body))

    def create_session(
        self,
        timeout: float | None = None,
        memory: int | None = None,
        idle_timeout: float | None = None,
        files: Mapping[str, p.FileContent] | None = None,
    ) -> Session:
        """Opens a stateful session (``POST /sessions``); close it with ``Session.close()``."""
        body = p.body(timeout=timeout, memory=memory, idle_timeout=idle_timeout, files=p.encode_files(files))
        data = self._call("POST", "/sessions", body)
        return Session(self, str(data["id"]), data)

    def session(
        self,
        timeout: float | None = None,
        memory: int | None = None,
        idle_timeout: float | None = None,
        files: Mapping[str, p.FileContent] | None = None,
    ) -> Session:
        """A session to use as ``with client.session() as s: s.run(code)``; closed on exit."""
        return self.create_session(timeout=timeout, memory=memory, idle_timeout=idle_timeout, files=files)


class Session:
    """One open session: ``run`` cells in it, keep its state, ``close`` it."""

    def __init__(self, client: Client, session_id: str, created: dict[str, Any]) -> None:
        self.client = client
        self.id = session_id
        self.idle_timeout: float | None = created.get("idle_timeout")
        self.expires_at: str | None = created.get("expires_at")
        self.closed = False

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        """Runs ``code`` as the session's next cell; returns its last expression's value."""
        data = self.client._call("POST", p.session_path(self.id, "/execute"), p.body(code=code, timeout=timeout))
        return p.cell_result(data)

    def info(self) -> SessionInfo:
        """``GET /sessions/{id}``."""
        return p.session_info(self.client._call("GET", p.session_path(self.id)))

    def close(self) -> None:
        """Deletes the session; a session already gone (404) counts as closed."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(SessionNotFound):
            self.client._call("DELETE", p.session_path(self.id))
