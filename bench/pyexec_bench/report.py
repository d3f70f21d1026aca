"""The report: machine description, target verdicts and the markdown table.

Owns the wording and layout of ``latest.md``/``quick.md`` and the issue-4
targets (reported, never asserted). Works only on the result dict that
``run.py`` assembles; must not measure anything or write files.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from pyexec_bench.common import PACED_GAP_S, SCRIPTS

Result = dict[str, Any]

TARGETS = {
    "trivial_p50_ms": 2.0,
    "pandas_p50_ms": 5.0,
    "trivial_rps": 250.0,
    "cold_ratio": 100.0,
    "idle_worker_mib": 60.0,
}


def cpu_ticks() -> tuple[int, int]:
    """(all, steal) CPU ticks of the machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def steal_percent(start: tuple[int, int], end: tuple[int, int]) -> float:
    """Share of CPU time the hypervisor gave to other guests between two readings."""
    total = end[0] - start[0]
    return 100.0 * (end[1] - start[1]) / total if total else 0.0


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        osname = platform.freedesktop_os_release().get("PRETTY_NAME", "?")
    except (OSError, AttributeError):
        osname = "?"
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "memory": mem,
        "loadavg_start": os.getloadavg(),
        "ticks_start": cpu_ticks(),
        "os": osname,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def targets(res: Result) -> dict[str, tuple[Any, bool | None]]:
    px = res.get("pyexec", {})
    seq = px.get("sequential", {})
    paced = px.get("paced", {})
    tp = seq.get("trivial", {}).get("p50")
    pp = seq.get("pandas", {}).get("p50")
    tp_paced = paced.get("trivial", {}).get("p50")
    pp_paced = paced.get("pandas", {}).get("p50")
    rps = px.get("best_rps")
    idle = px.get("memory_idle") or {}
    mem = idle.get("per_worker_mib_mean")
    anon = statistics.fmean(w["anon_kib"] for w in idle["workers"]) / 1024 if idle.get("workers") else None
    ct, cp = res["cold"]["trivial"]["p50"], res["cold"]["pandas"]["p50"]
    cold_ok = None if tp is None or pp is None else (ct / tp >= 100 and cp / pp >= 100)
    return {
        "trivial_p50_ms": (tp, None if tp is None else tp <= TARGETS["trivial_p50_ms"]),
        "pandas_p50_ms": (pp, None if pp is None else pp <= TARGETS["pandas_p50_ms"]),
        "trivial_p50_ms_paced": (tp_paced, None if tp_paced is None else tp_paced <= TARGETS["trivial_p50_ms"]),
        "pandas_p50_ms_paced": (pp_paced, None if pp_paced is None else pp_paced <= TARGETS["pandas_p50_ms"]),
        "trivial_rps": (rps, None if rps is None else rps >= TARGETS["trivial_rps"]),
        "cold_ratio": (((ct, tp), (cp, pp)), cold_ok),
        "idle_worker_mib": (mem, None if mem is None else mem <= TARGETS["idle_worker_mib"]),
        "idle_worker_anon_mib": (anon, None),
    }


def f2(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def render(res: Result) -> str:
    lines = [
        *_header(res),
        *_latency(res),
        *_throughput(res),
        *_memory(res),
        *_targets(res),
    ]
    return "\n".join(lines) + "\n"


def _header(res: Result) -> list[str]:
    m = res["machine"]
    px = res.get("pyexec", {})
    return [
        f"# pyexec benchmark ({'quick' if res['quick'] else 'full'} run, {m['date']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, "
        f"{m['os']}. Load average (1 min) {m['loadavg_start'][0]:.2f} at start, "
        f"{m.get('loadavg_end', (float('nan'),))[0]:.2f} at end (other processes share the "
        f"CPUs when it is above ~0.5). CPU steal (time the hypervisor gave other guests) "
        f"during the run: {m.get('steal_percent', float('nan')):.1f}%; on a noisy host every figure "
        f"below is slower, the floor included. pyexec workers: {px.get('workers', 'n/a')}. "
        f"Command: `{res['command']}`.",
    ]


def _latency(res: Result) -> list[str]:
    px, cold, fl = res.get("pyexec", {}), res["cold"], res["floor"]
    seq = px.get("sequential", {})
    out = [
        "",
        "## Latency, sequential (one request at a time, back to back), milliseconds",
        "",
        "| script | pyexec HTTP p50 | p99 | cold spawn p50 | p99 | floor p50 | p99 "
        "| cold / pyexec (p50) | pyexec / floor (p50) | pyexec - floor (p50) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCRIPTS:
        s, c, f = seq.get(name, {}), cold[name], fl[name]
        diff = (s["p50"] - f["p50"]) if s else None
        out.append(
            f"| {name} | {f2(s.get('p50'))} | {f2(s.get('p99'))} | {f2(c['p50'], 1)} | "
            f"{f2(c['p99'], 1)} | {f2(f['p50'], 3)} | {f2(f['p99'], 3)} | "
            f"{ratio(c['p50'], s.get('p50'))} | {ratio(s.get('p50'), f['p50'])} | "
            f"{f2(diff)} |"
        )
    paced = px.get("paced")
    if paced:
        out += [
            "",
            f"Paced ({PACED_GAP_S * 1000:.0f} ms pause between requests, so the worker has "
            "forked its next spare before the next request comes):",
            "",
            "| script | pyexec HTTP p50 | p99 | cold / pyexec (p50) | pyexec - floor (p50) |",
            "|---|---|---|---|---|",
        ]
        for name in SCRIPTS:
            s_ = paced.get(name, {})
            out.append(
                f"| {name} | {f2(s_.get('p50'))} | {f2(s_.get('p99'))} | "
                f"{ratio(cold[name]['p50'], s_.get('p50'))} | "
                f"{f2(s_['p50'] - fl[name]['p50']) if s_ else 'n/a'} |"
            )
    out += [
        "",
        f"Samples: pyexec {seq.get('trivial', {}).get('n', 0)} trivial / "
        f"{seq.get('pandas', {}).get('n', 0)} pandas over one keep-alive connection "
        f"(http.client); cold spawn {cold['trivial']['n']} / {cold['pandas']['n']} "
        f"(fresh nsjail + python + `import numpy, pandas` each); floor {fl['trivial']['n']} / "
        f"{fl['pandas']['n']} calls of `json.dumps(main())` in a warm interpreter.",
    ]
    if seq:
        out += _where_time_goes(seq, px.get("paced") or {})
    return out


def _where_time_goes(seq: Result, paced: Result) -> list[str]:
    out = [
        "",
        "Where the time goes (means, ms): client end to end / server request "
        "(`pyexec_request_duration_seconds`) / queue wait / run "
        "(`pyexec_run_duration_seconds`) / `duration_ms` reported by the zygote:",
        "",
        "| requests | client e2e | server request | queue wait | run | duration_ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode, group in (("back to back", seq), ("paced", paced)):
        for name in SCRIPTS:
            s = group.get(name)
            if not s:
                continue
            mm = s["metrics_mean_ms"]
            out.append(
                f"| {name}, {mode} | {f2(s['mean'])} | {f2(mm['request'])} | "
                f"{f2(mm['queue_wait'], 3)} | {f2(mm['run'])} | "
                f"{f2(s['server_duration_ms_mean'])} |"
            )
    return out


def _throughput(res: Result) -> list[str]:
    px = res.get("pyexec", {})
    seq = px.get("sequential", {})
    out = [
        "",
        "## Throughput, trivial script",
        "",
        "| design | mode | concurrency | req/s (ok) | errors | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for client, key in (("Python client", "closed_loop"), ("wrk", "wrk")):
        for t in px.get(key, []):
            out.append(
                f"| pyexec | closed loop ({client}), {t['duration_s']:.0f} s | {t['concurrency']} | "
                f"{t['rps']:.0f} | {t['errors']} | {f2(t['p50'])} | {f2(t['p99'])} |"
            )
    for t in px.get("k6_steps", []):
        out.append(
            f"| pyexec | k6 arrival rate {t['rate']}/s | <= {t['vus']} VUs | "
            f"{t['achieved_rps']:.0f} | {int(t['failed'] + t['dropped'])} | "
            f"{f2(t['p50'])} | {f2(t['p99'])} |"
        )
    ct = res.get("cold_throughput")
    if ct:
        out.append(
            f"| cold spawn | closed loop | {ct['concurrency']} | {ct['rps']:.1f} | "
            f"{ct['errors']} | {f2(ct['p50'], 1)} | {f2(ct['p99'], 1)} |"
        )
    cpu_rows = [(f"sequential {n}, back to back", seq[n]) for n in SCRIPTS if seq.get(n)]
    cpu_rows += [(f"closed loop trivial, concurrency {t['concurrency']}", t) for t in px.get("closed_loop", [])]
    cpu_rows += [(f"wrk closed loop trivial, concurrency {t['concurrency']}", t) for t in px.get("wrk", [])]
    if cpu_rows and cpu_rows[0][1].get("cpu_ms_per_request"):
        out += [
            "",
            "CPU time per request, ms (from /proc: whole machine incl. the load client; "
            "supervisor; nsjail; zygotes, whose fork() of the spare is billed to them; runs = "
            "reaped spares: isolation set-up, user code, exit):",
            "",
            "| phase | machine | supervisor | nsjail | zygote | runs |",
            "|---|---|---|---|---|---|",
        ]
        for label, r in cpu_rows:
            c = r.get("cpu_ms_per_request") or {}
            out.append(
                f"| {label} | {f2(c.get('machine'))} | {f2(c.get('supervisor'))} | "
                f"{f2(c.get('nsjail'))} | {f2(c.get('zygote'))} | {f2(c.get('runs'))} |"
            )
    best = px.get("best_rps")
    out += [
        "",
        f"Highest pyexec throughput with zero errors: **{f2(best, 0)} req/s** ({px.get('best_rps_how', 'n/a')}).",
    ]
    return out


def _memory(res: Result) -> list[str]:
    px = res.get("pyexec", {})
    if not px.get("memory_idle"):
        return []
    out = [
        "",
        "## Memory per idle worker (PSS, /proc/<pid>/smaps_rollup)",
        "",
        "| when | per worker mean MiB | max | nsjail | zygote | fork server + spares "
        "(init + runner each) | worker anon / file-backed | all workers | supervisor PSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key in (("after start", "memory_idle"), ("after the load", "memory_after")):
        mm = px.get(key)
        if not mm or not mm["workers"]:
            continue
        w = mm["workers"]

        def avg(k: str, w: list[dict[str, Any]] = w) -> float:
            return statistics.fmean(x[k] for x in w) / 1024

        out.append(
            f"| {label} | {f2(mm['per_worker_mib_mean'], 1)} | "
            f"{f2(mm['per_worker_mib_max'], 1)} | {f2(avg('nsjail_kib'), 1)} | "
            f"{f2(avg('zygote_kib'), 1)} | {f2(avg('spare_kib'), 1)} | "
            f"{f2(avg('anon_kib'), 1)} / {f2(avg('file_kib'), 1)} | "
            f"{f2(mm['all_workers_mib'], 1)} | {f2(mm['supervisor_pss_kib'] / 1024, 1)} |"
        )
    out += [
        "",
        "PSS splits each shared page among all processes mapping it: the anon part "
        "(the zygote's heap, shared copy-on-write with its fork server and spare) is "
        "the worker's own; the file-backed part (python, numpy, pandas libraries) is "
        "shared with other workers and with any other process mapping the same files.",
    ]
    return out


def _targets(res: Result) -> list[str]:
    tg = res["targets"]
    out = [
        "",
        "## Targets (issue 4; reported, not asserted)",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for label, key, val in (
        ("trivial p50 <= 2 ms over HTTP, back to back", "trivial_p50_ms", f"{f2(tg['trivial_p50_ms'][0])} ms"),
        (
            "trivial p50 <= 2 ms over HTTP, paced (spare ready)",
            "trivial_p50_ms_paced",
            f"{f2(tg['trivial_p50_ms_paced'][0])} ms",
        ),
        ("pandas p50 <= 5 ms over HTTP, back to back", "pandas_p50_ms", f"{f2(tg['pandas_p50_ms'][0])} ms"),
        (
            "pandas p50 <= 5 ms over HTTP, paced (spare ready)",
            "pandas_p50_ms_paced",
            f"{f2(tg['pandas_p50_ms_paced'][0])} ms",
        ),
        (">= 250 trivial req/s, zero errors", "trivial_rps", f"{f2(tg['trivial_rps'][0], 0)} req/s"),
        (
            "p50 >= 100x lower than cold spawn",
            "cold_ratio",
            f"trivial {ratio(*tg['cold_ratio'][0][0])}, pandas {ratio(*tg['cold_ratio'][0][1])}",
        ),
        (
            "<= 60 MiB per idle worker (PSS)",
            "idle_worker_mib",
            f"{f2(tg['idle_worker_mib'][0], 1)} MiB, of which {f2(tg['idle_worker_anon_mib'][0], 1)} MiB "
            "anonymous (the worker's own; the rest is library pages shared by all workers)",
        ),
    ):
        out.append(f"| {label} | {val} | {mark(tg[key][1])} |")
    return out
