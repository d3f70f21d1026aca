"""The fork floor: what one fork + _exit + waitpid of the warm interpreter costs here.

Owns the measurement that the per-run cost targets are ratios to (issue 13):
the sandbox venv's Python with numpy and pandas imported (the zygote's
state, without the zygote), and bare Python, each forking a child that exits
at once, in one subprocess. CPU is the parent's and the reaped children's
(``os.times``), so page-table copy (fork) and teardown (exit) both count.
Must not start nsjail or the service.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pyexec_bench.common import HOME, pct

FORK_CODE = r"""
import json, os, sys, time
if sys.argv[1] == "warm":
    import numpy, pandas  # the zygote's imports
    pandas.DataFrame({"a": [1, 2]}).groupby("a").sum()
n = int(sys.argv[2])
cpu, wall = [], []
for i in range(n + 10):
    t0, w0 = os.times(), time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    t1, w1 = os.times(), time.perf_counter()
    if i >= 10:
        cpu.append(((t1.user + t1.system + t1.children_user + t1.children_system)
                    - (t0.user + t0.system + t0.children_user + t0.children_system)) * 1000)
        wall.append((w1 - w0) * 1000)
print(json.dumps({"cpu": cpu, "wall": wall}))
"""


def fork_floor(n: int = 200) -> dict[str, Any]:
    """{"warm": {...}, "bare": {...}}: mean CPU ms (os.times ticks are coarse,
    so the mean over n is the number) and p50 wall ms per fork+exit+wait."""
    out: dict[str, Any] = {}
    for kind in ("warm", "bare"):
        done = subprocess.run(
            [str(HOME / "venv/bin/python3"), "-E", "-s", "-c", FORK_CODE, kind, str(n)],
            capture_output=True,
            env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "LANG": "C.UTF-8"},
            timeout=300,
            check=True,
        )
        data = json.loads(done.stdout)
        out[kind] = {
            "n": n,
            "cpu_ms_mean": sum(data["cpu"]) / len(data["cpu"]),
            "wall_ms_p50": pct(data["wall"], 50),
        }
    return out
