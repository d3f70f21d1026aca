"""The fixed example messages pinned by tests/golden/ (see its README).

Run ``python worker/tests/golden_values.py`` from the repo root to rewrite
the files after a deliberate protocol change (then bump the version).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "worker"))

from pyexec_worker.protocol import encode_frame  # noqa: E402

GOLDEN_DIR = REPO / "tests" / "golden"

RUN = {
    "type": "run",
    "id": 42,
    "script": 'def main():\n    return {"sum": 2 + 2}\n',
    "timeout_ms": 10000,
    "memory_bytes": 268435456,
    "max_output_bytes": 1048576,
    "max_result_bytes": 4194304,
    "files": [
        {"name": "data.csv", "data": b"a,b\n1,2\n"},
        {"name": "blob.bin", "data": b"\x00\xff\n"},
    ],
    "max_figures": 8,
    "max_figures_bytes": 4194304,
}
PING = {"type": "ping", "id": 7}
READY = {"type": "ready", "version": 2, "pid": 1, "python": "3.11.2", "numpy": "2.4.6", "pandas": "3.1.1"}
PONG = {"type": "pong", "id": 7}
RESULT_OK = {
    "type": "result",
    "id": 42,
    "outcome": "ok",
    "result": b'{"sum":4}',
    "error": None,
    "traceback": None,
    "stdout": b"hello\n",
    "stderr": b"",
    "stdout_truncated": False,
    "stderr_truncated": False,
    "duration_ms": 3.25,
    "usage": {"wall_ms": 2.5, "cpu_ms": 2.0, "max_rss_kib": 91234},
    "figures": [{"format": "png", "data": b"\x89PNG\r\n\x1a\n", "width": 640, "height": 480}],
    "figures_truncated": False,
}
RESULT_ERROR = {
    "type": "result",
    "id": 43,
    "outcome": "runtime_error",
    "result": None,
    "error": "ZeroDivisionError: division by zero",
    "traceback": (
        "Traceback (most recent call last):\n"
        '  File "<script>", line 2, in main\n'
        "    return 1 / 0\n"
        "ZeroDivisionError: division by zero\n"
    ),
    "stdout": b"",
    "stderr": b"warn \xff\n",
    "stdout_truncated": False,
    "stderr_truncated": True,
    "duration_ms": 12.5,
    "usage": {"wall_ms": 12.0, "cpu_ms": None, "max_rss_kib": None},
    "figures": [],
    "figures_truncated": False,
}
FATAL = {
    "type": "fatal",
    "error": "cannot create a per-run sandbox: unshare(CLONE_NEWUSER) failed: EPERM (Operation not permitted)",
}

GOLDEN = {
    "run.msgpack": RUN,
    "ping.msgpack": PING,
    "ready.msgpack": READY,
    "pong.msgpack": PONG,
    "result_ok.msgpack": RESULT_OK,
    "result_error.msgpack": RESULT_ERROR,
    "fatal.msgpack": FATAL,
}


def write_all() -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name, message in GOLDEN.items():
        (GOLDEN_DIR / name).write_bytes(encode_frame(message))


if __name__ == "__main__":
    write_all()
