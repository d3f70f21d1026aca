// overload: about twice capacity. Accepted requests keep bounded latency, the
// excess is shed with 503 `overloaded` + Retry-After, nothing else fails, and
// the service recovers as soon as load drops.
//
// Capacity is made independent of CPU speed: every run sleeps SLEEP_MS
// (default 100 ms) with almost no CPU, so capacity = WORKERS / SLEEP_MS
// (2 workers: 20 runs/s; a run's own overhead, ~10-15 ms here, makes the real
// figure ~10 % lower). Phases (tag `phase`):
//   before   0.5x capacity for 5 s           no 503 allowed
//   overload 2x capacity for OVERLOAD_S      503s required; accepted p99 <= queue timeout + run + 1 s;
//                                            >= 75 % of nominal capacity served
//   drain    0.5x capacity for 2*Q + 2 s     503s allowed: the backlog of the overload drains
//   recovery 0.5x capacity for 10 s          no 503 allowed, latency back to normal
// Env: WORKERS (default 2), QUEUE_TIMEOUT (the service's --queue-timeout-secs,
// default 5; run.sh starts the service with 1), SLEEP_MS, OVERLOAD_S (20), BASE_URL.

import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import { SCRIPTS, BASE_THRESHOLDS, WORKERS, QUEUE_TIMEOUT_S, execute, checkOkOrShed, unexpectedErrors } from './lib.js';

http.setResponseCallback(http.expectedStatuses(200, 503));

const SLEEP_MS = Number(__ENV.SLEEP_MS || 100);
const CAPACITY = WORKERS * 1000 / SLEEP_MS; // runs/s
const OVERLOAD_S = Number(__ENV.OVERLOAD_S || 20);
const DRAIN_S = 2 * QUEUE_TIMEOUT_S + 2;
const LOW = Math.max(1, Math.round(CAPACITY / 2));
const HIGH = Math.round(CAPACITY * 2);
// An accepted request waited at most the queue timeout, then ran SLEEP_MS.
const ACCEPTED_BOUND_MS = QUEUE_TIMEOUT_S * 1000 + SLEEP_MS + 1000;
const SCRIPT = SCRIPTS.sleep(SLEEP_MS);

const shed = new Counter('shed');
const accepted = new Counter('accepted');
const acceptedLatency = new Trend('accepted_latency', true);
const shedLatency = new Trend('shed_latency', true);

function phase(name, rate, start, duration) {
  return {
    executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: `${duration}s`,
    startTime: `${start}s`, tags: { phase: name }, exec: 'run',
    preAllocatedVUs: Math.ceil(rate * (QUEUE_TIMEOUT_S + 1)) + 5,
    maxVUs: Math.ceil(rate * (QUEUE_TIMEOUT_S + 2)) + 20,
    gracefulStop: `${QUEUE_TIMEOUT_S + 5}s`,
  };
}

const t1 = 5;
const t2 = t1 + OVERLOAD_S;
const t3 = t2 + DRAIN_S;

export const options = {
  scenarios: {
    before: phase('before', LOW, 0, t1),
    overload: phase('overload', HIGH, t1, OVERLOAD_S),
    drain: phase('drain', LOW, t2, DRAIN_S),
    recovery: phase('recovery', LOW, t3, 10),
  },
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    // only 200 and 503 overloaded (checked: kind + Retry-After) ever come back
    http_req_failed: ['rate==0'],
    'shed{phase:before}': ['count==0'],
    'shed{phase:overload}': ['count>0'],
    'shed{phase:recovery}': ['count==0'],
    // the service keeps serving at (nearly) full capacity while it sheds
    // (75 % of the nominal figure: per-run overhead takes ~10 %)
    'accepted{phase:overload}': [`count>=${Math.floor(0.75 * CAPACITY * OVERLOAD_S)}`],
    // accepted requests have bounded latency, sheds come after the queue timeout at most
    'accepted_latency{phase:overload}': [`p(99)<${ACCEPTED_BOUND_MS}`, `max<${ACCEPTED_BOUND_MS + 1000}`],
    'shed_latency{phase:overload}': [`max<${QUEUE_TIMEOUT_S * 1000 + 1000}`],
    // recovered: latency back to a run's own duration
    'accepted_latency{phase:before}': [`p(95)<${SLEEP_MS * 1.5 + 25}`],
    'accepted_latency{phase:recovery}': [`p(95)<${SLEEP_MS * 1.5 + 25}`],
  }),
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max', 'count'],
};

export function setup() {
  console.log(`capacity ${CAPACITY} runs/s (${WORKERS} workers x ${SLEEP_MS} ms runs); ` +
    `${LOW}/s -> ${HIGH}/s for ${OVERLOAD_S} s -> ${LOW}/s; queue timeout ${QUEUE_TIMEOUT_S} s, ` +
    `accepted bound ${ACCEPTED_BOUND_MS} ms`);
}

export function run() {
  unexpectedErrors.add(0);
  const res = execute('sleep', SCRIPT);
  const verdict = checkOkOrShed(res, 'sleep');
  // phase tag comes from the scenario; custom metrics inherit it
  if (verdict === 'ok') {
    accepted.add(1);
    acceptedLatency.add(res.timings.duration);
  } else if (verdict === 'shed') {
    shed.add(1);
    shedLatency.add(res.timings.duration);
  }
  shed.add(0);
  accepted.add(0);
}
