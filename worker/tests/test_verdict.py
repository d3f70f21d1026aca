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


def verdict(message, exit_status=EXITED_0, timed_out=False, oom=False):
    return decide(timed_out=timed_out, exit_status=exit_status, message=RunnerMessage(message), oom=oom, req=REQ)


def pack(**fields):
    return msgpack.packb(fields, use_bin_type=True)


def test_ok_message():
    assert verdict(pack(outcome="ok", result=b"[1]", error=None, traceback=None)) == ("ok", b"[1]", None, None)


def test_timeout_wins():
    outcome, _, error, _ = verdict(b"", timed_out=True)
    assert outcome == "timeout" and "1.5 s" in error


def test_signals():
    assert verdict(b"", status_of_signal(signal.SIGKILL))[0] == "killed"
    assert verdict(b"", status_of_signal(signal.SIGKILL), oom=True)[0] == "memory_limit"
    assert verdict(b"", status_of_signal(signal.SIGXCPU))[0] == "timeout"
    assert "SIGSEGV" in verdict(b"", status_of_signal(signal.SIGSEGV))[2]
    assert os.WIFSIGNALED(status_of_signal(signal.SIGKILL))


def test_no_message_is_killed():
    outcome, _, error, _ = verdict(b"", 3 << 8)
    assert outcome == "killed" and "status 3" in error
    assert verdict(None)[0] == "killed"
    assert verdict(b"", None)[0] == "killed"


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
