"""Latency of the MCP endpoint and of the Python SDK, against the real service.

    /opt/pyexec/tools-venv/bin/python bench/mcp_sdk.py [--binary target/release/pyexec] [-n 100]

Prints, for N sequential trivial calls after a warm-up, p50/p90 of:
  - raw HTTP: POST /execute over one keep-alive httpx.Client (the floor);
  - SDK: pyexec_client.Client.execute over its own keep-alive connection;
  - MCP: run_python through the official MCP Python SDK (ClientSession over
    Streamable HTTP), one initialized session for all calls;
and the SDK's overhead over raw HTTP (p50 difference). Loopback only; bounded
by N. Numbers for the README come from here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from pyexec_bench.common import pct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients/python/src"))
sys.path.insert(0, str(ROOT / "clients/python/tests"))

import pyexec_client  # noqa: E402
import pyexec_service  # noqa: E402

SCRIPT = 'def main():\n    return {"sum": 2 + 2}\n'
CELL = "2 + 2"


def timed(n: int, call: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def mcp_latencies(url: str, n: int, warmup: int) -> list[float]:
    async with (
        streamable_http_client(url + "/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        out = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            result = await session.call_tool("run_python", {"code": CELL})
            elapsed = (time.perf_counter() - t0) * 1000
            answer = json.loads(result.content[0].text)
            assert answer["result"] == 4, answer
            if i >= warmup:
                out.append(elapsed)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=None)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    if args.binary:
        os.environ["PYEXEC_BINARY"] = args.binary
    svc = pyexec_service.Service(workers=2).start()
    try:
        with httpx.Client(timeout=60) as raw:

            def raw_call() -> None:
                answer = raw.post(svc.url + "/execute", json={"script": SCRIPT})
                assert answer.json()["result"] == {"sum": 4}

            timed(args.warmup, raw_call)
            raw_ms = timed(args.n, raw_call)
        with pyexec_client.Client(svc.url) as client:

            def sdk_call() -> None:
                assert client.execute(SCRIPT).result == {"sum": 4}

            timed(args.warmup, sdk_call)
            sdk_ms = timed(args.n, sdk_call)
        # Interleave nothing: each series runs alone, in this order, on the same service.
        mcp_ms = asyncio.run(mcp_latencies(svc.url, args.n, args.warmup))
    finally:
        svc.stop()
    rows = {"raw HTTP /execute": raw_ms, "SDK Client.execute": sdk_ms, "MCP run_python": mcp_ms}
    for name, values in rows.items():
        print(
            f"{name:<22} n={len(values)} p50={pct(values, 50):6.2f} ms  p90={pct(values, 90):6.2f} ms  "
            f"mean={statistics.mean(values):6.2f} ms"
        )
    print(f"SDK overhead over raw HTTP (p50): {pct(sdk_ms, 50) - pct(raw_ms, 50):+.2f} ms")
    print(f"MCP overhead over raw HTTP (p50): {pct(mcp_ms, 50) - pct(raw_ms, 50):+.2f} ms")


if __name__ == "__main__":
    main()
