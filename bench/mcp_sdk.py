"""Latency of the MCP endpoint and of the Python SDK, against the real service.

    /opt/pyexec/tools-venv/bin/python bench/mcp_sdk.py [--binary target/release/pyexec] [-n 100]

Prints, for N trivial calls of each kind after a warm-up, interleaved, p50/p90 of:
  - raw HTTP: POST /execute over one keep-alive httpx.Client (the floor);
  - SDK: pyexec_client.Client.execute over its own keep-alive connection;
  - MCP: run_python through the official MCP Python SDK (ClientSession over
    Streamable HTTP), one initialized session for all calls;
and the SDK's overhead over raw HTTP (p50 difference). Loopback only; bounded
by N. Its numbers are kept in bench/results/mcp-sdk.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
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


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def series(url: str, n: int, warmup: int) -> dict[str, list[float]]:
    """The three kinds of call interleaved (raw, SDK, MCP, raw, ...), so that a
    host whose load changes during the run affects all three alike."""
    out: dict[str, list[float]] = {"raw HTTP /execute": [], "SDK Client.execute": [], "MCP run_python": []}
    with httpx.Client(timeout=60) as raw, pyexec_client.Client(url) as client:
        async with (
            streamable_http_client(url + "/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for i in range(warmup + n):
                t0 = time.perf_counter()
                answer = raw.post(url + "/execute", json={"script": SCRIPT})
                raw_ms = ms_since(t0)
                assert answer.json()["result"] == {"sum": 4}
                t0 = time.perf_counter()
                assert client.execute(SCRIPT).result == {"sum": 4}
                sdk_ms = ms_since(t0)
                t0 = time.perf_counter()
                result = await session.call_tool("run_python", {"code": CELL})
                mcp_ms = ms_since(t0)
                assert json.loads(result.content[0].text)["result"] == 4
                if i >= warmup:
                    for name, value in zip(out, (raw_ms, sdk_ms, mcp_ms), strict=True):
                        out[name].append(value)
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
        rows = asyncio.run(series(svc.url, args.n, args.warmup))
    finally:
        svc.stop()
    for name, values in rows.items():
        print(
            f"{name:<22} n={len(values)} p50={pct(values, 50):6.2f} ms  p90={pct(values, 90):6.2f} ms  "
            f"mean={statistics.mean(values):6.2f} ms"
        )
    raw_p50 = pct(rows["raw HTTP /execute"], 50)
    print(f"SDK overhead over raw HTTP (p50): {pct(rows['SDK Client.execute'], 50) - raw_p50:+.2f} ms")
    print(f"MCP overhead over raw HTTP (p50): {pct(rows['MCP run_python'], 50) - raw_p50:+.2f} ms")


if __name__ == "__main__":
    main()
