"""Start the real zygote under real nsjail and talk to it over a socketpair.

The nsjail argv follows docs/internals.md exactly (minus the cgroup flags
and the jail-wide seccomp policy, which tests/seccomp.rs covers through the
real service). The zygote's run filter (``--seccomp-bpf``) comes from the
binary, as in production.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WORKER_DIR))

from pyexec_worker import protocol  # noqa: E402
from pyexec_worker.isolation import fixed_environment  # noqa: E402

PYEXEC_HOME = Path(os.environ.get("PYEXEC_HOME", "/opt/pyexec"))
NSJAIL = PYEXEC_HOME / "bin" / "nsjail"
VENV = PYEXEC_HOME / "venv"
SANDBOX_UID = 99999

MAX_FRAME = 16 << 20
LIMITS = {
    "tmp_size_bytes": 64 << 20,
    "max_processes": 32,
    "max_open_files": 256,
    "max_file_size_bytes": 16 << 20,
    "spares": 2,
}


def available() -> bool:
    return NSJAIL.exists() and (VENV / "bin" / "python3").exists() and os.geteuid() == 0


def copy_worker() -> Path:
    """A world-readable copy of worker/ (the jail's uid is unprivileged)."""
    root = Path(tempfile.mkdtemp(prefix="pyexec-worker-"))
    os.chmod(root, 0o755)
    dest = root / "worker"
    shutil.copytree(WORKER_DIR, dest, ignore=shutil.ignore_patterns("tests", "__pycache__", ".*"))
    for path in [dest, *dest.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return dest


@functools.cache
def run_filter_hex() -> str:
    """The run's seccomp filter as the service passes it (``pyexec debug seccomp-bpf``)."""
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(["cargo", "build", "--quiet", "--bin", "pyexec"], cwd=repo, check=True)
    binary = repo / "target" / "debug" / "pyexec"
    return subprocess.run([binary, "debug", "seccomp-bpf"], capture_output=True, text=True, check=True).stdout.strip()


def nsjail_argv(worker_dir: Path, max_frame: int = MAX_FRAME, proc_rw: bool = True, **limits: int) -> list[str]:
    lim = {**LIMITS, **limits}
    venv = str(VENV)
    u = f"{SANDBOX_UID}:{SANDBOX_UID}:1"
    argv = [str(NSJAIL), "--mode", "o", "--quiet", "--hostname", "pyexec", "--user", u, "--group", u]
    argv += ["--time_limit", "0"] + (["--proc_rw"] if proc_rw else [])
    argv += ["--rlimit_as", "inf", "--rlimit_cpu", "inf", "--rlimit_fsize", "inf", "--rlimit_nofile", "1024"]
    argv += ["--rlimit_nproc", "soft", "--rlimit_stack", "soft", "--tmpfsmount", "/tmp"]
    argv += ["-m", "none:/dev/shm:tmpfs:ro,size=4096"]
    argv += ["-R", "/usr", "-s", "usr/bin:/bin", "-s", "usr/lib:/lib", "-s", "usr/lib64:/lib64"]
    argv += ["-R", venv, "-R", f"{worker_dir}:/pyexec/worker"]
    argv += ["-R", "/dev/null", "-R", "/dev/zero", "-R", "/dev/urandom", "-R", "/dev/random", "--pass_fd", "3"]
    env = fixed_environment(venv)
    for key, value in env.items():
        argv += ["-E", f"{key}={value}"]
    argv += ["--cwd", "/", "--", f"{venv}/bin/python3", "-E", "-s", "-B", "/pyexec/worker/zygote.py"]
    argv += ["--control-fd", "3", "--max-frame-bytes", str(max_frame), "--seccomp-bpf", run_filter_hex()]
    for key, value in lim.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


class Zygote:
    """One zygote process and our end of its control socket."""

    def __init__(self, worker_dir: Path, **kwargs: object) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            nsjail_argv(worker_dir, **kwargs),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3,),
            preexec_fn=lambda: os.dup2(fd, 3),  # noqa: PLW1509 (single-threaded test process)
        )
        theirs.close()
        self.sock = ours
        self.sock.settimeout(30)
        self.reader = protocol.FrameReader(1 << 30)
        self.pending: list[dict] = []
        self.next_id = 1

    def recv(self) -> dict | None:
        while not self.pending:
            data = self.sock.recv(1 << 20)
            if not data:
                return None
            self.pending += self.reader.feed(data)
        return self.pending.pop(0)

    def send(self, message: dict) -> None:
        self.sock.sendall(protocol.encode_frame(message))

    def run(
        self, script: str, timeout_ms: int = 5000, memory_bytes: int = 256 << 20, files: list | None = None, **kw: int
    ) -> dict:
        self.next_id += 1
        message = {
            "type": "run",
            "id": self.next_id,
            "script": script,
            "timeout_ms": timeout_ms,
            "memory_bytes": memory_bytes,
            "max_output_bytes": kw.get("max_output_bytes", 1 << 20),
            "max_result_bytes": kw.get("max_result_bytes", 4 << 20),
            "files": files or [],
            "max_figures": kw.get("max_figures", 8),
            "max_figures_bytes": kw.get("max_figures_bytes", 4 << 20),
        }
        started = time.monotonic()
        self.send(message)
        reply = self.recv()
        assert reply is not None, "zygote closed the socket"
        assert reply["type"] == "result" and reply["id"] == self.next_id, reply
        reply["wall_s"] = time.monotonic() - started
        return reply

    def close(self, timeout: float = 10) -> int:
        self.sock.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
