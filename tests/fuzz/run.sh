#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, on the stable
# toolchain, and prints per target how many inputs ran and how fast.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]     (default: $PYEXEC_FUZZ_SECS or 30)
#
# cargo-fuzz passes nightly-only flags to rustc (-Z...); RUSTC_BOOTSTRAP=1
# lets the stable compiler accept them, so CI needs no nightly toolchain.
# Sanitizer none: the code under test is safe Rust, so ASan would find
# nothing the panics and debug assertions (-a: overflow checks) do not,
# at a large cost in build time and executions per second.
#
# The fuzzer starts from the committed seeds in fuzz/corpus/<target> and
# writes what it finds to a scratch directory, so a run never changes the
# repository. A crash exits non-zero; the input is kept in
# fuzz/artifacts/<target>/ (replay it with `cargo fuzz run <target> FILE`).
# To grow the committed seeds, see fuzz/README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${PYEXEC_FUZZ_SECS:-30}}
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: run scripts/install.sh --with-test-tools" >&2
  exit 1
fi
cd "$root/fuzz"
scratch=$(mktemp -d /tmp/pyexec-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

started=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz build: $((SECONDS - started)) s"

failed=0
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target" "corpus/$target"
  dict=()
  [ -f "dicts/$target.dict" ] && dict=("-dict=dicts/$target.dict")
  log="$scratch/$target.log"
  # -close_fd_mask=1: the code under test prints nothing we need.
  if cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$secs" -print_final_stats=1 -close_fd_mask=1 "${dict[@]}" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=1
    tail -n 40 "$log"
  fi
  stat() { awk -v key="stat::$1:" '$1 == key { print $2 }' "$log" | tail -n 1; }
  coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
  printf '%s %s: %s runs in %s s, %s exec/s, %s, %s new inputs\n' "$status" "$target" \
    "$(stat number_of_executed_units)" "$secs" "$(stat average_exec_per_sec)" "${coverage:-cov: ?}" \
    "$(find "$scratch/$target" -type f | wc -l)"
done
echo "fuzzing: $((SECONDS - started)) s in all"
exit $failed
