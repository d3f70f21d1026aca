"""Zygote-side verdicts from untrusted runner output."""

import os
import signal

import msgpack
import pytest

from pyexec_worker import isolation
from pyexec_worker.protocol import RunRequest
from pyexec_worker.verdict import RunnerMessage, decide

REQ = RunRequest(1, "", 1500, 1 << 28, 1 << 20, 1 << 20)
EXITED_0 = 0  # wait status of exit(0)


def status_of_signal(sig):
    return sig  # wait status for "killed by sig" without core dump


def verdict(message, exit_status=EXITED_0, timed_out=False):
    return decide(timed_out=timed_out, exit_status=exit_status, message=RunnerMessage(message), req=REQ)


def pack(**fields):
    return msgpack.packb(fields, use_bin_type=True)


def test_ok_message():
    assert verdict(pack(outcome="ok", result=b"[1]", error=None, traceback=None)) == ("ok", b"[1]", None, None)


def test_timeout_wins():
    outcome, _, error, _ = verdict(b"", timed_out=True)
    assert outcome == "timeout" and "1.5 s" in error


def test_signals():
    assert verdict(b"", status_of_signal(signal.SIGKILL))[0] == "killed"
    assert verdict(b"", status_of_signal(signal.SIGXCPU))[0] == "timeout"
    assert "SIGSEGV" in verdict(b"", status_of_signal(signal.SIGSEGV))[2]
    assert os.WIFSIGNALED(status_of_signal(signal.SIGKILL))


def test_no_message_is_killed():
    outcome, _, error, _ = verdict(b"", 3 << 8)
    assert outcome == "killed" and "status 3" in error
    assert verdict(None)[0] == "killed"


def test_vanished_init_is_the_worker_lost_not_the_script():
    # Nothing inside a run can kill its pid namespace's init: whoever did
    # it was outside (an operator, the node): not the script's verdict.
    outcome, _, error, _ = verdict(b"", None)
    assert outcome == "worker_lost" and "lost" in error


def test_sigkill_is_killed_whatever_the_host_oom_counter_says():
    # The verdict no longer reads /proc/vmstat: an OOM kill elsewhere on the
    # node must not turn this run's SIGKILL into memory_limit (the supervisor
    # decides that from the worker cgroup's own counter).
    assert verdict(b"", status_of_signal(signal.SIGKILL))[0] == "killed"
    assert not hasattr(__import__("pyexec_worker.verdict").verdict, "oom_kills")


def test_a_closed_result_channel_is_named():
    outcome, _, error, _ = verdict(b"", isolation.RESULT_LOST_STATUS << 8)
    assert outcome == "runtime_error" and "closed the run's result channel" in error


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        msgpack.packb([1, 2]),
        pack(outcome="timeout"),
        pack(outcome="ok", result="not bytes"),
        pack(outcome="ok", result=b"1") + b"trailing",
        pack(outcome="runtime_error", error=5),
    ],
)
def test_forged_or_garbage_messages_are_killed(raw):
    assert verdict(raw)[0] == "killed"


def test_oversized_result_is_refused_even_if_runner_said_ok():
    assert verdict(pack(outcome="ok", result=b"1" * ((1 << 20) + 1)))[0] == "result_too_large"


@pytest.mark.parametrize("data", [b"patched", b"NaN", b"[1,", b"\xff", b'{"a":Infinity}', b"[" * 100000])
def test_ok_result_that_is_not_json_is_refused(data):
    assert verdict(pack(outcome="ok", result=data))[0] == "result_not_json"
