"""Sessions through the SDK (the sessions API of issue 14: POST /sessions,
POST /sessions/{id}/execute, GET and DELETE /sessions/{id}).

The ``service`` fixture turns sessions on (``--max-sessions 2``; they are off by
default). SKIPPED ONLY on a build without sessions: when ``POST /sessions``
answers 404 ``not_found`` (the route does not exist). Any other answer runs the
tests, so a build with sessions that answers wrongly fails them.
"""

from __future__ import annotations

import asyncio

import pytest
from pyexec_service import Service

import pyexec_client as px


@pytest.fixture
def client(service: Service, token: str) -> px.Client:
    c = px.Client(service.url, token=token)
    try:
        c.create_session().close()
    except px.NotFound as exc:
        assert exc.kind == "not_found"
        c.close()
        pytest.skip("this build has no sessions: POST /sessions answered 404 not_found")
    return c


def test_state_persists_across_cells(client: px.Client) -> None:
    with client.session() as s:
        assert s.run("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})").result is None
        cell = s.run("print('summing')\nint(df['a'].sum())")
        assert isinstance(cell, px.CellResult)
        assert (cell.result, cell.stdout) == (6, "summing\n")
        s.run("open('kept.txt', 'w').write('hello')")
        assert s.run("open('kept.txt').read()").result == "hello"
        info = s.info()
        assert (info.id, info.calls) == (s.id, 4)
    with pytest.raises(px.SessionNotFound):
        s.run("1")


def test_display_of_a_value_that_is_not_json(client: px.Client) -> None:
    with client.session() as s:
        cell = s.run("{1, 2}")
        assert cell.result is None and cell.display == "{1, 2}"


def test_an_error_keeps_the_session_and_a_limit_ends_it(client: px.Client) -> None:
    with client.session() as s:
        s.run("x = 41")
        with pytest.raises(px.RuntimeError_) as caught:
            s.run("x + 1\n1 / 0")
        assert not caught.value.session_ended
        assert caught.value.traceback is not None and "ZeroDivisionError" in caught.value.traceback
        assert s.run("x + 1").result == 42
        with pytest.raises(px.Timeout) as ended:
            s.run("while True:\n    pass", timeout=0.5)
        assert ended.value.session_ended
        with pytest.raises(px.SessionNotFound):
            s.run("x")


def test_files_and_figures(client: px.Client) -> None:
    with client.session(files={"data.csv": b"v\n1\n2\n"}) as s:
        s.run("import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('data.csv')")
        cell = s.run("plt.plot(df['v'])\nint(df['v'].sum())")
        assert cell.result == 3 and len(cell.figures) == 1


def test_unknown_session(client: px.Client) -> None:
    with pytest.raises(px.SessionNotFound):
        px.Session(client, "no-such-session-id", {}).run("1")


def test_async_session(service: Service, token: str, client: px.Client) -> None:
    async def go() -> None:
        async with px.AsyncClient(service.url, token=token) as c, c.session() as s:
            await s.run("n = 20")
            assert (await s.run("n + 22")).result == 42

    asyncio.run(go())
