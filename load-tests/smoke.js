// smoke: a few VUs for a few seconds over a mix of scripts: trivial, a
// pandas 1000-row aggregation, and a script error (422 runtime_error, counted
// as expected). Fails (k6 exit 99) on any unexpected answer or slow request.
//
//   load-tests/run.sh smoke            # starts target/release/pyexec itself
//   BASE_URL=http://127.0.0.1:8080 k6 run --no-usage-report load-tests/smoke.js

import http from 'k6/http';
import { sleep } from 'k6';
import { SCRIPTS, BASE_THRESHOLDS, execute, checkOk, checkRuntimeError, unexpectedErrors } from './lib.js';

// 200 and the script error's 422 are the expected statuses of this scenario.
http.setResponseCallback(http.expectedStatuses(200, 422));

export const options = {
  scenarios: {
    smoke: { executor: 'constant-vus', vus: Number(__ENV.VUS || 3), duration: __ENV.DURATION || '5s' },
  },
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    http_req_failed: ['rate==0'],
    'http_req_duration{script:trivial}': ['p(95)<250'],
    'http_req_duration{script:pandas}': ['p(95)<500'],
    'http_req_duration{script:error}': ['p(95)<500'],
    // The mix really ran: at least a handful of each.
    'http_reqs{script:trivial}': ['count>=5'],
    'http_reqs{script:pandas}': ['count>=5'],
    'http_reqs{script:error}': ['count>=5'],
  }),
};

export default function () {
  unexpectedErrors.add(0);
  checkOk(execute('trivial', SCRIPTS.trivial), 'trivial');
  checkOk(execute('pandas', SCRIPTS.pandas), 'pandas');
  checkRuntimeError(execute('error', SCRIPTS.error), 'error');
  sleep(0.05);
}
