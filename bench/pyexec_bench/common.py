"""What every measurement shares: paths, the scripts under test, logging, percentiles.

Owns the two benchmark scripts, their expected results and the summary
statistics (p50/p90/p99...). Must not start processes, open sockets or import
any other module of this package.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
HOME = Path(os.environ.get("PYEXEC_HOME", "/opt/pyexec"))

TRIVIAL = 'def main():\n    return {"sum": 2 + 2}\n'
PANDAS = (
    "import numpy as np\n"
    "import pandas as pd\n"
    "\n"
    "def main():\n"
    "    n = 1000\n"
    '    df = pd.DataFrame({"group": np.arange(n) % 10, "value": np.arange(n, dtype=float)})\n'
    '    agg = df.groupby("group")["value"].agg(["sum", "mean", "max"])\n'
    '    return {"rows": int(len(df)), "groups": agg.reset_index().to_dict(orient="records")}\n'
)
SCRIPTS = {"trivial": TRIVIAL, "pandas": PANDAS}

# What main() returns, for a correctness check of every sequential response.
EXPECTED = {
    "trivial": {"sum": 4},
    "pandas_rows": 1000,
}

PACED_GAP_S = 0.02


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Percentile by linear interpolation (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(lat_ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(lat_ms),
        "p50": pct(lat_ms, 50),
        "p90": pct(lat_ms, 90),
        "p99": pct(lat_ms, 99),
        "mean": statistics.fmean(lat_ms) if lat_ms else float("nan"),
        "min": min(lat_ms) if lat_ms else float("nan"),
        "max": max(lat_ms) if lat_ms else float("nan"),
    }


def body_for(script: str) -> bytes:
    return json.dumps({"script": script}).encode()


def check_result(name: str, result: Any) -> bool:
    if name == "trivial":
        return result == EXPECTED["trivial"]
    if name == "pandas":
        return isinstance(result, dict) and result.get("rows") == EXPECTED["pandas_rows"]
    return True
