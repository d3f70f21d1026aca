#!/usr/bin/env python3
"""Notebook sessions benchmark: what issue 14's closing note asks for.

Starts the pyexec binary on a free 127.0.0.1 port (``--max-sessions`` through
its ``PYEXEC_MAX_SESSIONS`` twin) and prints, as a markdown table:

1. ``/execute`` throughput (trivial script, closed loop, zero errors
   expected) with no session open;
2. session create latency: the first create (it starts a worker: no
   standby exists before sessions are used), then creates with the started
   standby waiting (each followed by a delete and a wait for the next
   standby), p50 of those;
3. a trivial cell (``x + 1``) over one keep-alive connection: p50/p99 over
   100 (after 5 warm-up cells);
4. the memory of each idle session: PSS of its worker (nsjail, zygote, the
   session's spare and what the zygote keeps), next to an idle pool worker;
5. ``/execute`` throughput again, with ``--max-sessions`` sessions open and
   idle.

Usage:
    /opt/pyexec/tools-venv/bin/python bench/sessions.py [--quick] [--binary PATH]
        [--workers N] [--max-sessions N]

Only the standard library (and this directory's ``pyexec_bench``) is used.
Numbers are reported, never asserted; the exit status is non-zero only when
the harness cannot measure (a session call fails).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyexec_bench.common import ROOT, log, pct
from pyexec_bench.http_throughput import http_closed_loop
from pyexec_bench.proc_accounting import worker_memory
from pyexec_bench.service import Service


class Client:
    """One keep-alive connection to the service."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, float]:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The service closes a keep-alive connection idle for
            # --header-read-timeout-secs (during a throughput run): reconnect.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            started = time.perf_counter()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        raw = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        return response.status, (json.loads(raw) if raw else None), elapsed_ms

    def create(self) -> tuple[str, float]:
        status, answer, ms = self.call("POST", "/sessions", {})
        if status != 201:
            raise RuntimeError(f"POST /sessions answered {status}: {answer}")
        return answer["id"], ms


def nsjail_pids(service_pid: int) -> set[int]:
    return {w["nsjail_pid"] for w in worker_memory(service_pid)["workers"]}


def wait_for_spawns(svc: Service, count: int, timeout: float = 60.0) -> None:
    """Until ``count`` workers have started and are ready (pool, standbys, sessions)."""
    deadline = time.monotonic() + timeout
    while svc.metrics().get("pyexec_worker_spawns_total", 0) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def throughput(svc: Service, concurrency: int, duration: float) -> dict[str, Any]:
    out = http_closed_loop(svc, "trivial", concurrency, duration)
    return {"rps": out["rps"], "p50": out["p50"], "p99": out["p99"], "errors": out["errors"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/pyexec")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-sessions", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="shorter throughput runs, fewer warm creates")
    args = parser.parse_args()
    duration = 5.0 if args.quick else 15.0
    warm_creates = 3 if args.quick else 10
    concurrency = 2 * args.workers
    os.environ["PYEXEC_MAX_SESSIONS"] = str(args.max_sessions)
    with tempfile.TemporaryDirectory(prefix="pyexec-bench-sessions-") as tmp:
        svc = Service(args.binary, args.workers, Path(tmp))
        svc.start()
        try:
            return measure(svc, args, duration, warm_creates, concurrency)
        finally:
            svc.stop()


def measure(svc: Service, args: argparse.Namespace, duration: float, warm_creates: int, concurrency: int) -> int:
    client = Client(svc.port)
    # The pool's workers and its hot standby, before any session exists.
    spawns = args.workers + 1
    wait_for_spawns(svc, spawns)
    pool = nsjail_pids(svc.pid)
    log(f"/execute throughput without sessions ({concurrency} clients, {duration:g} s)")
    before = throughput(svc, concurrency, duration)

    first_id, first_ms = client.create()
    spawns += 1  # the first session's own worker
    warm: list[float] = []
    for _ in range(warm_creates):
        # Each create that takes the standby starts the next one.
        spawns += 1
        wait_for_spawns(svc, spawns)
        session, ms = client.create()
        warm.append(ms)
        client.call("DELETE", f"/sessions/{session}")

    log("100 trivial cells")
    client.call("POST", f"/sessions/{first_id}/execute", {"code": "x = 41"})
    for _ in range(5):
        client.call("POST", f"/sessions/{first_id}/execute", {"code": "x + 1"})
    cells: list[float] = []
    for _ in range(100):
        status, answer, ms = client.call("POST", f"/sessions/{first_id}/execute", {"code": "x + 1"})
        if status != 200 or answer["result"] != 42:
            raise RuntimeError(f"cell answered {status}: {answer}")
        cells.append(ms)

    ids = [first_id]
    while len(ids) < args.max_sessions:
        spawns += 1
        wait_for_spawns(svc, spawns)
        session, _ = client.create()
        client.call(
            "POST", f"/sessions/{session}/execute", {"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1]})"}
        )
        ids.append(session)
    # With --max-sessions open no standby is started: every worker outside
    # the pool is a session's.
    time.sleep(2.0)
    memory = worker_memory(svc.pid)["workers"]
    status, answer, _ = client.call("POST", "/sessions", {})
    refused = status == 503
    if status == 201:
        client.call("DELETE", f"/sessions/{answer['id']}")
    session_mib = [w["total_kib"] / 1024 for w in memory if w["nsjail_pid"] not in pool]
    pool_mib = [w["total_kib"] / 1024 for w in memory if w["nsjail_pid"] in pool]
    log(f"/execute throughput with {len(ids)} sessions open ({concurrency} clients, {duration:g} s)")
    after = throughput(svc, concurrency, duration)
    for session in ids:
        client.call("DELETE", f"/sessions/{session}")

    rows = [
        ("session create, first (starts a worker)", f"{first_ms:.1f} ms"),
        (f"session create, standby waiting (p50 of {len(warm)})", f"{pct(warm, 50):.1f} ms"),
        ("trivial cell `x + 1`, p50 / p99 of 100", f"{pct(cells, 50):.2f} / {pct(cells, 99):.2f} ms"),
        (
            "memory per idle session (PSS of its whole worker)",
            " ".join(f"{m:.1f}" for m in sorted(session_mib)) + " MiB",
        ),
        ("memory of an idle pool worker, for comparison", " ".join(f"{m:.1f}" for m in sorted(pool_mib)) + " MiB"),
        (f"one more create with {args.max_sessions} open", "503 overloaded" if refused else f"answered {status}"),
        (
            f"/execute throughput, no session ({concurrency} clients)",
            f"{before['rps']:.0f} req/s (p50 {before['p50']:.1f} ms, {before['errors']} errors)",
        ),
        (
            f"/execute throughput, {len(ids)} sessions open",
            f"{after['rps']:.0f} req/s (p50 {after['p50']:.1f} ms, {after['errors']} errors)",
        ),
    ]
    print(f"\n## Sessions ({args.workers} workers, --max-sessions {args.max_sessions}, {os.cpu_count()} CPUs)\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
