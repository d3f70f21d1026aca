// soak (short, minutes): thousands of runs of a mix (trivial, pandas, script
// error) at a moderate constant rate; memory and worker count stay flat.
// setup() warms the service and scrapes /metrics; teardown() waits for the
// pool to go idle, scrapes again and checks that:
//   - pyexec_workers (idle+busy+starting) equals pyexec_pool_size before and
//     after, and all workers are idle after;
//   - process_resident_memory_bytes grew by at most MAX_RSS_GROWTH_MIB
//     (default 16 MiB) plus 10 %.
// Env: RATE (default 30/s), DURATION (default 3m: 5400 runs), MIN_RUNS (1000),
// MAX_RSS_GROWTH_MIB (16), BASE_URL.
// load-tests/run.sh soak also compares the PSS of the worker processes.

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  SCRIPTS, BASE_THRESHOLDS, execute, checkOk, checkRuntimeError, scrapeMetrics, metricSum,
  unexpectedErrors,
} from './lib.js';

http.setResponseCallback(http.expectedStatuses(200, 422));

const RATE = Number(__ENV.RATE || 30);
const MIN_RUNS = Number(__ENV.MIN_RUNS || 1000);
const MAX_RSS_GROWTH_MIB = Number(__ENV.MAX_RSS_GROWTH_MIB || 16);
const violations = new Counter('soak_violations');

export const options = {
  setupTimeout: '120s',
  teardownTimeout: '60s',
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s',
      duration: __ENV.DURATION || '3m', preAllocatedVUs: 10, maxVUs: 50,
    },
  },
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    http_req_failed: ['rate==0'],
    dropped_iterations: ['count==0'],
    soak_violations: ['count==0'],
    'http_req_duration{script:trivial}': ['p(99)<100'],
    'http_req_duration{script:pandas}': ['p(99)<200'],
    iterations: [`count>=${MIN_RUNS}`],
  }),
};

function waitIdle() {
  let m = {};
  for (let i = 0; i < 100; i++) {
    m = scrapeMetrics();
    const size = m.pyexec_pool_size;
    if (size > 0 && m['pyexec_workers{state="idle"}'] === size) return m;
    sleep(0.1);
  }
  return m;
}

function summarize(m) {
  return {
    pool: m.pyexec_pool_size,
    workers: metricSum(m, 'pyexec_workers'),
    idle: m['pyexec_workers{state="idle"}'],
    rss: m.process_resident_memory_bytes,
    spawns: m.pyexec_worker_spawns_total,
    recycles: metricSum(m, 'pyexec_worker_recycles_total'),
    requests: metricSum(m, 'pyexec_requests_total'),
  };
}

export function setup() {
  // warm-up: let the supervisor's allocator and the pool reach steady state
  for (let i = 0; i < 60; i++) {
    const name = ['trivial', 'pandas', 'error'][i % 3];
    execute(name, SCRIPTS[name], { phase: 'warmup' });
  }
  const before = summarize(waitIdle());
  console.log(`before: ${JSON.stringify(before)}`);
  return { before };
}

export default function () {
  unexpectedErrors.add(0);
  violations.add(0);
  const i = exec.scenario.iterationInTest % 10;
  if (i < 6) checkOk(execute('trivial', SCRIPTS.trivial), 'trivial');
  else if (i < 9) checkOk(execute('pandas', SCRIPTS.pandas), 'pandas');
  else checkRuntimeError(execute('error', SCRIPTS.error), 'error');
}

export function teardown(data) {
  const b = data.before;
  const a = summarize(waitIdle());
  const growthMiB = (a.rss - b.rss) / 1048576;
  const allowedMiB = MAX_RSS_GROWTH_MIB + 0.1 * b.rss / 1048576;
  console.log(`after:  ${JSON.stringify(a)}`);
  console.log(`requests +${a.requests - b.requests}, worker spawns +${a.spawns - b.spawns}, ` +
    `recycles +${a.recycles - b.recycles}, supervisor RSS ${(b.rss / 1048576).toFixed(1)} -> ` +
    `${(a.rss / 1048576).toFixed(1)} MiB (${growthMiB >= 0 ? '+' : ''}${growthMiB.toFixed(1)}, ` +
    `allowed +${allowedMiB.toFixed(1)})`);
  const tags = { phase: 'teardown' };
  const results = {
    'soak: pool full before': b.pool > 0 && b.workers === b.pool,
    'soak: pool full after': a.pool === b.pool && a.workers === a.pool,
    'soak: all workers idle after': a.idle === a.pool,
    'soak: supervisor RSS flat': Number.isFinite(growthMiB) && growthMiB <= allowedMiB,
    'soak: runs went through': a.requests - b.requests >= MIN_RUNS,
  };
  for (const [name, ok] of Object.entries(results)) {
    check(null, { [name]: () => ok }, tags);
    if (!ok) {
      violations.add(1, tags);
      console.error(`FAILED ${name}`);
    }
  }
}
