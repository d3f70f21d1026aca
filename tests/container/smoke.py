#!/usr/bin/env python3
"""Checks a running pyexec container (started by build-and-run.sh).

Sends the curl examples of the services pyexec supersedes, a timeout case, a
memory-limit case and a few isolation cases to the container over loopback,
measures readiness time and first-request latency, then stops the container
with SIGTERM and checks it exits 0. Standard library only.
Final line: `container: N passed, M failed`.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import tally
from tally import check

TOKEN = ""


def request(
    url: str,
    method: str = "GET",
    body: dict | None = None,
    timeout: float = 90,
    auth: bool = True,
) -> tuple[int, dict | str, float]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if TOKEN and auth:
        req.add_header("Authorization", f"Bearer {TOKEN}")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    elapsed = time.perf_counter() - t0
    try:
        return status, json.loads(raw), elapsed
    except ValueError:
        return status, raw.decode("utf-8", "replace"), elapsed


SEED_SUM = 'def main():\n    return {"sum": 2 + 2}'
SEED_PANDAS_NUMPY = (
    "import pandas as pd\nimport numpy as np\n\ndef main():\n"
    '    print("Testing pandas and numpy")\n'
    '    df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})\n'
    "    arr = np.array([1, 2, 3])\n"
    '    return {"sum": int(df["a"].sum()), "mean": float(arr.mean())}'
)
SEED_MAIN_GUARD_JSON = (
    "import pandas as pd\nimport json\n\ndef main():\n    data = {\n"
    "        'Name': ['Alice', 'Bob', 'Charlie'],\n        'Age': [25, 30, 35],\n"
    "        'Score': [85, 90, 95]\n    }\n    df = pd.DataFrame(data)\n"
    "    summary = df[['Age','Score']].agg(['mean','sum']).to_dict()\n"
    '    return json.dumps({"data": df.to_dict(orient=\'list\'), "summary": summary}, indent=2)\n\n'
    'if __name__ == "__main__":\n    main()'
)
SEED_OS_PRINT = (
    "import os\nimport pandas as pd\nimport numpy as np\ndef main():\n"
    '    print("Hello")\n    a = 2\n    b = a + 3\n    return {"status": b}'
)
SEED_RANDOM_FRAME = (
    "import pandas as pd\nimport numpy as np\n\ndef main():\n"
    '    print("Creating sample data...")\n'
    '    data = pd.DataFrame({\n        "x": np.random.randn(100),\n        "y": np.random.randn(100)\n    })\n'
    '    print(f"Data shape: {data.shape}")\n'
    '    return {\n        "mean_x": float(data["x"].mean()),\n        "mean_y": float(data["y"].mean()),\n'
    '        "correlation": float(data.corr().iloc[0,1])\n    }'
)
SEED_HELLO = 'def main():\n    print("Hello from main!")\n    return {"msg": "success", "value": 42}\n'
SLEEPER = "import time\n\ndef main():\n    time.sleep(30)\n    return 1"
SPINNER = "def main():\n    while True:\n        pass"
MEMORY_HOG = "def main():\n    x = bytearray(3 * 1024**3)\n    return 1"
# Podman, like Kubernetes, bind-mounts /etc/hosts, /etc/resolv.conf and
# /etc/hostname into the container; the jail must not expose them at all.
ETC_PROBE = (
    "import os\n\ndef main():\n    out = {}\n"
    "    for p in ('/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/etc/passwd'):\n"
    "        out[p] = os.path.exists(p)\n"
    "    try:\n        open('/etc/hosts', 'a').close()\n        out['write'] = True\n"
    "    except OSError:\n        out['write'] = False\n"
    "    out['env'] = sorted(k for k in os.environ if k.startswith('PYEXEC'))\n"
    "    out['uid'] = os.getuid()\n"
    "    return out"
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--container", required=True)
    ap.add_argument("--started-at", type=float, required=True)
    ap.add_argument("--image-size", type=int, default=0)
    ap.add_argument("--build-secs", type=int, default=0)
    ap.add_argument("--ready-timeout", type=float, default=90)
    ap.add_argument("--token-file", help="the container's PYEXEC_API_TOKEN, if one is set")
    a = ap.parse_args()
    global TOKEN
    if a.token_file:
        with open(a.token_file) as f:
            TOKEN = f.read().strip()
    base = a.url.rstrip("/")
    ex = base + "/execute"

    # ---- readiness
    deadline = time.time() + a.ready_timeout
    ready_after = None
    last = ""
    while time.time() < deadline:
        try:
            st, body, _ = request(base + "/ready", timeout=2)
            last = f"{st} {body}"
            if st == 200:
                ready_after = time.time() - a.started_at
                break
        except OSError as e:
            last = repr(e)
        state = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Status}}", a.container],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state not in ("running", "created", "configured"):
            last = f"container is {state}"
            break
        time.sleep(0.2)
    if not check("GET /ready -> 200", ready_after is not None, last):
        tally.summary("container")
        return 1
    st, _, _ = request(base + "/health")
    check("GET /health -> 200", st == 200, str(st))

    # ---- first request (the warm pool is up; this is what a user sees first)
    st, body, first_latency = request(ex, "POST", {"script": SEED_SUM})
    check(
        'seed: return {"sum": 2 + 2} -> 200 {"sum": 4}',
        st == 200 and isinstance(body, dict) and body.get("result") == {"sum": 4},
        f"{st} {body}",
    )

    # ---- seeds
    st, body, _ = request(ex, "POST", {"script": SEED_PANDAS_NUMPY})
    check(
        "seed: pandas + numpy -> sum 6, mean 2.0, stdout",
        st == 200
        and body.get("result") == {"sum": 6, "mean": 2.0}
        and body.get("stdout") == "Testing pandas and numpy\n",
        f"{st} {body}",
    )
    st, body, _ = request(ex, "POST", {"script": SEED_MAIN_GUARD_JSON})
    ok = st == 200 and isinstance(body.get("result"), str)
    if ok:
        inner = json.loads(body["result"])
        ok = (
            inner["data"]["Name"] == ["Alice", "Bob", "Charlie"]
            and inner["summary"]["Age"] == {"mean": 30.0, "sum": 90.0}
            and inner["summary"]["Score"] == {"mean": 90.0, "sum": 270.0}
        )
    check(
        'seed: `if __name__ == "__main__"` guard + json.dumps -> JSON string, main() once',
        ok and body.get("stdout") == "",
        f"{st} {body}",
    )
    st, body, _ = request(ex, "POST", {"script": SEED_OS_PRINT})
    check(
        "seed: import os/pandas/numpy, print -> status 5, stdout Hello",
        st == 200 and body.get("result") == {"status": 5} and body.get("stdout") == "Hello\n",
        f"{st} {body}",
    )
    st, body, _ = request(ex, "POST", {"script": SEED_RANDOM_FRAME})
    r = body.get("result") if isinstance(body, dict) else None
    check(
        "seed: random DataFrame -> floats, stdout shape",
        st == 200
        and isinstance(r, dict)
        and set(r) == {"mean_x", "mean_y", "correlation"}
        and all(isinstance(v, float) for v in r.values())
        and "Data shape: (100, 2)" in body.get("stdout", ""),
        f"{st} {body}",
    )
    st, body, _ = request(ex, "POST", {"script": SEED_HELLO})
    check(
        "seed: print + dict result",
        st == 200
        and body.get("result") == {"msg": "success", "value": 42}
        and body.get("stdout") == "Hello from main!\n",
        f"{st} {body}",
    )
    if TOKEN:
        st, body, _ = request(ex, "POST", {"script": SEED_SUM}, auth=False)
        check(
            "API token set (as from the Kubernetes Secret): no Authorization -> 401 unauthorized",
            st == 401 and isinstance(body, dict) and body.get("kind") == "unauthorized",
            f"{st} {body}",
        )
    st, body, _ = request(ex, "POST", {"script": "print('no main')"})
    check(
        "missing main() -> 422 missing_main",
        st == 422 and body.get("kind") == "missing_main",
        f"{st} {body}",
    )

    # ---- limits
    st, body, el = request(ex, "POST", {"script": SLEEPER, "timeout": 1})
    check(
        f"sleep past timeout=1 -> 422 timeout ({el:.2f}s)",
        st == 422 and body.get("kind") == "timeout" and el < 5,
        f"{st} {body} after {el:.2f}s",
    )
    st, body, el = request(ex, "POST", {"script": SPINNER, "timeout": 1})
    check(
        f"CPU spin past timeout=1 -> 422 timeout ({el:.2f}s)",
        st == 422 and body.get("kind") == "timeout" and el < 5,
        f"{st} {body} after {el:.2f}s",
    )
    st, body, _ = request(ex, "POST", {"script": MEMORY_HOG})
    check(
        "bytearray(3 GiB) -> 422 memory_limit",
        st == 422 and body.get("kind") == "memory_limit",
        f"{st} {body}",
    )

    # ---- input files and figures (the image's prebuilt matplotlib font cache)
    plot = (
        "import matplotlib.pyplot as plt\nimport pandas as pd\n\ndef main():\n"
        "    df = pd.read_csv('data.csv')\n    df.plot(x='x', y='y')\n    return int(df['y'].sum())"
    )
    csv = base64.b64encode(b"x,y\n1,2\n2,5\n").decode()
    st, body, el = request(ex, "POST", {"script": plot, "files": {"data.csv": csv}})
    figures = body.get("figures", []) if isinstance(body, dict) else []
    png = base64.b64decode(figures[0]["data"]) if len(figures) == 1 else b""
    check(
        f"input file read by pandas, one figure back as PNG ({el * 1000:.0f} ms)",
        st == 200 and body.get("result") == 7 and png.startswith(b"\x89PNG\r\n\x1a\n"),
        f"{st} {str(body)[:300]}",
    )
    check(
        "usage in the answer",
        isinstance(body, dict) and isinstance(body.get("usage", {}).get("wall_ms"), (int, float)),
        f"{str(body)[:300]}",
    )

    # ---- isolation inside a container (what Kubernetes also injects)
    st, body, _ = request(ex, "POST", {"script": ETC_PROBE})
    r = body.get("result") if isinstance(body, dict) else None
    check(
        "jail has no /etc (container's /etc/hosts, resolv.conf, hostname absent, unwritable)",
        st == 200
        and isinstance(r, dict)
        and not any(r.get(p) for p in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/etc/passwd"))
        and r.get("write") is False,
        f"{st} {body}",
    )
    check(
        "run sees no PYEXEC_* variable (not even the API token) and is not root",
        isinstance(r, dict) and r.get("env") == [] and r.get("uid") != 0,
        f"{r}",
    )

    # ---- still healthy after the failures
    st, body, el = request(ex, "POST", {"script": SEED_SUM})
    check(
        f"service answers normally after timeout/memory cases ({el * 1000:.1f} ms)",
        st == 200 and body.get("result") == {"sum": 4},
        f"{st} {body}",
    )
    warm = []
    for _ in range(20):
        st, body, el = request(ex, "POST", {"script": SEED_SUM})
        warm.append(el)
    warm.sort()
    st, text, _ = request(base + "/metrics")
    check(
        "GET /metrics exposes pyexec_requests_total",
        st == 200 and isinstance(text, str) and "pyexec_requests_total" in text,
        str(st),
    )

    # ---- SIGTERM to PID 1 while a run is in flight: it is answered, exit 0
    in_flight: dict = {}

    def slow_run() -> None:
        try:
            in_flight["answer"] = request(
                ex,
                "POST",
                {"script": "import time\n\ndef main():\n    time.sleep(2)\n    return 'done'"},
            )
        except OSError as e:
            in_flight["answer"] = (0, repr(e), 0.0)

    worker = threading.Thread(target=slow_run)
    worker.start()
    time.sleep(0.5)
    t0 = time.time()
    subprocess.run(["podman", "stop", "-t", "40", a.container], check=False, capture_output=True)
    stop_secs = time.time() - t0
    worker.join(60)
    code = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.ExitCode}}", a.container],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.strip()
    st, body, _ = in_flight.get("answer", (0, "no answer", 0.0))
    check(
        "podman stop (SIGTERM) during a 2 s run: the run is answered 200",
        st == 200 and isinstance(body, dict) and body.get("result") == "done",
        f"{st} {body}",
    )
    check(
        f"... and the container exits 0 ({stop_secs:.1f}s)",
        code == "0",
        f"exit code {code}",
    )

    print()
    print(f"image size:              {a.image_size / 1e6:.0f} MB ({a.image_size} bytes)")
    print(f"image build:             {a.build_secs} s")
    print(f"start -> /ready:         {ready_after:.2f} s")
    print(f"first-request latency:   {first_latency * 1000:.1f} ms (POST /execute, sum seed)")
    print(f"warm latency (20 runs):  median {warm[len(warm) // 2] * 1000:.1f} ms, max {warm[-1] * 1000:.1f} ms")
    return tally.summary("container")


if __name__ == "__main__":
    raise SystemExit(main())
