#!/usr/bin/env bash
# Renders deploy/ (base and both overlays; kustomize subset rendered by
# render_kustomize.py since no kustomize/kubectl binary is installable here),
# runs `kubernetes-validate --strict` (offline schemas, Kubernetes 1.37 and
# 1.31) over every built-in object, checks the PodMonitoring/ServiceMonitor
# CRD objects field by field with PyYAML, and cross-checks the objects.
# Uses the tools venv (scripts/install.sh --with-test-tools) when present.
# Final line: `manifests: N passed, M failed`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${PYEXEC_HOME:-/opt/pyexec}/tools-venv
if [ -x "$venv/bin/python" ]; then
  export PATH="$venv/bin:$PATH"
fi
if ! python3 -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  echo "validate-manifests: needs PyYAML and kubernetes-validate (python/requirements-tools.txt)" >&2
  echo "manifests: 0 passed, 1 failed"
  exit 1
fi
exec python3 "$root/tests/container/validate_manifests.py" "$@"
