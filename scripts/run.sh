#!/usr/bin/env bash
# Installs everything (idempotent) and runs pyexec on 127.0.0.1:8080.
# Extra arguments go to pyexec, e.g. `scripts/run.sh --workers 4`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install.sh"
exec "$root/target/release/pyexec" "$@"
