"""Exercise numpy and pandas once in the zygote, before it freezes its heap.

Owns: running a fixed, service-written workload (no user code, no data
from outside) so that the lazy imports, caches and first-call set-up of
common pandas and numpy paths happen once in the zygote. Every run forks
from that state and starts warm instead of redoing the work (a first
``groupby`` in a fresh process costs several milliseconds). Must not:
keep references to what it creates, or touch files or the network.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd


def warm_up() -> None:
    """Run the common numpy and pandas operations of analysis scripts once.

    matplotlib is not imported here: only the plotting fork server imports
    it (``figures.prepare_plotting_fork_server``), so plain runs stay small.
    """
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1000)
    np.random.randn(10)
    frame = pd.DataFrame(
        {
            "g": np.arange(1000) % 10,
            "v": values,
            "s": [f"k{i % 7}" for i in range(1000)],
            "t": pd.date_range("2024-01-01", periods=1000, freq="h"),
        }
    )
    grouped = frame.groupby("g")["v"]
    for method in ("sum", "mean", "count", "min", "max", "std"):
        getattr(grouped, method)()
    frame.groupby(["g", "s"]).agg({"v": ["mean", "sum"]})
    frame[["g", "v"]].agg(["mean", "sum"]).to_dict()
    frame.describe()
    frame.sort_values("v").head()
    frame.merge(frame[["g"]].drop_duplicates(), on="g")
    frame.pivot_table(index="g", columns="s", values="v", aggfunc="mean")
    frame.set_index("t").resample("D")["v"].mean()
    for orient in ("dict", "list", "records"):
        frame.head().to_dict(orient=orient)
    frame["v"].rolling(5).mean()
    frame["s"].str.upper().value_counts()
    pd.read_csv(io.StringIO("a,b\n1,2\n3,4\n"))
    frame.head().to_json()
    json.dumps(frame[["g", "v"]].head().to_dict(), default=str)
    np.linalg.inv(np.eye(3) + 1)
    np.percentile(values, [5, 50, 95])
