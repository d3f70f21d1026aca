#!/usr/bin/env python3
"""pyexec benchmark harness: pyexec vs the cold-spawn design vs the floor, in one run.

Measures, on this machine and in one run:

1. pyexec over HTTP (this script starts the binary on a free 127.0.0.1 port):
   sequential p50/p99 of a trivial and of a small pandas script over one
   keep-alive ``http.client`` connection, and the highest throughput sustained
   with zero errors at fixed concurrencies (closed loop, one process per
   connection; in full mode also open-loop k6 constant-arrival-rate steps);
2. the cold-spawn design of the original nsjail/Flask implementations: a fresh
   nsjail + a fresh Python importing numpy and pandas per request, with the
   sandbox flags of docs/internals.md, same scripts;
3. the floor: the same ``main()`` called in an already-warm interpreter with
   no isolation at all (in-process timing loop, plus ``json.dumps``).

It also reads the memory of each idle worker (PSS from
``/proc/<pid>/smaps_rollup`` of the nsjail process, the zygote and its spare,
summed per worker).

Prints a markdown table and writes it to ``bench/results/latest.md`` (full
mode) or ``bench/results/tmp/quick.md`` (``--quick``), with a JSON twin.
Targets from issue 4 are reported, not asserted. Exit status is non-zero only
when the harness itself cannot measure (service does not start, requests
fail in the sequential phase, cold spawn does not work).

Usage:
    /opt/pyexec/tools-venv/bin/python bench/run.py [--quick] [--binary PATH]

Only the standard library is used, so any Python >= 3.9 runs it; the floor
and the cold spawn use the sandbox venv's Python (numpy + pandas).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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

TARGETS = {
    "trivial_p50_ms": 2.0,
    "pandas_p50_ms": 5.0,
    "trivial_rps": 250.0,
    "cold_ratio": 100.0,
    "idle_worker_mib": 60.0,
}


# --------------------------------------------------------------------------- utils


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


def summary(lat_ms: list[float]) -> dict:
    return {
        "n": len(lat_ms),
        "p50": pct(lat_ms, 50),
        "p90": pct(lat_ms, 90),
        "p99": pct(lat_ms, 99),
        "mean": statistics.fmean(lat_ms) if lat_ms else float("nan"),
        "min": min(lat_ms) if lat_ms else float("nan"),
        "max": max(lat_ms) if lat_ms else float("nan"),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_for(script: str) -> bytes:
    return json.dumps({"script": script}).encode()


def check_result(name: str, result) -> bool:
    if name == "trivial":
        return result == EXPECTED["trivial"]
    if name == "pandas":
        return isinstance(result, dict) and result.get("rows") == EXPECTED["pandas_rows"]
    return True


# --------------------------------------------------------------------------- service


class Service:
    """The pyexec binary on a free loopback port, stopped on exit."""

    def __init__(self, binary: Path, workers: int | None, logdir: Path):
        self.binary = binary
        self.port = free_port()
        self.workers = workers
        self.log_path = logdir / "pyexec.log"
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 60.0) -> None:
        args = [str(self.binary), "--listen", f"127.0.0.1:{self.port}"]
        if self.workers:
            args += ["--workers", str(self.workers)]
        log(f"starting {' '.join(args)} (log: {self.log_path})")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        if ("PYEXEC_WORKER_DIR" not in env and not (HOME / "worker").is_dir()
                and (ROOT / "worker/zygote.py").is_file()):
            # Not installed yet (scripts/install.sh copies it): use the checkout's.
            env["PYEXEC_WORKER_DIR"] = str(ROOT / "worker")
            log(f"no {HOME / 'worker'}: using PYEXEC_WORKER_DIR={env['PYEXEC_WORKER_DIR']}")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pyexec exited with status {self.proc.returncode} before /ready; "
                    f"log:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                status, _, _ = self.get("/ready", timeout=1.0)
                if status == 200:
                    self.ready_s = time.monotonic() - t0
                    log(f"ready after {self.ready_s:.2f} s on port {self.port}")
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"pyexec not ready within {ready_timeout} s; log: {self.log_path}")

    def get(self, path: str, timeout: float = 5.0):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def metrics(self) -> dict[str, float]:
        status, _, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    def wait_all_idle(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics()
            size = m.get("pyexec_pool_size") or self.workers or os.cpu_count()
            if m.get('pyexec_workers{state="idle"}', -1) >= size:
                return
            time.sleep(0.1)
        log("warning: workers not all idle before memory reading")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log("pyexec ignored SIGTERM for 15 s, killing it")
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def hist_mean_ms(before: dict, after: dict, name: str) -> float | None:
    s = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    c = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    return s / c * 1000.0 if c > 0 else None


# --------------------------------------------------------------------------- pyexec over HTTP


def http_sequential(svc: Service, name: str, n: int, warmup: int, gap_s: float = 0.0) -> dict:
    """n requests one after the other on one keep-alive connection; with
    ``gap_s`` the client pauses between them (the worker has time to fork its
    next spare, as when requests do not arrive back to back)."""
    body = body_for(SCRIPTS[name])
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    reconnects = 0
    lat: list[float] = []
    run_ms: list[float] = []
    m0 = None
    for i in range(warmup + n):
        if i == warmup:
            m0 = svc.metrics()
            c0 = cpu_snapshot(svc.proc.pid)
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/execute", body, headers)
            r = conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            reconnects += 1
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
            continue
        t1 = time.perf_counter_ns()
        if r.status != 200:
            raise RuntimeError(
                f"{name}: request {i} answered {r.status}: {data[:500]!r}")
        doc = json.loads(data)
        if not check_result(name, doc.get("result")):
            raise RuntimeError(f"{name}: unexpected result {doc.get('result')!r}")
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            reconnects += 1
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
        if gap_s:
            time.sleep(gap_s)
        if i >= warmup:
            lat.append((t1 - t0) / 1e6)
            if isinstance(doc.get("duration_ms"), (int, float)):
                run_ms.append(float(doc["duration_ms"]))
    conn.close()
    c1 = cpu_snapshot(svc.proc.pid)
    m1 = svc.metrics()
    out = summary(lat)
    out["cpu_ms_per_request"] = cpu_per_request(c0, c1, len(lat))
    out["reconnects"] = reconnects
    out["server_duration_ms_p50"] = pct(run_ms, 50) if run_ms else None
    out["server_duration_ms_mean"] = statistics.fmean(run_ms) if run_ms else None
    out["metrics_mean_ms"] = {
        "request": hist_mean_ms(m0, m1, "pyexec_request_duration_seconds"),
        "queue_wait": hist_mean_ms(m0, m1, "pyexec_queue_wait_seconds"),
        "run": hist_mean_ms(m0, m1, "pyexec_run_duration_seconds"),
    }
    return out


def _closed_loop_client(port: int, body: bytes, start_at: float, duration: float, conn_q):
    """One connection, requests back to back until the deadline (runs in its own process)."""
    headers = {"Content-Type": "application/json"}
    lat: list[float] = []
    statuses: dict[str, int] = {}
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < end:
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/execute", body, headers)
            r = conn.getresponse()
            r.read()
            key = str(r.status)
        except (http.client.HTTPException, OSError) as e:
            key = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t1 = time.perf_counter_ns()
        statuses[key] = statuses.get(key, 0) + 1
        if key == "200":
            lat.append((t1 - t0) / 1e6)
    conn.close()
    conn_q.put((lat, statuses))


def http_closed_loop(svc: Service, name: str, concurrency: int, duration: float) -> dict:
    body = body_for(SCRIPTS[name])
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_closed_loop_client,
                         args=(svc.port, body, start_at, duration, q))
             for _ in range(concurrency)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    c0 = cpu_snapshot(svc.proc.pid)
    lat: list[float] = []
    statuses: dict[str, int] = {}
    for _ in procs:
        pl, ps = q.get(timeout=duration + 60)
        lat += pl
        for k, v in ps.items():
            statuses[k] = statuses.get(k, 0) + v
    c1 = cpu_snapshot(svc.proc.pid)
    for p in procs:
        p.join(timeout=10)
    ok = statuses.get("200", 0)
    errors = sum(v for k, v in statuses.items() if k != "200")
    out = summary(lat)
    out["cpu_ms_per_request"] = cpu_per_request(c0, c1, ok + errors)
    out.update({"concurrency": concurrency, "duration_s": duration, "ok": ok,
                "errors": errors, "statuses": statuses, "rps": ok / duration})
    return out


K6_STEP_JS = r"""
import http from 'k6/http';
const body = JSON.stringify({ script: __ENV.SCRIPT });
const params = { headers: { 'Content-Type': 'application/json' } };
export const options = {
  discardResponseBodies: true,
  scenarios: { step: { executor: 'constant-arrival-rate', rate: Number(__ENV.RATE),
    timeUnit: '1s', duration: __ENV.DURATION, preAllocatedVUs: Number(__ENV.VUS),
    maxVUs: Number(__ENV.VUS), gracefulStop: '5s' } },
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
};
export default function () { http.post(`${__ENV.BASE_URL}/execute`, body, params); }
export function handleSummary(data) { return { [__ENV.OUT]: JSON.stringify(data.metrics) }; }
"""


def k6_binary() -> str | None:
    for c in (os.environ.get("K6"), str(HOME / "tools-venv/bin/k6"), shutil.which("k6")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def k6_steps(svc: Service, name: str, rates: list[int], vus: int, step_s: int,
             tmp: Path) -> list[dict]:
    """Open-loop arrival-rate steps with a fixed VU pool (= fixed max concurrency)."""
    k6 = k6_binary()
    if not k6:
        log("k6 not found: skipping open-loop steps")
        return []
    js = tmp / "k6_step.js"
    js.write_text(K6_STEP_JS)
    out = []
    for rate in rates:
        res_path = tmp / f"k6_step_{rate}.json"
        env = dict(os.environ, BASE_URL=f"http://127.0.0.1:{svc.port}", SCRIPT=SCRIPTS[name],
                   RATE=str(rate), DURATION=f"{step_s}s", VUS=str(vus), OUT=str(res_path),
                   K6_NO_USAGE_REPORT="true")
        subprocess.run([k6, "run", "--no-usage-report", "--quiet", "--no-color", str(js)],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=step_s + 60, check=False)
        m = json.loads(res_path.read_text())
        reqs = m.get("http_reqs", {}).get("values", {}).get("count", 0)
        failed = m.get("http_req_failed", {}).get("values", {}).get("passes", 0)
        dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
        dur = m.get("http_req_duration", {}).get("values", {})
        step = {"rate": rate, "vus": vus, "requests": reqs, "failed": failed,
                "dropped": dropped, "achieved_rps": reqs / step_s,
                "p50": dur.get("p(50)"), "p99": dur.get("p(99)"), "max": dur.get("max")}
        step["ok"] = failed == 0 and dropped == 0 and reqs >= 0.98 * rate * step_s
        log(f"k6 step {rate}/s: {reqs} reqs, failed {failed}, dropped {dropped}, "
            f"p50 {step['p50']:.2f} ms, p99 {step['p99']:.2f} ms")
        out.append(step)
        if not step["ok"]:
            break
        time.sleep(0.5)
    return out


# --------------------------------------------------------------------------- cold spawn

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


def cold_once(name: str) -> float:
    argv = nsjail_cold_argv(SCRIPTS[name])
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                       check=False)
    t1 = time.perf_counter_ns()
    if p.returncode != 0:
        raise RuntimeError(f"cold spawn failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    doc = json.loads(p.stdout.decode().strip().splitlines()[-1])
    if not check_result(name, doc["result"]):
        raise RuntimeError(f"cold spawn {name}: unexpected result {doc['result']!r}")
    return (t1 - t0) / 1e6


def cold_sequential(name: str, n: int) -> dict:
    cold_once(name)  # warm the page cache
    return summary([cold_once(name) for _ in range(n)])


def _cold_loop(name: str, end: float, q):
    lat, errors = [], 0
    while time.time() < end:
        try:
            lat.append(cold_once(name))
        except Exception:  # noqa: BLE001 - counted, not raised
            errors += 1
    q.put((lat, errors))


def cold_closed_loop(name: str, concurrency: int, duration: float) -> dict:
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
    out.update({"concurrency": concurrency, "ok": len(lat), "errors": errors,
                "rps": len(lat) / wall})
    return out


# --------------------------------------------------------------------------- floor

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


def floor(name: str, n: int, warmup: int) -> dict:
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    p = subprocess.run([str(HOME / "venv/bin/python3"), "-E", "-s", "-c", FLOOR_CODE,
                        SCRIPTS[name], str(n), str(warmup)],
                       capture_output=True, env=env, timeout=300, check=True)
    return summary(json.loads(p.stdout))


# --------------------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def cpu_snapshot(root_pid: int) -> dict:
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
    return {"machine": busy * ms, "supervisor": (int(sup[11]) + int(sup[12])) * ms,
            "nsjail": nsjail * ms, "zygote": zy_self * ms, "runs": zy_kids * ms}


def cpu_per_request(a: dict, b: dict, n: int) -> dict:
    return {k: (b[k] - a[k]) / n for k in a} if n else {}


# --------------------------------------------------------------------------- memory


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    return children


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_split_kib(pid: int) -> tuple[int, int]:
    """(Pss_Anon, Pss_File) of a process, KiB."""
    anon = file_ = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss_Anon:"):
                anon = int(line.split()[1])
            elif line.startswith("Pss_File:"):
                file_ = int(line.split()[1])
    except OSError:
        pass
    return anon, file_


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_memory(root_pid: int) -> dict:
    """PSS per worker. Every ``nsjail`` process under pyexec is one worker; its
    subtree is the zygote and the zygote's pre-forked spare (run init +
    runner). Other descendants of pyexec (e.g. its spawn helper) count with
    the supervisor."""
    kids = _ppid_map()

    def subtree(pid: int) -> list[int]:
        out, stack = [], list(kids.get(pid, []))
        while stack:
            p = stack.pop()
            out.append(p)
            stack += kids.get(p, [])
        return out

    nsjails, others = [], [root_pid]
    for p in subtree(root_pid):
        if _comm(p) == "nsjail":
            nsjails.append(p)
    inside = {q for nj in nsjails for q in subtree(nj)}
    others += [p for p in subtree(root_pid) if p not in inside and p not in nsjails]

    workers = []
    for nj in nsjails:
        zygotes = kids.get(nj, [])
        w = {"nsjail_pid": nj, "nsjail_kib": pss_kib(nj),
             "zygote_kib": sum(pss_kib(z) for z in zygotes),
             "spare_kib": sum(pss_kib(s) for z in zygotes for s in subtree(z)),
             "processes": 1 + len(subtree(nj))}
        w["total_kib"] = w["nsjail_kib"] + w["zygote_kib"] + w["spare_kib"]
        split = [pss_split_kib(p) for p in [nj, *subtree(nj)]]
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


# --------------------------------------------------------------------------- report


def machine() -> dict:
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
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu, "memory": mem,
            "loadavg_start": os.getloadavg(),
            "os": osname, "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def f2(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def ratio(a, b) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def mark(ok) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def render(res: dict) -> str:
    m = res["machine"]
    px, cold, fl = res.get("pyexec", {}), res["cold"], res["floor"]
    seq = px.get("sequential", {})
    L = []
    L.append(f"# pyexec benchmark ({'quick' if res['quick'] else 'full'} run, {m['date']})")
    L.append("")
    L.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, "
             f"{m['os']}. Load average (1 min) {m['loadavg_start'][0]:.2f} at start, "
             f"{m.get('loadavg_end', (float('nan'),))[0]:.2f} at end (other processes share the "
             f"CPUs when it is above ~0.5). pyexec workers: {px.get('workers', 'n/a')}. "
             f"Command: `{res['command']}`.")
    L.append("")
    L.append("## Latency, sequential (one request at a time, back to back), milliseconds")
    L.append("")
    L.append("| script | pyexec HTTP p50 | p99 | cold spawn p50 | p99 | floor p50 | p99 "
             "| cold / pyexec (p50) | pyexec / floor (p50) | pyexec - floor (p50) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name in SCRIPTS:
        s, c, f = seq.get(name, {}), cold[name], fl[name]
        diff = (s["p50"] - f["p50"]) if s else None
        L.append(f"| {name} | {f2(s.get('p50'))} | {f2(s.get('p99'))} | {f2(c['p50'], 1)} | "
                 f"{f2(c['p99'], 1)} | {f2(f['p50'], 3)} | {f2(f['p99'], 3)} | "
                 f"{ratio(c['p50'], s.get('p50'))} | {ratio(s.get('p50'), f['p50'])} | "
                 f"{f2(diff)} |")
    paced = px.get("paced")
    if paced:
        L.append("")
        L.append(f"Paced ({PACED_GAP_S * 1000:.0f} ms pause between requests, so the worker has "
                 "forked its next spare before the next request comes):")
        L.append("")
        L.append("| script | pyexec HTTP p50 | p99 | cold / pyexec (p50) | pyexec - floor (p50) |")
        L.append("|---|---|---|---|---|")
        for name in SCRIPTS:
            s_ = paced.get(name, {})
            L.append(f"| {name} | {f2(s_.get('p50'))} | {f2(s_.get('p99'))} | "
                     f"{ratio(cold[name]['p50'], s_.get('p50'))} | "
                     f"{f2(s_['p50'] - fl[name]['p50']) if s_ else 'n/a'} |")
    L.append("")
    L.append(f"Samples: pyexec {seq.get('trivial', {}).get('n', 0)} trivial / "
             f"{seq.get('pandas', {}).get('n', 0)} pandas over one keep-alive connection "
             f"(http.client); cold spawn {cold['trivial']['n']} / {cold['pandas']['n']} "
             f"(fresh nsjail + python + `import numpy, pandas` each); floor {fl['trivial']['n']} / "
             f"{fl['pandas']['n']} calls of `json.dumps(main())` in a warm interpreter.")
    if seq:
        L.append("")
        L.append("Where the time goes (means, ms): client end to end / server request "
                 "(`pyexec_request_duration_seconds`) / queue wait / run "
                 "(`pyexec_run_duration_seconds`) / `duration_ms` reported by the zygote:")
        L.append("")
        L.append("| requests | client e2e | server request | queue wait | run | duration_ms |")
        L.append("|---|---|---|---|---|---|")
        for mode, group in (("back to back", seq), ("paced", px.get("paced") or {})):
            for name in SCRIPTS:
                s = group.get(name)
                if not s:
                    continue
                mm = s["metrics_mean_ms"]
                L.append(f"| {name}, {mode} | {f2(s['mean'])} | {f2(mm['request'])} | "
                         f"{f2(mm['queue_wait'], 3)} | {f2(mm['run'])} | "
                         f"{f2(s['server_duration_ms_mean'])} |")
    L.append("")
    L.append("## Throughput, trivial script")
    L.append("")
    L.append("| design | mode | concurrency | req/s (ok) | errors | p50 ms | p99 ms |")
    L.append("|---|---|---|---|---|---|---|")
    for t in px.get("closed_loop", []):
        L.append(f"| pyexec | closed loop, {t['duration_s']:.0f} s | {t['concurrency']} | "
                 f"{t['rps']:.0f} | {t['errors']} | {f2(t['p50'])} | {f2(t['p99'])} |")
    for t in px.get("k6_steps", []):
        L.append(f"| pyexec | k6 arrival rate {t['rate']}/s | <= {t['vus']} VUs | "
                 f"{t['achieved_rps']:.0f} | {int(t['failed'] + t['dropped'])} | "
                 f"{f2(t['p50'])} | {f2(t['p99'])} |")
    ct = res.get("cold_throughput")
    if ct:
        L.append(f"| cold spawn | closed loop | {ct['concurrency']} | {ct['rps']:.1f} | "
                 f"{ct['errors']} | {f2(ct['p50'], 1)} | {f2(ct['p99'], 1)} |")
    cpu_rows = [(f"sequential {n}, back to back", seq[n]) for n in SCRIPTS if seq.get(n)]
    cpu_rows += [(f"closed loop trivial, concurrency {t['concurrency']}", t)
                 for t in px.get("closed_loop", [])]
    if cpu_rows and cpu_rows[0][1].get("cpu_ms_per_request"):
        L.append("")
        L.append("CPU time per request, ms (from /proc: whole machine incl. the load client; "
                 "supervisor; nsjail; zygotes, whose fork() of the spare is billed to them; runs = "
                 "reaped spares: isolation set-up, user code, exit):")
        L.append("")
        L.append("| phase | machine | supervisor | nsjail | zygote | runs |")
        L.append("|---|---|---|---|---|---|")
        for label, r in cpu_rows:
            c = r.get("cpu_ms_per_request") or {}
            L.append(f"| {label} | {f2(c.get('machine'))} | {f2(c.get('supervisor'))} | "
                     f"{f2(c.get('nsjail'))} | {f2(c.get('zygote'))} | {f2(c.get('runs'))} |")
    best = px.get("best_rps")
    L.append("")
    L.append(f"Highest pyexec throughput with zero errors: **{f2(best, 0)} req/s** "
             f"({px.get('best_rps_how', 'n/a')}).")
    mem = px.get("memory_idle")
    if mem:
        L.append("")
        L.append("## Memory per idle worker (PSS, /proc/<pid>/smaps_rollup)")
        L.append("")
        L.append("| when | per worker mean MiB | max | nsjail | zygote | fork server + spares "
                 "(init + runner each) | worker anon / file-backed | all workers | supervisor PSS MiB |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for label, key in (("after start", "memory_idle"), ("after the load", "memory_after")):
            mm = px.get(key)
            if not mm or not mm["workers"]:
                continue
            w = mm["workers"]

            def avg(k: str, w: list = w) -> float:
                return statistics.fmean(x[k] for x in w) / 1024
            L.append(f"| {label} | {f2(mm['per_worker_mib_mean'], 1)} | "
                     f"{f2(mm['per_worker_mib_max'], 1)} | {f2(avg('nsjail_kib'), 1)} | "
                     f"{f2(avg('zygote_kib'), 1)} | {f2(avg('spare_kib'), 1)} | "
                     f"{f2(avg('anon_kib'), 1)} / {f2(avg('file_kib'), 1)} | "
                     f"{f2(mm['all_workers_mib'], 1)} | {f2(mm['supervisor_pss_kib'] / 1024, 1)} |")
        L.append("")
        L.append("PSS splits each shared page among all processes mapping it: the anon part "
                 "(the zygote's heap, shared copy-on-write with its fork server and spare) is "
                 "the worker's own; the file-backed part (python, numpy, pandas libraries) is "
                 "shared with other workers and with any other process mapping the same files.")
    L.append("")
    L.append("## Targets (issue 4; reported, not asserted)")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    tg = res["targets"]
    for label, key, val in (
        ("trivial p50 <= 2 ms over HTTP", "trivial_p50_ms", f"{f2(tg['trivial_p50_ms'][0])} ms"),
        ("pandas p50 <= 5 ms over HTTP", "pandas_p50_ms", f"{f2(tg['pandas_p50_ms'][0])} ms"),
        (">= 250 trivial req/s, zero errors", "trivial_rps", f"{f2(tg['trivial_rps'][0], 0)} req/s"),
        ("p50 >= 100x lower than cold spawn", "cold_ratio",
         f"trivial {ratio(*tg['cold_ratio'][0][0])}, pandas {ratio(*tg['cold_ratio'][0][1])}"),
        ("<= 60 MiB per idle worker", "idle_worker_mib", f"{f2(tg['idle_worker_mib'][0], 1)} MiB"),
    ):
        L.append(f"| {label} | {val} | {mark(tg[key][1])} |")
    return "\n".join(L) + "\n"


def targets(res: dict) -> dict:
    px = res.get("pyexec", {})
    seq = px.get("sequential", {})
    tp = seq.get("trivial", {}).get("p50")
    pp = seq.get("pandas", {}).get("p50")
    rps = px.get("best_rps")
    mem = (px.get("memory_idle") or {}).get("per_worker_mib_mean")
    ct, cp = res["cold"]["trivial"]["p50"], res["cold"]["pandas"]["p50"]
    cold_ok = None if tp is None or pp is None else (ct / tp >= 100 and cp / pp >= 100)
    return {
        "trivial_p50_ms": (tp, None if tp is None else tp <= TARGETS["trivial_p50_ms"]),
        "pandas_p50_ms": (pp, None if pp is None else pp <= TARGETS["pandas_p50_ms"]),
        "trivial_rps": (rps, None if rps is None else rps >= TARGETS["trivial_rps"]),
        "cold_ratio": (((ct, tp), (cp, pp)), cold_ok),
        "idle_worker_mib": (mem, None if mem is None else mem <= TARGETS["idle_worker_mib"]),
    }


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: few samples, well under a minute")
    ap.add_argument("--binary", default=os.environ.get("PYEXEC_BIN", str(ROOT / "target/release/pyexec")))
    ap.add_argument("--workers", type=int, default=None, help="--workers for pyexec (default: its own, CPUs)")
    ap.add_argument("--no-service", action="store_true",
                    help="skip the pyexec part (cold spawn and floor only)")
    ap.add_argument("--out", default=None, help="markdown output (default: bench/results/latest.md, "
                    "or bench/results/tmp/quick.md with --quick)")
    args = ap.parse_args()

    q = args.quick
    n_seq = {"trivial": 300, "pandas": 150} if q else {"trivial": 3000, "pandas": 1500}
    n_paced = 50 if q else 400
    n_cold = 5 if q else 30
    n_floor = {"trivial": 2000, "pandas": 100} if q else {"trivial": 100000, "pandas": 2000}
    conc = [4] if q else [1, 2, 4, 8]
    tp_dur = 2.0 if q else 5.0
    out_md = Path(args.out) if args.out else ROOT / ("bench/results/tmp/quick.md" if q
                                                      else "bench/results/latest.md")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyexec-bench-"))
    t_start = time.monotonic()

    res: dict = {"quick": q, "machine": machine(),
                 "command": "bench/run.py" + (" --quick" if q else "")}

    # (3) floor and (2) cold spawn first: they do not need the service.
    log("floor: warm interpreter, no isolation")
    res["floor"] = {name: floor(name, n_floor[name], max(10, n_floor[name] // 10))
                    for name in SCRIPTS}
    log("cold spawn: fresh nsjail + python + numpy/pandas per request")
    res["cold"] = {name: cold_sequential(name, n_cold) for name in SCRIPTS}
    ncpu = os.cpu_count() or 1
    res["cold_throughput"] = cold_closed_loop("trivial", ncpu, 3.0 if q else 10.0)

    if not args.no_service:
        binary = Path(args.binary)
        if not binary.is_file():
            log(f"pyexec binary not found at {binary} (build it, or pass --no-service)")
            return 2
        svc = Service(binary, args.workers, tmp)
        try:
            svc.start()
            px: dict = {}
            m = svc.metrics()
            px["workers"] = int(m.get("pyexec_pool_size") or args.workers or ncpu)
            px["ready_s"] = svc.ready_s
            svc.wait_all_idle()
            time.sleep(0.5)
            px["memory_idle"] = worker_memory(svc.proc.pid)
            log(f"idle worker PSS: {f2(px['memory_idle']['per_worker_mib_mean'], 1)} MiB")
            px["sequential"] = {}
            for name in SCRIPTS:
                log(f"pyexec sequential {name} x{n_seq[name]}")
                px["sequential"][name] = http_sequential(svc, name, n_seq[name],
                                                         warmup=max(20, n_seq[name] // 20))
            px["paced"] = {}
            for name in SCRIPTS:
                log(f"pyexec paced {name} x{n_paced}, {PACED_GAP_S * 1000:.0f} ms apart")
                px["paced"][name] = http_sequential(svc, name, n_paced, warmup=10,
                                                    gap_s=PACED_GAP_S)
            px["closed_loop"] = []
            for c in conc:
                log(f"pyexec closed loop, concurrency {c}, {tp_dur:.0f} s")
                r = http_closed_loop(svc, "trivial", c, tp_dur)
                log(f"  {r['rps']:.0f} req/s, errors {r['errors']} {r['statuses']}")
                px["closed_loop"].append(r)
            best, how = None, "n/a"
            for r in px["closed_loop"]:
                if r["errors"] == 0 and (best is None or r["rps"] > best):
                    best, how = r["rps"], f"closed loop, concurrency {r['concurrency']}"
            if not q:
                base = int(best or 100)
                rates = sorted({max(50, int(base * f) // 25 * 25)
                                for f in (0.5, 0.7, 0.85, 1.0, 1.1, 1.25)})
                px["k6_steps"] = k6_steps(svc, "trivial", rates, vus=8, step_s=8, tmp=tmp)
                for st in px["k6_steps"]:
                    if st["ok"] and (best is None or st["achieved_rps"] > best):
                        best, how = st["achieved_rps"], (f"k6 constant-arrival-rate {st['rate']}/s, "
                                                         f"max {st['vus']} VUs")
            px["best_rps"], px["best_rps_how"] = best, how
            svc.wait_all_idle()
            time.sleep(1.0)
            px["memory_after"] = worker_memory(svc.proc.pid)
            res["pyexec"] = px
        finally:
            svc.stop()

    res["machine"]["loadavg_end"] = os.getloadavg()
    res["targets"] = targets(res)
    res["elapsed_s"] = time.monotonic() - t_start
    md = render(res)
    print(md)
    out_md.write_text(md)
    out_md.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    log(f"wrote {out_md} (and .json) in {res['elapsed_s']:.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
