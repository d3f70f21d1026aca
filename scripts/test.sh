#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine: installs what the
# tests need, then the lint gates, the Rust unit and integration tests (real
# nsjail, real Python; the replay of the committed fuzz corpus), the live
# service against its OpenAPI spec (schemathesis), a bounded run of each
# fuzz target, the worker's Python tests, the observability checks against
# a real Prometheus, the k6 smoke test, the benchmark in quick mode, the
# Kubernetes manifest validation, the cgroup-v2 VM (tests/vm, see
# docs/cgroups.md), the container build (from source) and run, and the GKE
# Deployment started with `podman kube play`.
#
# scripts/test.sh [fast|sandbox|slow|all] runs one tier (docs/testing.md);
# all, the default, is what CI runs: every step, in the order below. fast
# needs no root and no sandbox, and installs nothing: fmt, clippy, ruff,
# the Python tests that need no jail, the Rust unit tests and the tests of
# the docs against the code.
#
# PYEXEC_SKIP_CONTAINER=1 skips the container step (it needs podman and
# takes a few minutes the first time). PYEXEC_FUZZ_SECS sets the time of
# each fuzz target (default 30).
set -uo pipefail
tier=${1:-all}
case $tier in
  fast | sandbox | slow | all) ;;
  *) echo "usage: scripts/test.sh [fast|sandbox|slow|all]" >&2; exit 2 ;;
esac
# on TIER...: whether this run includes a step of one of these tiers.
on() { [ "$tier" = all ] || [[ " $* " == *" $tier "* ]]; }
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
home=${PYEXEC_HOME:-/opt/pyexec}
tools="$home/tools-venv/bin"

if [ "$tier" != fast ]; then
  "$root/scripts/install.sh" --with-test-tools || { echo "install failed"; exit 1; }
  # The sandbox tests fail, never skip, here (tests/common: require_sandbox).
  unset PYEXEC_ALLOW_NO_SANDBOX
  export PYEXEC_REQUIRE_SANDBOX=1
fi
[ -x "$tools/ruff" ] || tools=$(dirname "$(command -v ruff || echo /nonexistent/ruff)")
# Every pyexec the tests start uses the sandbox install.sh just built.
export PYEXEC_NSJAIL=${PYEXEC_NSJAIL:-$home/bin/nsjail}
export PYEXEC_SANDBOX_PYTHON=${PYEXEC_SANDBOX_PYTHON:-$home/venv/bin/python3}
export PYEXEC_WORKER_DIR=${PYEXEC_WORKER_DIR:-$home/worker}

passed=0
failed=0
failures=()
failure_logs=()
logs=$(mktemp -d /tmp/pyexec-test-logs.XXXXXX)
# step NAME CMD...: runs CMD, shows its output and keeps a copy, so that the
# summary at the end can repeat why a failed step failed (a long CI log may
# be shown with its middle cut out).
step() {
  local name=$1
  shift
  local log="$logs/$((passed + failed)).log"
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local started=$SECONDS
  if "$@" 2>&1 | tee "$log"; then
    passed=$((passed + 1))
    printf '\033[32m<== %s passed (%ss)\033[0m\n' "$name" $((SECONDS - started))
  else
    failed=$((failed + 1))
    failures+=("$name")
    failure_logs+=("$log")
    printf '\033[31m<== %s FAILED (%ss)\033[0m\n' "$name" $((SECONDS - started))
  fi
}

# The lines of a failed step's log that say what failed, without backtraces.
digest() {
  grep -E -A2 -- '--- FAILED|panicked at|^(FAILED|ERROR) |^E  |^error(\[|:)|^not ok|^FAIL|✗' "$1" |
    grep -vE '^\s+[0-9]+: |^\s+at |^stack backtrace' | head -n 80
}

# The summary: why each failed step failed, the counts; fails if any did.
finish() {
  echo
  for i in "${!failures[@]}"; do
    printf '\n\033[31m--- why "%s" failed (full output above)\033[0m\n' "${failures[$i]}"
    digest "${failure_logs[$i]}"
  done
  if [ $failed -gt 0 ]; then
    printf '\nfailed steps: %s\n' "$(IFS=,; echo "${failures[*]}")"
  fi
  rm -rf "$logs"
  echo "steps: $passed passed, $failed failed ($tier)"
  [ $failed -eq 0 ]
}

binary="$root/target/release/pyexec"
on fast && step "cargo fmt --check" cargo fmt --check
on fast && step "cargo clippy" cargo clippy --quiet --all-targets --locked -- -D warnings
on fast && step "ruff (worker/, bench/)" bash -c "\"$tools/ruff\" check worker && cd bench && \"$tools/ruff\" check ."
if [ "$tier" = fast ]; then
  step "pytest (worker/, no jail)" "$tools/pytest" -q worker/tests --ignore=worker/tests/test_sandbox.py
  step "cargo test (unit + docs against the code)" cargo test --quiet --locked --no-fail-fast --lib \
    --test api_doc --test configuration_doc --test doc_links --test error_kinds --test fuzz_corpus --test vocabulary
fi
on sandbox && step "pytest (worker/)" "$tools/pytest" -q worker/tests
on sandbox && step "Python SDK + MCP endpoint (official mcp client)" clients/python/check.sh "$binary"
on sandbox && step "cargo test (unit + integration)" cargo test --quiet --locked --no-fail-fast -- --test-threads 2
on slow || { finish; exit; }
step "API spec (schemathesis against /openapi.json)" tests/api-spec/check.sh "$binary"
step "fuzz (each target ${PYEXEC_FUZZ_SECS:-30} s)" tests/fuzz/run.sh
step "observability (promtool, Prometheus, dashboard schema)" tests/ops/check-observability.sh "$binary"
step "k6 smoke" load-tests/run.sh smoke "$binary"
step "benchmark (quick)" "$tools/python" bench/run.py --quick --binary "$binary"
step "sessions benchmark (quick)" "$tools/python" bench/sessions.py --quick --binary "$binary"
step "fault injection (SIGKILL/SIGSTOP of nsjail, zygote, fork server, spare, runner under load; 40 s)" "$tools/python" bench/faults.py --binary "$binary"
step "kubernetes manifests" tests/container/validate-manifests.sh
step "cgroup v2 VM (qemu TCG, pod-like cgroup namespace)" tests/vm/run.sh "$binary"
if [ "${PYEXEC_SKIP_CONTAINER:-0}" != 1 ]; then
  step "container build from source and run" tests/container/build-and-run.sh
  step "kubernetes pod (podman kube play of the GKE Deployment)" tests/container/kube-play.sh
fi

finish
