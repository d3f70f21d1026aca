"""Starts the real pyexec binary on 127.0.0.1:0 for the SDK's and the MCP tests.

The binary is ``$PYEXEC_BINARY``, else the checkout's ``target/release/pyexec``
or ``target/debug/pyexec`` (the newer one). It runs the real sandbox: nsjail and
the sandbox Python from ``PYEXEC_NSJAIL`` / ``PYEXEC_SANDBOX_PYTHON`` (as
``scripts/test.sh`` exports them) or pyexec's defaults under ``/opt/pyexec``, and
the worker code from ``PYEXEC_WORKER_DIR`` or a world-readable copy of the
checkout's ``worker/`` (the jail's unprivileged uid must read it). Owns the
process: its own session, stderr to a log file, SIGTERM then SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def binary() -> Path:
    env = os.environ.get("PYEXEC_BINARY")
    if env:
        return Path(env)
    built = [p for p in (ROOT / "target/release/pyexec", ROOT / "target/debug/pyexec") if p.is_file()]
    if not built:
        raise RuntimeError("no pyexec binary: run `cargo build` or set PYEXEC_BINARY")
    return max(built, key=lambda p: p.stat().st_mtime)


def _worker_copy() -> tempfile.TemporaryDirectory[str]:
    tmp = tempfile.TemporaryDirectory(prefix="pyexec-worker-", dir="/tmp")
    ignore = shutil.ignore_patterns("__pycache__", "tests")
    shutil.copytree(ROOT / "worker", tmp.name, dirs_exist_ok=True, ignore=ignore)
    for dirpath, _, filenames in os.walk(tmp.name):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return tmp


class Service:
    """One pyexec process; ``url`` is its base URL once started."""

    def __init__(self, *args: str, workers: int = 2) -> None:
        self.args = ["--listen", "127.0.0.1:0", "--workers", str(workers), *args]
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._worker = _worker_copy() if "PYEXEC_WORKER_DIR" not in os.environ else None
        # Closed (and removed) in stop().
        self._log = tempfile.NamedTemporaryFile(prefix="pyexec-test-", suffix=".log", dir="/tmp", delete=False)  # noqa: SIM115

    def start(self, ready_timeout: float = 120.0) -> Service:
        argv = [str(binary()), *self.args]
        if self._worker is not None:
            argv += ["--worker-dir", self._worker.name]
        env = dict(os.environ)
        env.pop("PYEXEC_API_TOKEN", None)
        env.pop("PYEXEC_MCP", None)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(ready_timeout)
        first = line[0].decode().strip() if line else ""
        if not first.startswith("pyexec listening on "):
            self.stop()
            raise RuntimeError(f"pyexec did not start ({first!r}); log:\n{self.log()}")
        self.url = first.removeprefix("pyexec listening on ")
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pyexec not ready within {ready_timeout} s; log:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as answer:
            return answer.read().decode()

    def hold_worker(self, seconds: float) -> threading.Thread:
        """Starts a ``/execute`` run that sleeps ``seconds`` (in a thread; join it) and
        returns once the service has it in flight, so that with one worker the
        next call must queue. No token: for services started without one."""
        script = f"import time\n\ndef main():\n    time.sleep({seconds})\n"
        body = json.dumps({"script": script, "timeout": seconds + 15}).encode()
        request = urllib.request.Request(
            self.url + "/execute", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        thread = threading.Thread(
            target=lambda: urllib.request.urlopen(request, timeout=seconds + 60).read(), daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while "pyexec_in_flight_requests 1" not in self.metrics():
            if time.monotonic() > deadline:
                raise RuntimeError("the holding run never started")
            time.sleep(0.02)
        return thread

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        os.unlink(self._log.name)
        if self._worker is not None:
            self._worker.cleanup()
