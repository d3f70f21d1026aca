"""Notebook cells, exercised in-process: the last-expression rules, display,
errors, and the framing both ends of a session's pipes use."""

import ast
import os
import threading

import msgpack

from pyexec_worker import cells, notebook, protocol

LIMITS = {"max_result_bytes": 1 << 20, "max_figures": 0, "max_figures_bytes": 0}


def run(namespace: dict, code: str, number: int = 1) -> dict:
    return cells.run_cell(namespace, {"script": code, **LIMITS}, number)


def test_globals_persist_and_the_last_expression_is_the_result():
    ns: dict = {}
    assert run(ns, "import math\nx = 40") == {"outcome": "ok", "result": b"null"}
    assert run(ns, "x + 2")["result"] == b"42"
    assert run(ns, "y = math.floor(2.5)\ny * 10")["result"] == b"20"


def test_a_statement_gives_null_and_numpy_converts():
    ns: dict = {}
    assert run(ns, "for i in range(3):\n    pass")["result"] == b"null"
    assert run(ns, "import numpy as np\nnp.arange(3) * np.float64(0.5)")["result"] == b"[0.0,0.5,1.0]"


def test_a_value_that_is_not_json_is_displayed_not_refused():
    ns: dict = {}
    message = run(ns, "{1, 2}")
    assert message == {"outcome": "ok", "result": b"null", "display": "{1, 2}"}
    big = run(
        ns, "'x' * 10 + object.__repr__(object()) if False else type('B', (), {'__repr__': lambda s: 'y' * 10**6})()"
    )
    assert big["display"] == "y" * cells.MAX_DISPLAY
    broken = run(ns, "type('R', (), {'__repr__': lambda s: 1 / 0, '__iter__': None})()")
    assert broken["outcome"] == "ok" and broken["display"].startswith("<repr() failed")


def test_errors_show_the_cells_own_lines_and_keep_the_namespace():
    ns: dict = {}
    run(ns, "def f():\n    return 1 / 0", number=1)
    message = run(ns, "kept = 1\n\nf()", number=2)
    assert message["outcome"] == "runtime_error"
    assert 'File "<cell 2>", line 3' in message["traceback"]
    assert 'File "<cell 1>", line 2, in f' in message["traceback"]
    assert "return 1 / 0" in message["traceback"]
    assert run(ns, "kept")["result"] == b"1"
    syntax = run(ns, "def (:")
    assert syntax["outcome"] == "syntax_error" and "line 1" in syntax["error"]
    assert run(ns, "raise SystemExit(3)")["outcome"] == "runtime_error"
    assert run(ns, "raise MemoryError")["outcome"] == "memory_limit"


def test_too_large_results_are_refused_not_cut():
    message = cells.run_cell({}, {"script": "'x' * 100", "max_result_bytes": 10}, 1)
    assert message["outcome"] == "result_too_large"


def test_split_keeps_only_a_trailing_expression():
    body, last = cells.split_last_expression(ast.parse("a = 1\na"))
    assert last is not None and len(body.body) == 1
    body, last = cells.split_last_expression(ast.parse("a = 1"))
    assert last is None and len(body.body) == 1


def test_frames_round_trip_over_a_pipe_and_eof_ends_the_session():
    r, w = os.pipe()
    payload = {"script": "1", "n": list(range(50_000))}
    writer = threading.Thread(target=lambda: (cells.write_frame(w, payload), os.close(w)))
    writer.start()
    assert cells.read_frame(r) == payload
    writer.join()
    try:
        cells.read_frame(r)
    except cells.CellChannelClosed:
        pass
    else:
        raise AssertionError("EOF must end the cell loop")
    os.close(r)


def test_the_zygote_finds_a_whole_frame_only_once_it_arrived():
    frame = cells.encode_frame({"outcome": "ok"})
    data = bytearray(frame[:-1])
    assert notebook._whole_frame(data) is None
    data += frame[-1:] + b"next"
    assert msgpack.unpackb(notebook._whole_frame(data)) == {"outcome": "ok"}
    assert data == b"next"


def test_session_and_cell_frames_parse_and_answers_say_session_ended():
    opening = protocol.parse_request({"type": "session", "id": 1, "memory_bytes": 2, "timeout_ms": 3, "files": []})
    assert opening == protocol.SessionOpen(id=1, memory_bytes=2, timeout_ms=3)
    fields = {"id": 4, "timeout_ms": 5, "max_output_bytes": 6, "max_result_bytes": 7, "max_figures": 0}
    cell = protocol.parse_request({"type": "cell", "script": "x", "max_figures_bytes": 0, **fields})
    assert cell == protocol.CellRequest(script="x", max_figures_bytes=0, **fields)
    plain = protocol.RunResult(id=1, outcome="ok").to_message()
    assert "session_ended" not in plain and "display" not in plain
    ended = notebook.ended_result(9, "gone").to_message()
    assert (ended["outcome"], ended["session_ended"], ended["display"]) == ("killed", True, None)
