"""Runner verdicts, exercised in-process (no user code that harms the host)."""

from pyexec_worker import tracebacks
from pyexec_worker.runner import MODULE_NAME, execute

LIMIT = 1 << 20


def test_ok_and_name_is_not_main():
    msg = execute(
        "calls = []\nif __name__ == '__main__':\n    calls.append(1)\ndef main():\n    return __name__", LIMIT
    )
    assert msg == {"outcome": "ok", "result": f'"{MODULE_NAME}"'.encode(), "error": None, "traceback": None}


def test_main_called_once():
    script = "n = []\ndef main():\n    n.append(1)\n    return len(n)\nif __name__ == '__main__':\n    main()"
    assert execute(script, LIMIT)["result"] == b"1"


def test_syntax_error_names_the_line():
    msg = execute("x = 1\ndef main(:\n    pass\n", LIMIT)
    assert msg["outcome"] == "syntax_error"
    assert "line 2" in msg["error"]
    assert "def main(:" in msg["traceback"]


def test_null_byte_is_a_syntax_error():
    assert execute("x = '\0'", LIMIT)["outcome"] == "syntax_error"


def test_missing_and_non_callable_main():
    assert execute("x = 1", LIMIT) == {
        "outcome": "missing_main",
        "result": None,
        "error": "main() is not defined",
        "traceback": None,
    }
    assert "not callable" in execute("main = 3", LIMIT)["error"]


def test_runtime_error_traceback_shows_only_user_frames_with_source():
    script = "def helper():\n    return 1 / 0\n\ndef main():\n    return helper()\n"
    msg = execute(script, LIMIT)
    assert msg["outcome"] == "runtime_error"
    assert msg["error"] == "ZeroDivisionError: division by zero"
    tb = msg["traceback"]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'File "<script>", line 5, in main' in tb
    assert 'File "<script>", line 2, in helper' in tb
    assert "return 1 / 0" in tb
    assert "runner.py" not in tb and "pyexec_worker" not in tb


def test_error_at_module_level_is_a_runtime_error():
    msg = execute("import does_not_exist_anywhere\n", LIMIT)
    assert msg["outcome"] == "runtime_error"
    assert "ModuleNotFoundError" in msg["error"]
    assert 'File "<script>", line 1, in <module>' in msg["traceback"]


def test_system_exit_and_keyboard_interrupt_are_runtime_errors():
    msg = execute("import sys\ndef main():\n    sys.exit(3)", LIMIT)
    assert (msg["outcome"], msg["error"]) == ("runtime_error", "SystemExit: 3")
    msg = execute("def main():\n    raise KeyboardInterrupt", LIMIT)
    assert (msg["outcome"], msg["error"]) == ("runtime_error", "KeyboardInterrupt")


def test_main_with_wrong_signature_has_no_service_frames():
    msg = execute("def main(x):\n    return x", LIMIT)
    assert msg["outcome"] == "runtime_error"
    assert "missing 1 required positional argument" in msg["error"]
    assert "runner.py" not in msg["traceback"]


def test_memory_error_is_memory_limit():
    msg = execute("def main():\n    raise MemoryError('boom')", LIMIT)
    assert msg["outcome"] == "memory_limit"
    assert msg["error"] == "MemoryError: boom"


def test_result_not_json_and_too_large():
    assert execute("def main():\n    return {1, 2}", LIMIT)["outcome"] == "result_not_json"
    msg = execute("def main():\n    return 'x' * 100", 50)
    assert msg["outcome"] == "result_too_large"
    assert "102 bytes" in msg["error"] and "50 bytes" in msg["error"]


def test_hostile_exception_str_does_not_break_reporting():
    script = "class E(Exception):\n    def __str__(self):\n        raise ValueError\ndef main():\n    raise E()"
    msg = execute(script, LIMIT)
    assert msg["outcome"] == "runtime_error"
    assert "E" in msg["error"]


def test_recursion_error_traceback_is_capped():
    msg = execute("def main():\n    return main()", LIMIT)
    assert msg["outcome"] == "runtime_error"
    assert "RecursionError" in msg["error"]
    assert len(msg["traceback"]) <= tracebacks.MAX_TEXT + 100


def test_cap_keeps_head_and_tail():
    text = "a" * 100 + "b" * 100
    capped = tracebacks.cap(text, 50)
    assert capped.startswith("a" * 25) and capped.endswith("b" * 25) and "cut" in capped
