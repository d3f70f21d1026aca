"""Sequential latency of pyexec over HTTP: one keep-alive connection, one request at a time.

Owns the sequential loop (optionally paced), the correctness check of every
answer and the per-phase server-side breakdown (/metrics histogram means,
``duration_ms``, CPU per request). Must not start or stop the service; an
error answer raises, since then nothing can be measured.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from typing import Any

from pyexec_bench.common import SCRIPTS, body_for, check_result, pct, summary
from pyexec_bench.proc_accounting import cpu_per_request, cpu_snapshot
from pyexec_bench.service import Service, hist_mean_ms


def http_sequential(svc: Service, name: str, n: int, warmup: int, gap_s: float = 0.0) -> dict[str, Any]:
    """n requests one after the other on one keep-alive connection; with
    ``gap_s`` the client pauses between them (the worker has time to fork its
    next spare, as when requests do not arrive back to back)."""
    body = body_for(SCRIPTS[name])
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    reconnects = 0
    lat: list[float] = []
    run_ms: list[float] = []
    m0: dict[str, float] = {}
    c0: dict[str, float] = {}
    for i in range(warmup + n):
        if i == warmup:
            m0 = svc.metrics()
            c0 = cpu_snapshot(svc.pid)
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/execute", body, headers)
            r = conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            reconnects += 1
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
            continue
        t1 = time.perf_counter_ns()
        if r.status != 200:
            raise RuntimeError(f"{name}: request {i} answered {r.status}: {data[:500]!r}")
        doc = json.loads(data)
        if not check_result(name, doc.get("result")):
            raise RuntimeError(f"{name}: unexpected result {doc.get('result')!r}")
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            reconnects += 1
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
        if gap_s:
            time.sleep(gap_s)
        if i >= warmup:
            lat.append((t1 - t0) / 1e6)
            if isinstance(doc.get("duration_ms"), (int, float)):
                run_ms.append(float(doc["duration_ms"]))
    conn.close()
    c1 = cpu_snapshot(svc.pid)
    m1 = svc.metrics()
    out = summary(lat)
    out["cpu_ms_per_request"] = cpu_per_request(c0, c1, len(lat))
    out["reconnects"] = reconnects
    out["server_duration_ms_p50"] = pct(run_ms, 50) if run_ms else None
    out["server_duration_ms_mean"] = statistics.fmean(run_ms) if run_ms else None
    out["metrics_mean_ms"] = {
        "request": hist_mean_ms(m0, m1, "pyexec_request_duration_seconds"),
        "queue_wait": hist_mean_ms(m0, m1, "pyexec_queue_wait_seconds"),
        "run": hist_mean_ms(m0, m1, "pyexec_run_duration_seconds"),
    }
    return out
