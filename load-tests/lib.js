// Shared helpers of the pyexec k6 scenarios: target URL, the scripts the
// scenarios send, one request function, and the checks that classify an
// answer as expected or not.
//
// Every scenario counts answers it did not expect in the `unexpected_errors`
// counter and fails its run (k6 exit status 99) when that counter is above 0.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

/** Base URL of the service under test, without a trailing slash. */
export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');

/** Number of workers of the service under test (capacity of the scenarios). */
export const WORKERS = Number(__ENV.WORKERS || 2);

/** The service's queue timeout in seconds (how long a request may wait for a worker). */
export const QUEUE_TIMEOUT_S = Number(__ENV.QUEUE_TIMEOUT || 5);

/** Scripts, by name; each is a module defining main(). */
export const SCRIPTS = {
  trivial: 'def main():\n    return {"sum": 2 + 2}\n',
  pandas: [
    'import numpy as np',
    'import pandas as pd',
    '',
    'def main():',
    '    n = 1000',
    '    df = pd.DataFrame({"group": np.arange(n) % 10, "value": np.arange(n, dtype=float)})',
    '    agg = df.groupby("group")["value"].agg(["sum", "mean", "max"])',
    '    return {"rows": int(len(df)), "groups": agg.reset_index().to_dict(orient="records")}',
    '',
  ].join('\n'),
  // Raises at line 3 of the user's script: a 422 runtime_error is the expected answer.
  error: 'def main():\n    x = {"a": 1}\n    return x["missing"]\n',
  // Holds a worker for SLEEP_MS milliseconds with almost no CPU: lets the
  // overload scenario define capacity (workers / sleep) independent of CPU speed.
  sleep: (ms) => `import time\n\ndef main():\n    time.sleep(${ms / 1000})\n    return {"slept_ms": ${ms}}\n`,
};

/** Counts answers no check expected (wrong status, kind, body or result). */
export const unexpectedErrors = new Counter('unexpected_errors');

const JSON_HEADERS = { 'Content-Type': 'application/json' };

/**
 * POST /execute. `name` tags the request (tag `script`); `tags` adds more.
 * Returns the k6 response.
 */
export function execute(name, script, tags = {}, extra = {}) {
  const body = JSON.stringify(Object.assign({ script }, extra));
  return http.post(`${BASE_URL}/execute`, body, {
    headers: JSON_HEADERS,
    tags: Object.assign({ script: name, name: `POST /execute ${name}` }, tags),
    timeout: '60s',
  });
}

function parse(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

/** Logs an unexpected answer (at most a few times per VU) and counts it. */
let logged = 0;
function unexpected(what, res, tags) {
  unexpectedErrors.add(1, tags);
  if (logged < 5) {
    logged += 1;
    const body = res.body ? String(res.body).slice(0, 300) : '';
    console.error(`unexpected ${what}: status ${res.status} after ${res.timings.duration.toFixed(1)} ms` +
      ` error=${res.error || '-'} body=${body}`);
  }
}

/** Expected result of main() for the scripts that succeed. */
function resultOk(name, result) {
  if (name === 'trivial') return result && result.sum === 4;
  if (name === 'pandas') return result && result.rows === 1000 && Array.isArray(result.groups) &&
    result.groups.length === 10;
  if (name === 'sleep') return result && typeof result.slept_ms === 'number';
  return true;
}

/** A 200 with the right result. Returns true when it was. */
export function checkOk(res, name, tags = {}) {
  const doc = res.status === 200 ? parse(res) : null;
  const ok = check(res, {
    [`${name}: status 200`]: (r) => r.status === 200,
    [`${name}: correct result`]: () => doc !== null && resultOk(name, doc.result),
    [`${name}: has stdout, stderr, duration_ms`]: () => doc !== null &&
      typeof doc.stdout === 'string' && typeof doc.stderr === 'string' &&
      typeof doc.duration_ms === 'number',
  }, Object.assign({ script: name }, tags));
  if (!ok) unexpected(`answer to ${name}`, res, Object.assign({ script: name }, tags));
  return ok;
}

/** A 422 runtime_error whose traceback names the user's line. */
export function checkRuntimeError(res, name = 'error', tags = {}) {
  const doc = res.status === 422 ? parse(res) : null;
  const ok = check(res, {
    [`${name}: status 422`]: (r) => r.status === 422,
    [`${name}: kind runtime_error`]: () => doc !== null && doc.kind === 'runtime_error',
    [`${name}: traceback names line 3`]: () => doc !== null && typeof doc.traceback === 'string' &&
      doc.traceback.includes('line 3') && doc.traceback.includes('KeyError'),
  }, Object.assign({ script: name }, tags));
  if (!ok) unexpected(`answer to ${name}`, res, Object.assign({ script: name }, tags));
  return ok;
}

/**
 * A 503 `overloaded` with a Retry-After of whole seconds >= 1 (load shedding).
 * Returns true when it was.
 */
export function checkShed(res, tags = {}) {
  const doc = res.status === 503 ? parse(res) : null;
  const retry = res.headers['Retry-After'];
  const ok = check(res, {
    'shed: status 503': (r) => r.status === 503,
    'shed: kind overloaded': () => doc !== null && doc.kind === 'overloaded',
    'shed: Retry-After >= 1 s': () => retry !== undefined && /^\d+$/.test(retry) && Number(retry) >= 1,
  }, tags);
  if (!ok) unexpected('503', res, tags);
  return ok;
}

/** Counts an answer that is neither a 200 nor a proper shed as unexpected. */
export function checkOkOrShed(res, name, tags = {}) {
  if (res.status === 503) return checkShed(res, tags) ? 'shed' : 'bad';
  return checkOk(res, name, tags) ? 'ok' : 'bad';
}

/** GET /metrics, parsed into { 'name{labels}': value }. Empty on failure. */
export function scrapeMetrics() {
  const res = http.get(`${BASE_URL}/metrics`, { tags: { name: 'GET /metrics' } });
  const out = {};
  if (res.status !== 200) {
    console.error(`GET /metrics answered ${res.status}`);
    return out;
  }
  for (const line of String(res.body).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Sum of all series of a metric name (any labels). */
export function metricSum(metrics, name) {
  let sum = 0;
  for (const [k, v] of Object.entries(metrics)) {
    if (k === name || k.startsWith(`${name}{`)) sum += v;
  }
  return sum;
}

/** Thresholds every scenario shares: no unexpected answer, all checks pass. */
export const BASE_THRESHOLDS = {
  unexpected_errors: ['count==0'],
  checks: ['rate==1'],
};
