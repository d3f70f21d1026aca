"""The MCP tests' service: the real pyexec with an API token and sessions on
(``--max-sessions 2``; they are off by default), shared by the module.

The starter is the SDK tests' (clients/python/tests/pyexec_service.py); see there
for which binary and sandbox it runs.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients/python/tests"))

from pyexec_service import Service


@pytest.fixture(scope="session")
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def service(token: str) -> Iterator[Service]:
    svc = Service("--api-token", token, "--max-sessions", "2").start()
    yield svc
    svc.stop()
