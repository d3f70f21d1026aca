#!/usr/bin/env python3
"""Validate deploy/: render every kustomization, run `kubernetes-validate
--strict` over each built-in object, check the CRD objects (PodMonitoring,
ServiceMonitor) field by field, and cross-check the objects against each
other and against the service's contract (probes, ports, shutdown timing,
memory sizing).

Usage: validate_manifests.py [--k8s-versions 1.37.0,1.31.0]
Final line: `manifests: N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Siblings: the script's own directory is first on sys.path.
import tally
import yaml
from render_kustomize import RenderError, render
from tally import check

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEPLOY = ROOT / "deploy"

BUILTIN_GROUPS = {
    "v1",
    "apps/v1",
    "autoscaling/v2",
    "policy/v1",
    "networking.k8s.io/v1",
}
RENDERS = ["base", "overlays/gke", "overlays/prometheus-operator"]
POD_LABELS = {"app.kubernetes.io/name": "pyexec", "app.kubernetes.io/component": "api"}
# The measured constants of the sizing formula live in deploy/sizing.json
# (also embedded in `pyexec doctor`); 64 is --tmp-size-mib's default.
_SIZING = json.loads((DEPLOY / "sizing.json").read_text())
WORKER_MIB, SERVICE_MIB, TMP_MIB = _SIZING["worker_idle_mib"], _SIZING["service_mib"], 64
STANDBY, TMPFS_PER_RUN = _SIZING["hot_standby_workers"], _SIZING["tmpfs_per_run"]


def mib(q: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(q))
    if not m:
        raise ValueError(f"bad quantity {q}")
    n = float(m.group(1))
    return (
        n
        * {
            None: 1 / 2**20,
            "Ki": 1 / 1024,
            "Mi": 1,
            "Gi": 1024,
            "K": 1e3 / 2**20,
            "M": 1e6 / 2**20,
            "G": 1e9 / 2**20,
        }[m.group(2)]
    )


def cores(q: str) -> float:
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def only_keys(obj: dict, allowed: set[str]) -> set[str]:
    return set(obj) - allowed


def validate_builtin(label: str, docs: list[dict], versions: list[str]) -> None:
    builtin = [d for d in docs if d["apiVersion"] in BUILTIN_GROUPS]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for d in builtin:
            f = Path(tmp) / f"{d['kind'].lower()}-{d['metadata']['name']}.yaml"
            f.write_text(yaml.safe_dump(d, sort_keys=False))
            files.append((d, f))
        for version in versions:
            proc = subprocess.run(
                [
                    "kubernetes-validate",
                    "--strict",
                    "-k",
                    version,
                    *[str(f) for _, f in files],
                ],
                check=False,
                capture_output=True,
                text=True,
            )
            out = proc.stdout + proc.stderr
            for d, f in files:
                lines = [ln for ln in out.splitlines() if str(f) in ln]
                good = lines and all(ln.startswith("INFO") and "passed" in ln for ln in lines)
                check(
                    f"[{label}] kubernetes-validate --strict {version} {d['kind']}/{d['metadata']['name']}",
                    bool(good),
                    "\n      ".join(lines) or out.strip()[-400:],
                )


def check_podmonitoring(label: str, pm: dict, deployment: dict) -> None:
    name = f"[{label}] PodMonitoring/{pm['metadata']['name']}"
    problems = []
    if pm["apiVersion"] != "monitoring.googleapis.com/v1":
        problems.append(f"apiVersion {pm['apiVersion']}")
    if only_keys(pm, {"apiVersion", "kind", "metadata", "spec"}):
        problems.append(f"top-level keys {only_keys(pm, {'apiVersion', 'kind', 'metadata', 'spec'})}")
    if pm["metadata"].get("namespace") != "pyexec":
        problems.append("namespace is not pyexec")
    spec = pm.get("spec", {})
    extra = only_keys(spec, {"selector", "endpoints", "targetLabels", "limits", "filterRunning"})
    if extra:
        problems.append(f"unknown spec keys {extra}")
    if spec.get("selector", {}).get("matchLabels") != POD_LABELS:
        problems.append("selector does not match the pod labels")
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    eps = spec.get("endpoints") or []
    if not eps:
        problems.append("no endpoints")
    for ep in eps:
        extra = only_keys(
            ep,
            {
                "port",
                "path",
                "scheme",
                "interval",
                "timeout",
                "params",
                "proxyUrl",
                "metricRelabeling",
                "authorization",
                "basicAuth",
                "oauth2",
                "tls",
            },
        )
        if extra:
            problems.append(f"unknown endpoint keys {extra}")
        if ep.get("port") not in ports:
            problems.append(f"endpoint port {ep.get('port')} is not a container port name {ports}")
        if ep.get("path") != "/metrics":
            problems.append("endpoint path is not /metrics")
        if not re.fullmatch(r"\d+(ms|s|m)", str(ep.get("interval", "30s"))):
            problems.append("bad interval")
    check(name, not problems, "; ".join(problems))


def check_servicemonitor(label: str, sm: dict, service: dict) -> None:
    name = f"[{label}] ServiceMonitor/{sm['metadata']['name']}"
    problems = []
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {sm['apiVersion']}")
    if sm["metadata"].get("namespace") != "pyexec":
        problems.append("namespace is not pyexec")
    spec = sm.get("spec", {})
    extra = only_keys(
        spec,
        {
            "selector",
            "endpoints",
            "namespaceSelector",
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "sampleLimit",
        },
    )
    if extra:
        problems.append(f"unknown spec keys {extra}")
    sel = spec.get("selector", {}).get("matchLabels", {})
    if not sel or any(service["metadata"].get("labels", {}).get(k) != v for k, v in sel.items()):
        problems.append("selector does not match the Service's labels")
    if spec.get("namespaceSelector", {}).get("matchNames") not in (None, ["pyexec"]):
        problems.append("namespaceSelector is not pyexec")
    svc_ports = {p["name"] for p in service["spec"]["ports"]}
    for ep in spec.get("endpoints") or [{}]:
        extra = only_keys(
            ep,
            {
                "port",
                "targetPort",
                "path",
                "scheme",
                "interval",
                "scrapeTimeout",
                "honorLabels",
                "relabelings",
                "metricRelabelings",
                "bearerTokenSecret",
                "authorization",
                "tlsConfig",
            },
        )
        if extra:
            problems.append(f"unknown endpoint keys {extra}")
        if ep.get("port") not in svc_ports:
            problems.append(f"endpoint port {ep.get('port')} is not a Service port name {svc_ports}")
        if ep.get("path") != "/metrics":
            problems.append("endpoint path is not /metrics")
    check(name, not problems, "; ".join(problems))


def check_consistency(label: str, by_kind: dict[str, dict]) -> None:
    dep = by_kind["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}

    def envval(name: str, default: str) -> str:
        return str(env.get(name, {}).get("value", default))

    tmpl_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(
        f"[{label}] Deployment selector matches its pod labels",
        dep["spec"]["selector"]["matchLabels"].items() <= tmpl_labels.items(),
    )
    svc = by_kind["Service"]
    check(
        f"[{label}] Service selects the pods and targets the http port",
        svc["spec"]["selector"].items() <= tmpl_labels.items()
        and all(p["targetPort"] in ("http", 8080) for p in svc["spec"]["ports"]),
    )
    pdb = by_kind["PodDisruptionBudget"]
    check(
        f"[{label}] PodDisruptionBudget selects the pods",
        pdb["spec"]["selector"]["matchLabels"].items() <= tmpl_labels.items(),
    )
    hpa = by_kind["HorizontalPodAutoscaler"]
    tgt = hpa["spec"]["scaleTargetRef"]
    check(
        f"[{label}] HPA targets the Deployment, min >= 2, CPU metric present",
        tgt["kind"] == "Deployment"
        and tgt["name"] == dep["metadata"]["name"]
        and hpa["spec"]["minReplicas"] >= 2
        and any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]),
    )
    check(
        f"[{label}] Deployment leaves replicas to the HPA",
        "replicas" not in dep["spec"],
    )
    check(
        f"[{label}] container is privileged (nsjail creates namespaces)",
        c.get("securityContext", {}).get("privileged") is True,
    )
    check(
        f"[{label}] readinessProbe GET /ready, livenessProbe GET /health on the http port",
        c["readinessProbe"]["httpGet"]["path"] == "/ready"
        and c["livenessProbe"]["httpGet"]["path"] == "/health"
        and c["readinessProbe"]["httpGet"]["port"] in ("http", 8080)
        and c["livenessProbe"]["httpGet"]["port"] in ("http", 8080),
    )
    check(
        f"[{label}] listens on 0.0.0.0:8080 = containerPort",
        envval("PYEXEC_LISTEN", "") == "0.0.0.0:8080"
        and any(p["containerPort"] == 8080 and p["name"] == "http" for p in c["ports"]),
    )
    wref = env.get("PYEXEC_WORKERS", {}).get("valueFrom", {}).get("resourceFieldRef", {})
    check(
        f"[{label}] PYEXEC_WORKERS follows requests.cpu",
        wref.get("resource") == "requests.cpu"
        and str(wref.get("divisor")) == "1"
        and wref.get("containerName") == c["name"],
    )
    # Shutdown timing: preStop + drain deadline fit in the grace period, and
    # the drain deadline covers the longest run plus its queue wait.
    pre = c["lifecycle"]["preStop"]
    pre_secs = pre["sleep"]["seconds"] if "sleep" in pre else int(pre["exec"]["command"][-1]) if "exec" in pre else 0
    drain = float(envval("PYEXEC_SHUTDOWN_TIMEOUT_SECS", "30"))
    longest = float(envval("PYEXEC_MAX_TIMEOUT_SECS", "60")) + float(envval("PYEXEC_QUEUE_TIMEOUT_SECS", "5"))
    grace = pod["terminationGracePeriodSeconds"]
    check(
        f"[{label}] grace {grace}s >= preStop {pre_secs}s + drain {drain:g}s >= longest run+queue {longest:g}s",
        grace >= pre_secs + drain and drain >= longest,
    )
    # Memory sizing from the measured per-worker footprint.
    workers = max(1, int(-(-cores(c["resources"]["requests"]["cpu"]) // 1)))
    max_mem = int(envval("PYEXEC_MAX_MEMORY_MIB", "1024"))
    def_mem = int(envval("PYEXEC_DEFAULT_MEMORY_MIB", "256"))
    tmp_mib = int(envval("PYEXEC_TMP_SIZE_MIB", str(TMP_MIB)))
    idle = SERVICE_MIB + (workers + STANDBY) * WORKER_MIB
    need_limit = idle + workers * (max_mem + TMPFS_PER_RUN * tmp_mib)
    need_request = idle + workers * def_mem
    lim = mib(c["resources"]["limits"]["memory"])
    req = mib(c["resources"]["requests"]["memory"])
    check(
        f"[{label}] memory limit {lim:.0f}Mi >= {need_limit} (W={workers}, max run {max_mem}Mi)",
        lim >= need_limit,
        "raise limits.memory or lower PYEXEC_MAX_MEMORY_MIB",
    )
    check(
        f"[{label}] memory request {req:.0f}Mi >= {need_request} (W={workers}, default run {def_mem}Mi)",
        need_request <= req <= lim,
    )
    check(
        f"[{label}] service account token not mounted",
        pod.get("automountServiceAccountToken") is False,
    )
    ns = by_kind.get("Namespace")
    check(
        f"[{label}] Namespace allows privileged pods (Pod Security)",
        ns is not None and ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "privileged",
    )
    check(
        f"[{label}] no runtimeClassName (GKE Sandbox/gVisor cannot run nsjail)",
        "runtimeClassName" not in pod,
    )


def check_adapter_values() -> None:
    p = DEPLOY / "overlays/prometheus-operator/prometheus-adapter-values.yaml"
    v = yaml.safe_load(p.read_text())
    rules = v.get("rules", {}).get("custom", [])
    hpa = yaml.safe_load((DEPLOY / "overlays/prometheus-operator/hpa-saturation.yaml").read_text())
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    defined = {r.get("name", {}).get("as") for r in rules}
    ok = (
        bool(rules)
        and wanted <= defined
        and all(
            {"seriesQuery", "resources", "name", "metricsQuery"} <= set(r) and "pyexec_workers" in r["metricsQuery"]
            for r in rules
        )
    )
    check(
        "[prometheus-operator] prometheus-adapter rule defines the HPA's custom metric",
        ok,
        f"HPA wants {wanted}, adapter defines {defined}",
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--k8s-versions",
        default="1.37.0,1.31.0",
        help="Kubernetes versions to validate against (newest and oldest GKE-supported)",
    )
    args = ap.parse_args()
    versions = args.k8s_versions.split(",")
    for label in RENDERS:
        try:
            docs = render(DEPLOY / label)
        except (RenderError, OSError, yaml.YAMLError) as e:
            check(f"[{label}] renders", False, str(e))
            continue
        check(f"[{label}] renders ({len(docs)} objects)", True)
        by_kind = {d["kind"]: d for d in docs}
        check(
            f"[{label}] every object in namespace pyexec",
            all(d["metadata"].get("namespace") == "pyexec" for d in docs if d["kind"] != "Namespace"),
        )
        validate_builtin(label, docs, versions)
        for d in docs:
            if d["apiVersion"] not in BUILTIN_GROUPS and d["kind"] not in (
                "PodMonitoring",
                "ServiceMonitor",
            ):
                check(f"[{label}] {d['kind']} is a known kind", False, d["apiVersion"])
        if "PodMonitoring" in by_kind:
            check_podmonitoring(label, by_kind["PodMonitoring"], by_kind["Deployment"])
        if "ServiceMonitor" in by_kind:
            check_servicemonitor(label, by_kind["ServiceMonitor"], by_kind["Service"])
        check_consistency(label, by_kind)
        if label == "overlays/gke":
            dep_pod = by_kind["Deployment"]["spec"]["template"]["spec"]
            check("[overlays/gke] PodMonitoring present", "PodMonitoring" in by_kind)
            check(
                "[overlays/gke] pinned to the dedicated sandbox node pool (selector + toleration)",
                dep_pod.get("nodeSelector", {}).get("pyexec.dev/sandbox") == "true"
                and any(t.get("key") == "pyexec.dev/sandbox" for t in dep_pod.get("tolerations", [])),
            )
            check(
                "[overlays/gke] HPA has a Managed Prometheus pool-saturation metric",
                any(
                    m["type"] == "Pods" and m["pods"]["metric"]["name"].startswith("prometheus.googleapis.com|pyexec_")
                    for m in by_kind["HorizontalPodAutoscaler"]["spec"]["metrics"]
                ),
            )
        if label == "overlays/prometheus-operator":
            check(
                "[overlays/prometheus-operator] ServiceMonitor present",
                "ServiceMonitor" in by_kind,
            )
    check_adapter_values()
    return tally.summary("manifests")


if __name__ == "__main__":
    sys.exit(main())
