#!/usr/bin/env python3
"""Start-up time and first-request latency of pyexec on this host.

The same two numbers smoke.py (the container) and kube_play.py (the pod)
print, for the binary started directly: spawn -> GET /ready 200, then the
first POST /execute. Each start is a fresh process on a free loopback port
(`--listen 127.0.0.1:0`, the port read from its first stdout line).

    tests/container/startup_host.py [--binary target/release/pyexec] [--workers 2] [--runs 3]

Uses PYEXEC_NSJAIL, PYEXEC_SANDBOX_PYTHON and PYEXEC_WORKER_DIR as the
service does. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def once(binary: str, workers: int) -> tuple[float, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--workers", str(workers)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"pyexec did not start: {line!r} (exit {proc.poll()})")
        base = line.strip().rsplit(" ", 1)[-1]
        while True:
            try:
                with urllib.request.urlopen(base + "/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.HTTPError, OSError):
                pass
            if time.monotonic() - t0 > 60:
                raise RuntimeError("not ready within 60 s")
            time.sleep(0.01)
        ready = time.monotonic() - t0
        body = json.dumps({"script": 'def main():\n    return {"sum": 2 + 2}'}).encode()
        req = urllib.request.Request(base + "/execute", data=body, headers={"Content-Type": "application/json"})
        t1 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        first = time.perf_counter() - t1
        if answer.get("result") != {"sum": 4}:
            raise RuntimeError(f"unexpected answer {answer}")
        return ready, first
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "target/release/pyexec"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    results = [once(a.binary, a.workers) for _ in range(a.runs)]
    for ready, first in results:
        print(f"start -> /ready {ready:.2f} s, first request {first * 1000:.1f} ms")
    print(
        f"median of {a.runs}: start -> /ready {statistics.median(r for r, _ in results):.2f} s, "
        f"first-request latency {statistics.median(f for _, f in results) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
