"""Each error kind the service can be made to answer arrives as its own exception.

Script kinds with their traceback and output; refusals; the 503 kinds are in
test_retry.py. Kinds a well-formed SDK call cannot produce (invalid_json,
unsupported_media_type, method_not_allowed) are provoked with raw HTTP and
read through the SDK's own answer parser. worker_lost, unavailable and
internal cannot be provoked from outside; test_kinds.py ties their classes
to the spec.
"""

from __future__ import annotations

import httpx
import pytest
from pyexec_service import Service
from service_limits import MAX_BODY_BYTES

import pyexec_client as px
from pyexec_client import _protocol

SCRIPT_KINDS = [
    ("def main(:\n", px.SyntaxError_, "syntax_error"),
    ("x = 1\n", px.MissingMain, "missing_main"),
    ("def main():\n    print('before')\n    return 1 / 0\n", px.RuntimeError_, "runtime_error"),
    ("def main():\n    return {1, 2}\n", px.ResultNotJson, "result_not_json"),
    ("def main():\n    return 'x' * 100_000\n", px.ResultTooLarge, "result_too_large"),
    ("import time\n\ndef main():\n    time.sleep(30)\n", px.Timeout, "timeout"),
    ("def main():\n    return bytearray(2_000 * 1024 * 1024)\n", px.MemoryLimit, "memory_limit"),
    ("import os\n\ndef main():\n    os._exit(3)\n", px.Killed, "killed"),
]


@pytest.mark.parametrize(("script", "cls", "kind"), SCRIPT_KINDS, ids=[k for _, _, k in SCRIPT_KINDS])
def test_script_errors(service: Service, token: str, script: str, cls: type[px.ScriptError], kind: str) -> None:
    with px.Client(service.url, token=token) as c, pytest.raises(cls) as caught:
        c.execute(script, timeout=1 if kind == "timeout" else None, memory=64 if kind == "memory_limit" else None)
    error = caught.value
    assert isinstance(error, px.ScriptError) and isinstance(error, px.PyexecError)
    assert (error.kind, error.status) == (kind, 422)
    assert error.message
    if kind == "runtime_error":
        assert error.stdout == "before\n"
        assert error.traceback is not None and "ZeroDivisionError" in error.traceback
        assert 'File "<script>", line 3, in main' in error.traceback


def test_invalid_request_and_payload_too_large(service: Service, token: str) -> None:
    with px.Client(service.url, token=token) as c:
        with pytest.raises(px.InvalidRequest) as caught:
            c.execute("def main(): return 1", timeout=-1)
        assert "timeout" in caught.value.message and caught.value.status == 400
        with pytest.raises(px.PayloadTooLarge):
            c.execute("def main(): return 1\n# " + "x" * MAX_BODY_BYTES)


def test_unauthorized_and_not_found(service: Service, token: str) -> None:
    for wrong in (None, "wrong"):
        with px.Client(service.url, token=wrong) as c, pytest.raises(px.Unauthorized):
            c.execute("def main(): return 1")
    with px.Client(service.url + "/nowhere", token=token) as c, pytest.raises(px.NotFound):
        c.execute("def main(): return 1")


@pytest.mark.parametrize(
    ("method", "content", "content_type", "cls"),
    [
        ("POST", b"{nope", "application/json", px.InvalidJson),
        ("POST", b"{}", "text/plain", px.UnsupportedMediaType),
        ("GET", b"", "application/json", px.MethodNotAllowed),
    ],
)
def test_raw_answers_map_to_their_class(
    service: Service, token: str, method: str, content: bytes, content_type: str, cls: type[px.ApiError]
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    response = httpx.request(method, service.url + "/execute", content=content, headers=headers, timeout=30)
    with pytest.raises(cls) as caught:
        _protocol.check(response)
    assert caught.value.request_id or cls is px.MethodNotAllowed


def test_transport_errors_are_not_answers() -> None:
    with px.Client("http://127.0.0.1:9", timeout=5) as c, pytest.raises(px.TransportError) as caught:
        c.execute("def main(): return 1")
    assert not isinstance(caught.value, px.ApiError)
