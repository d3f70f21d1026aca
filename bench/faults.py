#!/usr/bin/env python3
"""Fault injection under load: the service's own processes die or hang, no request is lost.

Starts the binary on a free 127.0.0.1 port, loads it from ``--clients``
keep-alive connections (``http.client``) with trivial scripts that each
return a fresh nonce, and meanwhile sends, in rotation, SIGKILL and
SIGSTOP/SIGCONT to each kind of process of the chain (nsjail, zygote, fork
server, spare run init, runner; found by walking /proc from the service's
pid; see ``pyexec_bench/chain.py``), and squeezes one worker's memory
cgroup until the kernel OOM-kills in it. After each fault it waits for the pool
to be back at full size (``pyexec_workers`` idle + busy = pool size, none
starting) and records how long that took; before the next fault it also
waits until no worker is starting (the hot standby is back).

Asserts (exit 1 otherwise):
- 0 wrong results: every 200 carries its own request's nonce;
- 0 lost requests: no 500, no connection error, no answer later than the
  run's timeout + the supervisor's grace (``RUN_GRACE``, 5 s);
- no 422 (an injected fault is never the script's verdict; the scripts
  themselves cannot fail);
- the pool back to full size within 2 s of every fault (of the last one
  included), and at least ``--min-faults`` faults injected.
503 ``worker_lost`` (the honest answer when a retry is lost too) is
allowed and reported.

Usage:
    /opt/pyexec/tools-venv/bin/python bench/faults.py [--binary PATH] [--duration 40]
    /opt/pyexec/tools-venv/bin/python bench/faults.py --long   # the 10-minute scenario

Writes a JSON summary to ``bench/results/tmp/faults.json`` (``--long``:
``bench/results/faults-long.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from pyexec_bench.chain import KINDS, inject
from pyexec_bench.common import ROOT, log, pct
from pyexec_bench.service import Service

RUN_TIMEOUT_S = 5.0
GRACE_S = 5.0  # src/worker/mod.rs RUN_GRACE
RECOVERY_BOUND_S = 2.0
SCRIPT = 'def main():\n    return "{nonce}"\n'


class Load:
    """Closed-loop clients; every answer is classified."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.clients = clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.problems: list[str] = []
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=RUN_TIMEOUT_S + GRACE_S + 30)

    def record(self, kind: str, latency: float, problem: str | None = None) -> None:
        with self.lock:
            self.answers[kind] += 1
            self.latencies.append(latency)
            if problem:
                self.problems.append(problem)

    def client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            nonce = uuid.uuid4().hex
            body = json.dumps({"script": SCRIPT.format(nonce=nonce), "timeout": RUN_TIMEOUT_S})
            t0 = time.monotonic()
            try:
                if conn is None:
                    # The socket timeout is only a backstop: lateness is judged below.
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=RUN_TIMEOUT_S + GRACE_S + 20)
                conn.request("POST", "/execute", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.record("connection_error", time.monotonic() - t0, f"connection error: {exc!r}")
                conn = None
                continue
            latency = time.monotonic() - t0
            late = latency > RUN_TIMEOUT_S + GRACE_S
            try:
                answer = json.loads(data)
            except ValueError:
                answer = {}
            if resp.status == 200:
                if answer.get("result") != nonce:
                    self.record("wrong", latency, f"wrong result: sent {nonce}, got {answer.get('result')!r}")
                    continue
                kind = "ok"
            else:
                kind = f"{resp.status} {answer.get('kind')}"
            problem = None
            if late:
                problem = f"late answer ({kind}) after {latency:.2f} s"
                kind = "late"
            elif resp.status in (422, 500) or (resp.status == 503 and answer.get("kind") != "worker_lost"):
                problem = f"{kind}: {answer.get('error')}"
            self.record(kind, latency, problem)


def pool_state(service: Service) -> tuple[bool, bool]:
    """(pool at full size: idle + busy = size; nothing starting, the hot standby included)."""
    try:
        m = service.metrics()
    except (OSError, RuntimeError):
        return False, False
    size = m.get("pyexec_pool_size", 0)
    idle = m.get('pyexec_workers{state="idle"}', 0)
    busy = m.get('pyexec_workers{state="busy"}', 0)
    starting = m.get('pyexec_workers{state="starting"}', 0)
    full = size > 0 and idle + busy == size
    return full, full and starting == 0


def wait_full(service: Service, since: float, limit: float = 15.0) -> float:
    """Seconds from ``since`` until the pool reads full (polled every 25 ms).

    Then waits (not counted) until nothing is starting either, so that the
    next fault meets a service that has also replaced its hot standby.
    """
    recovery = float("inf")
    while time.monotonic() - since < limit:
        full, settled = pool_state(service)
        if full and recovery == float("inf"):
            recovery = time.monotonic() - since
        if settled:
            break
        time.sleep(0.025)
    return recovery


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/pyexec")
    ap.add_argument("--duration", type=float, default=40.0, help="seconds of faults (default 40)")
    ap.add_argument("--long", action="store_true", help="the 10-minute scenario")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--min-faults", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between a recovery and the next fault")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--recovery-bound", type=float, default=RECOVERY_BOUND_S, help="seconds (default 2)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.long:
        args.duration = 600.0
    return args


def run_faults(service: Service, args: argparse.Namespace) -> list[dict]:
    """Inject faults in rotation for ``args.duration``; each waits for recovery."""
    rng = random.Random(args.seed)
    plan = [(kind, action) for kind in KINDS for action in ("kill", "stop")] + [("worker_cgroup", "oom")]
    faults: list[dict] = []
    t_end = time.monotonic() + args.duration
    i = 0
    while time.monotonic() < t_end:
        kind, action = plan[i % len(plan)]
        i += 1
        fault = inject(service.pid, kind, action, rng)
        if fault is None:
            log(f"{action} of {kind}: no fault made (no such process, or the worker outlived its squeeze)")
            continue
        recovery = wait_full(service, fault.at)
        faults.append({"kind": kind, "action": action, "pid": fault.pid, "recovery_s": recovery})
        time.sleep(args.gap)
    return faults


def verdict(load: Load, faults: list[dict], min_faults: int, bound: float) -> list[str]:
    failures = []
    if load.problems:
        failures.append(f"{len(load.problems)} lost, wrong, late or blamed answers (first: {load.problems[0]})")
    slow = [f for f in faults if f["recovery_s"] > bound]
    if slow:
        failures.append(f"{len(slow)} faults left the pool short for over {bound} s: {slow[:5]}")
    if len(faults) < min_faults:
        failures.append(f"only {len(faults)} faults injected (want >= {min_faults})")
    if load.answers["ok"] == 0:
        failures.append("no request succeeded")
    return failures


def main() -> int:
    args = parse_args()
    out = args.out or ROOT / ("bench/results/faults-long.json" if args.long else "bench/results/tmp/faults.json")
    with tempfile.TemporaryDirectory(prefix="pyexec-faults-") as tmp:
        service = Service(args.binary, args.workers, Path(tmp))
        service.start()
        load = Load(service.port, args.clients)
        faults: list[dict] = []
        final_metrics: dict[str, float] = {}
        try:
            load.start()
            time.sleep(2.0)
            faults = run_faults(service, args)
            time.sleep(1.0)
        finally:
            load.join()
            log_text = service.log_path.read_text(errors="replace")
            with contextlib.suppress(OSError, RuntimeError):
                final_metrics = {k: v for k, v in service.metrics().items() if "fault" in k or "retr" in k}
            service.stop()
    recoveries = [f["recovery_s"] for f in faults]
    summary = {
        "duration_s": args.duration,
        "clients": args.clients,
        "workers": args.workers,
        "requests": sum(load.answers.values()),
        "answers": dict(load.answers),
        "faults": len(faults),
        "faults_by_kind": dict(sorted(Counter(f"{f['kind']} {f['action']}" for f in faults).items())),
        "recovery_p50_s": pct(recoveries, 50),
        "recovery_max_s": max(recoveries, default=float("nan")),
        "latency_p50_s": pct(load.latencies, 50),
        "latency_p99_s": pct(load.latencies, 99),
        "latency_max_s": max(load.latencies, default=float("nan")),
        "metrics": final_metrics,
        "problems": load.problems[:50],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    failures = verdict(load, faults, args.min_faults, args.recovery_bound)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if failures:
        print(f"service log tail:\n{log_text[-4000:]}", file=sys.stderr)
        return 1
    print(f"PASS: {summary['requests']} requests, {len(faults)} faults, recovery max {summary['recovery_max_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
