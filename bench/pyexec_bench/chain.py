"""The service's process chain, read from /proc, and the faults injected into it.

Owns: finding each kind of process under the service's pid (nsjail, the
zygote, fork servers, spare run inits, runners) by walking /proc, telling a
runner that still waits for its request from one running user code, and
sending the signals of one fault, or squeezing a worker's memory cgroup
until the kernel OOM-kills in it. Must not: talk HTTP or decide pass/fail.

Kinds, by position in the tree (the zygote is nsjail's child; its children
at the zygote's own pid-namespace depth are fork servers, the deeper ones
run inits, pid 1 of a run's namespace; a run init's children are runners):
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass

KINDS = ("nsjail", "zygote", "fork_server", "spare", "runner")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def ns_depth(pid: int) -> int:
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return 0


def comm(pid: int) -> str:
    return (_read(f"/proc/{pid}/comm") or "").strip()


def state(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    return stat[stat.rfind(")") + 2] if stat else "gone"


@dataclass
class Chain:
    """Pids of each kind under one service pid."""

    by_kind: dict[str, list[int]]
    workers: list[int]  # nsjail pids

    @classmethod
    def read(cls, service_pid: int) -> Chain:
        kids = children_map()
        out: dict[str, list[int]] = {kind: [] for kind in KINDS}
        nsjails = [p for p in kids.get(service_pid, []) if comm(p) == "nsjail"]
        for jail in nsjails:
            out["nsjail"].append(jail)
            for zygote in kids.get(jail, []):
                out["zygote"].append(zygote)
                depth = ns_depth(zygote)
                for child in kids.get(zygote, []):
                    if ns_depth(child) == depth:
                        out["fork_server"].append(child)
                    else:
                        out["spare"].append(child)
                        out["runner"].extend(kids.get(child, []))
        return cls(out, nsjails)

    def subtree(self, kids: dict[int, list[int]], pid: int) -> list[int]:
        todo, seen = [pid], []
        while todo:
            p = todo.pop()
            seen.append(p)
            todo.extend(kids.get(p, []))
        return seen


def runner_waits(pid: int) -> bool:
    """A stopped runner that still holds its request pipe has not said ``start``.

    A waiting runner holds three pipes besides fd 1/2 (request, result,
    status); once it read its request it keeps only the result pipe.
    """
    pipes = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if fd in ("1", "2"):
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                    pipes += 1
    return pipes >= 3


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


# How long a SIGSTOP is held before SIGCONT, per kind: longer than each
# detection bound for the processes whose stop is a fault of the service
# (nsjail, zygote: 0.6 s; fork server: 3 s; a spare's init is harmless),
# shorter than the run's timeout for a runner (a stopped runner that is
# running user code is only slower; one still waiting is replaced after
# 1.5 s by the zygote).
STOP_HOLD_S = {"nsjail": 1.5, "zygote": 1.5, "fork_server": 3.5, "spare": 1.0, "runner": 0.4}


@dataclass
class Fault:
    kind: str
    action: str  # "kill", "stop" or "oom"
    pid: int
    at: float  # monotonic time the fault was complete (kill sent, or SIGCONT sent)


def memory_cgroup(pid: int) -> str | None:
    """The directory of ``pid``'s memory cgroup: v1's memory controller, else v2's."""
    v2 = None
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}"
        if controllers == "":
            v2 = f"/sys/fs/cgroup{path}"
    return v2 if v2 and os.path.exists(f"{v2}/memory.max") else None


OOM_WAIT_S = 10.0


def oom_worker(service_pid: int, rng: random.Random) -> Fault | None:
    """Memory pressure that is the service's, not a script's: a worker's cgroup squeezed.

    Lowers the memory limit of one worker's cgroup (the one its zygote is
    in) to 2 MiB above what it holds, so the next spare or run that touches
    memory makes the kernel OOM-kill in it: a run (``oom_score_adj`` 1000)
    or, once none is left, the zygote. Neither is the doing of the script
    that was running, which stayed far below its own cap. The service must
    answer that request honestly (retry, or 503 ``worker_lost``; never 422)
    and replace the worker, whose cgroup goes with it. The fault counts
    when that worker's nsjail is gone.
    """
    chain = Chain.read(service_pid)
    kids = children_map()
    jails = [j for j in chain.workers if kids.get(j)]
    if not jails:
        return None
    jail = rng.choice(jails)
    cg = memory_cgroup(kids[jail][0])
    if cg is None:
        return None
    if os.path.basename(cg) == "zygote":
        # Per-run leaves: the zygote has its own child of the worker's cgroup.
        cg = os.path.dirname(cg)
    v1 = os.path.exists(f"{cg}/memory.limit_in_bytes")
    limit_file = f"{cg}/memory.limit_in_bytes" if v1 else f"{cg}/memory.max"
    usage = int((_read(f"{cg}/memory.usage_in_bytes" if v1 else f"{cg}/memory.current") or "0").strip() or 0)
    old_limit = (_read(limit_file) or "").strip()
    try:
        with open(limit_file, "w") as f:
            f.write(str(usage + (2 << 20)))
    except OSError:
        return None
    deadline = time.monotonic() + OOM_WAIT_S
    while time.monotonic() < deadline and state(jail) not in ("gone", "Z"):
        time.sleep(0.01)
    if state(jail) not in ("gone", "Z"):
        # The worker lives on squeezed: give it its limit back. The answers
        # its runs got meanwhile are what the caller judges.
        with contextlib.suppress(OSError), open(limit_file, "w") as f:
            f.write(old_limit)
        return None
    return Fault("worker_cgroup", "oom", jail, time.monotonic())


def inject(service_pid: int, kind: str, action: str, rng: random.Random) -> Fault | None:
    """One fault of ``action`` on a process of ``kind``; None if none was found."""
    if action == "oom":
        return oom_worker(service_pid, rng)
    for _ in range(50):
        pids = Chain.read(service_pid).by_kind[kind]
        if pids:
            pid = rng.choice(pids)
            if kind == "runner" and action == "kill":
                # Freeze it first, then kill only if it still waits for its
                # request: a runner running user code killed from outside is
                # indistinguishable from a script that kills itself (its
                # verdict is ``killed``), so that is not what is tested.
                if not _signal(pid, signal.SIGSTOP):
                    continue
                time.sleep(0.002)
                if not runner_waits(pid):
                    _signal(pid, signal.SIGCONT)
                    time.sleep(0.01)
                    continue
            if action == "kill":
                if _signal(pid, signal.SIGKILL):
                    return Fault(kind, action, pid, time.monotonic())
            elif _signal(pid, signal.SIGSTOP):
                time.sleep(STOP_HOLD_S[kind])
                _signal(pid, signal.SIGCONT)
                return Fault(kind, action, pid, time.monotonic())
        time.sleep(0.02)
    return None
