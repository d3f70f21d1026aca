"""Zygote-side spare handshake, with plain pipes standing in for a spare."""

import os
import threading
import time

import pytest

from pyexec_worker.session import Spare, SpareError
from pyexec_worker.spare import ZygoteEnds


def fake_spare():
    fds = [os.pipe() for _ in range(5)]
    ends = ZygoteEnds(*(r for r, _ in fds))
    return Spare(ends), fds[4][1]


def test_ready_overtaking_pid_still_waits_for_the_pid():
    spare, status_w = fake_spare()
    os.write(status_w, b"ready\n")

    def late_pid():
        time.sleep(0.1)
        os.write(status_w, b"pid 4242\n")

    threading.Thread(target=late_pid).start()
    spare.wait_ready(5)
    assert spare.init_pid == 4242


def test_error_line_becomes_spare_error():
    spare, status_w = fake_spare()
    os.write(status_w, b"error unshare(CLONE_NEWUSER) failed: EPERM\n")
    with pytest.raises(SpareError, match="CLONE_NEWUSER"):
        spare.wait_ready(5)


def test_silent_death_is_a_spare_error():
    spare, status_w = fake_spare()
    os.close(status_w)
    with pytest.raises(SpareError, match="without saying why"):
        spare.wait_ready(5)
