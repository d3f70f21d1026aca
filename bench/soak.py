#!/usr/bin/env python3
"""Soak: 10 minutes at half the measured maximum throughput; does anything grow?

Starts the binary on a free 127.0.0.1 port, measures the maximum throughput
of trivial scripts (closed loop, ``--clients`` keep-alive connections, 15 s),
then paces the same clients at half that rate, for ``--warmup`` seconds
(default 30, not sampled) and then ``--duration`` seconds (default 600).
Every ``--every`` seconds (default 10) it samples:

- the supervisor's RSS (``VmRSS``);
- each worker's PSS (the nsjail process and its whole subtree, summed from
  ``/proc/<pid>/smaps_rollup``), reported as the mean over workers;
- open fds of the supervisor and of all its descendants;
- the number of processes under the supervisor;
- cgroup leaves: the directories under this service's worker cgroups
  (``w<pid>.<id>``, their ``zygote`` and per-run ``run.*`` leaves),
  and stale worker cgroups with no process left (v1 ``memory|pids/pyexec``, or v2).

Each series' slope (least squares) is reported as growth over the run in
percent of its first-minute mean (goal: <= 2 %). Prints a table and writes
``bench/results/soak.png`` (matplotlib, from the tools venv) and
``bench/results/soak.json``. Exit status 1 if a request failed or a
series grew more than ``--max-growth`` percent.

Usage:
    /opt/pyexec/tools-venv/bin/python bench/soak.py [--binary PATH] [--duration 600]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pyexec_bench.common import ROOT, log
from pyexec_bench.proc_accounting import _comm, _ppid_map, pss_kib, rss_kib, subtree
from pyexec_bench.service import Service

SCRIPT = 'def main():\n    return "{nonce}"\n'


class Clients:
    """``n`` keep-alive clients; paced at ``rate`` requests/s in total, or closed loop."""

    def __init__(self, port: int, n: int, rate: float | None) -> None:
        self.port, self.n, self.rate = port, n, rate
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def run(self, i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        interval = self.n / self.rate if self.rate else 0.0
        next_at = time.monotonic() + interval * i / self.n
        while not self.stop.is_set():
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            nonce = uuid.uuid4().hex
            try:
                conn.request(
                    "POST",
                    "/execute",
                    json.dumps({"script": SCRIPT.format(nonce=nonce)}),
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                body = json.loads(resp.read())
                good = resp.status == 200 and body.get("result") == nonce
                problem = None if good else f"{resp.status} {body.get('kind')}: {body.get('error')}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problem = f"error {exc!r}"
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                if problem:
                    self.failed.append(problem)
                else:
                    self.ok += 1


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _worker_cgroups(service_pid: int) -> list[str]:
    """This service's worker cgroups (``w<service pid>.<id>``, src/worker/cgroup/delegated.rs)."""
    name = f"w{service_pid}.*"
    found = set(glob.glob(f"/sys/fs/cgroup/*/pyexec/{name}"))  # v1: memory/, pids/
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # v2 mounted at the root
        found.update(glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True))
    return sorted(found)


def cgroup_leaves(service_pid: int) -> tuple[int, int]:
    """(cgroups under this service's worker cgroups, incl. them; stale worker cgroups).

    A worker cgroup is stale when no process is left anywhere in it (its
    worker is gone but the directory stayed).
    """
    count = stale = 0
    for root in _worker_cgroups(service_pid):
        procs = 0
        for here, _dirs, files in os.walk(root):
            count += 1
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError), open(os.path.join(here, "cgroup.procs")) as f:
                    procs += len(f.read().split())
        stale += procs == 0
    return count, stale


def sample(service_pid: int) -> dict[str, float]:
    kids = _ppid_map()
    below = subtree(kids, service_pid)
    nsjails = [p for p in below if _comm(p) == "nsjail"]
    pss = [sum(pss_kib(p) for p in [j, *subtree(kids, j)]) for j in nsjails]
    # A worker's leaf is named after its jailed child (the zygote's host pid).
    ours, stale = cgroup_leaves(service_pid)
    return {
        "supervisor_rss_kib": rss_kib(service_pid),
        "worker_pss_kib": sum(pss) / len(pss) if pss else 0.0,
        "open_fds": fd_count(service_pid) + sum(fd_count(p) for p in below),
        "processes": len(below) + 1,
        "cgroup_leaves": ours,
        "stale_cgroup_leaves": stale,
    }


def growth_percent(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope over the run, in % of the first minute's mean."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0
    first = [y for t, y in zip(ts, ys, strict=True) if t - ts[0] <= 60] or ys[:1]
    base = sum(first) / len(first)
    span = ts[-1] - ts[0]
    return 100.0 * slope * span / base if base else (0.0 if slope * span == 0 else float("inf"))


def plot(ts: list[float], series: dict[str, list[float]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - tools venv only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.0 * len(series)), sharex=True)
    minutes = [(t - ts[0]) / 60 for t in ts]
    for ax, (name, ys) in zip(axes, series.items(), strict=True):
        ax.plot(minutes, ys, marker=".")
        ax.set_ylabel(name, fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("pyexec soak at half the maximum throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/pyexec")
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds at the soak rate before sampling")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-growth", type=float, default=2.0)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench/results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyexec-soak-") as tmp:
        service = Service(args.binary, args.workers, Path(tmp))
        service.start()
        try:
            with Clients(service.port, args.clients, None) as probe:
                time.sleep(15)
            max_rps = probe.ok / 15
            rate = max_rps / 2
            log(f"max throughput {max_rps:.1f} req/s; soaking at {rate:.1f} req/s for {args.duration:.0f} s")
            ts: list[float] = []
            rows: list[dict[str, float]] = []
            with Clients(service.port, args.clients, rate) as load:
                # Warm-up first: the plotting fork servers import matplotlib
                # in the background and the standbys appear after start.
                time.sleep(args.warmup)
                t_end = time.monotonic() + args.duration
                while time.monotonic() < t_end:
                    ts.append(time.monotonic())
                    rows.append(sample(service.pid))
                    time.sleep(args.every)
                ts.append(time.monotonic())
                rows.append(sample(service.pid))
        finally:
            service.stop()
    series = {name: [row[name] for row in rows] for name in rows[0]}
    result = {
        "max_rps": max_rps,
        "rate_rps": rate,
        "requests_ok": load.ok,
        "requests_failed": len(load.failed),
        "failures": load.failed[:20],
        "samples": len(rows),
        "series": {},
    }
    print("\n| series | first | last | min | max | growth over run (%) |\n|---|---|---|---|---|---|")
    failed = bool(load.failed)
    for name, ys in series.items():
        growth = growth_percent(ts, ys)
        result["series"][name] = {
            "first": ys[0],
            "last": ys[-1],
            "min": min(ys),
            "max": max(ys),
            "growth_percent": growth,
        }
        print(f"| {name} | {ys[0]:.0f} | {ys[-1]:.0f} | {min(ys):.0f} | {max(ys):.0f} | {growth:+.2f} |")
        if name != "stale_cgroup_leaves" and growth > args.max_growth:
            failed = True
    print(f"\n{load.ok} requests ok, {len(load.failed)} failed, at {rate:.1f} req/s (max {max_rps:.1f})")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(ts, series, args.out_dir / "soak.png")
    log(f"wrote {args.out_dir / 'soak.json'} and {args.out_dir / 'soak.png'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
