#!/usr/bin/env bash
# The Python SDK's and the MCP endpoint's checks, one step of scripts/test.sh:
#   clients/python/check.sh PATH/TO/pyexec
# 1. pyexec-client: ruff, mypy --strict, a wheel builds (pip, isolated build);
# 2. pytest clients/python/tests (the SDK against the real service) and
#    tests/mcp-endpoint (the /mcp endpoint driven by the official MCP Python SDK).
# The services the tests start (127.0.0.1:0, real nsjail and sandbox Python from
# PYEXEC_NSJAIL / PYEXEC_SANDBOX_PYTHON / PYEXEC_WORKER_DIR) run PATH/TO/pyexec.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${PYEXEC_HOME:-/opt/pyexec}/tools-venv/bin
bin=${1:?usage: $0 PATH/TO/pyexec}
export PYEXEC_BINARY=$bin

cd "$here"
"$tools/ruff" check . "$root/tests/mcp-endpoint" "$root/docs/agent_example.py"
"$tools/ruff" format --check . "$root/tests/mcp-endpoint" "$root/docs/agent_example.py"
"$tools/mypy" --no-error-summary
wheels=$(mktemp -d /tmp/pyexec-client-wheel.XXXXXX)
trap 'rm -rf "$wheels" "$here/build" "$here"/src/*.egg-info' EXIT
"$tools/pip" wheel --quiet --no-deps --wheel-dir "$wheels" "$here"
ls "$wheels"/pyexec_client-*-py3-none-any.whl
cd "$root"
"$tools/pytest" -q -rs clients/python/tests tests/mcp-endpoint
