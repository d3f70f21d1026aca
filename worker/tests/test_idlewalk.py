"""The ready runner's wait: pre-walk while idle, never in a request's way."""

import os
import threading
import time

from pyexec_worker.idlewalk import wait_for_request


def test_a_waiting_request_skips_the_walk():
    r, w = os.pipe()
    os.write(w, b"request")
    walked = []
    assert wait_for_request(r, [lambda: walked.append(1)], idle_after_s=1.0) == 0
    assert walked == []


def test_an_idle_runner_walks_every_step_then_waits():
    r, w = os.pipe()
    walked = []
    steps = [lambda i=i: walked.append(i) for i in range(3)]
    threading.Timer(0.2, os.write, (w, b"request")).start()
    started = time.monotonic()
    assert wait_for_request(r, steps, idle_after_s=0.01) == 3
    assert walked == [0, 1, 2]
    assert time.monotonic() - started >= 0.15, "returned before the request came"


def test_a_request_arriving_mid_walk_stops_it_after_the_current_step():
    r, w = os.pipe()
    walked = []

    def step(i):
        walked.append(i)
        if i == 1:
            os.write(w, b"request")

    steps = [lambda i=i: step(i) for i in range(5)]
    assert wait_for_request(r, steps, idle_after_s=0.01) == 2
    assert walked == [0, 1]


def test_a_failing_step_ends_the_walk_not_the_wait():
    r, w = os.pipe()
    threading.Timer(0.1, os.write, (w, b"request")).start()

    def broken():
        raise ValueError("pandas changed")

    assert wait_for_request(r, [broken, lambda: None], idle_after_s=0.01) == 0
    assert os.read(r, 16) == b"request"
