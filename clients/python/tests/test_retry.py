"""Retry on overloaded: a 1-worker pool with a 0.2 s queue timeout, its worker held by a slow run.

Without retry the second call is ``Overloaded`` with ``retry_after``; with
``Retry`` it waits and gets its answer once the worker is free. Bounded by
meaning: the holder is known to run (``pyexec_in_flight_requests``) before the
second call is sent.
"""

from __future__ import annotations

import pytest
from pyexec_service import Service

import pyexec_client as px


def test_overloaded_then_retried(tiny: Service) -> None:
    holder = tiny.hold_worker(3)
    with px.Client(tiny.url) as c, pytest.raises(px.Overloaded) as caught:
        c.execute("def main(): return 1")
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert caught.value.status == 503
    holder.join(30)

    holder = tiny.hold_worker(3)
    with px.Client(tiny.url, retry=px.Retry(attempts=60, backoff=0.05, max_wait=0.5)) as c:
        assert c.execute("def main(): return 'after retries'").result == "after retries"
    holder.join(30)


def test_retry_schedule() -> None:
    retry = px.Retry(attempts=3, backoff=0.5, max_wait=1.5)
    busy = px.Overloaded("busy", status=503, kind="overloaded", body={}, request_id=None, retry_after=1.0)
    assert [retry.wait(n, busy) for n in range(4)] == [1.0, 1.0, 1.5, None]
    refused = px.InvalidRequest("bad", status=400, kind="invalid_request", body={}, request_id=None)
    assert retry.wait(0, refused) is None, "only 503 answers are retried"
    assert px.Retry().wait(0, busy) is None, "off by default"
