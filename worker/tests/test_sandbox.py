"""End to end: the real zygote under real nsjail, over a socketpair.

Every test that abuses the sandbox then checks that the same zygote still
answers a trivial run (``healthy``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

import sandbox
from sandbox import Zygote

# zygote + the plain and the plotting fork server + an init and a runner
# per spare (the plain ones and the one plotting spare)
# The zygote, the plain and the plotting fork server and a standby copy of
# each, then (init + runner) for every plain spare and the plotting spare.
EXPECTED_TREE = 5 + 2 * (sandbox.LIMITS["spares"] + 1)

# Where the sandbox must be there (scripts/test.sh sets PYEXEC_REQUIRE_SANDBOX=1),
# its absence fails the suite instead of skipping it.
if os.environ.get("PYEXEC_REQUIRE_SANDBOX") == "1" and not sandbox.available():
    raise RuntimeError(
        "PYEXEC_REQUIRE_SANDBOX=1, but root, nsjail or the sandbox venv is missing: see scripts/install.sh"
    )
pytestmark = pytest.mark.skipif(not sandbox.available(), reason="needs root, nsjail and the sandbox venv")

TRIVIAL = 'def main():\n    return {"sum": 2 + 2}\n'


@pytest.fixture(scope="module")
def worker_dir():
    path = sandbox.copy_worker()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def zygote(worker_dir):
    z = Zygote(worker_dir)
    z.ready = z.recv()
    yield z
    assert z.close() == 0


def healthy(z: Zygote) -> None:
    reply = z.run(TRIVIAL)
    assert (reply["outcome"], reply["result"]) == ("ok", b'{"sum":4}'), reply


def result(reply: dict):
    assert reply["outcome"] == "ok", (reply["error"], reply["traceback"], reply["stderr"])
    return json.loads(reply["result"])


def proc_stat(pid: int) -> dict:
    """The fields of /proc/<pid>/stat a test looks at ({} once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return {}
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid, pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
    return {"pid": pid, "comm": comm, "state": state, "ppid": int(ppid), "pgrp": int(pgrp), "session": int(session)}


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = proc_stat(int(entry)).get("ppid")
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def settled_tree(pid: int, expected: int, limit_s: float = 5.0) -> set[int]:
    """The descendants of ``pid`` once they are ``expected`` many and the
    same set twice in a row 100 ms apart (or whatever is there at the limit).
    """
    deadline = time.monotonic() + limit_s
    previous: set[int] = set()
    while True:
        tree = descendants(pid)
        if (len(tree) == expected and tree == previous) or time.monotonic() > deadline:
            return tree
        previous = tree
        time.sleep(0.1)


# --- start-up and protocol ---------------------------------------------------


def test_ready_says_version_and_versions(zygote):
    ready = zygote.ready
    assert list(ready) == ["type", "version", "pid", "python", "numpy", "pandas"]
    assert ready["type"] == "ready" and ready["version"] == 2
    assert ready["python"].startswith("3.") and ready["numpy"] and ready["pandas"]


def test_trivial_run(zygote):
    reply = zygote.run(TRIVIAL)
    assert reply["result"] == b'{"sum":4}'
    assert reply["error"] is None and reply["traceback"] is None
    assert isinstance(reply["duration_ms"], float) and 0 < reply["duration_ms"] < 1000


def test_ping_pong_idle_and_during_a_run(zygote):
    zygote.send({"type": "ping", "id": 77})
    assert zygote.recv() == {"type": "pong", "id": 77}
    zygote.next_id += 1
    zygote.send(
        {
            "type": "run",
            "id": zygote.next_id,
            "script": "import time\ndef main():\n    time.sleep(0.3)\n    return 1",
            "timeout_ms": 5000,
            "memory_bytes": 256 << 20,
            "max_output_bytes": 1024,
            "max_result_bytes": 1024,
            "files": [],
            "max_figures": 0,
            "max_figures_bytes": 1,
        }
    )
    time.sleep(0.05)
    zygote.send({"type": "ping", "id": 78})
    assert zygote.recv() == {"type": "pong", "id": 78}
    reply = zygote.recv()
    assert reply["type"] == "result" and reply["result"] == b"1"


def test_stdout_and_stderr_captured_at_fd_level(zygote):
    script = (
        "import os, subprocess, sys\n"
        "def main():\n"
        "    print('from print')\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    os.write(1, b'raw fd 1\\n')\n"
        "    subprocess.run(['/bin/echo', 'from a subprocess'], check=True)\n"
        "    return None\n"
    )
    reply = zygote.run(script)
    assert reply["result"] == b"null"
    assert b"from print\n" in reply["stdout"]
    assert b"raw fd 1\n" in reply["stdout"]
    assert b"from a subprocess\n" in reply["stdout"]
    assert reply["stderr"] == b"to stderr\n"
    assert not reply["stdout_truncated"] and not reply["stderr_truncated"]


# --- verdicts ----------------------------------------------------------------


def test_syntax_error(zygote):
    reply = zygote.run("x = 1\ndef main(:\n    pass\n")
    assert reply["outcome"] == "syntax_error" and "line 2" in reply["error"]
    healthy(zygote)


def test_missing_main(zygote):
    reply = zygote.run("print('hi')\n")
    assert (reply["outcome"], reply["error"], reply["stdout"]) == ("missing_main", "main() is not defined", b"hi\n")


def test_runtime_error_traceback(zygote):
    reply = zygote.run("import numpy as np\n\ndef main():\n    print('before')\n    return 1 / 0\n")
    assert reply["outcome"] == "runtime_error"
    assert reply["error"] == "ZeroDivisionError: division by zero"
    assert 'File "<script>", line 5, in main\n    return 1 / 0' in reply["traceback"]
    assert "pyexec_worker" not in reply["traceback"]
    assert reply["stdout"] == b"before\n"


def test_system_exit_is_runtime_error(zygote):
    reply = zygote.run("import sys\ndef main():\n    sys.exit(2)\n")
    assert (reply["outcome"], reply["error"]) == ("runtime_error", "SystemExit: 2")
    healthy(zygote)


def test_result_conversion(zygote):
    script = (
        "import numpy as np\n"
        "def main():\n"
        "    return {'a': np.arange(3), 'f': np.float64(0.5), 'i': np.int32(7), 's': '[1]'}\n"
    )
    assert result(zygote.run(script)) == {"a": [0, 1, 2], "f": 0.5, "i": 7, "s": "[1]"}


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("pd.DataFrame({'a': [1]})", "df.to_dict()"),
        ("pd.Series([1])", "tolist"),
        ("float('nan')", "NaN"),
        ("{1, 2}", "set"),
        ("b'x'", "bytes"),
    ],
)
def test_result_not_json(zygote, expr, needle):
    reply = zygote.run(f"import pandas as pd\ndef main():\n    return {expr}\n")
    assert reply["outcome"] == "result_not_json" and needle in reply["error"], reply


def test_result_too_large(zygote):
    reply = zygote.run("def main():\n    return 'x' * 2000\n", max_result_bytes=1000)
    assert reply["outcome"] == "result_too_large" and "1000 bytes" in reply["error"]


@pytest.mark.parametrize(
    "script",
    ["def main():\n    while True:\n        pass\n", "import time\ndef main():\n    time.sleep(60)\n"],
    ids=["cpu", "sleep"],
)
def test_timeout_near_the_deadline(zygote, script):
    reply = zygote.run(script, timeout_ms=500)
    assert reply["outcome"] == "timeout", reply
    assert 0.5 <= reply["wall_s"] < 1.5
    assert 500 <= reply["duration_ms"] < 1200
    healthy(zygote)


@pytest.mark.parametrize(
    "script",
    ["def main():\n    x = bytearray(3 << 30)\n", "import numpy as np\ndef main():\n    x = np.ones(3 << 27)\n"],
    ids=["bytearray", "numpy"],
)
def test_memory_limit(zygote, script):
    reply = zygote.run(script, memory_bytes=256 << 20)
    assert reply["outcome"] == "memory_limit", reply
    assert "MemoryError" in reply["error"]
    healthy(zygote)


def test_memory_below_the_limit_is_fine(zygote):
    reply = zygote.run("def main():\n    x = bytearray(100 << 20)\n    return len(x)\n", memory_bytes=256 << 20)
    assert result(reply) == 100 << 20


@pytest.mark.parametrize(
    "script",
    [
        "import os\ndef main():\n    os._exit(0)\n",
        "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)\n",
        "import os\ndef main():\n    os.abort()\n",
    ],
    ids=["os._exit", "self-SIGKILL", "abort"],
)
def test_killed(zygote, script):
    reply = zygote.run(script)
    assert reply["outcome"] == "killed", reply
    healthy(zygote)


def test_garbage_on_the_result_pipe_is_killed_not_a_crash(zygote):
    script = (
        "import os\n"
        "def main():\n"
        "    for fd in os.listdir('/proc/self/fd'):\n"
        "        if int(fd) > 2:\n"
        "            try:\n"
        "                os.write(int(fd), b'\\xc1garbage' * 1000)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return 1\n"
    )
    assert zygote.run(script)["outcome"] == "killed"
    healthy(zygote)


@pytest.mark.parametrize("fd", [1, 2])
def test_a_script_that_closes_its_stdout_or_stderr_keeps_its_result(zygote, fd):
    script = f"import os\ndef main():\n    print('before', flush=True)\n    os.close({fd})\n    return 5\n"
    reply = zygote.run(script)
    assert (reply["outcome"], reply["result"]) == ("ok", b"5"), reply
    assert reply["stdout"] == b"before\n"
    healthy(zygote)


def test_closing_every_fd_up_to_the_open_limit_keeps_the_result(zygote):
    script = (
        "import os\n"
        "def main():\n"
        "    os.closerange(3, 256)\n"
        "    os.closerange(3, os.sysconf('SC_OPEN_MAX'))\n"
        "    return 'still here'\n"
    )
    assert result(zygote.run(script)) == "still here"
    healthy(zygote)


def test_closing_the_result_channel_itself_is_named_not_killed(zygote):
    script = "import os\ndef main():\n    print('before', flush=True)\n    os.closerange(0, 1 << 20)\n    return 5\n"
    reply = zygote.run(script)
    assert reply["outcome"] == "runtime_error", reply
    assert reply["error"].startswith("the script closed the run's result channel (file descriptor 1023)")
    assert reply["stdout"] == b"before\n"
    healthy(zygote)


# --- isolation ---------------------------------------------------------------


def test_identity_capabilities_and_view(zygote):
    script = (
        "import os\n"
        "def main():\n"
        "    status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
        "    return {\n"
        "        'uid': os.getuid(), 'gid': os.getgid(), 'pid': os.getpid(), 'ppid': os.getppid(),\n"
        "        'cwd': os.getcwd(), 'pids': sorted(p for p in os.listdir('/proc') if p.isdigit()),\n"
        "        'capeff': status['CapEff'].strip(), 'capbnd': status['CapBnd'].strip(),\n"
        "        'nnp': status['NoNewPrivs'].strip(),\n"
        "        'oom': open('/proc/self/oom_score_adj').read().strip(),\n"
        "        'root': sorted(os.listdir('/')), 'tmp': os.listdir('/tmp'),\n"
        "        'fds': [os.readlink(f'/proc/self/fd/{n}') for n in range(64)\n"
        "                if os.path.exists(f'/proc/self/fd/{n}')],\n"
        "    }\n"
    )
    got = result(zygote.run(script))
    assert (got["uid"], got["gid"], got["pid"], got["ppid"]) == (1000, 1000, 2, 1)
    assert got["cwd"] == "/tmp" and got["tmp"] == []
    assert got["pids"] == ["1", "2"]  # only the run's own init and itself
    assert got["capeff"] == "0000000000000000" and got["capbnd"] == "0000000000000000"
    assert got["nnp"] == "1" and got["oom"] == "1000"
    assert not {"etc", "home", "root", "var"} & set(got["root"])
    # No socket at all (the control socket stays in the zygote), only pipes.
    assert not [t for t in got["fds"] if t.startswith("socket:")], got["fds"]


def test_fixed_environment(zygote):
    env = result(zygote.run("import os\ndef main():\n    return dict(os.environ)\n"))
    assert env == {
        "PATH": f"{sandbox.VENV}/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": f"{sandbox.VENV}/mplconfig",
    }


def test_no_network(zygote):
    script = (
        "import socket\n"
        "def main():\n"
        "    out = []\n"
        "    for addr in [('1.1.1.1', 80), ('127.0.0.1', 8080)]:\n"
        "        try:\n"
        "            socket.create_connection(addr, timeout=1)\n"
        "            out.append('connected')\n"
        "        except OSError as e:\n"
        "            out.append(type(e).__name__)\n"
        "    return out\n"
    )
    got = result(zygote.run(script))
    assert "connected" not in got


def host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 addresses (from /proc/net/fib_trie)."""
    found, last = set(), None
    for line in Path("/proc/net/fib_trie").read_text().splitlines():
        words = line.split()
        if words[:1] == ["|--"]:
            last = words[1]
        elif "/32 host LOCAL" in line and last and not last.startswith("127."):
            found.add(last)
    return sorted(found)


def test_loopback_works_inside_the_run_and_reaches_nothing_else(zygote):
    host_listener = socket.create_server(("127.0.0.1", 0))
    try:
        host_port = host_listener.getsockname()[1]
        targets = [("10.0.0.1", 80), ("127.0.0.1", host_port)] + [(a, host_port) for a in host_addresses()]
        script = (
            "import socket, threading\n"
            "def main():\n"
            "    server = socket.create_server(('127.0.0.1', 0))\n"
            "    port = server.getsockname()[1]\n"
            "    def echo():\n"
            "        conn, _ = server.accept()\n"
            "        conn.sendall(conn.recv(100).upper())\n"
            "        conn.close()\n"
            "    t = threading.Thread(target=echo)\n"
            "    t.start()\n"
            "    with socket.create_connection(('127.0.0.1', port), timeout=5) as c:\n"
            "        c.sendall(b'ping')\n"
            "        echoed = c.recv(100).decode()\n"
            "    t.join()\n"
            "    out = {}\n"
            f"    for host, p in {targets!r}:\n"
            "        try:\n"
            "            socket.create_connection((host, p), timeout=2).close()\n"
            "            out[f'{host}:{p}'] = 'connected'\n"
            "        except OSError as e:\n"
            "            out[f'{host}:{p}'] = e.errno\n"
            "    return {'echoed': echoed, 'others': out}\n"
        )
        got = result(zygote.run(script, timeout_ms=20000))
    finally:
        host_listener.close()
    assert got["echoed"] == "PING"
    others = got["others"]
    assert len(others) == len(targets) and "connected" not in others.values(), others
    # The host's listener is not there: the run's 127.0.0.1 is its own.
    assert others[f"127.0.0.1:{host_port}"] == errno.ECONNREFUSED, others
    assert others["10.0.0.1:80"] == errno.ENETUNREACH, others


def test_multiprocessing_works_with_a_private_dev_shm(zygote):
    script = (
        "import concurrent.futures, multiprocessing, os\n"
        "from multiprocessing import shared_memory\n"
        "def square(x):\n"
        "    return x * x\n"
        "def main():\n"
        "    with multiprocessing.Pool(2) as pool:\n"
        "        mapped = pool.map(square, range(10))\n"
        "    with concurrent.futures.ProcessPoolExecutor(2) as ex:\n"
        "        executed = list(ex.map(square, range(5)))\n"
        "    lock = multiprocessing.Lock()\n"
        "    with lock:\n"
        "        pass\n"
        "    q = multiprocessing.Queue()\n"
        "    p = multiprocessing.Process(target=q.put, args=('from a child',))\n"
        "    p.start()\n"
        "    child = q.get(timeout=10)\n"
        "    p.join()\n"
        "    shm = shared_memory.SharedMemory(create=True, size=1 << 20)\n"
        "    shm.buf[:5] = b'hello'\n"
        "    other = shared_memory.SharedMemory(name=shm.name)\n"
        "    seen = bytes(other.buf[:5]).decode()\n"
        "    other.close()\n"
        "    shm.close()\n"
        "    shm.unlink()\n"
        "    st = os.statvfs('/dev/shm')\n"
        "    return {'mapped': mapped, 'executed': executed, 'child': child, 'seen': seen,\n"
        "            'shm_bytes': st.f_blocks * st.f_frsize}\n"
    )
    got = result(zygote.run(script, timeout_ms=30000))
    assert got["mapped"] == [x * x for x in range(10)] and got["executed"] == [0, 1, 4, 9, 16]
    assert (got["child"], got["seen"]) == ("from a child", "hello")
    assert got["shm_bytes"] == sandbox.LIMITS["tmp_size_bytes"]
    healthy(zygote)


def test_one_runs_dev_shm_is_invisible_to_the_next(zygote):
    first = (
        "import os\n"
        "from multiprocessing import shared_memory\n"
        "def main():\n"
        "    shm = shared_memory.SharedMemory(name='pyexec_left', create=True, size=4096)\n"
        "    shm.buf[:6] = b'secret'\n"
        "    open('/dev/shm/left.txt', 'w').write('secret')\n"
        "    return sorted(os.listdir('/dev/shm'))\n"
    )
    assert result(zygote.run(first)) == ["left.txt", "pyexec_left"]
    second = (
        "import os\n"
        "def main():\n"
        "    mounts = [l for l in open('/proc/self/mountinfo') if ' /dev/shm ' in l]\n"
        "    return {'listed': os.listdir('/dev/shm'), 'writable': os.access('/dev/shm', os.W_OK),\n"
        "            'mounts': len(mounts)}\n"
    )
    for _ in range(sandbox.LIMITS["spares"] + 2):  # whichever spare serves it
        assert result(zygote.run(second)) == {"listed": [], "writable": True, "mounts": 2}
    healthy(zygote)


def test_nothing_survives_into_the_next_run(zygote):
    first = (
        "import builtins, json, os, subprocess, numpy, socket\n"
        "def main():\n"
        "    open('/tmp/leftover', 'w').write('secret')\n"
        "    numpy.pi = 3\n"
        "    json.dumps = lambda *a, **k: 'patched'\n"
        "    builtins.LEAK = 1\n"
        "    os.environ['LEAK'] = '1'\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    try:\n"
        "        s.bind(('127.0.0.1', 9999)); s.listen()\n"
        "    except OSError:\n"
        "        pass\n"
        "    subprocess.Popen(['/bin/sleep', '60'], start_new_session=True)\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        import time; time.sleep(60)\n"
        "    return 'ok'\n"
    )
    assert result(zygote.run(first)) == "ok"
    second = (
        "import builtins, json, os, numpy, socket\n"
        "def main():\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', 9999), timeout=1); conn = True\n"
        "    except OSError:\n"
        "        conn = False\n"
        "    return {'tmp': os.listdir('/tmp'), 'pi': numpy.pi, 'json': json.dumps([1]),\n"
        "            'builtin': hasattr(builtins, 'LEAK'), 'env': 'LEAK' in os.environ, 'conn': conn,\n"
        "            'pids': sorted(p for p in os.listdir('/proc') if p.isdigit())}\n"
    )
    got = result(zygote.run(second))
    assert got == {
        "tmp": [],
        "pi": 3.141592653589793,
        "json": "[1]",
        "builtin": False,
        "env": False,
        "conn": False,
        "pids": ["1", "2"],
    }
    # On the host: nsjail's tree is the zygote, the fork server and the
    # spares (a run-init and a runner each); nothing of the two runs is left.
    # The pong comes after the zygote has killed the first run; the fork
    # server then builds the replacement spares in the background, so wait
    # until the tree has settled before counting.
    zygote.send({"type": "ping", "id": 5})
    assert zygote.recv() == {"type": "pong", "id": 5}
    tree = settled_tree(zygote.proc.pid, EXPECTED_TREE)
    stats = [proc_stat(pid) for pid in sorted(tree)]
    assert len(tree) == EXPECTED_TREE, stats
    # The daemons of the first run called setsid(). Everything legitimate is
    # in nsjail's session (zygote, fork server, each spare's run-init, a
    # child of the zygote) or in the session of a spare's runner (the only
    # child of its run-init, and the leader of its own session).
    (zygote_stat,) = [s for s in stats if s["ppid"] == zygote.proc.pid]  # nsjail's child
    inits = {s["pid"] for s in stats if s["comm"] == "run-init" and s["ppid"] == zygote_stat["pid"]}
    runners = {s["pid"] for s in stats if s["ppid"] in inits and s["session"] == s["pid"]}
    assert len(inits) == len(runners) == sandbox.LIMITS["spares"] + 1, stats
    assert {s["session"] for s in stats} <= {zygote_stat["session"]} | runners, stats
    assert {s["comm"] for s in stats} == {"python3", "run-init"}, stats


def test_numpy_and_random_reseeded_per_run(zygote):
    script = "import numpy as np, random\ndef main():\n    return [np.random.rand(), random.random()]\n"
    a, b = result(zygote.run(script)), result(zygote.run(script))
    assert a[0] != b[0] and a[1] != b[1]


def test_cannot_signal_init_or_escape_namespaces(zygote):
    script = (
        "import ctypes, os, signal\n"
        "def main():\n"
        "    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):\n"
        "        os.kill(1, sig)\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    res = {'unshare_user': libc.unshare(0x10000000), 'umount_proc': libc.umount2(b'/proc', 2)}\n"
        "    try:\n"
        "        open('/proc/self/oom_score_adj', 'w').write('0')\n"
        "        res['oom'] = 'written'\n"
        "    except OSError as e:\n"
        "        res['oom'] = e.errno\n"
        "    try:\n"
        "        os.listdir('/proc/1/fd')\n"
        "        res['init_fds'] = 'listed'\n"
        "    except OSError as e:\n"
        "        res['init_fds'] = e.errno\n"
        "    return res\n"
    )
    got = result(zygote.run(script))
    assert got == {"unshare_user": -1, "umount_proc": -1, "oom": 30, "init_fds": 13}  # EROFS, EACCES
    healthy(zygote)


@pytest.mark.parametrize("call", ["os.killpg(0, signal.SIGSTOP)", "os.kill(0, signal.SIGSTOP)"])
def test_process_group_signals_reach_only_the_run(zygote, call):
    # Process groups span pid namespaces: a run in the zygote's group could
    # stop the zygote, the fork server and the other spares this way.
    reply = zygote.run(f"import os, signal\ndef main():\n    {call}\n    return 'resumed'\n", timeout_ms=500)
    assert reply["outcome"] == "timeout", reply
    healthy(zygote)
    assert [proc_stat(pid)["state"] for pid in descendants(zygote.proc.pid) if proc_stat(pid)].count("T") == 0


def test_fork_bomb_is_contained(zygote):
    script = (
        "import os, time\n"
        "def main():\n"
        "    n = 0\n"
        "    try:\n"
        "        while True:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(30)\n"
        "                os._exit(0)\n"
        "            n += 1\n"
        "    except OSError as e:\n"
        "        return [n, e.errno]\n"
    )
    n, errno = result(zygote.run(script))
    assert errno == 11 and n < sandbox.LIMITS["max_processes"]  # EAGAIN
    healthy(zygote)


def test_file_size_and_tmp_caps(zygote):
    script = (
        "import errno\n"
        "def main():\n"
        "    try:\n"
        "        with open('/tmp/big', 'wb') as f:\n"
        "            f.write(b'x' * (32 << 20))\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
    )
    assert result(zygote.run(script)) == "EFBIG"


def test_200mb_print_is_truncated_not_hung(zygote):
    script = "import sys\ndef main():\n    s = 'x' * (1 << 20)\n    for _ in range(200):\n"
    script += "        sys.stdout.write(s)\n    return 1\n"
    reply = zygote.run(script, max_output_bytes=1 << 20, timeout_ms=20000)
    assert reply["result"] == b"1"
    assert reply["stdout_truncated"] and len(reply["stdout"]) == 1 << 20
    assert reply["wall_s"] < 10
    healthy(zygote)


# --- lifecycle ---------------------------------------------------------------


def test_eof_kills_spare_and_exits_zero(worker_dir):
    z = Zygote(worker_dir)
    assert z.recv()["type"] == "ready"
    pid = z.proc.pid
    assert z.close() == 0
    assert not descendants(pid)


def test_oversized_frame_exits_non_zero(worker_dir):
    z = Zygote(worker_dir, max_frame=1000)
    assert z.recv()["type"] == "ready"
    z.sock.sendall(sandbox.protocol.HEADER.pack(1001))
    reply = z.recv()
    assert reply["type"] == "fatal" and "exceeds --max-frame-bytes 1000" in reply["error"]
    assert z.close() != 0


def test_fatal_when_namespaces_cannot_be_created(worker_dir):
    z = Zygote(worker_dir, proc_rw=False)  # read-only /proc: uid_map cannot be written
    reply = z.recv()
    assert reply["type"] == "fatal"
    assert "setgroups" in reply["error"] and "Read-only file system" in reply["error"], reply
    assert z.close() != 0


def test_shared_zygote_survived_the_whole_module(zygote):
    assert zygote.proc.poll() is None
    healthy(zygote)


def test_input_files_usage_and_a_figure_through_the_zygote(zygote):
    script = (
        "import matplotlib.pyplot as plt\n"
        "def main():\n"
        "    plt.figure(figsize=(2, 1), dpi=30)\n"
        "    return open('in.txt').read()\n"
    )
    reply = zygote.run(script, files=[{"name": "in.txt", "data": b"hello"}])
    assert result(reply) == "hello"
    [figure] = reply["figures"]
    assert (figure["format"], figure["width"], figure["height"]) == ("png", 60, 30)
    assert figure["data"].startswith(b"\x89PNG") and reply["figures_truncated"] is False
    run_usage = reply["usage"]
    assert run_usage["wall_ms"] > 0 and run_usage["cpu_ms"] > 0 and run_usage["max_rss_kib"] > 10_000


def test_input_files_import_as_modules_but_never_shadow_the_stdlib(zygote):
    # Neither tabnanny (stdlib) nor helpers is imported by the warm
    # zygote, so the import below really searches sys.path.
    files = [
        {"name": "helpers.py", "data": b"def double(x):\n    return 2 * x\n"},
        {"name": "tabnanny.py", "data": b"raise SystemExit('shadowed the standard library')\n"},
    ]
    script = (
        "import sys\n"
        "def main():\n"
        "    fresh = 'tabnanny' not in sys.modules and 'helpers' not in sys.modules\n"
        "    import tabnanny, helpers\n"
        "    return [fresh, helpers.double(21), tabnanny.__file__]\n"
    )
    fresh, doubled, where = result(zygote.run(script, files=files))
    assert (fresh, doubled) == (True, 42)
    assert where.endswith("/tabnanny.py") and not where.startswith("/tmp/"), where
    # The next run's sys.path holds /tmp once: nothing carried over.
    assert result(zygote.run("import sys\ndef main():\n    return sys.path.count('/tmp')\n")) == 1
    healthy(zygote)


def test_usage_of_a_killed_run_comes_from_its_init(zygote):
    reply = zygote.run("import os\ndef main():\n    os.kill(os.getpid(), 9)\n")
    assert reply["outcome"] == "killed"
    run_usage = reply["usage"]
    # cpu excludes the spare's warm-up (prefault, idle walk): a few ms at most.
    assert run_usage["cpu_ms"] is not None and 0 <= run_usage["cpu_ms"] < 500
    assert run_usage["max_rss_kib"] > 10_000


def test_matplotlib_is_preloaded_with_agg_and_writes_nothing_in_the_run(zygote):
    script = (
        "import sys, os\n"
        "def main():\n"
        "    import matplotlib\n"
        "    return [matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules, os.listdir('/tmp')]\n"
    )
    assert result(zygote.run(script)) == ["Agg", True, []]


def test_runs_that_draw_nothing_get_a_spare_without_matplotlib(zygote):
    # The word is split so that the script itself does not look like drawing.
    plain = "import sys\ndef main():\n    return sorted(m for m in sys.modules if m.startswith('matplot' + 'lib'))\n"
    assert result(zygote.run(plain)) == []
    drawing = "import sys\ndef main():\n    return 'matplotlib.pyplot' in sys.modules\n"
    assert result(zygote.run(drawing)) is True


def test_a_script_that_draws_without_saying_so_still_gets_its_figure(zygote):
    # No drawing word in the text: a plain spare; matplotlib is imported by
    # the script itself (slower, same answer).
    script = (
        "import importlib, sys\n"
        "def main():\n"
        "    was_loaded = 'matplot' 'lib' in sys.modules\n"
        "    pp = importlib.import_module('matplot' 'lib.py' 'plot')\n"
        "    pp.figure(figsize=(2, 1), dpi=30)\n"
        "    return [was_loaded, pp.get_backend()]\n"
    )
    reply = zygote.run(script, timeout_ms=30_000)
    assert result(reply) == [False, "agg"], reply["stderr"]
    [figure] = reply["figures"]
    assert (figure["width"], figure["height"]) == (60, 30)
    print(f"matplotlib imported by the run itself: {reply['wall_s'] * 1000:.0f} ms; stderr {reply['stderr'][:200]!r}")
