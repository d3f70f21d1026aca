#!/usr/bin/env bash
# Installs everything (idempotent) and runs pyexec on 127.0.0.1:8080.
# Extra arguments go to pyexec, e.g. `scripts/run.sh --workers 4`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install.sh"
# Where install.sh put the sandbox (flags given to this script still win).
home=${PYEXEC_HOME:-/opt/pyexec}
export PYEXEC_NSJAIL=${PYEXEC_NSJAIL:-$home/bin/nsjail}
export PYEXEC_SANDBOX_PYTHON=${PYEXEC_SANDBOX_PYTHON:-$home/venv/bin/python3}
export PYEXEC_WORKER_DIR=${PYEXEC_WORKER_DIR:-$home/worker}
exec "$root/target/release/pyexec" "$@"
