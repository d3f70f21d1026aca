"""``bench/run.py --compare REF``: this build against another commit's, A/B in one run.

Owns building REF (its binary and its worker, from ``git archive`` of the
commit into ``target/bench-compare/src-COMMIT``, compiled into
``target/bench-compare`` so a second run reuses the build), running both
services side by side on the same host, alternating
the same measurements between them round by round, and the table of both
columns with their ratio. Code and host speed are told apart: both columns
see the same host at the same time, and the fork floor measured in the same
run says how fast this host forks. Must not decide pass or fail.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from pyexec_bench.common import PACED_GAP_S, ROOT, log
from pyexec_bench.fork_floor import fork_floor
from pyexec_bench.http_latency import http_sequential
from pyexec_bench.http_throughput import http_closed_loop
from pyexec_bench.proc_accounting import worker_memory
from pyexec_bench.service import Service


def build_ref(ref: str) -> tuple[Path, Path]:
    """(binary, worker dir) of commit ``ref``, built from its own sources."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Under target/ (not a 0700 temp dir): the jail's uid must traverse to
    # the worker directory, as it does to /opt/pyexec/worker.
    target = ROOT / "target/bench-compare"
    src = target / f"src-{commit[:12]}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    log(f"building {ref} ({commit[:12]}) in {src} (cargo target {target})")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--quiet", "--target-dir", str(target)], cwd=src, check=True
    )
    return target / "release/pyexec", src / "worker"


def _round(svc: Service, seq_n: dict[str, int], paced_n: int, loop_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, n in seq_n.items():
        out[f"{name} back to back"] = http_sequential(svc, name, n, warmup=max(10, n // 20))
    out["trivial paced"] = http_sequential(svc, "trivial", paced_n, warmup=5, gap_s=PACED_GAP_S)
    out["closed loop 4"] = http_closed_loop(svc, "trivial", 4, loop_s)
    return out


def compare(
    ref: str,
    binary: Path,
    workers: int | None,
    tmp: Path,
    *,
    rounds: int,
    seq_n: dict[str, int],
    paced_n: int,
    loop_s: float,
) -> dict[str, Any]:
    ref_binary, ref_worker = build_ref(ref)
    sides = {
        "this": Service(binary, workers, _dir(tmp, "this"), worker_dir=ROOT / "worker"),
        ref: Service(ref_binary, workers, _dir(tmp, "ref"), worker_dir=ref_worker),
    }
    res: dict[str, Any] = {"ref": ref, "rounds": rounds, "fork_floor": fork_floor()}
    try:
        for svc in sides.values():
            svc.start()
        for label, svc in sides.items():
            svc.wait_all_idle()
            res.setdefault("memory_idle", {})[label] = worker_memory(svc.pid)
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
        for i in range(rounds):
            # Alternate who goes first, so neither always meets a warmer host.
            order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
            for label, svc in order:
                log(f"round {i + 1}/{rounds}: {label}")
                svc.wait_all_idle()
                runs[label].append(_round(svc, seq_n, paced_n, loop_s))
        res["sides"] = {label: _aggregate(r) for label, r in runs.items()}
    finally:
        for svc in sides.values():
            svc.stop()
    return res


def _dir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _aggregate(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per measure: the median over rounds of p50 ms, machine and service CPU ms per run, req/s."""
    out: dict[str, float | None] = {}
    for measure in rounds[0]:
        rs = [r[measure] for r in rounds]
        out[f"{measure}: p50 ms"] = statistics.median(r["p50"] for r in rs)
        cpu = [r.get("cpu_ms_per_request", {}).get("machine") for r in rs]
        out[f"{measure}: machine CPU ms/run"] = statistics.median(c for c in cpu if c is not None) if any(cpu) else None
        # The service's own tree (supervisor, jails, zygotes, reaped runs):
        # the code's cost without the load client or the host's other work.
        tree = [_service_cpu(r.get("cpu_ms_per_request", {})) for r in rs]
        known = [c for c in tree if c is not None]
        out[f"{measure}: service CPU ms/run"] = statistics.median(known) if known else None
        if "rps" in rs[0]:
            out[f"{measure}: req/s"] = statistics.median(r["rps"] for r in rs)
            out[f"{measure}: errors"] = sum(r["errors"] for r in rs)
    return out


def _service_cpu(cpu: dict[str, float]) -> float | None:
    parts = [cpu.get(k) for k in ("supervisor", "nsjail", "zygote", "runs")]
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def render_compare(res: dict[str, Any]) -> str:
    ref = res["ref"]
    this, other = res["sides"]["this"], res["sides"][ref]
    floor = res["fork_floor"]
    lines = [
        f"## This build vs {ref} (A/B, same host, {res['rounds']} alternating rounds, medians)",
        "",
        f"Fork floor on this host: warm interpreter {floor['warm']['cpu_ms_mean']:.2f} ms CPU per fork+exit+wait "
        f"(bare Python {floor['bare']['cpu_ms_mean']:.2f} ms).",
        "",
        f"| measure | this build | {ref} | this / {ref} |",
        "|---|---|---|---|",
    ]
    for key, value in this.items():
        base = other.get(key)
        ratio = f"{value / base:.2f}" if value is not None and base else "n/a"
        lines.append(f"| {key} | {_num(value)} | {_num(base)} | {ratio} |")
    for label in ("this", ref):
        for what in ("machine", "service"):
            cpu = res["sides"][label].get(f"trivial back to back: {what} CPU ms/run")
            if cpu is not None:
                ratio = cpu / floor["warm"]["cpu_ms_mean"]
                lines.append(f"| {what} CPU per trivial run / warm fork floor ({label}) | {ratio:.2f}x | | |")
    for label, mem in res.get("memory_idle", {}).items():
        lines.append(f"| idle worker PSS MiB ({label}) | {mem.get('per_worker_mib_mean', float('nan')):.1f} | | |")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
