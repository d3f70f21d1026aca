"""The cold-spawn design of the original nsjail/Flask services, for comparison.

Owns the per-request jail (the worker jail's flags of docs/internals.md, minus
the control fd and the worker mount, around a fresh ``python -c`` importing
numpy and pandas) and its sequential and closed-loop timings. Must not touch
the pyexec service: it needs only ``$PYEXEC_HOME/bin/nsjail`` and the venv.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import time
from multiprocessing.queues import Queue
from typing import Any

from pyexec_bench.common import HOME, SCRIPTS, check_result, summary

COLD_WRAPPER = r"""
import json, sys
import numpy, pandas
def _conv(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(type(o).__name__)
g = {"__name__": "script"}
exec(compile(sys.argv[1], "<script>", "exec"), g)
print(json.dumps({"result": g["main"]()}, default=_conv))
"""


def nsjail_cold_argv(script: str) -> list[str]:
    """The per-request jail of the cold-spawn design: the worker jail's flags of
    docs/internals.md (minus the control fd and worker mount) around a fresh python."""
    venv = HOME / "venv"
    # fmt: off
    return [
        str(HOME / "bin/nsjail"), "--mode", "o", "--quiet", "--hostname", "pyexec",
        "--user", "99999:99999:1", "--group", "99999:99999:1",
        "--time_limit", "30", "--proc_rw",
        "--rlimit_as", "inf", "--rlimit_cpu", "inf", "--rlimit_fsize", "inf",
        "--rlimit_nofile", "1024", "--rlimit_nproc", "soft", "--rlimit_stack", "soft",
        "--tmpfsmount", "/tmp",
        "-R", "/usr", "-s", "usr/bin:/bin", "-s", "usr/lib:/lib", "-s", "usr/lib64:/lib64",
        "-R", str(venv),
        "-R", "/dev/null", "-R", "/dev/zero", "-R", "/dev/urandom", "-R", "/dev/random",
        "-E", f"PATH={venv}/bin:/usr/bin:/bin", "-E", "HOME=/tmp", "-E", "LANG=C.UTF-8",
        "-E", "TMPDIR=/tmp", "-E", "OPENBLAS_NUM_THREADS=1", "-E", "OMP_NUM_THREADS=1",
        "-E", "MKL_NUM_THREADS=1", "-E", "PYTHONDONTWRITEBYTECODE=1",
        "--cwd", "/",
        "--", f"{venv}/bin/python3", "-E", "-s", "-B", "-c", COLD_WRAPPER, script,
    ]
    # fmt: on


def cold_once(name: str) -> float:
    argv = nsjail_cold_argv(SCRIPTS[name])
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    t1 = time.perf_counter_ns()
    if p.returncode != 0:
        raise RuntimeError(f"cold spawn failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    doc = json.loads(p.stdout.decode().strip().splitlines()[-1])
    if not check_result(name, doc["result"]):
        raise RuntimeError(f"cold spawn {name}: unexpected result {doc['result']!r}")
    return (t1 - t0) / 1e6


def cold_sequential(name: str, n: int) -> dict[str, Any]:
    cold_once(name)  # warm the page cache
    return summary([cold_once(name) for _ in range(n)])


def _cold_loop(name: str, end: float, q: Queue[Any]) -> None:
    lat, errors = [], 0
    while time.time() < end:
        try:
            lat.append(cold_once(name))
        except Exception:  # counted, not raised
            errors += 1
    q.put((lat, errors))


def cold_closed_loop(name: str, concurrency: int, duration: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    end = time.time() + duration
    procs = [ctx.Process(target=_cold_loop, args=(name, end, q)) for _ in range(concurrency)]
    t0 = time.time()
    for p in procs:
        p.start()
    lat, errors = [], 0
    for _ in procs:
        pl, pe = q.get(timeout=duration + 120)
        lat += pl
        errors += pe
    for p in procs:
        p.join(timeout=10)
    wall = time.time() - t0  # includes the last runs finishing after the deadline
    out = summary(lat)
    out.update({"concurrency": concurrency, "ok": len(lat), "errors": errors, "rps": len(lat) / wall})
    return out
