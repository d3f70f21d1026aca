"""The floor: the script's ``main()`` in an already-warm interpreter, no isolation at all.

Owns the in-process timing loop (``json.dumps(main())``), run in one
subprocess of the sandbox venv's Python so numpy and pandas are the same
builds the workers use. Must not start nsjail or the service.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pyexec_bench.common import HOME, SCRIPTS, summary

FLOOR_CODE = r"""
import json, sys, time
import numpy, pandas
src, n, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def _conv(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(type(o).__name__)
g = {"__name__": "script"}
exec(compile(src, "<script>", "exec"), g)
main = g["main"]
for _ in range(warmup):
    json.dumps(main(), default=_conv)
lat = []
pc = time.perf_counter_ns
for _ in range(n):
    t0 = pc()
    json.dumps(main(), default=_conv)
    lat.append((pc() - t0) / 1e6)
print(json.dumps(lat))
"""


def floor(name: str, n: int, warmup: int) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "LANG": "C.UTF-8",
    }
    p = subprocess.run(
        [str(HOME / "venv/bin/python3"), "-E", "-s", "-c", FLOOR_CODE, SCRIPTS[name], str(n), str(warmup)],
        capture_output=True,
        env=env,
        timeout=300,
        check=True,
    )
    return summary(json.loads(p.stdout))
