#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine: installs what the
# tests need, then the lint gates, the Rust unit and integration tests (real
# nsjail, real Python), the worker's Python tests, the observability checks
# against a real Prometheus, the k6 smoke test, the benchmark in quick mode,
# the Kubernetes manifest validation and the container build-and-run.
#
# PYEXEC_SKIP_CONTAINER=1 skips the container step (it needs podman and
# takes a few minutes the first time).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
home=${PYEXEC_HOME:-/opt/pyexec}
tools="$home/tools-venv/bin"

"$root/scripts/install.sh" --with-test-tools || { echo "install failed"; exit 1; }
# Every pyexec the tests start uses the sandbox install.sh just built.
export PYEXEC_NSJAIL=${PYEXEC_NSJAIL:-$home/bin/nsjail}
export PYEXEC_SANDBOX_PYTHON=${PYEXEC_SANDBOX_PYTHON:-$home/venv/bin/python3}
export PYEXEC_WORKER_DIR=${PYEXEC_WORKER_DIR:-$home/worker}

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local started=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    printf '\033[32m<== %s passed (%ss)\033[0m\n' "$name" $((SECONDS - started))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf '\033[31m<== %s FAILED (%ss)\033[0m\n' "$name" $((SECONDS - started))
  fi
}

binary="$root/target/release/pyexec"
step "cargo fmt --check" cargo fmt --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
step "ruff (worker/, bench/)" bash -c "\"$tools/ruff\" check worker && cd bench && \"$tools/ruff\" check ."
step "pytest (worker/)" "$tools/pytest" -q worker/tests
step "cargo test (unit + integration)" cargo test --locked -- --test-threads 2
step "observability (promtool, Prometheus, dashboard schema)" tests/ops/check-observability.sh "$binary"
step "k6 smoke" load-tests/run.sh smoke "$binary"
step "benchmark (quick)" "$tools/python" bench/run.py --quick --binary "$binary"
step "kubernetes manifests" tests/container/validate-manifests.sh
if [ "${PYEXEC_SKIP_CONTAINER:-0}" != 1 ]; then
  step "container build and run" tests/container/build-and-run.sh "$binary"
fi

echo
if [ $failed -gt 0 ]; then
  printf 'failed steps: %s\n' "${failures[*]}"
fi
echo "steps: $passed passed, $failed failed"
[ $failed -eq 0 ]
