"""The Python encoder reproduces tests/golden/ and the decoder reads it back."""

import pytest

from golden_values import GOLDEN, GOLDEN_DIR
from pyexec_worker import protocol


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoder_reproduces_golden_bytes(name):
    assert protocol.encode_frame(GOLDEN[name]) == (GOLDEN_DIR / name).read_bytes()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_decoder_reads_golden_bytes_in_field_order(name):
    data = (GOLDEN_DIR / name).read_bytes()
    [msg] = protocol.FrameReader(1 << 20).feed(data)
    assert msg == GOLDEN[name]
    assert list(msg) == list(GOLDEN[name])


def test_typed_builders_match_golden():
    g = GOLDEN
    assert protocol.ready_message(1, "3.11.2", "2.4.6", "3.1.1") == g["ready.msgpack"]
    assert protocol.pong_message(7) == g["pong.msgpack"]
    assert protocol.ping_message(7) == g["ping.msgpack"]
    assert protocol.fatal_message(g["fatal.msgpack"]["error"]) == g["fatal.msgpack"]
    for name in ("result_ok.msgpack", "result_error.msgpack"):
        fields = {k: v for k, v in g[name].items() if k != "type"}
        built = protocol.RunResult(**fields).to_message()
        assert protocol.encode_frame(built) == (GOLDEN_DIR / name).read_bytes()
    req = protocol.parse_request(g["run.msgpack"])
    assert protocol.encode_frame(protocol.run_message(req)) == (GOLDEN_DIR / "run.msgpack").read_bytes()


def test_every_message_type_has_a_golden_file():
    types = {m["type"] for m in GOLDEN.values()}
    assert types == {"run", "ping", "ready", "pong", "result", "fatal"}
