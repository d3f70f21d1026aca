"""Services for the SDK tests: the real pyexec binary and sandbox (see pyexec_service.py).

``service``: 2 workers, an API token, sessions on (``--max-sessions 2``: they are
off by default), small body and result limits so that the 413 and
``result_too_large`` answers can be provoked. ``tiny``: 1 worker and a
0.2 s queue timeout, to provoke ``overloaded``.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyexec_service import Service  # noqa: E402
from service_limits import MAX_BODY_BYTES, MAX_FILES_BYTES, MAX_RESULT_BYTES  # noqa: E402


@pytest.fixture(scope="session")
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def service(token: str) -> Iterator[Service]:
    svc = Service(
        "--api-token",
        token,
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
        "--max-files-bytes",
        str(MAX_FILES_BYTES),
        "--max-result-bytes",
        str(MAX_RESULT_BYTES),
        "--max-sessions",
        "2",
    ).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def tiny() -> Iterator[Service]:
    svc = Service("--queue-timeout-secs", "0.2", workers=1).start()
    yield svc
    svc.stop()
