"""CPU time and memory of the pyexec process tree, read from /proc.

Owns walking the tree under the supervisor (nsjail -> zygote -> spares), CPU
snapshots (machine, supervisor, nsjail, zygotes, reaped runs) and PSS per
idle worker. Must not send requests or start processes: callers take the
snapshots around their own load.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    return children


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------- CPU


def cpu_snapshot(root_pid: int) -> dict[str, float]:
    """CPU time so far (ms): the whole machine (busy = not idle/iowait), the
    supervisor, the zygotes themselves (their fork()s are billed here) and the
    reaped runs (the zygotes' cutime+cstime: spare set-up, user code, exit)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - v[4]
    kids = _ppid_map()
    sup = _stat_fields(root_pid) or ["0"] * 20
    zy_self = zy_kids = nsjail = 0
    stack, nsjails = list(kids.get(root_pid, [])), []
    while stack:
        p = stack.pop()
        if _comm(p) == "nsjail":
            nsjails.append(p)
        else:
            stack += kids.get(p, [])
    for nj in nsjails:
        nf = _stat_fields(nj)
        if nf:
            nsjail += int(nf[11]) + int(nf[12])
        for z in kids.get(nj, []):
            f = _stat_fields(z)
            if f:
                zy_self += int(f[11]) + int(f[12])
                zy_kids += int(f[13]) + int(f[14])
    ms = 1000.0 / CLK_TCK
    return {
        "machine": busy * ms,
        "supervisor": (int(sup[11]) + int(sup[12])) * ms,
        "nsjail": nsjail * ms,
        "zygote": zy_self * ms,
        "runs": zy_kids * ms,
    }


def cpu_per_request(a: dict[str, float], b: dict[str, float], n: int) -> dict[str, float]:
    return {k: (b[k] - a[k]) / n for k in a} if n else {}


# --------------------------------------------------------------------------- memory


def _kib_fields(path: str) -> dict[str, int]:
    """The ``Name:  N kB`` lines of a /proc file ({} once the process is gone)."""
    fields: dict[str, int] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            fields[name] = int(value[0])
    return fields


def pss_kib(pid: int) -> int:
    return _kib_fields(f"/proc/{pid}/smaps_rollup").get("Pss", 0)


def pss_split_kib(pid: int) -> tuple[int, int]:
    """(Pss_Anon, Pss_File) of a process, KiB."""
    rollup = _kib_fields(f"/proc/{pid}/smaps_rollup")
    return rollup.get("Pss_Anon", 0), rollup.get("Pss_File", 0)


def rss_kib(pid: int) -> int:
    return _kib_fields(f"/proc/{pid}/status").get("VmRSS", 0)


def subtree(kids: dict[int, list[int]], pid: int) -> list[int]:
    """Every descendant of ``pid`` in ``kids`` (a ppid -> children map)."""
    out, stack = [], list(kids.get(pid, []))
    while stack:
        p = stack.pop()
        out.append(p)
        stack += kids.get(p, [])
    return out


def worker_memory(root_pid: int) -> dict[str, Any]:
    """PSS per worker. Every ``nsjail`` process under pyexec is one worker; its
    subtree is the zygote and the zygote's pre-forked spare (run init +
    runner). Other descendants of pyexec (e.g. its spawn helper) count with
    the supervisor."""
    kids = _ppid_map()

    nsjails, others = [], [root_pid]
    for p in subtree(kids, root_pid):
        if _comm(p) == "nsjail":
            nsjails.append(p)
    inside = {q for nj in nsjails for q in subtree(kids, nj)}
    others += [p for p in subtree(kids, root_pid) if p not in inside and p not in nsjails]

    workers = []
    for nj in nsjails:
        zygotes = kids.get(nj, [])
        w = {
            "nsjail_pid": nj,
            "nsjail_kib": pss_kib(nj),
            "zygote_kib": sum(pss_kib(z) for z in zygotes),
            "spare_kib": sum(pss_kib(s) for z in zygotes for s in subtree(kids, z)),
            "processes": 1 + len(subtree(kids, nj)),
        }
        w["total_kib"] = w["nsjail_kib"] + w["zygote_kib"] + w["spare_kib"]
        split = [pss_split_kib(p) for p in [nj, *subtree(kids, nj)]]
        w["anon_kib"] = sum(a for a, _ in split)
        w["file_kib"] = sum(f for _, f in split)
        w["zygote_rss_kib"] = sum(rss_kib(z) for z in zygotes)
        workers.append(w)
    tot = [w["total_kib"] for w in workers]
    return {
        "workers": workers,
        "supervisor_pss_kib": sum(pss_kib(p) for p in others),
        "supervisor_processes": [f"{p} {_comm(p)}" for p in others],
        "supervisor_rss_kib": rss_kib(root_pid),
        "per_worker_mib_mean": statistics.fmean(tot) / 1024 if tot else None,
        "per_worker_mib_max": max(tot) / 1024 if tot else None,
        "all_workers_mib": sum(tot) / 1024,
    }
