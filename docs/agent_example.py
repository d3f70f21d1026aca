"""pyexec as a tool for an LLM agent, with pyexec-client: the tool's JSON Schema and the call loop.

The model is any callable that takes the conversation (a list of messages) and
returns either ``{"tool_call": {"id", "name", "arguments"}}`` or
``{"answer": "..."}``; adapt ``Model`` to your provider's chat API (tool/function
calling). ``TOOL`` is what you register with the provider. Errors the model can
fix (a traceback, a timeout) go back to it as the tool's result; capacity errors
are retried by the client. ``clients/python/tests/test_agent_example.py`` runs
this loop against the real service with a scripted model (no LLM, no network
beyond the local pyexec).

    python docs/agent_example.py http://127.0.0.1:8080   # a demo with a scripted "model"
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pyexec_client as px

# The function/tool definition to give the model (the JSON Schema of its arguments).
TOOL: dict[str, Any] = {
    "name": "run_python",
    "description": (
        "Run a Python script in an isolated sandbox with numpy, pandas and matplotlib. "
        "The script must define main(); its JSON-serializable return value is the result. "
        "Nothing persists between calls. On failure you get the error kind and traceback: fix the script and retry."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "script": {
                "type": "string",
                "description": "Python source defining main()",
            },
            "timeout": {"type": "number", "description": "seconds, default 10"},
        },
        "required": ["script"],
        "additionalProperties": False,
    },
}

Message = dict[str, Any]
Model = Callable[[list[Message]], dict[str, Any]]


def run_tool(client: px.Client, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call: what goes back to the model as the tool's result (never raises for the script's faults)."""
    try:
        r = client.execute(arguments["script"], timeout=arguments.get("timeout"))
    except px.ScriptError as e:
        return {
            "ok": False,
            "kind": e.kind,
            "error": e.message,
            "traceback": e.traceback,
            "stdout": e.stdout,
        }
    except px.RequestRefused as e:
        return {"ok": False, "kind": e.kind, "error": e.message}
    return {
        "ok": True,
        "result": r.result,
        "stdout": r.stdout,
        "figures": len(r.figures),
    }


def agent_loop(model: Model, client: px.Client, prompt: str, max_steps: int = 8) -> str:
    """Ask ``model`` until it answers, running every tool call it makes on pyexec."""
    messages: list[Message] = [{"role": "user", "content": prompt}]
    for _ in range(max_steps):
        reply = model(messages)
        if "answer" in reply:
            return str(reply["answer"])
        call = reply["tool_call"]
        messages.append({"role": "assistant", "tool_call": call})
        output = run_tool(client, call["arguments"]) if call["name"] == TOOL["name"] else {"error": "unknown tool"}
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(output)})
    raise RuntimeError(f"no answer after {max_steps} steps")


def scripted_model(steps: list[dict[str, Any]]) -> Model:
    """A stand-in for an LLM: returns ``steps`` in order (a step may be a function of the messages)."""
    queue = list(steps)

    def model(messages: list[Message]) -> dict[str, Any]:
        step = queue.pop(0)
        return step(messages) if callable(step) else step

    return model


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"

    def answer(messages: list[Message]) -> dict[str, Any]:
        return {"answer": f"The mean is {json.loads(messages[-1]['content'])['result']}"}

    demo = scripted_model(
        [
            {
                "tool_call": {
                    "id": "1",
                    "name": "run_python",
                    "arguments": {"script": "def main():\n    return 1 / 0"},
                }
            },
            {
                "tool_call": {
                    "id": "2",
                    "name": "run_python",
                    "arguments": {"script": "import numpy as np\n\ndef main():\n    return float(np.mean([1, 2, 3]))"},
                }
            },
            answer,
        ]
    )
    with px.Client(url, retry=px.Retry(attempts=3)) as client:
        print(agent_loop(demo, client, "What is the mean of 1, 2, 3?"))
