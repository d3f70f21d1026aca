"""pyexec's /mcp endpoint driven by the official MCP Python SDK (PyPI `mcp`)
over Streamable HTTP, against the real service with its real sandbox.

Each test opens its own client connection; the service (with an API token)
is shared by the module. Nothing here mocks the sandbox: the pandas, figure
and traceback checks run real Python in nsjail.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from pyexec_service import Service

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@contextlib.asynccontextmanager
async def connect(service: Service, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(service.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def run(coro_fn: Any, *args: Any) -> Any:
    return anyio.run(coro_fn, *args)


async def call(service: Service, token: str | None, arguments: dict[str, Any]) -> Any:
    async with connect(service, token) as session:
        return await session.call_tool("run_python", arguments)


def text_json(result: Any) -> dict[str, Any]:
    texts = [block for block in result.content if block.type == "text"]
    assert len(texts) == 1, result.content
    return json.loads(texts[0].text)


def test_initialize_and_tool_schemas(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            info = await session.initialize()  # the answer connect() got, kept by the session
            assert info.server_info.name == "pyexec"
            assert info.capabilities.tools is not None
            listed = await session.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            assert set(tools) == {"run_python", "session_run", "session_close"}
            tool = tools["run_python"]
            schema = tool.input_schema
            assert schema["type"] == "object"
            assert schema["required"] == ["code"]
            assert schema["additionalProperties"] is False
            assert set(schema["properties"]) == {"code", "files", "timeout"}
            assert schema["properties"]["code"]["type"] == "string"
            assert schema["properties"]["files"]["additionalProperties"]["type"] == "string"
            assert schema["properties"]["timeout"]["type"] == "number"
            assert "last expression" in tool.description and "isError" in tool.description
            assert tool.output_schema is not None
            for declared in (schema, tool.output_schema):  # both are valid JSON Schema
                jsonschema.validators.validator_for(declared).check_schema(declared)
            assert {"result", "stdout", "stderr"} <= set(tool.output_schema["required"])
            session_run = tools["session_run"]
            schema = session_run.input_schema
            assert schema["required"] == ["code"] and schema["additionalProperties"] is False
            assert set(schema["properties"]) == {"code", "session_id", "files", "timeout"}
            assert session_run.output_schema is not None
            assert {"session_id", "session_ended", "result"} <= set(session_run.output_schema["required"])
            assert "session_id" in session_run.description and "session_close" in session_run.description
            close = tools["session_close"].input_schema
            assert close["required"] == ["session_id"] and set(close["properties"]) == {"session_id"}
            for declared in (schema, session_run.output_schema, close):
                jsonschema.validators.validator_for(declared).check_schema(declared)
            assert "session_run" in (info.instructions or "")

    run(go)


def test_run_python_with_pandas(service: Service, token: str) -> None:
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('data.csv')\n"
        "print('rows:', len(df))\n"
        "{'total': int(df['temp'].sum()), 'cities': sorted(df['city'])}\n"
    )
    files = {"data.csv": base64.b64encode(b"city,temp\nOslo,3\nRome,18\n").decode()}
    result = run(call, service, token, {"code": code, "files": files})
    assert result.is_error is False
    answer = text_json(result)
    assert answer["result"] == {"total": 21, "cities": ["Oslo", "Rome"]}
    assert answer["stdout"] == "rows: 2\n"
    assert result.structured_content == answer
    assert answer["figures"] == 0


def test_non_json_value_comes_back_as_its_repr(service: Service, token: str) -> None:
    result = run(
        call,
        service,
        token,
        {"code": "import pandas as pd\npd.DataFrame({'a': [1, 2]})"},
    )
    answer = text_json(result)
    assert answer["result"] is None
    assert "a" in answer["display"] and "0  1" in answer["display"], answer
    result = run(call, service, token, {"code": "x = 5"})
    assert text_json(result)["result"] is None and "display" not in text_json(result)


def test_a_figure_arrives_as_image_content(service: Service, token: str) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n'drawn'\n"
    result = run(call, service, token, {"code": code})
    assert result.is_error is False, result.content
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 1
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
    answer = text_json(result)
    assert answer["result"] == "drawn" and answer["figures"] == 1


def test_runtime_error_is_a_tool_error_with_traceback(service: Service, token: str) -> None:
    code = "def ratio(a, b):\n    return a / b\n\nprint('before')\nratio(1, 0)\n"
    result = run(call, service, token, {"code": code})
    assert result.is_error is True
    answer = text_json(result)
    assert answer["kind"] == "runtime_error"
    assert answer["message"] == "ZeroDivisionError: division by zero"
    assert answer["stdout"] == "before\n"
    traceback = answer["traceback"]
    # The cell's own frames and line numbers, not the wrapper's.
    assert 'File "<cell>", line 5, in <module>' in traceback, traceback
    assert 'File "<cell>", line 2, in ratio' in traceback and "return a / b" in traceback
    assert "<script>" not in traceback


def test_syntax_error_and_timeout_are_tool_errors(service: Service, token: str) -> None:
    answer = text_json(run(call, service, token, {"code": "x = (1,\n"}))
    assert answer["kind"] == "syntax_error", answer
    assert "<cell>" in answer["traceback"]
    result = run(call, service, token, {"code": "while True:\n    pass\n", "timeout": 0.5})
    assert result.is_error is True and text_json(result)["kind"] == "timeout"


def test_bad_arguments_are_tool_errors(service: Service, token: str) -> None:
    answer = text_json(run(call, service, token, {"code": "1", "files": {"../x": "AA=="}}))
    assert answer["kind"] == "invalid_request"
    assert 'files["../x"]' in answer["message"]
    answer = text_json(run(call, service, token, {"code": "1", "memory": 5}))
    assert answer["kind"] == "invalid_request" and "memory" in answer["message"]


@pytest.mark.parametrize("token_sent", [None, "wrong-token"])
def test_missing_or_wrong_token_is_refused(service: Service, token_sent: str | None) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    if token_sent is not None:
        headers["Authorization"] = f"Bearer {token_sent}"
    answer = httpx.post(service.url + "/mcp", json=body, headers=headers, timeout=30)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["kind"] == "unauthorized"

    async def with_sdk() -> None:
        async with connect(service, token_sent):
            pass

    # The SDK cannot initialize: it raises its MCPError (inside its task
    # groups) for the 401 answer to `initialize`.
    with pytest.raises(BaseException) as refused:
        run(with_sdk)
    assert any(isinstance(error, MCPError) for error in leaves(refused.value)), refused.value


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", -32700), (b'{"jsonrpc": "2.0", "id": 1}', -32600), (b"[]", -32600)],
)
def test_malformed_json_rpc_gets_an_mcp_error_and_the_service_lives(
    service: Service, token: str, body: bytes, code: int
) -> None:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    answer = httpx.post(service.url + "/mcp", content=body, headers=headers, timeout=30)
    assert answer.status_code == 400
    error = answer.json()
    assert error["jsonrpc"] == "2.0" and error["id"] is None
    assert error["error"]["code"] == code
    # An unknown method is the protocol's own error, answered by the SDK.
    unknown = {"jsonrpc": "2.0", "id": 7, "method": "no/such/method", "params": {}}
    answer = httpx.post(service.url + "/mcp", json=unknown, headers=headers, timeout=30)
    assert answer.json()["error"]["code"] == -32601, answer.text
    # Unharmed: the process runs and a real tool call still answers.
    assert service.alive()
    assert text_json(run(call, service, token, {"code": "6 * 7"}))["result"] == 42


def test_tool_calls_are_counted(service: Service, token: str) -> None:
    def calls(kind: str) -> float:
        series = f'pyexec_mcp_tool_calls_total{{kind="{kind}",tool="run_python"}} '
        return next(
            (float(line.split()[-1]) for line in service.metrics().splitlines() if line.startswith(series)),
            0.0,
        )

    ok, failed = calls("ok"), calls("runtime_error")
    run(call, service, token, {"code": "1 + 1"})
    run(call, service, token, {"code": "raise ValueError('no')"})
    assert (calls("ok") - ok, calls("runtime_error") - failed) == (1, 1)


def test_mcp_off_answers_404() -> None:
    svc = Service("--mcp", "off", workers=1).start()
    try:
        answer = httpx.post(
            svc.url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            timeout=30,
        )
        assert answer.status_code == 404 and answer.json()["kind"] == "not_found"
    finally:
        svc.stop()


def test_numpy_values_are_converted_like_main_results(service: Service, token: str) -> None:
    answer = text_json(
        run(call, service, token, {"code": "import numpy as np\n{'f': np.float64(2.5), 'a': np.arange(3)}"})
    )
    assert answer["result"] == {"f": 2.5, "a": [0, 1, 2]}


def test_capacity_error_is_a_tool_error_saying_when_to_retry() -> None:
    tiny = Service("--queue-timeout-secs", "0.2", workers=1).start()
    try:
        holder = tiny.hold_worker(3)
        result = run(call, tiny, None, {"code": "1"})
        assert result.is_error is True
        answer = text_json(result)
        assert answer["kind"] == "overloaded"
        assert answer["retry_after_secs"] >= 1
        assert f"call the tool again in {answer['retry_after_secs']} s" in answer["message"]
        holder.join(30)
        assert text_json(run(call, tiny, None, {"code": "1"}))["result"] == 1, "free again"
    finally:
        tiny.stop()


def test_a_browser_origin_is_refused(service: Service, token: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Origin": "http://evil.example",
    }
    answer = httpx.post(service.url + "/mcp", json=body, headers=headers, timeout=30)
    assert answer.status_code == 403
