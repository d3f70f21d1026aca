"""Throughput of pyexec measured with wrk, a load generator written in C.

The Python closed-loop client costs about 3 ms of CPU per request on the
same two cores the service runs on, so it caps the figure it measures; wrk
costs a few microseconds. Owns the wrk invocation and its Lua script; must
not start or stop the service. Skipped (an empty result) when wrk is not
installed (``scripts/install.sh --with-test-tools`` installs Debian's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pyexec_bench.common import SCRIPTS, body_for, log
from pyexec_bench.proc_accounting import cpu_per_request, cpu_snapshot
from pyexec_bench.service import Service

# Every non-2xx answer counts as a status error in wrk's summary; the done()
# hook prints the summary as one JSON line after wrk's own report.
WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("PYEXEC_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PYEXEC_WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_binary() -> str | None:
    return os.environ.get("WRK") or shutil.which("wrk")


def wrk_closed_loop(svc: Service, name: str, concurrency: int, duration: float, tmp: Path) -> dict[str, Any] | None:
    """``concurrency`` keep-alive connections, each sending back to back for ``duration`` s."""
    wrk = wrk_binary()
    if not wrk:
        log("wrk not found: skipping the wrk closed loop")
        return None
    script = tmp / "pyexec.lua"
    script.write_text(WRK_LUA)
    body = tmp / f"body-{name}.json"
    body.write_bytes(body_for(SCRIPTS[name]))
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--timeout", "30s", "-s", str(script)]
    argv.append(f"http://127.0.0.1:{svc.port}/execute")
    c0 = cpu_snapshot(svc.pid)
    proc = subprocess.run(
        argv,
        env=dict(os.environ, PYEXEC_BODY_FILE=str(body)),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    c1 = cpu_snapshot(svc.pid)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PYEXEC_WRK ")), None)
    if proc.returncode != 0 or line is None:
        log(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return None
    stats = json.loads(line.removeprefix("PYEXEC_WRK "))
    errors = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    ok = stats["requests"] - stats["status"]
    seconds = stats["duration_us"] / 1e6
    return {
        "tool": "wrk",
        "concurrency": concurrency,
        "duration_s": seconds,
        "ok": ok,
        "errors": errors,
        "statuses": {k: stats[k] for k in ("connect", "read", "write", "status", "timeout") if stats[k]},
        "rps": ok / seconds,
        "p50": stats["p50_us"] / 1000,
        "p99": stats["p99_us"] / 1000,
        "max": stats["max_us"] / 1000,
        "cpu_ms_per_request": cpu_per_request(c0, c1, stats["requests"]),
    }
