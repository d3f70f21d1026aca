#!/usr/bin/env bash
# Checks that the running service answers what its OpenAPI spec says.
#
#   tests/api-spec/check.sh PATH/TO/pyexec
#
# Starts PYEXEC on 127.0.0.1:0 (2 workers, an API token) and reads its port
# from the "pyexec listening on http://..." line, then runs schemathesis
# (python/requirements-tools.txt) against the /openapi.json it serves:
#   1. with the token: every check (documented status codes, content types,
#      headers such as Retry-After, response schemas, no 5xx, invalid
#      requests refused, valid ones answered 200 or 422, 405 on other
#      methods), settings in tests/api-spec/schemathesis.toml (fixed seed,
#      deterministic, bounded examples);
#   2. without the token, POST /execute only: the 401 answers must be
#      documented and match their schema.
# The service uses the sandbox from PYEXEC_NSJAIL / PYEXEC_SANDBOX_PYTHON /
# PYEXEC_WORKER_DIR (as scripts/test.sh exports them) or its defaults.
# Loopback only; the service is stopped on exit. KEEP_TMP=1 keeps the logs.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
schemathesis=${SCHEMATHESIS:-${PYEXEC_HOME:-/opt/pyexec}/tools-venv/bin/schemathesis}
config=$here/schemathesis.toml

bin=${1:-}
if [[ -z $bin || ! -x $bin ]]; then
  echo "usage: $0 PATH/TO/pyexec (an executable)" >&2
  exit 2
fi
if [[ ! -x $schemathesis ]]; then
  echo "schemathesis not found at $schemathesis; run scripts/install.sh --with-test-tools" >&2
  exit 2
fi

tmp=$(mktemp -d /tmp/pyexec-api-spec.XXXXXX)
pid=""
cleanup() {
  local rc=$? i
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "temp dir kept: $tmp"; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL $*"
  echo "--- last lines of the service's log:"
  tail -n 30 "$tmp/pyexec.log" | sed 's/^/     /'
  exit 1
}

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$bin" --listen 127.0.0.1:0 --workers 2 --api-token "$token" --max-sessions 2 >"$tmp/pyexec.out" 2>"$tmp/pyexec.log" &
pid=$!

base=""
for _ in $(seq 1 180); do
  base=$(sed -n 's/^pyexec listening on //p' "$tmp/pyexec.out")
  [[ -n $base ]] && break
  kill -0 "$pid" 2>/dev/null || fail "pyexec exited before it listened"
  sleep 0.5
done
[[ -n $base ]] || fail "pyexec printed no address within 90 s"
for _ in $(seq 1 180); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$base/ready") == 200 ]] && break
  kill -0 "$pid" 2>/dev/null || fail "pyexec exited before it was ready"
  sleep 0.5
done
echo "pyexec ready on $base"

# schemathesis writes nothing into the repository: run it from the temp dir.
cd "$tmp" || exit 1
status=0
echo "== 1. every check, with the token"
"$schemathesis" --no-color --config-file "$config" run "$base/openapi.json" --url "$base" \
  --exclude-path-regex '^/sessions' --header "Authorization: Bearer $token" || status=1

# Sessions: a created session holds a worker (--max-sessions 2, then 503
# overloaded with Retry-After, as documented), and a random id is 404: so
# not the "valid request -> 200/422" and "no 5xx" checks, every other one.
echo "== 3. the session routes, with the token"
"$schemathesis" --no-color --config-file "$config" run "$base/openapi.json" --url "$base" \
  --include-path-regex '^/sessions' --max-examples 15 --warnings off \
  --checks status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,unsupported_method \
  --header "Authorization: Bearer $token" || status=1

echo "== 2. POST /execute without the token: documented 401 answers"
"$schemathesis" --no-color --config-file "$config" run "$base/openapi.json" --url "$base" \
  --include-path /execute --max-examples 10 --warnings off \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --report ndjson --report-ndjson-path "$tmp/unauthorized.ndjson" || status=1
# The pass must have seen 401s, or it checked nothing it was meant to.
if ! grep -q '"status_code": *401' "$tmp/unauthorized.ndjson"; then
  echo "FAIL no 401 answer was seen without the token"
  status=1
fi

kill -0 "$pid" 2>/dev/null || fail "pyexec is no longer running after the checks"
if [[ $status == 0 ]]; then echo "api-spec: the service matches docs/openapi.json"; fi
exit "$status"
