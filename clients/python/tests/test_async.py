"""``AsyncClient``: 16 concurrent calls, each getting its own answer; errors as in the sync client."""

from __future__ import annotations

import asyncio

import pytest
from pyexec_service import Service

import pyexec_client as px


def test_sixteen_concurrent_calls(service: Service, token: str) -> None:
    async def go() -> list[px.Result]:
        async with px.AsyncClient(service.url, token=token, retry=px.Retry(attempts=5)) as c:
            calls = [c.execute(f"def main():\n    return {{'n': {n}, 'sq': {n} * {n}}}\n") for n in range(16)]
            return await asyncio.gather(*calls)

    results = asyncio.run(go())
    assert [r.result for r in results] == [{"n": n, "sq": n * n} for n in range(16)]


def test_async_errors(service: Service, token: str) -> None:
    async def go() -> None:
        async with px.AsyncClient(service.url, token=token) as c:
            with pytest.raises(px.RuntimeError_) as caught:
                await c.execute("def main():\n    raise KeyError('k')\n")
            assert caught.value.traceback is not None and "KeyError" in caught.value.traceback
            with pytest.raises(px.InvalidRequest):
                await c.execute("  ")

    asyncio.run(go())
