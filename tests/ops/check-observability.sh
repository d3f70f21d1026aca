#!/usr/bin/env bash
# Checks pyexec's observability artifacts against the real thing.
#
#   tests/ops/check-observability.sh PATH/TO/pyexec
#
# (a) promtool check rules + promtool test rules (dashboards/prometheus/)
# (b) the dashboard JSON against Grafana's schema (dashboards/check-schema/,
#     npm @grafana/schema + typescript; `npm ci` when node_modules is missing)
# (c) starts PYEXEC (--listen 127.0.0.1:<free port> --workers 2), sends a mix
#     of requests (ok, script errors, a timeout, invalid JSON), checks the
#     /metrics deltas and `promtool check metrics` on the live output, then
#     starts a real Prometheus on 127.0.0.1 (own config, own storage, scrape
#     every 1 s, the rules loaded), sends more traffic, and evaluates EVERY
#     PromQL expression of the dashboard and of the rules via the HTTP API.
#
# Needs: promtool + prometheus (Debian package `prometheus`), node + npm,
# python3, curl, and the tools venv (prometheus_client). Loopback only. Everything it starts is stopped on exit.
# Exit status 0 only when every check passed; the last line reads
# "observability: N passed, M failed". KEEP_TMP=1 keeps the temp dir (logs).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DASH_DIR=$ROOT/dashboards
DASHBOARD=${OBS_DASHBOARD:-$DASH_DIR/pyexec.json}  # overrides: for testing this script
RULES=${OBS_RULES:-$DASH_DIR/prometheus/pyexec-rules.yml}
RULES_TEST=$DASH_DIR/prometheus/pyexec-rules.test.yml
HELPER=$ROOT/tests/ops/obscheck.py
# obscheck.py reads /metrics with prometheus_client (python/requirements-tools.txt).
PYTHON=${OBS_PYTHON:-${PYEXEC_HOME:-/opt/pyexec}/tools-venv/bin/python}
WORKERS=2

BIN=${1:-}
if [[ -z $BIN ]]; then
  echo "usage: $0 PATH/TO/pyexec" >&2
  exit 2
fi
if [[ ! -x $BIN ]]; then
  echo "not an executable: $BIN" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for tool in promtool prometheus node npm python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
"$PYTHON" -c 'import prometheus_client' 2>/dev/null ||
  { echo "$PYTHON has no prometheus_client: run scripts/install.sh --with-test-tools or set OBS_PYTHON" >&2; exit 2; }

TMP=$(mktemp -d /tmp/pyexec-obs.XXXXXX)
PYEXEC_PID=""
PROM_PID=""
PASSED=0
FAILED=0

ok()  { PASSED=$((PASSED + 1)); echo "ok   $*"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
indent() { sed 's/^/     /'; }

# stop PID (one we started): TERM, wait up to $2 s, then KILL
stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "     (pid $pid ignored SIGTERM for ${grace}s: SIGKILL)"
  kill -KILL "$pid" 2>/dev/null
}

cleanup() {
  local rc=$?
  [[ -n $PROM_PID ]] && stop_pid "$PROM_PID" 10
  if [[ -n $PYEXEC_PID ]]; then
    local children
    children=$(pgrep -P "$PYEXEC_PID" 2>/dev/null | tr '\n' ' ')
    stop_pid "$PYEXEC_PID" 15
    # the workers pyexec started (its direct children) must be gone with it
    for c in $children; do
      if kill -0 "$c" 2>/dev/null; then
        echo "     warning: worker process $c outlived pyexec; killing it"
        kill -KILL "$c" 2>/dev/null
      fi
    done
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# run NAME CMD...: ok when CMD exits 0, else FAIL with its output
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; echo "$out" | indent; fi
}

# feed the "ok/FAIL ... RESULT p f" output of obscheck.py into the tally
# (no RESULT line = the helper crashed: one failure)
tally() {
  local line p f seen=0
  while IFS= read -r line; do
    if [[ $line =~ ^RESULT\ ([0-9]+)\ ([0-9]+)$ ]]; then
      p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}; seen=1
      PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
    else
      echo "$line"
    fi
  done
  if [[ $seen == 0 ]]; then bad "obscheck.py ended without a result (crashed?)"; fi
}

echo "== (a) Prometheus rules"
run "promtool check rules $(basename "$RULES")" promtool check rules "$RULES"
run "promtool test rules $(basename "$RULES_TEST")" promtool test rules "$RULES_TEST"

echo "== (b) dashboard schema (@grafana/schema + tsc)"
if [[ ! -d $DASH_DIR/node_modules/@grafana/schema || ! -d $DASH_DIR/node_modules/typescript ]]; then
  run "npm ci (dashboards/)" npm ci --prefix "$DASH_DIR" --no-audit --no-fund
fi
if out=$(node "$DASH_DIR/check-schema/check.mjs" "$DASHBOARD" 2>&1); then
  ok "dashboard schema check (positive + negative tests)"
else
  bad "dashboard schema check"
fi
echo "$out" | indent
run "npx tsc --noEmit -p dashboards/check-schema" \
  bash -c "cd '$DASH_DIR' && npx --no-install tsc --noEmit -p check-schema"

echo "== (c) live service + real Prometheus"
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
"$BIN" --listen "127.0.0.1:$PORT" --workers "$WORKERS" >"$TMP/pyexec.log" 2>&1 &
PYEXEC_PID=$!
ready=0
for _ in $(seq 1 120); do
  if ! kill -0 "$PYEXEC_PID" 2>/dev/null; then break; fi
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/ready") == 200 ]]; then ready=1; break; fi
  sleep 0.5
done
if [[ $ready != 1 ]]; then
  bad "pyexec ready on $BASE within 60 s (log below)"
  tail -n 30 "$TMP/pyexec.log" | indent
  echo "observability: $PASSED passed, $FAILED failed"
  exit 1
fi
ok "pyexec ready on $BASE (--workers $WORKERS)"

# request bodies
printf '%s' '{"script":"def main():\n    return 1"}' >"$TMP/ok.json"
printf '%s' '{"script":"def main():\n    raise ValueError(\"boom\")"}' >"$TMP/runtime_error.json"
printf '%s' '{"script":"def main(:\n    return 1"}' >"$TMP/syntax_error.json"
printf '%s' '{"script":"import time\ndef main():\n    time.sleep(5)","timeout":0.5}' >"$TMP/timeout.json"
printf '%s' '{"script":' >"$TMP/invalid_json.json"

# send KIND STATUS: POST the body of KIND, expect STATUS and "kind": KIND
send() {
  local kind=$1 want=$2 code got
  code=$(curl -s -o "$TMP/resp.json" -w '%{http_code}' -m 30 -H 'Content-Type: application/json' \
    --data-binary "@$TMP/$kind.json" "$BASE/execute")
  if [[ $kind == ok ]]; then
    got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("ok" if d.get("result")==1 else d.get("kind"))' "$TMP/resp.json" 2>/dev/null)
  else
    got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("kind"))' "$TMP/resp.json" 2>/dev/null)
  fi
  if [[ $code == "$want" && $got == "$kind" ]]; then
    return 0
  fi
  bad "POST /execute ($kind): want $want $kind, got $code $got: $(head -c 300 "$TMP/resp.json")"
  return 1
}

# one batch: 3 ok, 2 runtime_error, 1 syntax_error, 1 timeout (0.5 s), 1 invalid_json
batch() {
  local errs=0
  for _ in 1 2 3; do send ok 200 || errs=1; done
  for _ in 1 2; do send runtime_error 422 || errs=1; done
  send syntax_error 422 || errs=1
  send timeout 422 || errs=1
  send invalid_json 400 || errs=1
  return $errs
}
BATCH_SENT=(--sent ok=3 --sent runtime_error=2 --sent syntax_error=1 --sent timeout=1 --sent invalid_json=1)
BATCH_RUNS=7

# scrape /metrics at rest (nothing in flight, no worker starting)
scrape_at_rest() {
  local out=$1 i
  for i in $(seq 1 40); do
    curl -sf "$BASE/metrics" >"$out" || return 1
    if "$PYTHON" "$HELPER" at-rest "$out" "$WORKERS"
    then return 0; fi
    sleep 0.5
  done
  return 0 # let the exposition check report what is off
}

scrape_at_rest "$TMP/metrics.before" || bad "GET /metrics"
if batch; then ok "batch 1: 8 requests answered as expected (ok, runtime_error, syntax_error, timeout, invalid_json)"; fi
scrape_at_rest "$TMP/metrics.after" || bad "GET /metrics"
tally < <("$PYTHON" "$HELPER" exposition "$TMP/metrics.before" "$TMP/metrics.after" \
  "${BATCH_SENT[@]}" --runs "$BATCH_RUNS" --pool "$WORKERS" 2>&1)

# promtool check metrics prints nothing (and exits 0) for a clean exposition
lint=$(promtool check metrics <"$TMP/metrics.after" 2>&1)
lint_rc=$?
if [[ $lint_rc == 0 && -z $lint ]]; then
  ok "promtool check metrics on live /metrics reports nothing"
else
  bad "promtool check metrics on live /metrics (rc $lint_rc)"
  echo "$lint" | indent
fi

# ---- real Prometheus
PROM_PORT=$(free_port)
PROM=http://127.0.0.1:$PROM_PORT
mkdir -p "$TMP/prom-data"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: pyexec
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
EOF
run "promtool check config (test Prometheus)" promtool check config "$TMP/prometheus.yml"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!

# prom_value QUERY: the first sample's value, or empty
prom_value() {
  curl -s -G "$PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    python3 -c 'import json,sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")'
}
wait_for() { # wait_for SECONDS DESCRIPTION QUERY [EXPECTED]: poll until QUERY has (that) value
  local secs=$1 what=$2 q=$3 want=${4:-} v i
  for ((i = 0; i < secs * 2; i++)); do
    v=$(prom_value "$q")
    if [[ -n $v && ( -z $want || $v == "$want" ) ]]; then ok "$what"; return 0; fi
    if ! kill -0 "$PROM_PID" 2>/dev/null; then break; fi
    sleep 0.5
  done
  bad "$what (last value: '${v:-none}')"
  tail -n 20 "$TMP/prometheus.log" | indent
  return 1
}

if wait_for 60 "Prometheus up and first scrape of pyexec landed" 'up{job="pyexec"}' 1; then
  # traffic Prometheus sees (rates > 0), then wait until it scraped all of it
  if batch; then ok "batch 2: 8 requests answered as expected"; fi
  total=$("$PYTHON" "$HELPER" sum "$BASE" pyexec_requests_total)
  wait_for 30 "Prometheus scraped all $total requests" 'sum(pyexec_requests_total{job="pyexec"})' "$total"
  wait_for 30 "recording rules evaluated on the new data" 'job:pyexec_requests:rate5m{job="pyexec"} > 0'
  # every rule must have been evaluated at least once after that
  sleep 2
  tally < <("$PYTHON" "$HELPER" prometheus "$PROM" "$DASHBOARD" "$RULES" 2>&1)
fi

if ! kill -0 "$PYEXEC_PID" 2>/dev/null; then
  bad "pyexec still running at the end"
  tail -n 30 "$TMP/pyexec.log" | indent
fi

echo "observability: $PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
