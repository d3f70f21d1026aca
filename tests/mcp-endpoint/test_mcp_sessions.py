"""The MCP session tools (`session_run`, `session_close`) driven by the official
MCP Python SDK over Streamable HTTP, against the real service and sandbox.

The shared ``service`` has sessions on (``--max-sessions 2``); the tests that
need sessions off or full start a service of their own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import jsonschema
from mcp import ClientSession
from pyexec_service import Service

from test_mcp import PNG_MAGIC, connect, run, text_json


async def session_run(session: ClientSession, arguments: dict[str, Any]) -> Any:
    return await session.call_tool("session_run", arguments)


def checked(result: Any, output_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer's JSON text, which must equal its structured content."""
    answer = text_json(result)
    assert result.structured_content == answer
    if output_schema is not None:
        jsonschema.validate(answer, output_schema)
    return answer


def test_a_session_keeps_a_variable_then_is_closed(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            schema = {t.name: t for t in (await session.list_tools()).tools}["session_run"].output_schema
            files = {"data.csv": base64.b64encode(b"v\n1\n2\n").decode()}
            code = "import pandas as pd\ndf = pd.read_csv('data.csv')\ntotal = int(df['v'].sum())\nprint('read')"
            first = await session_run(session, {"code": code, "files": files})
            assert first.is_error is False, first.content
            opened = checked(first, schema)
            assert opened["result"] is None and opened["stdout"] == "read\n"
            assert opened["session_ended"] is False
            sid = opened["session_id"]
            assert isinstance(sid, str) and len(sid) >= 32

        # A new MCP connection: the state is the service's session, named by its id.
        async with connect(service, token) as session:
            second = await session_run(session, {"code": "total * 10", "session_id": sid})
            assert second.is_error is False, second.content
            answer = checked(second, schema)
            assert (answer["session_id"], answer["result"]) == (sid, 30)

            closed = await session.call_tool("session_close", {"session_id": sid})
            assert closed.is_error is False and checked(closed) == {"session_id": sid, "closed": True}

            gone = await session_run(session, {"code": "total", "session_id": sid})
            assert gone.is_error is True
            refused = checked(gone)
            assert refused["kind"] == "session_not_found"
            assert "without session_id" in refused["message"], refused
            again = await session.call_tool("session_close", {"session_id": sid})
            assert again.is_error is True and checked(again)["kind"] == "session_not_found"

    run(go)


def test_a_runtime_error_keeps_the_session_and_a_timeout_ends_it(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            sid = checked(await session_run(session, {"code": "x = 41"}))["session_id"]
            failed = await session_run(session, {"code": "def f():\n    return 1 / 0\n\nf()", "session_id": sid})
            assert failed.is_error is True
            error = checked(failed)
            assert (error["kind"], error["session_id"], error["session_ended"]) == ("runtime_error", sid, False)
            assert "ZeroDivisionError" in error["message"] and "lives on" in error["message"]
            assert "ZeroDivisionError" in error["traceback"] and "1 / 0" in error["traceback"]
            assert checked(await session_run(session, {"code": "x + 1", "session_id": sid}))["result"] == 42

            late = await session_run(session, {"code": "while True:\n    pass", "session_id": sid, "timeout": 0.5})
            ended = checked(late)
            assert late.is_error is True and (ended["kind"], ended["session_ended"]) == ("timeout", True)
            assert "open a new one" in ended["message"]
            gone = await session_run(session, {"code": "x", "session_id": sid})
            assert checked(gone)["kind"] == "session_not_found"

    run(go)


def test_a_figure_and_a_non_json_value_in_a_session(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n{1, 2}"
            result = await session_run(session, {"code": code})
            assert result.is_error is False, result.content
            images = [block for block in result.content if block.type == "image"]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
            answer = checked(result)
            assert (answer["result"], answer["display"], answer["figures"]) == (None, "{1, 2}", 1)
            await session.call_tool("session_close", {"session_id": answer["session_id"]})

    run(go)


def test_bad_arguments_are_tool_errors(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            files = {"a.txt": "AA=="}
            refused = await session_run(session, {"code": "1", "session_id": "x" * 32, "files": files})
            assert refused.is_error is True
            answer = checked(refused)
            assert answer["kind"] == "invalid_request" and "only taken when opening" in answer["message"]
            unknown = checked(await session_run(session, {"code": "1", "memory": 5}))
            assert unknown["kind"] == "invalid_request" and "memory" in unknown["message"]
            missing = checked(await session.call_tool("session_close", {}))
            assert missing["kind"] == "invalid_request" and "session_id" in missing["message"]

    run(go)


def test_a_second_call_while_a_cell_runs_is_busy(service: Service, token: str) -> None:
    async def go() -> None:
        async with connect(service, token) as session:
            sid = checked(await session_run(session, {"code": "import time"}))["session_id"]
            slow: list[Any] = []

            async def sleeper() -> None:
                # The quick calls below may hold the session when this one arrives: retry until it runs.
                while True:
                    answer = await session_run(session, {"code": "time.sleep(6)\n'slept'", "session_id": sid})
                    if checked(answer).get("kind") != "session_busy":
                        slow.append(answer)
                        return
                    await anyio.sleep(0.05)

            busy: dict[str, Any] | None = None
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(sleeper)
                # Until the slow cell holds the session: a quick call before then just runs.
                while not slow and busy is None:
                    answer = checked(await session_run(session, {"code": "1", "session_id": sid}))
                    if answer.get("kind") == "session_busy":
                        busy = answer
                    await anyio.sleep(0.1)
            assert busy is not None, "the slow cell ended before any call saw the session busy"
            assert "wait" in busy["message"] and busy["retry_after_secs"] >= 1
            assert checked(slow[0])["result"] == "slept"
            await session.call_tool("session_close", {"session_id": sid})

    run(go)


def test_sessions_off_hides_the_tools_and_refuses_calls() -> None:
    off = Service(workers=1).start()  # --max-sessions defaults to 0
    try:

        async def go() -> None:
            async with connect(off, None) as session:
                names = {tool.name for tool in (await session.list_tools()).tools}
                assert names == {"run_python"}
                for name, arguments in (("session_run", {"code": "1"}), ("session_close", {"session_id": "x"})):
                    result = await session.call_tool(name, arguments)
                    assert result.is_error is True
                    answer = checked(result)
                    assert answer["kind"] == "sessions_disabled"
                    assert "disabled on this server" in answer["message"] and "run_python" in answer["message"]

        run(go)
    finally:
        off.stop()


def test_full_sessions_say_close_one_or_retry() -> None:
    one = Service("--max-sessions", "1", workers=1).start()
    try:

        async def go() -> None:
            async with connect(one, None) as session:
                sid = checked(await session_run(session, {"code": "1"}))["session_id"]
                full = await session_run(session, {"code": "2"})
                assert full.is_error is True
                answer = checked(full)
                assert answer["kind"] == "overloaded" and answer["retry_after_secs"] == 5
                assert "session_close" in answer["message"] and "5 s" in answer["message"]
                await session.call_tool("session_close", {"session_id": sid})
                reopened = checked(await session_run(session, {"code": "3"}))
                assert reopened["result"] == 3, json.dumps(reopened)

        run(go)
    finally:
        one.stop()
