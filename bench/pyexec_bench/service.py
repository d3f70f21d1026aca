"""The pyexec binary under test: start it on a free loopback port, read /metrics, stop it.

Owns the service's process (own session, log file, SIGTERM then SIGKILL) and
the Prometheus text parsing. Must not measure latency or throughput: the
http_* modules do, through ``Service.port`` and ``Service.proc``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from pyexec_bench import exposition
from pyexec_bench.common import HOME, ROOT, log


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The pyexec binary on a free loopback port, stopped on exit."""

    def __init__(self, binary: Path, workers: int | None, logdir: Path, worker_dir: Path | None = None) -> None:
        self.binary = binary
        self.worker_dir = worker_dir
        self.port = free_port()
        self.workers = workers
        self.log_path = logdir / "pyexec.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = float("nan")
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "Service.start() first"
        return self.proc.pid

    def start(self, ready_timeout: float = 60.0) -> None:
        args = [str(self.binary), "--listen", f"127.0.0.1:{self.port}"]
        if self.workers:
            args += ["--workers", str(self.workers)]
        log(f"starting {' '.join(args)} (log: {self.log_path})")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        if self.worker_dir is not None:
            env["PYEXEC_WORKER_DIR"] = str(self.worker_dir)
        if "PYEXEC_WORKER_DIR" not in env and not (HOME / "worker").is_dir() and (ROOT / "worker/zygote.py").is_file():
            # Not installed yet (scripts/install.sh copies it): use the checkout's.
            env["PYEXEC_WORKER_DIR"] = str(ROOT / "worker")
            log(f"no {HOME / 'worker'}: using PYEXEC_WORKER_DIR={env['PYEXEC_WORKER_DIR']}")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pyexec exited with status {self.proc.returncode} before /ready; "
                    f"log:\n{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            with contextlib.suppress(OSError):
                status, _, _ = self.get("/ready", timeout=1.0)
                if status == 200:
                    self.ready_s = time.monotonic() - t0
                    log(f"ready after {self.ready_s:.2f} s on port {self.port}")
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pyexec not ready within {ready_timeout} s; log: {self.log_path}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
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
        if self._log is not None:
            self._log.close()


def parse_metrics(text: str) -> dict[str, float]:
    """{'name{label="v"}': value} of a /metrics scrape (prometheus_client's parser)."""
    return exposition.by_series(text)


def hist_mean_ms(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    s = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    c = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    return s / c * 1000.0 if c > 0 else None
