#!/usr/bin/env python3
"""Helpers of tests/ops/check-observability.sh (the tools venv's Python:
/metrics is read with prometheus_client's parser, see bench/pyexec_bench/exposition.py).

  obscheck.py exposition BEFORE AFTER --sent kind=N ... --runs N --pool N
      Checks a /metrics scrape taken after traffic (AFTER) against one taken
      before it (BEFORE): every documented family with its type, counters and
      histograms moved by exactly what was sent, histogram buckets as
      documented and consistent, label values within the documented sets.

  obscheck.py prometheus URL DASHBOARD.json RULES.yml
      Against a real Prometheus that scrapes pyexec with RULES.yml loaded:
      the target is up, every rule is loaded and healthy, and EVERY PromQL
      expression of the dashboard (Grafana variables substituted) and of the
      rules evaluates without error; dashboard and recording-rule
      expressions return data, alert expressions return nothing (a healthy
      service under light traffic), and every metric name they use exists.

  obscheck.py at-rest FILE WORKERS
      Exit 0 when the scrape in FILE shows WORKERS idle workers and nothing
      in flight, 1 otherwise (no output).

  obscheck.py sum URL NAME
      Prints the sum, as an integer, of every series of NAME at URL/metrics.

Each check prints "ok   ..." or "FAIL ..."; the last line is
"RESULT <passed> <failed>" for the calling script.
"""

import json
import math
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

# The exposition parser (prometheus_client's) is the benchmark's one.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from pyexec_bench.exposition import parse
from pyexec_bench.exposition import total as value

PASSED = 0
FAILED = 0


def ok(msg):
    global PASSED
    PASSED += 1
    print(f"ok   {msg}")


def bad(msg):
    global FAILED
    FAILED += 1
    print(f"FAIL {msg}")


def check(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        bad(msg + (f": {detail}" if detail else ""))


# --------------------------------------------------------------- exposition
# docs/operations.md, section Observability
FAMILIES = {
    "pyexec_requests_total": ("counter", {"kind"}),
    "pyexec_request_duration_seconds": ("histogram", set()),
    "pyexec_queue_wait_seconds": ("histogram", set()),
    "pyexec_run_duration_seconds": ("histogram", set()),
    "pyexec_workers": ("gauge", {"state"}),
    "pyexec_pool_size": ("gauge", set()),
    "pyexec_worker_spawns_total": ("counter", set()),
    "pyexec_worker_recycles_total": ("counter", {"reason"}),
    "pyexec_worker_start_duration_seconds": ("histogram", set()),
    "pyexec_in_flight_requests": ("gauge", set()),
    "pyexec_queue_length": ("gauge", set()),
    "pyexec_build_info": ("gauge", {"version"}),
    "pyexec_http_connections": ("gauge", set()),
    "pyexec_http_connections_refused_total": ("counter", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_open_fds": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
}
LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
START_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30]
BUCKETS = {
    "pyexec_request_duration_seconds": LATENCY_BUCKETS,
    "pyexec_queue_wait_seconds": LATENCY_BUCKETS,
    "pyexec_run_duration_seconds": LATENCY_BUCKETS,
    "pyexec_worker_start_duration_seconds": START_BUCKETS,
}
# The error kinds: docs/openapi.json's ErrorKind (which tests/openapi.rs ties
# to the code), plus "ok".
SPEC = Path(__file__).resolve().parents[2] / "docs/openapi.json"
KINDS = {"ok", *json.loads(SPEC.read_text())["components"]["schemas"]["ErrorKind"]["enum"]}
LABEL_VALUES = {
    ("pyexec_requests_total", "kind"): KINDS,
    ("pyexec_workers", "state"): {"idle", "busy", "starting"},
    ("pyexec_worker_recycles_total", "reason"): {
        "run_finished",
        "timeout",
        "memory_limit",
        "crash",
        "stopped",
        "protocol_error",
        "startup_failure",
    },
}

def cmd_exposition(before_path, after_path, sent, runs, pool):
    with open(before_path) as f:
        _, before = parse(f.read())
    with open(after_path) as f:
        types, after = parse(f.read())

    for fam, (typ, labels) in FAMILIES.items():
        check(types.get(fam) == typ, f"/metrics has {fam} of type {typ}", f"type is {types.get(fam)}")
        names = {n for (n, _) in after}
        if typ == "histogram":
            continue
        seen = {k for (n, ls) in after if n == fam for k, _ in ls}
        check(
            fam in names and seen == labels,
            f"{fam} has labels {sorted(labels) or 'none'}",
            f"present={fam in names} labels={sorted(seen)}",
        )

    for (fam, label), allowed in LABEL_VALUES.items():
        vals = {dict(ls)[label] for (n, ls) in after if n == fam and label in dict(ls)}
        check(
            vals and vals <= allowed,
            f"{fam}{{{label}}} values are documented ones",
            f"unexpected {sorted(vals - allowed)}" if vals else "no series",
        )

    def delta(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    total = sum(sent.values())
    for kind, n in sorted(sent.items()):
        d = delta("pyexec_requests_total", kind=kind)
        check(d == n, f'pyexec_requests_total{{kind="{kind}"}} moved by {n}', f"moved by {d:g}")
    d = delta("pyexec_requests_total")
    check(d == total, f"pyexec_requests_total (all kinds) moved by {total}", f"moved by {d:g}")
    d = delta("pyexec_request_duration_seconds_count")
    check(d == total, f"pyexec_request_duration_seconds_count moved by {total}", f"moved by {d:g}")
    for h in ("pyexec_queue_wait_seconds", "pyexec_run_duration_seconds"):
        d = delta(h + "_count")
        check(d == runs, f"{h}_count moved by {runs} (the runs sent)", f"moved by {d:g}")
    d = delta("pyexec_request_duration_seconds_sum")
    check(d >= 0.5, "pyexec_request_duration_seconds_sum grew by at least the 0.5 s timeout run", f"grew by {d:g}")
    d = delta("pyexec_run_duration_seconds_sum")
    check(d >= 0.5, "pyexec_run_duration_seconds_sum grew by at least the 0.5 s timeout run", f"grew by {d:g}")
    # the timeout run lasted >= 0.5 s: at least one observation above 0.25 s
    above = delta("pyexec_run_duration_seconds_count") - delta("pyexec_run_duration_seconds_bucket", le="0.25")
    check(above >= 1, "the timeout run landed in a run_duration bucket above 0.25 s", f"{above:g} runs above")

    for h, bounds in BUCKETS.items():
        buckets = sorted(
            ((float(dict(ls)["le"]), v) for (n, ls), v in after.items() if n == h + "_bucket"), key=lambda b: b[0]
        )
        les = [le for le, _ in buckets]
        check(les == [float(b) for b in bounds] + [math.inf], f"{h} buckets are the documented ones", f"got {les}")
        counts = [v for _, v in buckets]
        check(
            counts == sorted(counts) and counts and counts[-1] == value(after, h + "_count"),
            f"{h} buckets are cumulative and +Inf == _count",
            f"buckets={counts} count={value(after, h + '_count')}",
        )

    check(
        value(after, "pyexec_pool_size") == pool,
        f"pyexec_pool_size is {pool}",
        f"is {value(after, 'pyexec_pool_size')}",
    )
    w = value(after, "pyexec_workers")
    check(w == pool, f"idle + busy + starting workers == pool size ({pool}) at rest", f"sum is {w}")
    check(
        value(after, "pyexec_in_flight_requests") == 0,
        "pyexec_in_flight_requests is 0 at rest",
        f"is {value(after, 'pyexec_in_flight_requests')}",
    )
    check(
        value(after, "pyexec_queue_length") == 0,
        "pyexec_queue_length is 0 at rest",
        f"is {value(after, 'pyexec_queue_length')}",
    )
    spawns = value(after, "pyexec_worker_spawns_total") or 0
    check(spawns >= pool, f"pyexec_worker_spawns_total >= pool size ({pool})", f"is {spawns:g}")
    starts = value(after, "pyexec_worker_start_duration_seconds_count") or 0
    check(starts >= pool, f"pyexec_worker_start_duration_seconds_count >= pool size ({pool})", f"is {starts:g}")


# --------------------------------------------------------------- prometheus
def api(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 4xx/5xx carry a JSON error body
        try:
            return json.load(e)
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}


# What the dashboard's Grafana variables become for the test. $__rate_interval
# is Grafana's max(4 x scrape interval, $__interval + scrape interval); the
# test scrapes every 1 s, 1m is a safe upper bound with data for 30+ s.
VARIABLES = {
    "job": "pyexec",
    "instance": ".*",  # the "All" value (allValue)
    "datasource": "prometheus",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr):
    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in VARIABLES:
            raise KeyError(name)
        return VARIABLES[name]

    return VAR_RE.sub(rep, expr)


def metric_names(expr):
    """Metric / recording-rule names an expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # drop matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(?=\{|\[|\)|$|\s|,|[-+*/<>=!])", expr))
    funcs = set(re.findall(r"\b([a-zA-Z_]+)\s*\(", expr))
    keywords = {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
    return {n for n in names - funcs - keywords if not re.fullmatch(r"\d+[smhdwy]?", n)}


def dashboard_queries(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((f'panel "{p.get("title")}" {t.get("refId")}', t["expr"]))

    walk(dash.get("panels", []))
    variables = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            variables.append((v["name"], q))
    return out, variables


def cmd_prometheus(base, dashboard_path, rules_path):
    # target health
    t = api(base, "/api/v1/targets")
    active = [x for x in t.get("data", {}).get("activeTargets", []) if x["labels"].get("job") == "pyexec"]
    check(
        active and all(x["health"] == "up" for x in active),
        "Prometheus scrapes pyexec: target up",
        json.dumps(active)[:400],
    )

    # rules loaded and healthy
    with open(rules_path) as f:
        rules_text = f.read()
    expected = len(re.findall(r"^\s*-\s*(?:record|alert):", rules_text, re.M))
    groups = api(base, "/api/v1/rules").get("data", {}).get("groups", [])
    rules = [r for g in groups for r in g["rules"]]
    check(
        len(rules) == expected,
        f"Prometheus loaded all {expected} rules of {rules_path.split('/')[-1]}",
        f"loaded {len(rules)}",
    )
    for r in rules:
        check(
            r.get("health") == "ok",
            f"rule {r['name']} evaluates in Prometheus (health ok)",
            f"health={r.get('health')} lastError={r.get('lastError')!r}",
        )

    names = set(api(base, "/api/v1/label/__name__/values").get("data", []))

    def evaluate(what, expr, want_data):
        try:
            q = substitute(expr)
        except KeyError as e:
            bad(f"{what}: unknown variable ${e.args[0]} in {expr!r}")
            return
        res = api(base, "/api/v1/query", query=q)
        if res.get("status") != "success":
            bad(f"{what}: query error {res.get('errorType')}: {res.get('error')}  [{q}]")
            return
        missing = sorted(n for n in metric_names(q) if n not in names)
        if missing:
            bad(f"{what}: selects metrics Prometheus does not have: {missing}  [{q}]")
            return
        n = len(res["data"]["result"]) if res["data"]["resultType"] in ("vector", "matrix") else 1
        if want_data is True and n == 0:
            bad(f"{what}: no data  [{q}]")
        elif want_data is False and n != 0:
            bad(f"{what}: alert condition holds on a healthy service: {json.dumps(res['data']['result'])[:300]}  [{q}]")
        else:
            ok(f"{what}: {n} series")

    panels, variables = dashboard_queries(dashboard_path)
    check(len(panels) > 0, f"dashboard has PromQL targets ({len(panels)})")
    for what, expr in panels:
        evaluate(f"dashboard {what}", expr, True)
    for name, q in variables:
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q)
        if not m:
            bad(f"dashboard variable ${name}: unsupported query {q!r}")
            continue
        evaluate(f"dashboard variable ${name} (label_values)", f"group by ({m.group(2)}) ({m.group(1)})", True)
    for r in rules:
        if r["type"] == "recording":
            evaluate(f"recording rule {r['name']}", r["query"], True)
        else:
            evaluate(f"alert {r['name']}", r["query"], False)


def cmd_at_rest(path, workers):
    with open(path) as f:
        _, samples = parse(f.read())
    idle = value(samples, "pyexec_workers", state="idle") or 0
    return 0 if idle == workers and (value(samples, "pyexec_in_flight_requests") or 0) == 0 else 1


def cmd_sum(url, name):
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as answer:
        _, samples = parse(answer.read().decode())
    print(int(value(samples, name) or 0))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "at-rest":
        return cmd_at_rest(argv[1], int(argv[2]))
    if len(argv) == 3 and argv[0] == "sum":
        return cmd_sum(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == "exposition":
        sent, runs, pool = {}, 0, 0
        rest = argv[3:]
        i = 0
        while i < len(rest):
            if rest[i] == "--sent":
                k, n = rest[i + 1].split("=")
                sent[k] = sent.get(k, 0) + int(n)
            elif rest[i] == "--runs":
                runs = int(rest[i + 1])
            elif rest[i] == "--pool":
                pool = int(rest[i + 1])
            else:
                sys.exit(f"unknown argument {rest[i]}")
            i += 2
        cmd_exposition(argv[1], argv[2], sent, runs, pool)
    elif len(argv) == 4 and argv[0] == "prometheus":
        cmd_prometheus(argv[1].rstrip("/"), argv[2], argv[3])
    else:
        sys.exit(__doc__)
    print(f"RESULT {PASSED} {FAILED}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
