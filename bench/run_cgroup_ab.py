#!/usr/bin/env python3
"""A/B of per-run cgroup leaves: trivial-request latency and CPU with and without them.

In one run on one host, alternating ``--run-cgroup on`` and ``off``
(``PYEXEC_RUN_CGROUP``) for ``--rounds`` rounds so that load from other jobs
falls on both sides alike. Each side: a fresh pyexec with one worker,
``--n`` sequential trivial requests back to back and ``--n`` paced ones
(20 ms apart, as for traffic that is not back to back), each on one
keep-alive connection. CPU per request is the whole service's process tree
(supervisor, nsjail, zygote, fork servers, and the runs it reaped: utime +
stime + cutime + cstime of every live process below pyexec, so a reaped
process is counted once, at its parent), which includes the fork server's
mkdir of each leaf and the init's move into it.

Prints a markdown table and writes it to ``bench/results/run-cgroup-ab.md``.

Usage:
    /opt/pyexec/tools-venv/bin/python bench/run_cgroup_ab.py [--binary PATH] [--rounds 3] [--n 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyexec_bench.common import ROOT, log
from pyexec_bench.http_latency import http_sequential
from pyexec_bench.proc_accounting import CLK_TCK, _ppid_map, _stat_fields
from pyexec_bench.service import Service

MODES = ("on", "off")


def tree_cpu_ms(root: int) -> float:
    """CPU of ``root`` and every live descendant, with their reaped children."""
    kids = _ppid_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])
        stack += kids.get(pid, [])
    return total * 1000.0 / CLK_TCK


def one_side(binary: Path, mode: str, n: int, logdir: Path) -> dict[str, float]:
    os.environ["PYEXEC_RUN_CGROUP"] = mode
    svc = Service(binary, 1, logdir)
    try:
        svc.start()
        svc.wait_all_idle()
        out: dict[str, float] = {}
        for label, gap in (("b2b", 0.0), ("paced", 0.02)):
            cpu0 = tree_cpu_ms(svc.pid)
            res = http_sequential(svc, "trivial", n, warmup=30, gap_s=gap)
            cpu1 = tree_cpu_ms(svc.pid)
            out[f"{label}_p50"] = res["p50"]
            out[f"{label}_p99"] = res["p99"]
            # Includes the warm-up requests' CPU: divide by all of them.
            out[f"{label}_cpu"] = (cpu1 - cpu0) / (n + 30)
            out[f"{label}_machine_cpu"] = res["cpu_ms_per_request"].get("machine", float("nan"))
        return out
    finally:
        svc.stop()


def leaf_ops(n: int) -> list[str]:
    """Wall time of each leaf operation on this host's cgroupfs (root, no jail).

    A scratch worker cgroup ``w<our pid>.bench`` under pyexec's parents (the
    same calls as the fork server, the init and the zygote make), removed
    at the end. The join is timed in a forked child, against the same child
    without it.
    """
    sys.path.insert(0, str(ROOT / "worker"))
    from pyexec_worker import runcgroup  # noqa: PLC0415 - the worker code, not an installed package

    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    own = Path("/proc/self/cgroup").read_text().splitlines()
    if v2:
        rel = next(line.split("::", 1)[1] for line in own if line.startswith("0::"))
        parents = [Path("/sys/fs/cgroup" + rel)]
    else:
        parents = [Path("/sys/fs/cgroup/memory/pyexec"), Path("/sys/fs/cgroup/pids/pyexec")]
    dirs = [p / f"w{os.getpid()}.bench" for p in parents]
    for d in dirs:
        d.mkdir(parents=False, exist_ok=True)
    if v2:
        (dirs[0] / "cgroup.subtree_control").write_text("+memory +pids")
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in dirs]
    runcgroup.MEMORY_FD, runcgroup.PIDS_FD = fds[0], fds[-1]
    times: dict[str, list[float]] = {k: [] for k in ("make", "join", "limit", "oom_kills", "remove")}

    def timed(key: str, fn):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        out = fn()
        times[key].append((time.perf_counter() - t0) * 1e6)
        return out

    def child_us(leaf) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            if leaf is not None:
                leaf.join()
            os._exit(0)
        os.waitpid(pid, 0)
        return (time.perf_counter() - t0) * 1e6

    try:
        for _ in range(n):
            leaf = timed("make", lambda: runcgroup.Leaf.make("v2" if v2 else "v1", 40))
            bare = child_us(None)
            times["join"].append(child_us(leaf) - bare)
            timed("limit", lambda leaf=leaf: leaf.limit(64 << 20))
            timed("oom_kills", leaf.oom_kills)
            timed("remove", leaf.remove)
    finally:
        for fd in fds:
            os.close(fd)
        for d in dirs:
            for sub in d.iterdir():
                if sub.is_dir():
                    sub.rmdir()
            d.rmdir()
    lines = [
        "",
        f"Leaf operations on this host's cgroup {'v2' if v2 else 'v1'}fs, {n} times each, "
        "median (p90) in microseconds:",
        "",
        "| operation | where | median us | p90 us |",
        "|---|---|---|---|",
    ]
    where = {
        "make": "fork server, per spare",
        "join": "spare's init, per spare (write 0 to cgroup.procs + unshare cgroup ns)",
        "limit": "zygote, per request (read usage, write limit)",
        "oom_kills": "zygote, per request (read the counter)",
        "remove": "zygote, per run, after the reply",
    }
    for key, values in times.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        lines.append(f"| {key} | {where[key]} | {statistics.median(values):.0f} | {p90:.0f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.environ.get("PYEXEC_BIN", str(ROOT / "target/release/pyexec")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=300, help="requests per phase and side")
    ap.add_argument("--ops", type=int, default=200, help="times each leaf operation is timed (0: skip)")
    ap.add_argument("--ops-only", action="store_true", help="only the leaf operations, no service")
    args = ap.parse_args()
    ops = leaf_ops(args.ops) if args.ops else []
    if args.ops_only:
        print("\n".join(ops))
        return 0
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="pyexec-ab-") as tmp:
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else reversed(MODES):
                log(f"round {r + 1}/{args.rounds}: --run-cgroup {mode}")
                results[mode].append(one_side(Path(args.binary), mode, args.n, Path(tmp)))
    keys = [
        ("b2b_p50", "back-to-back p50 ms"),
        ("b2b_p99", "back-to-back p99 ms"),
        ("b2b_cpu", "back-to-back CPU ms/request (service tree)"),
        ("paced_p50", "paced p50 ms"),
        ("paced_p99", "paced p99 ms"),
        ("paced_cpu", "paced CPU ms/request (service tree)"),
        ("paced_machine_cpu", "paced CPU ms/request (whole machine)"),
    ]
    lines = [
        f"# Per-run cgroup leaves: A/B ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})",
        "",
        f"Trivial script, 1 worker, {args.n} requests per phase, {args.rounds} rounds alternating; "
        "median of the rounds (min-max).",
        "",
        "| metric | --run-cgroup on | --run-cgroup off | on - off |",
        "|---|---|---|---|",
    ]
    for key, label in keys:
        on = [s[key] for s in results["on"]]
        off = [s[key] for s in results["off"]]
        med_on, med_off = statistics.median(on), statistics.median(off)
        lines.append(
            f"| {label} | {med_on:.2f} ({min(on):.2f}-{max(on):.2f}) | "
            f"{med_off:.2f} ({min(off):.2f}-{max(off):.2f}) | {med_on - med_off:+.2f} |"
        )
    text = "\n".join(lines + ops) + "\n"
    print(text)
    out = ROOT / "bench/results/run-cgroup-ab.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
