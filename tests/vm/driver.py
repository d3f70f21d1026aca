"""Test driver of the cgroup-v2 VM (stdlib only; runs as root in the guest).

Starts pyexec as a privileged GKE pod starts it: in a private cgroup
namespace whose root is a non-root cgroup (/kubepods/pod1, with +memory
+pids enabled above it) that holds pyexec's own process. Then checks, over
HTTP on 127.0.0.1, the verdicts and the cgroup layout. Prints one
`[check] ok|FAIL name: detail` line per check and `VM-RESULT pass|fail`.
"""

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

CG = "/sys/fs/cgroup"
POD = f"{CG}/kubepods/pod1"
OPT = "/opt/pyexec"
MAX_MEMORY_MIB = 256
failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"[check] {'ok' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def loopback_up() -> None:
    # SIOCGIFFLAGS / SIOCSIFFLAGS: minbase has no iproute2.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifreq = struct.pack("16sh14x", b"lo", 0)
    flags = struct.unpack("16sh14x", fcntl.ioctl(s, 0x8913, ifreq))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sh14x", b"lo", flags | 0x1))


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def pod_cgroup() -> None:
    """kubepods/pod1 as the kubelet leaves it: memory and pids delegated."""
    write(f"{CG}/cgroup.subtree_control", "+memory +pids")
    os.makedirs(POD, exist_ok=True)
    write(f"{CG}/kubepods/cgroup.subtree_control", "+memory +pids")


def enter_pod() -> None:
    # Runs in the child before exec: the container's process is in pod1, then
    # `unshare --cgroup` makes pod1 the root of its cgroup namespace.
    write(f"{POD}/cgroup.procs", "0")


def http(method: str, path: str, body: dict | None = None, timeout: float = 240) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{ADDR}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read().decode(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read().decode(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def execute(script: str, wait: float = 240, **limits: float) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, body = http("POST", "/execute", {"script": script, **limits}, timeout=wait)
    return status, body if isinstance(body, dict) else {"raw": body}, time.monotonic() - started


def verdict(name: str, script: str, want: tuple[int, str | None], wait: float = 240, **limits: float) -> dict:
    status, body, took = execute(script, wait, **limits)
    kind = body.get("kind")
    ok = status == want[0] and (want[1] is None or kind == want[1])
    check(name, ok, f"{status} {kind or ''} in {took:.1f} s {str(body)[:160] if not ok else ''}")
    return body


def is_worker_cgroup(name: str) -> bool:
    """nsjail's NSJAIL.<pid>, or w<pyexec pid>.<worker id> with per-run leaves."""
    return name.startswith("NSJAIL.") or (name.startswith("w") and name[1:].replace(".", "").isdigit())


def leaves() -> dict[str, str]:
    return {n: f"{POD}/{n}" for n in os.listdir(POD) if is_worker_cgroup(n)}


def run_leaves() -> set[str]:
    """The per-run leaves (run.*) of every worker cgroup, as worker/leaf."""
    found = set()
    for name, path in leaves().items():
        with_runs = os.listdir(path) if os.path.isdir(path) else []
        found.update(f"{name}/{n}" for n in with_runs if n.startswith("run."))
    return found


def jails(pid: int) -> list[int]:
    """nsjail processes: the children of pyexec (`pid`)."""
    text = read(f"/proc/{pid}/task/{pid}/children") if os.path.exists(f"/proc/{pid}") else ""
    return [int(p) for p in text.split()]


def oom_kills(leaf: str) -> int:
    for line in read(f"{leaf}/memory.events").splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def oom_kills_all() -> int:
    """OOM kills of every worker cgroup (hierarchical on v2: their run
    leaves included); the pool's worker and the hot standby both count, as
    either may serve."""
    total = 0
    for path in leaves().values():
        try:
            total += oom_kills(path)
        except OSError:
            pass  # a worker going away meanwhile
    return total


def first_worker(found: dict[str, str]) -> str:
    """The pool's worker: the lowest worker id (the hot standby starts later)."""
    def order(name: str) -> tuple[int, str]:
        tail = name.rsplit(".", 1)[-1]
        return (int(tail) if tail.isdigit() else 0, name)
    return found[min(found, key=order)] if found else ""


def metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def wait_for(what, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.5)
    return None


def main() -> int:
    global ADDR
    loopback_up()
    pod_cgroup()
    doctor = subprocess.run([f"{OPT}/bin/pyexec", "doctor", "--help"], check=False, capture_output=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYEXEC_LISTEN": "127.0.0.1:0",
        "PYEXEC_WORKERS": "1",
        "PYEXEC_SPARES_PER_WORKER": "1",
        "PYEXEC_MAX_MEMORY_MIB": str(MAX_MEMORY_MIB),
        "PYEXEC_WORKER_START_TIMEOUT_SECS": "240",
        "PYEXEC_MAX_TIMEOUT_SECS": "300",
        "PYEXEC_DEFAULT_TIMEOUT_SECS": "60",
        "PYEXEC_QUEUE_TIMEOUT_SECS": "200",
        "PYEXEC_CGROUP": "v2",
        "NO_COLOR": "1",
    }
    # As in a privileged pod: own cgroup namespace rooted at pod1, and
    # /sys/fs/cgroup mounted from inside it.
    inner = "mount --make-rprivate / && umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$@\""
    argv = ["unshare", "--cgroup", "--mount", "sh", "-c", inner, "sh"]
    if doctor.returncode == 0:
        out = subprocess.run(argv + [f"{OPT}/bin/pyexec", "doctor"], check=False, env=env,
                             preexec_fn=enter_pod, capture_output=True, text=True)
        for line in (out.stdout + out.stderr).splitlines():
            print(f"[driver] doctor: {line}", flush=True)
        check("pyexec doctor", out.returncode == 0, f"exit {out.returncode}")
    started = time.monotonic()
    # The driver has no threads: preexec_fn is safe here.
    proc = subprocess.Popen(argv + [f"{OPT}/bin/pyexec"], env=env, preexec_fn=enter_pod,  # noqa: PLW1509
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ADDR = None
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[driver] pyexec: {line.rstrip()[:300]}", flush=True)
        if line.startswith("pyexec listening on http://"):
            ADDR = line.strip().removeprefix("pyexec listening on http://")
            break
    if ADDR is None:
        check("pyexec starts in a pod-like cgroup namespace", False, f"exit {proc.wait()}")
        return 1
    check("pyexec starts in a pod-like cgroup namespace", True, f"listening after {time.monotonic() - started:.1f} s")
    # Keep draining its log so it never blocks on a full pipe.
    if os.fork() == 0:
        for line in proc.stdout:
            print(f"[driver] pyexec: {line.rstrip()[:300]}", flush=True)
        os._exit(0)

    supervisor = f"{POD}/supervisor/cgroup.procs"
    check("pyexec's own processes moved to pod1/supervisor",
          os.path.exists(supervisor) and str(proc.pid) in read(supervisor).split()
          and read(f"{POD}/cgroup.procs").strip() == "",
          f"pod1 subtree_control: {read(f'{POD}/cgroup.subtree_control').strip()}")
    found = wait_for(leaves)
    leaf = first_worker(found or {})
    if leaf:
        mem, pids = read(f"{leaf}/memory.max").strip(), read(f"{leaf}/pids.max").strip()
        # The worker cap: --max-memory-mib + 512 MiB + the run's two 64 MiB
        # tmpfs (/tmp, /dev/shm); pids 4 x --max-processes (32) + 16.
        want_mem, want_pids = (MAX_MEMORY_MIB + 512 + 2 * 64) << 20, 4 * 32 + 16
        check("worker leaf has memory and pids limits", mem == str(want_mem) and pids == str(want_pids),
              f"{leaf.removeprefix(CG)} memory.max={mem} pids.max={pids}")
    else:
        check("worker leaf has memory and pids limits", False, f"no worker cgroup under {POD}")
    runs = wait_for(run_leaves, 60) or set()
    zygote = f"{leaf}/zygote"
    check("per-run leaves: zygote/ holds the jail, one run.* leaf per spare",
          bool(leaf) and os.path.isdir(zygote) and read(f"{zygote}/cgroup.procs").strip() != "" and bool(runs),
          f"{sorted(runs)}")
    try:
        # An idle spare's leaf (nothing runs yet, so it stays).
        one = f"{POD}/{min(runs)}"
        owners = {f: os.stat(f"{one}/{f}").st_uid for f in ("memory.max", "pids.max")}
        caps = {f: os.stat(f"{leaf}/{f}").st_uid for f in ("memory.max", "pids.max", "cgroup.subtree_control")}
        check("run leaf is the jail's, the worker cap root's",
              set(owners.values()) == {99999} and set(caps.values()) == {0}
              and read(f"{one}/memory.swap.max").strip() == "0" and read(f"{one}/pids.max").strip() == "40",
              f"run leaf owners {owners}, worker cap owners {caps}")
    except (OSError, ValueError) as e:
        check("run leaf is the jail's, the worker cap root's", False, f"{type(e).__name__}: {e}")

    status, body, took = execute("def main():\n    return 2 + 2")
    check("first request", status == 200 and body.get("result") == 4, f"{status} in {took:.2f} s")
    status, body, took = execute("def main():\n    return 2 + 2")
    check("second request", status == 200 and body.get("result") == 4, f"{status} in {took:.2f} s")

    # Issue 11: `memory` caps the whole run. Six children of 48 MiB each
    # (written, so resident) in a 64 MiB run: each is far below its own
    # RLIMIT_AS, together they pass the run's leaf.
    six = ("import os, time\ndef main():\n    pids = []\n    for _ in range(6):\n        pid = os.fork()\n"
           "        if pid == 0:\n            block = bytearray(48 << 20)\n"
           "            for i in range(0, len(block), 4096):\n                block[i] = 1\n"
           "            time.sleep(3)\n            os._exit(0)\n        pids.append(pid)\n"
           "    return [os.waitpid(pid, 0)[1] for pid in pids]")
    before = oom_kills_all()
    runs_before = run_leaves()
    verdict("6 children of 48 MiB in a 64 MiB run", six, (422, "memory_limit"), memory=64, timeout=120)
    after = oom_kills_all()
    check("the run's OOM kills counted (worker memory.events, hierarchical)", after > before,
          f"oom_kill {before} -> {after}")
    within = six.replace("range(6)", "range(2)").replace("48 << 20", "24 << 20")
    body = verdict("2 children of 24 MiB in a 256 MiB run", within, (200, None), memory=256, timeout=120)
    gone = wait_for(lambda: (runs_before - run_leaves()) or None, 30)
    check("a run's leaf is removed after its run", bool(gone), f"{sorted(runs_before)} -> {sorted(run_leaves())}")
    verdict("3 GB allocation", "def main():\n    x = bytearray(3 * 1024 ** 3)\n    return len(x)",
            (422, "memory_limit"), memory=128)
    before = oom_kills_all()
    children = ("import os\ndef main():\n    for _ in range(24):\n        if os.fork() == 0:\n            try:\n"
                "                x = b'x' * (200 * 1024 * 1024)\n                import time\n"
                "                time.sleep(2)\n            finally:\n                os._exit(0)\n"
                "    while True:\n        try:\n            os.wait()\n        except ChildProcessError:\n"
                "            return 'children done'")
    body = verdict("24 forked children of 200 MiB", children, (422, "memory_limit"),
                   wait=200, memory=MAX_MEMORY_MIB, timeout=180)
    after = oom_kills_all()
    check("OOM kills counted in the worker leaf's memory.events", after > before, f"oom_kill {before} -> {after}")
    bomb = ("import os\ndef main():\n    n = 0\n    try:\n        while True:\n            if os.fork() == 0:\n"
            "                import time\n                time.sleep(100)\n            n += 1\n"
            "    except OSError as e:\n        return {'forked': n, 'error': type(e).__name__}")
    status, body, took = execute(bomb, timeout=60)
    forked = body.get("result", {}).get("forked", 999) if isinstance(body.get("result"), dict) else 999
    check("process cap stops a fork bomb", status == 200 and forked < 64, f"{status} forked={forked} in {took:.1f} s")
    classic = "import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass"
    verdict("classic fork bomb ends in its timeout", classic, (422, "timeout"), timeout=3)
    verdict("timeout", "def main():\n    while True:\n        pass", (422, "timeout"), timeout=2)
    verdict("service answers after the attacks", "def main():\n    return 'alive'", (200, None))

    # A dead worker is replaced (when a request finds it dead), and its leaf
    # goes with it.
    before_leaves = set(leaves())
    nsjails = jails(proc.pid)
    if nsjails:
        os.kill(nsjails[0], signal.SIGKILL)
    time.sleep(1)
    try:
        # It waits for the replacement to import numpy and pandas (~30 s here).
        verdict("request after the worker was killed", "def main():\n    return 'new worker'", (200, None), wait=230)
    except TimeoutError:
        check("request after the worker was killed", False, "no answer in 230 s")
        for leaf_dir in [f"{POD}/supervisor", *leaves().values(), *(f"{w}/zygote" for w in leaves().values())]:
            for pid in read(f"{leaf_dir}/cgroup.procs").split():
                cmd = read(f"/proc/{pid}/cmdline").replace("\0", " ")[:120] if os.path.exists(f"/proc/{pid}") else "?"
                state = read(f"/proc/{pid}/stat").split()[2] if os.path.exists(f"/proc/{pid}") else "?"
                print(f"[driver] {leaf_dir.removeprefix(CG)} pid {pid} {state} {cmd}", flush=True)

    # The pool's worker and its hot standby each have a leaf: the killed
    # one's leaf goes, and a replacement's leaf appears.
    def replaced_leaf() -> set[str] | None:
        now = set(leaves())
        return now if (before_leaves - now) and (now - before_leaves) else None

    replaced = wait_for(replaced_leaf, 60)
    check("killed worker's leaf removed and a new one created", bool(replaced),
          f"{sorted(before_leaves)} -> {sorted(set(leaves()))}")

    status, text = http("GET", "/metrics")
    text = text if isinstance(text, str) else ""
    memory_limit = metric(text, 'pyexec_requests_total{kind="memory_limit"')
    check("/metrics serves", status == 200 and "pyexec_" in text, f"memory_limit outcomes={memory_limit}")
    for line in text.splitlines():
        if line.startswith(("pyexec_requests_total", "pyexec_worker_recycles_total", "pyexec_worker_spawns_total")):
            print(f"[driver] metric {line}", flush=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    check("leaves removed at shutdown", wait_for(lambda: not leaves(), 30) is not None or not leaves(),
          f"left: {sorted(leaves())}")
    return 1 if failures else 0


if __name__ == "__main__":
    ADDR: str | None = None
    try:
        code = main()
    except Exception as e:  # noqa: BLE001 - report anything to the host
        print(f"[check] FAIL driver crashed: {type(e).__name__}: {e}", flush=True)
        code = 1
    print(f"VM-RESULT {'pass' if code == 0 else 'fail'} ({', '.join(failures) or 'all checks passed'})", flush=True)
    sys.exit(code)
