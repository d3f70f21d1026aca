"""Framing and message parsing (pure, no processes)."""

import msgpack
import pytest

from pyexec_worker import protocol
from pyexec_worker.protocol import FrameReader, FrameTooLarge, Ping, ProtocolError, RunRequest
from pyexec_worker.protocol import fit_result as fit_frame

RUN = {
    "type": "run",
    "id": 1,
    "script": "def main(): return 1",
    "timeout_ms": 1000,
    "memory_bytes": 1 << 28,
    "max_output_bytes": 1 << 20,
    "max_result_bytes": 1 << 22,
    "files": [{"name": "in.txt", "data": b"x"}],
    "max_figures": 8,
    "max_figures_bytes": 1 << 22,
}


def test_round_trip_byte_by_byte():
    data = protocol.encode_frame(RUN) + protocol.encode_frame({"type": "ping", "id": 2})
    reader = FrameReader(1 << 20)
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == [RUN, {"type": "ping", "id": 2}]
    assert reader.pending == 0


def test_truncated_frame_is_not_an_error_just_pending():
    data = protocol.encode_frame(RUN)
    reader = FrameReader(1 << 20)
    assert reader.feed(data[:-1]) == []
    assert reader.pending == len(data) - 1
    assert reader.feed(data[-1:]) == [RUN]


def test_oversized_header_refused_before_body_arrives():
    reader = FrameReader(100)
    with pytest.raises(FrameTooLarge) as info:
        reader.feed(protocol.HEADER.pack(101))  # header only, no body
    assert info.value.length == 101
    assert "exceeds --max-frame-bytes 100" in str(info.value)


def test_frame_exactly_at_max_is_accepted():
    body = msgpack.packb({"type": "ping", "id": 1})
    reader = FrameReader(len(body))
    assert reader.feed(protocol.HEADER.pack(len(body)) + body) == [{"type": "ping", "id": 1}]


@pytest.mark.parametrize(
    "body",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"id": 1}), msgpack.packb({1: 2}), msgpack.packb({"type": 5})],
)
def test_garbage_bodies_are_protocol_errors(body):
    with pytest.raises(ProtocolError):
        FrameReader(1 << 20).feed(protocol.HEADER.pack(len(body)) + body)


def test_parse_run_and_ping():
    req = protocol.parse_request(RUN)
    assert isinstance(req, RunRequest)
    assert req.script == RUN["script"] and req.memory_bytes == 1 << 28
    assert req.files == (protocol.InputFile("in.txt", b"x"),)
    assert (req.max_figures, req.max_figures_bytes) == (8, 1 << 22)
    assert protocol.parse_request({"type": "ping", "id": 9}) == Ping(9)


@pytest.mark.parametrize(
    "files",
    [None, {"in.txt": b"x"}, [{"name": "a"}], [{"name": "a", "data": "text"}], [{"name": 1, "data": b""}]],
)
def test_parse_run_rejects_malformed_files(files):
    with pytest.raises(ProtocolError, match="files"):
        protocol.parse_request({**RUN, "files": files})


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", -1), ("id", 2**64), ("timeout_ms", 1.5), ("timeout_ms", True), ("script", b"x"), ("script", None)],
)
def test_parse_run_rejects_wrong_types(field, value):
    with pytest.raises(ProtocolError, match=field):
        protocol.parse_request({**RUN, field: value})


def test_parse_rejects_unknown_type():
    with pytest.raises(ProtocolError, match="unexpected message type 'result'"):
        protocol.parse_request({"type": "result", "id": 1})


def test_result_field_order_is_the_documented_one():
    msg = protocol.RunResult(id=1, outcome="ok", result=b"1").to_message()
    assert list(msg) == [
        "type",
        "id",
        "outcome",
        "result",
        "error",
        "traceback",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "duration_ms",
        "usage",
        "figures",
        "figures_truncated",
    ]
    assert isinstance(msg["duration_ms"], float)


def test_fit_frame_cuts_output_then_result():
    result = protocol.RunResult(id=1, outcome="ok", result=b"1", stdout=b"a" * 5000, stderr=b"b" * 100)
    msg = fit_frame(result, 2000)
    assert len(msgpack.packb(msg)) <= 2000
    assert msg["outcome"] == "ok" and msg["stdout_truncated"]
    big = protocol.RunResult(id=1, outcome="ok", result=b"1" * 5000)
    msg = fit_frame(big, 2000)
    assert msg["outcome"] == "result_too_large" and msg["result"] is None
