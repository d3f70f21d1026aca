#!/usr/bin/env python3
"""Runs `pyexec doctor --json` in the image, as in a pod before going live.

Privileged (the way the image must run) every check must be ok or warn and
the exit status 0; unprivileged (a plain `docker run`) it must exit 1 and
fail the `privileges` and `jail` checks, each with a fix. Uses podman with
the environment build-and-run.sh sets. Standard library only.
Final line: `doctor-in-container: N passed, M failed`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import tally
from tally import check

EXPECTED = {"userns", "privileges", "cgroup", "run-cgroup", "nsjail", "venv", "seccomp", "jail", "tmp", "cpus", "memory"}


def doctor(image: str, workers: int, privileged: bool) -> tuple[int, dict | None, str, float]:
    cmd = ["podman", "run", "--rm"]
    if privileged:
        # Same shape as the pod: privileged, read-only root, a /tmp of its own.
        cmd += ["--privileged", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]
    cmd += ["-e", f"PYEXEC_WORKERS={workers}", image, "doctor", "--json"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - t0
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    return done.returncode, report, done.stdout + done.stderr, elapsed


def by_name(report: dict | None) -> dict[str, dict]:
    return {c["name"]: c for c in (report or {}).get("checks", [])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    rc, report, raw, secs = doctor(a.image, a.workers, privileged=True)
    checks = by_name(report)
    check(f"doctor --json in the privileged container exits 0 ({secs:.1f}s)", rc == 0, raw[-2000:])
    check(
        "... every check is present, ok or warn, and the summary adds up",
        set(checks) == EXPECTED
        and all(c["status"] in ("ok", "warn") for c in checks.values())
        and report["ok"] is True
        and report["summary"]["fail"] == 0
        and sum(report["summary"].values()) == len(checks),
        raw[-2000:],
    )
    check(
        "... the jail started inside the container imports numpy, pandas, matplotlib",
        checks.get("jail", {}).get("status") == "ok"
        and all(m in checks["jail"]["detail"] for m in ("numpy", "pandas", "matplotlib")),
        str(checks.get("jail")),
    )
    for name in sorted(checks):
        print(f"     {checks[name]['status']:<4} {name}: {checks[name]['detail']}")

    rc, report, raw, secs = doctor(a.image, a.workers, privileged=False)
    checks = by_name(report)
    check(f"doctor --json without --privileged exits 1 ({secs:.1f}s)", rc == 1, raw[-2000:])
    failed = {n for n, c in checks.items() if c["status"] == "fail"}
    check(
        "... and fails privileges and jail, each with a one-line fix",
        {"privileges", "jail"} <= failed and all(checks[n]["fix"] and "\n" not in checks[n]["fix"] for n in failed),
        json.dumps(report)[-2000:] if report else raw[-2000:],
    )
    return tally.summary("doctor-in-container")


if __name__ == "__main__":
    raise SystemExit(main())
