#!/usr/bin/env python3
"""Runs the rendered GKE Deployment with `podman kube play` and checks it.

podman creates the pod from the Deployment's pod spec as rendered, with
one change, the one a user makes: the image (the overlay's is a
placeholder). podman
has no kubelet, so this script plays its part from the host, with the
manifest's own probe definitions, against the pod IP (as the kubelet
probes):

- startup and readiness: /health, then /ready; before /ready says 200 the
  pod gets no traffic (we send none), and every answer before it is a
  refused connection or 503;
- traffic: POST /execute answers once ready (first-request latency);
- liveness: /health answers within the probe's timeout while every
  worker is busy; a frozen process (SIGSTOP) fails failureThreshold
  probes in a row, and the restart the kubelet would do brings it back;
- `pyexec doctor` inside the pod passes and sees the pod's memory limit;
- deletion, the kubelet's way: preStop (exec, from the manifest), then
  SIGTERM with terminationGracePeriodSeconds as the stop timeout, while a
  run is in flight: the run is answered, readiness drops, exit 0, within
  the grace period.

What podman took over from the spec is read back with `podman inspect` and
printed. Standard library plus PyYAML. Final line:
`kube-play: N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import tally
import yaml
from render_kustomize import render
from tally import check

SUM = 'def main():\n    return {"sum": 2 + 2}'


def podman(*args: str, check_rc: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check_rc and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def http(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, object, float]:
    """(status, JSON or text, seconds); status 0 when no HTTP answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except OSError as e:
        return 0, repr(e), time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    try:
        return status, json.loads(raw), elapsed
    except ValueError:
        return status, raw.decode("utf-8", "replace"), elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_of(container: dict, port: object) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {port}")


class Pod:
    """The played pod: names, IP, and the probes as the manifest has them."""

    def __init__(self, deployment: dict) -> None:
        self.spec = deployment["spec"]["template"]["spec"]
        self.container = self.spec["containers"][0]
        self.name = ""
        self.ctr = ""
        self.ip = ""
        self.infra = ""

    def probe(self, kind: str) -> dict:
        return self.container[kind]

    def url(self, kind_or_path: str) -> str:
        if kind_or_path.startswith("/"):
            port = port_of(self.container, "http")
            return f"http://{self.ip}:{port}{kind_or_path}"
        get = self.probe(kind_or_path)["httpGet"]
        return f"http://{self.ip}:{port_of(self.container, get['port'])}{get['path']}"

    def probe_once(self, kind: str) -> tuple[bool, int]:
        """One probe as the kubelet makes it: success is 200-399 within timeoutSeconds."""
        timeout = self.probe(kind).get("timeoutSeconds", 1)
        status, _, _ = http(self.url(kind), timeout=timeout)
        return 200 <= status < 400, status


def infra_ip(infra: str) -> str:
    """The pod's address: its infra container's, on podman's network."""
    networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", infra))
    return next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--overlay", required=True)
    a = ap.parse_args()

    docs = render(Path(a.overlay))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = Pod(deployment)
    # The one change a user makes too (deploy/README.md, Apply, step 2): the
    # overlay's image is a placeholder (PROJECT_ID is not even a valid
    # reference); point it at the image built here, as `images:` would.
    target_image = a.image
    pod.container["image"] = target_image
    grace = int(pod.spec["terminationGracePeriodSeconds"])
    pre_stop = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    # podman 4.3 publishes every containerPort on the host (hostPort
    # defaults to containerPort, on all interfaces), which Kubernetes never
    # does: pin it to loopback and a free port so the test takes no fixed
    # port of this machine. Probes and traffic go to the pod IP anyway.
    for port in pod.container.get("ports", []):
        port["hostIP"] = "127.0.0.1"
        port["hostPort"] = free_port()
    work = Path(tempfile.mkdtemp(prefix="pyexec-kube-"))
    manifest = work / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(deployment, sort_keys=False))
    podman("kube", "down", str(manifest), check_rc=False)

    t_play = time.time()
    out = podman("kube", "play", str(manifest))
    play_secs = time.time() - t_play
    try:
        return exercise(a, pod, manifest, out, t_play, play_secs, grace, pre_stop, target_image)
    finally:
        podman("kube", "down", str(manifest), check_rc=False)


def exercise(a, pod: Pod, manifest: Path, out: str, t_play: float, play_secs: float, grace: int, pre_stop, target_image) -> int:
    pods = json.loads(podman("pod", "ps", "--format", "json", "--filter", "label=app.kubernetes.io/name=pyexec"))
    check("podman kube play created one pod with the Deployment's labels", len(pods) == 1, out + str(pods))
    if len(pods) != 1:
        return tally.summary("kube-play")
    pod.name = pods[0]["Name"]
    info = json.loads(podman("pod", "inspect", pod.name))
    info = info[0] if isinstance(info, list) else info
    pod.ctr = f"{pod.name}-{pod.container['name']}"
    pod.infra = info["InfraContainerID"]
    pod.ip = infra_ip(pod.infra)
    ctr = json.loads(podman("inspect", pod.ctr))[0]
    env = dict(e.split("=", 1) for e in ctr["Config"]["Env"])

    # ---- what podman took over from the spec
    hc = ctr["Config"].get("Healthcheck") or {}
    facts = {
        "securityContext.privileged": ctr["HostConfig"].get("Privileged"),
        "securityContext.readOnlyRootFilesystem": ctr["HostConfig"].get("ReadonlyRootfs"),
        "env PYEXEC_WORKERS (resourceFieldRef requests.cpu)": env.get("PYEXEC_WORKERS"),
        "env PYEXEC_API_TOKEN (optional secretKeyRef, no Secret)": env.get("PYEXEC_API_TOKEN", "<unset>"),
        "resources.limits.memory -> HostConfig.Memory": ctr["HostConfig"].get("Memory"),
        "resources.requests.memory -> MemoryReservation": ctr["HostConfig"].get("MemoryReservation"),
        "terminationGracePeriodSeconds -> StopTimeout": ctr["Config"].get("StopTimeout"),
        "livenessProbe -> Healthcheck.Test": hc.get("Test"),
        "volumes tmp (emptyDir sizeLimit 64Mi) -> mount": [
            f"{m.get('Type')}:{m.get('Destination')}" for m in ctr.get("Mounts", []) if m.get("Destination") == "/tmp"
        ],
        "pod IP (probes and traffic go here)": pod.ip,
    }
    print("what podman made of the pod spec (podman inspect):")
    for k, v in facts.items():
        print(f"     {k}: {v}")
    check(
        "privileged, read-only root filesystem, PYEXEC_WORKERS=2 from requests.cpu, no token without the Secret",
        facts["securityContext.privileged"] is True
        and facts["securityContext.readOnlyRootFilesystem"] is True
        and env.get("PYEXEC_WORKERS") == "2"
        and "PYEXEC_API_TOKEN" not in env
        and env.get("PYEXEC_LISTEN") == "0.0.0.0:8080",
        str(facts),
    )

    # ---- startup and readiness (polled every 0.1 s; the manifest's periods only add delay)
    seen_before_ready: list[int] = []
    started_after = ready_after = None
    deadline = time.time() + pod.probe("startupProbe")["periodSeconds"] * pod.probe("startupProbe")["failureThreshold"]
    while time.time() < deadline:
        if started_after is None:
            ok, _ = pod.probe_once("startupProbe")
            if ok:
                started_after = time.time() - t_play
        if started_after is not None:
            ok, status = pod.probe_once("readinessProbe")
            if ok:
                ready_after = time.time() - t_play
                break
            seen_before_ready.append(status)
        time.sleep(0.1)
    check(
        f"startupProbe /health passes, then readinessProbe /ready ({ready_after or 0:.2f}s after kube play)",
        ready_after is not None,
        podman("logs", pod.ctr, check_rc=False)[-2000:],
    )
    if ready_after is None:
        return tally.summary("kube-play")
    check(
        "before /ready said 200 it only refused or answered 503 (no traffic sent until ready)",
        all(s in (0, 503) for s in seen_before_ready),
        str(seen_before_ready),
    )
    st, body, first = http(pod.url("/execute"), {"script": SUM})
    check(
        f"first POST /execute after ready -> 200 {{'sum': 4}} ({first * 1000:.1f} ms)",
        st == 200 and isinstance(body, dict) and body.get("result") == {"sum": 4},
        f"{st} {body}",
    )
    warm = sorted(http(pod.url("/execute"), {"script": SUM})[2] for _ in range(10))

    # ---- doctor in the pod (what a platform engineer runs before going live)
    done = subprocess.run(
        ["podman", "exec", pod.ctr, "pyexec", "doctor", "--json"], capture_output=True, text=True, timeout=300, check=False
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {}
    memory = next((c for c in report.get("checks", []) if c["name"] == "memory"), {})
    check(
        "pyexec doctor --json in the pod exits 0, and sees the pod's 1792Mi memory limit",
        done.returncode == 0 and report.get("ok") is True and "1792 MiB available (the memory cgroup limit" in memory.get("detail", ""),
        (done.stdout + done.stderr)[-2000:],
    )

    # ---- liveness
    busy: list = []
    slow = {"script": "import time\n\ndef main():\n    time.sleep(4)\n    return 'slept'", "timeout": 20}
    runs = [threading.Thread(target=lambda: busy.append(http(pod.url("/execute"), slow))) for _ in range(2)]
    for t in runs:
        t.start()
    time.sleep(1)
    alive, status = pod.probe_once("livenessProbe")
    for t in runs:
        t.join(30)
    check(
        "livenessProbe /health passes within timeoutSeconds while every worker is busy",
        alive and len(busy) == 2 and all(r[0] == 200 for r in busy),
        f"{status} {busy}",
    )
    hc_run = subprocess.run(
        ["podman", "healthcheck", "run", pod.ctr], capture_output=True, text=True, timeout=60, check=False
    )
    print(f"     podman's own healthcheck from livenessProbe: exit {hc_run.returncode} {hc_run.stdout.strip()} {hc_run.stderr.strip()[:200]}")
    live = pod.probe("livenessProbe")
    podman("kill", "--signal", "STOP", pod.ctr)
    failures = 0
    t0 = time.time()
    for _ in range(live["failureThreshold"]):
        ok, _ = pod.probe_once("livenessProbe")
        failures += 0 if ok else 1
    detect_secs = time.time() - t0
    check(
        f"a frozen pyexec (SIGSTOP) fails failureThreshold={live['failureThreshold']} liveness probes in a row ({detect_secs:.1f}s)",
        failures == live["failureThreshold"],
        f"{failures} failures",
    )
    # The kubelet now restarts the container. Not with `podman restart`:
    # podman 4.3's kube play gives the pod the exit policy "stop", so once
    # its only container has stopped podman may stop the infra container
    # too, and a restart of the container alone then fails ("cannot get
    # namespace path unless container ... is running", seen in CI).
    # `pod start` brings back whatever stopped, the infra container first.
    t_restart = time.time()
    podman("stop", "-t", "2", pod.ctr)
    podman("pod", "start", pod.name)
    ready_again = None
    while time.time() - t_restart < 60:
        if pod.probe_once("readinessProbe")[0]:
            ready_again = time.time() - t_restart
            break
        # podman 4.3 may re-create the pod's network on a restart: follow
        # the address, as a Service's endpoints would.
        pod.ip = infra_ip(pod.infra) or pod.ip
        time.sleep(0.1)
    st, body, _ = http(pod.url("/execute"), {"script": SUM})
    check(
        f"after the restart liveness asks for, the pod is ready again ({ready_again or 0:.2f}s) and answers",
        ready_again is not None and st == 200 and body.get("result") == {"sum": 4},
        f"{st} {body}",
    )

    # ---- deletion: preStop, then SIGTERM with the grace period, during a run
    answer: dict = {}
    run_secs = 9
    drain_run = {"script": f"import time\n\ndef main():\n    time.sleep({run_secs})\n    return 'done'", "timeout": 30}
    runner = threading.Thread(target=lambda: answer.update(r=http(pod.url("/execute"), drain_run, timeout=grace)))
    runner.start()
    time.sleep(1)
    t_delete = time.time()
    # kubelet: run preStop (it counts against the grace period) ...
    subprocess.run(["podman", "exec", pod.ctr, *pre_stop], capture_output=True, timeout=grace, check=False)
    ready_during_prestop = pod.probe_once("readinessProbe")[0]
    left = max(1, int(grace - (time.time() - t_delete)))
    # ... then SIGTERM (the image's STOPSIGNAL) and SIGKILL after what is
    # left, to the container first: the kubelet keeps the pod's sandbox (its
    # network) until the containers are gone, while `podman pod stop` stops
    # the infra container alongside and tears the network down under the
    # in-flight answer (seen: the run finished, its answer never arrived).
    stopper = threading.Thread(target=lambda: podman("stop", "-t", str(left), pod.ctr, timeout=grace + 30))
    stopper.start()
    time.sleep(0.5)
    draining_probes = []
    while stopper.is_alive() and len(draining_probes) < 20:
        draining_probes.append(pod.probe_once("readinessProbe")[1])
        time.sleep(0.2)
    stopper.join(grace + 30)
    runner.join(grace)
    podman("pod", "stop", "-t", "5", pod.name, check_rc=False)
    delete_secs = time.time() - t_delete
    st, body, _ = answer.get("r", (0, "no answer", 0.0))
    code = podman("inspect", "--format", "{{.State.ExitCode}}", pod.ctr, check_rc=False).strip()
    check(
        f"delete during a {run_secs} s run (preStop {' '.join(pre_stop)}, then SIGTERM): the run is answered 200",
        st == 200 and isinstance(body, dict) and body.get("result") == "done",
        f"{st} {body}",
    )
    check(
        "readiness: 200 during preStop, never 200 once SIGTERM arrived (endpoints drop the pod)",
        ready_during_prestop and draining_probes and all(s != 200 for s in draining_probes),
        f"during preStop {ready_during_prestop}, after SIGTERM {draining_probes}",
    )
    check(
        f"pyexec exits 0 within terminationGracePeriodSeconds={grace} ({delete_secs:.1f}s from deletion)",
        code == "0" and delete_secs < grace,
        f"exit code {code}, {delete_secs:.1f}s",
    )
    print()
    print(f"kube play (create + start):   {play_secs:.2f} s")
    print(f"kube play -> /ready:          {ready_after:.2f} s (startupProbe passed at {started_after:.2f} s)")
    print(f"first-request latency:        {first * 1000:.1f} ms (POST /execute, sum seed, to the pod IP)")
    print(f"warm latency (10 runs):       median {warm[len(warm) // 2] * 1000:.1f} ms")
    print(f"liveness failure detected in: {detect_secs:.1f} s; ready again after restart: {ready_again or float('nan'):.2f} s")
    print(f"delete -> exit 0:             {delete_secs:.1f} s (run of {run_secs} s in flight, grace {grace} s)")
    return tally.summary("kube-play")


if __name__ == "__main__":
    sys.exit(main())
