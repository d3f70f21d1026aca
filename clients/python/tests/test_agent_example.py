"""docs/agent_example.py's loop against the real service, with a scripted model (no LLM)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from pyexec_service import Service

import pyexec_client as px

spec = importlib.util.spec_from_file_location(
    "agent_example", Path(__file__).resolve().parents[3] / "docs/agent_example.py"
)
assert spec is not None and spec.loader is not None
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def test_the_loop_feeds_errors_back_and_ends_with_an_answer(service: Service, token: str) -> None:
    seen: list[dict[str, Any]] = []

    def answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
        seen.extend(json.loads(m["content"]) for m in messages if m["role"] == "tool")
        return {"answer": f"mean={seen[-1]['result']}"}

    model = example.scripted_model(
        [
            {"tool_call": {"id": "1", "name": "run_python", "arguments": {"script": "def main():\n    return 1 / 0"}}},
            {
                "tool_call": {
                    "id": "2",
                    "name": "run_python",
                    "arguments": {"script": "import numpy as np\n\ndef main():\n    return float(np.mean([1, 2, 6]))"},
                }
            },
            answer,
        ]
    )
    with px.Client(service.url, token=token) as client:
        assert example.agent_loop(model, client, "mean of 1, 2, 6?") == "mean=3.0"
    assert seen[0]["ok"] is False and seen[0]["kind"] == "runtime_error"
    assert "ZeroDivisionError" in seen[0]["traceback"]
    assert seen[1] == {"ok": True, "result": 3.0, "stdout": "", "figures": 0}


def test_the_tool_schema_is_json_schema() -> None:
    schema = example.TOOL["input_schema"]
    assert schema["type"] == "object" and schema["required"] == ["script"]
    json.dumps(example.TOOL)
