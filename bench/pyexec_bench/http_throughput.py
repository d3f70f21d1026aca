"""Throughput of pyexec over HTTP: closed-loop client processes and open-loop k6 steps.

Owns the load generators: one forked client process per connection sending
back to back until a shared deadline, and k6 ``constant-arrival-rate`` steps
with a fixed VU pool. Must not start or stop the service, nor decide which
figure is the headline (the caller picks the best zero-error rate).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from pyexec_bench.common import HOME, SCRIPTS, body_for, log, summary
from pyexec_bench.proc_accounting import cpu_per_request, cpu_snapshot
from pyexec_bench.service import Service


def _closed_loop_client(port: int, body: bytes, start_at: float, duration: float, conn_q: Queue[Any]) -> None:
    """One connection, requests back to back until the deadline (runs in its own process)."""
    headers = {"Content-Type": "application/json"}
    lat: list[float] = []
    statuses: dict[str, int] = {}
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < end:
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/execute", body, headers)
            r = conn.getresponse()
            r.read()
            key = str(r.status)
        except (http.client.HTTPException, OSError) as e:
            key = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t1 = time.perf_counter_ns()
        statuses[key] = statuses.get(key, 0) + 1
        if key == "200":
            lat.append((t1 - t0) / 1e6)
    conn.close()
    conn_q.put((lat, statuses))


def http_closed_loop(svc: Service, name: str, concurrency: int, duration: float) -> dict[str, Any]:
    body = body_for(SCRIPTS[name])
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [
        ctx.Process(target=_closed_loop_client, args=(svc.port, body, start_at, duration, q))
        for _ in range(concurrency)
    ]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    c0 = cpu_snapshot(svc.pid)
    lat: list[float] = []
    statuses: dict[str, int] = {}
    for _ in procs:
        pl, ps = q.get(timeout=duration + 60)
        lat += pl
        for k, v in ps.items():
            statuses[k] = statuses.get(k, 0) + v
    c1 = cpu_snapshot(svc.pid)
    for p in procs:
        p.join(timeout=10)
    ok = statuses.get("200", 0)
    errors = sum(v for k, v in statuses.items() if k != "200")
    out = summary(lat)
    out["cpu_ms_per_request"] = cpu_per_request(c0, c1, ok + errors)
    out.update(
        {
            "concurrency": concurrency,
            "duration_s": duration,
            "ok": ok,
            "errors": errors,
            "statuses": statuses,
            "rps": ok / duration,
        }
    )
    return out


K6_STEP_JS = r"""
import http from 'k6/http';
const body = JSON.stringify({ script: __ENV.SCRIPT });
const params = { headers: { 'Content-Type': 'application/json' } };
export const options = {
  discardResponseBodies: true,
  scenarios: { step: { executor: 'constant-arrival-rate', rate: Number(__ENV.RATE),
    timeUnit: '1s', duration: __ENV.DURATION, preAllocatedVUs: Number(__ENV.VUS),
    maxVUs: Number(__ENV.VUS), gracefulStop: '5s' } },
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
};
export default function () { http.post(`${__ENV.BASE_URL}/execute`, body, params); }
export function handleSummary(data) { return { [__ENV.OUT]: JSON.stringify(data.metrics) }; }
"""


def k6_binary() -> str | None:
    for c in (os.environ.get("K6"), str(HOME / "tools-venv/bin/k6"), shutil.which("k6")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def k6_steps(svc: Service, name: str, rates: list[int], *, vus: int, step_s: int, tmp: Path) -> list[dict[str, Any]]:
    """Open-loop arrival-rate steps with a fixed VU pool (= fixed max concurrency)."""
    k6 = k6_binary()
    if not k6:
        log("k6 not found: skipping open-loop steps")
        return []
    js = tmp / "k6_step.js"
    js.write_text(K6_STEP_JS)
    out = []
    for rate in rates:
        res_path = tmp / f"k6_step_{rate}.json"
        env = dict(
            os.environ,
            BASE_URL=f"http://127.0.0.1:{svc.port}",
            SCRIPT=SCRIPTS[name],
            RATE=str(rate),
            DURATION=f"{step_s}s",
            VUS=str(vus),
            OUT=str(res_path),
            K6_NO_USAGE_REPORT="true",
        )
        subprocess.run(
            [k6, "run", "--no-usage-report", "--quiet", "--no-color", str(js)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=step_s + 60,
            check=False,
        )
        m = json.loads(res_path.read_text())
        reqs = m.get("http_reqs", {}).get("values", {}).get("count", 0)
        failed = m.get("http_req_failed", {}).get("values", {}).get("passes", 0)
        dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
        dur = m.get("http_req_duration", {}).get("values", {})
        step = {
            "rate": rate,
            "vus": vus,
            "requests": reqs,
            "failed": failed,
            "dropped": dropped,
            "achieved_rps": reqs / step_s,
            "p50": dur.get("p(50)"),
            "p99": dur.get("p(99)"),
            "max": dur.get("max"),
        }
        step["ok"] = failed == 0 and dropped == 0 and reqs >= 0.98 * rate * step_s
        log(
            f"k6 step {rate}/s: {reqs} reqs, failed {failed}, dropped {dropped}, "
            f"p50 {step['p50']:.2f} ms, p99 {step['p99']:.2f} ms"
        )
        out.append(step)
        if not step["ok"]:
            break
        time.sleep(0.5)
    return out
