#!/usr/bin/env python3
"""pyexec benchmark harness: pyexec vs the cold-spawn design vs the floor, in one run.

Measures, on this machine and in one run:

1. pyexec over HTTP (this script starts the binary on a free 127.0.0.1 port):
   sequential p50/p99 of a trivial and of a small pandas script over one
   keep-alive ``http.client`` connection, and the highest throughput sustained
   with zero errors at fixed concurrencies (closed loop, one Python process
   per connection, and the same with wrk when it is installed; in full mode
   also open-loop k6 constant-arrival-rate steps);
2. the cold-spawn design of the original nsjail/Flask implementations: a fresh
   nsjail + a fresh Python importing numpy and pandas per request, with the
   sandbox flags of docs/internals.md, same scripts;
3. the floor: the same ``main()`` called in an already-warm interpreter with
   no isolation at all (in-process timing loop, plus ``json.dumps``).

It also reads the memory of each idle worker (PSS from
``/proc/<pid>/smaps_rollup`` of the nsjail process, the zygote and its spare,
summed per worker).

Prints a markdown table and writes it to ``bench/results/latest.md`` (full
mode) or ``bench/results/tmp/quick.md`` (``--quick``), with a JSON twin.
Targets from issue 4 are reported, not asserted. Exit status is non-zero only
when the harness itself cannot measure (service does not start, requests
fail in the sequential phase, cold spawn does not work).

This file owns the command line, the sample sizes, the order of the phases
and the result files; the measurements and the report live in
``pyexec_bench/`` (importable because Python puts this script's directory,
bench/, first on ``sys.path``).

``--compare REF`` runs an A/B instead (``pyexec_bench/compare.py``): REF's
binary and worker built from its own sources, both services side by side,
the same measurements alternating round by round, both columns and their
ratio, with the host's fork floor beside them.

Usage:
    /opt/pyexec/tools-venv/bin/python bench/run.py [--quick] [--binary PATH]
    /opt/pyexec/tools-venv/bin/python bench/run.py --compare e5f4b8a [--quick] [--rounds 3]

Only the standard library is used; the floor and the cold spawn use the
sandbox venv's Python (numpy + pandas).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyexec_bench.cold_spawn import cold_closed_loop, cold_sequential
from pyexec_bench.common import PACED_GAP_S, ROOT, SCRIPTS, log
from pyexec_bench.compare import compare, render_compare
from pyexec_bench.floor import floor
from pyexec_bench.http_latency import http_sequential
from pyexec_bench.http_throughput import http_closed_loop, k6_steps
from pyexec_bench.proc_accounting import worker_memory
from pyexec_bench.report import cpu_ticks, f2, machine, render, steal_percent, targets
from pyexec_bench.service import Service
from pyexec_bench.wrk_load import wrk_closed_loop


@dataclass(frozen=True)
class Plan:
    """Sample counts and durations: quick (CI, well under a minute) or full."""

    quick: bool
    n_seq: dict[str, int]
    n_paced: int
    n_cold: int
    n_floor: dict[str, int]
    concurrencies: list[int]
    wrk_concurrencies: list[int]
    throughput_s: float
    cold_throughput_s: float

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            floor_n = {"trivial": 2000, "pandas": 100}
            return cls(True, {"trivial": 300, "pandas": 150}, 50, 5, floor_n, [4], [4], 2.0, 3.0)
        return cls(
            False,
            {"trivial": 3000, "pandas": 1500},
            400,
            30,
            {"trivial": 100000, "pandas": 2000},
            [1, 2, 4, 8],
            [2, 4, 8],
            5.0,
            10.0,
        )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: few samples, well under a minute")
    ap.add_argument("--binary", default=os.environ.get("PYEXEC_BIN", str(ROOT / "target/release/pyexec")))
    ap.add_argument("--workers", type=int, default=None, help="--workers for pyexec (default: its own, CPUs)")
    ap.add_argument("--no-service", action="store_true", help="skip the pyexec part (cold spawn and floor only)")
    ap.add_argument(
        "--compare",
        metavar="REF",
        help="A/B against commit REF: build its binary and worker, run both alternating, print both and the ratio",
    )
    ap.add_argument("--rounds", type=int, default=3, help="--compare: alternating rounds (default 3)")
    ap.add_argument(
        "--out",
        default=None,
        help="markdown output (default: bench/results/latest.md, or bench/results/tmp/quick.md with --quick)",
    )
    return ap.parse_args()


def measure_pyexec(svc: Service, plan: Plan, workers: int | None, tmp: Path) -> dict[str, Any]:
    """Every pyexec phase against a started service, in order; memory before and after the load."""
    px: dict[str, Any] = {}
    m = svc.metrics()
    px["workers"] = int(m.get("pyexec_pool_size") or workers or os.cpu_count() or 1)
    px["ready_s"] = svc.ready_s
    svc.wait_all_idle()
    time.sleep(0.5)
    px["memory_idle"] = worker_memory(svc.pid)
    log(f"idle worker PSS: {f2(px['memory_idle']['per_worker_mib_mean'], 1)} MiB")
    px["sequential"] = {}
    for name in SCRIPTS:
        n = plan.n_seq[name]
        log(f"pyexec sequential {name} x{n}")
        px["sequential"][name] = http_sequential(svc, name, n, warmup=max(20, n // 20))
    px["paced"] = {}
    for name in SCRIPTS:
        log(f"pyexec paced {name} x{plan.n_paced}, {PACED_GAP_S * 1000:.0f} ms apart")
        px["paced"][name] = http_sequential(svc, name, plan.n_paced, warmup=10, gap_s=PACED_GAP_S)
    px["closed_loop"] = []
    for c in plan.concurrencies:
        log(f"pyexec closed loop, concurrency {c}, {plan.throughput_s:.0f} s")
        r = http_closed_loop(svc, "trivial", c, plan.throughput_s)
        log(f"  {r['rps']:.0f} req/s, errors {r['errors']} {r['statuses']}")
        px["closed_loop"].append(r)
    px["wrk"] = []
    for c in plan.wrk_concurrencies:
        log(f"pyexec wrk closed loop, concurrency {c}, {plan.throughput_s:.0f} s")
        r = wrk_closed_loop(svc, "trivial", c, plan.throughput_s, tmp)
        if r is None:
            break
        log(f"  {r['rps']:.0f} req/s, errors {r['errors']} {r['statuses']}")
        px["wrk"].append(r)
    best, how = None, "n/a"
    for client, runs in (("Python client", px["closed_loop"]), ("wrk", px["wrk"])):
        for r in runs:
            if r["errors"] == 0 and (best is None or r["rps"] > best):
                best, how = r["rps"], f"closed loop ({client}), concurrency {r['concurrency']}"
    if not plan.quick:
        base = int(best or 100)
        rates = sorted({max(50, int(base * f) // 25 * 25) for f in (0.5, 0.7, 0.85, 1.0, 1.1, 1.25)})
        px["k6_steps"] = k6_steps(svc, "trivial", rates, vus=8, step_s=8, tmp=tmp)
        for st in px["k6_steps"]:
            if st["ok"] and (best is None or st["achieved_rps"] > best):
                best, how = st["achieved_rps"], f"k6 constant-arrival-rate {st['rate']}/s, max {st['vus']} VUs"
    px["best_rps"], px["best_rps_how"] = best, how
    svc.wait_all_idle()
    time.sleep(1.0)
    px["memory_after"] = worker_memory(svc.pid)
    return px


def main_compare(args: argparse.Namespace, plan: Plan) -> int:
    """``--compare REF``: the A/B table, written to bench/results/compare-REF.md (and .json)."""
    tmp = Path(tempfile.mkdtemp(prefix="pyexec-compare-"))
    seq_n = {name: n // 3 for name, n in plan.n_seq.items()}
    try:
        res = compare(
            args.compare,
            Path(args.binary),
            args.workers,
            tmp,
            rounds=args.rounds,
            seq_n=seq_n,
            paced_n=plan.n_paced // 2,
            loop_s=plan.throughput_s,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"] = machine()
    md = render_compare(res)
    print(md)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.compare)
    out = Path(args.out) if args.out else ROOT / f"bench/results/{'tmp/' if plan.quick else ''}compare-{safe}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    log(f"wrote {out} (and .json)")
    return 0


def main() -> int:
    args = parse_args()
    plan = Plan.for_mode(args.quick)
    if args.compare:
        return main_compare(args, plan)
    q = plan.quick
    out_md = Path(args.out) if args.out else ROOT / ("bench/results/tmp/quick.md" if q else "bench/results/latest.md")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyexec-bench-"))
    t_start = time.monotonic()

    res: dict[str, Any] = {"quick": q, "machine": machine(), "command": "bench/run.py" + (" --quick" if q else "")}

    # (3) floor and (2) cold spawn first: they do not need the service.
    log("floor: warm interpreter, no isolation")
    res["floor"] = {name: floor(name, plan.n_floor[name], max(10, plan.n_floor[name] // 10)) for name in SCRIPTS}
    log("cold spawn: fresh nsjail + python + numpy/pandas per request")
    res["cold"] = {name: cold_sequential(name, plan.n_cold) for name in SCRIPTS}
    res["cold_throughput"] = cold_closed_loop("trivial", os.cpu_count() or 1, plan.cold_throughput_s)

    if not args.no_service:
        binary = Path(args.binary)
        if not binary.is_file():
            log(f"pyexec binary not found at {binary} (build it, or pass --no-service)")
            return 2
        svc = Service(binary, args.workers, tmp)
        try:
            svc.start()
            res["pyexec"] = measure_pyexec(svc, plan, args.workers, tmp)
        finally:
            svc.stop()

    res["machine"]["loadavg_end"] = os.getloadavg()
    res["machine"]["steal_percent"] = steal_percent(res["machine"]["ticks_start"], cpu_ticks())
    res["targets"] = targets(res)
    res["elapsed_s"] = time.monotonic() - t_start
    md = render(res)
    print(md)
    out_md.write_text(md)
    out_md.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    log(f"wrote {out_md} (and .json) in {res['elapsed_s']:.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
