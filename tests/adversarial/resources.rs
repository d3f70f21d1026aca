//! Resource abuse: each attack tries to exhaust one resource of the worker
//! or the host; each must end in its run's own verdict, never in a slow,
//! crashed or wedged service.

use serde_json::{json, Value};

use crate::common::Service;
use crate::{run_all, Attack, Expect};

/// Busy loops and sleeps get a short timeout so the suite stays quick.
const SHORT: f64 = 1.5;

fn as_u64(answer: &Value, field: &str) -> u64 {
    answer["result"][field].as_u64().unwrap_or(u64::MAX)
}

fn resource_attacks() -> Vec<Attack> {
    vec![
        Attack::new(
            "fork bomb (forks until refused)",
            "def main():\n    n = 0\n    try:\n        while True:\n            if os.fork() == 0:\n                import time\n                time.sleep(100)\n            n += 1\n    except OSError as e:\n        return {'forked': n, 'error': _errno_name(e.errno)}",
            Expect::Answer("EAGAIN after fewer than 64 forks", |a| {
                a["result"]["error"] == "EAGAIN" && as_u64(a, "forked") < 64
            }),
        ),
        Attack::new(
            "fork bomb (classic, ignores errors)",
            "def main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass",
            Expect::Kind(422, "timeout"),
        )
        .timeout(SHORT),
        Attack::new(
            "thread bomb",
            "import threading, time\ndef main():\n    threads = []\n    try:\n        while True:\n            t = threading.Thread(target=time.sleep, args=(100,), daemon=True)\n            t.start()\n            threads.append(t)\n    except RuntimeError as e:\n        return {'threads': len(threads), 'error': str(e)}",
            Expect::Answer("\"can't start new thread\" after fewer than 64 threads", |a| {
                a["result"]["error"].as_str().is_some_and(|e| e.contains("can't start new thread"))
                    && as_u64(a, "threads") < 64
            }),
        ),
        Attack::new(
            "memory bomb: one 3 GiB bytearray",
            "def main():\n    return len(bytearray(3 * 1024 ** 3))",
            Expect::Kind(422, "memory_limit"),
        ),
        Attack::new(
            "memory bomb: a list growing 50 MiB at a time",
            "def main():\n    chunks = []\n    while True:\n        chunks.append(bytearray(50 * 1024 * 1024))",
            Expect::Kind(422, "memory_limit"),
        ),
        Attack::new(
            "memory bomb: numpy 3 GiB array",
            "import numpy as np\ndef main():\n    return float(np.ones(3 * 1024 ** 3 // 8).sum())",
            Expect::Kind(422, "memory_limit"),
        ),
        Attack::new(
            "memory bomb: numpy arrays touched page by page",
            "import numpy as np\ndef main():\n    arrays = []\n    while True:\n        a = np.empty(64 * 1024 * 1024 // 8)\n        a.fill(1.0)\n        arrays.append(a)",
            Expect::Kind(422, "memory_limit"),
        ),
        Attack::new(
            "memory bomb in 24 forked children, 200 MiB each (past the worker's cgroup)",
            "def main():\n    for _ in range(24):\n        if os.fork() == 0:\n            try:\n                x = b'x' * (200 * 1024 * 1024)\n                import time\n                time.sleep(2)\n            finally:\n                os._exit(0)\n    while True:\n        try:\n            os.wait()\n        except ChildProcessError:\n            return 'children done'",
            Expect::Verdict(
                "the OOM killer takes run processes, never the zygote: 200 or 422 memory_limit/killed/timeout",
                // On a busy or slow host, 24 children faulting in 200 MiB each
                // under the cgroup's reclaim can outlast the 10 s timeout; what
                // this attack tests is that the zygote survives, which the
                // follow-up request checks.
                |status, a| {
                    (status == 200 && a["result"] == "children done")
                        || (status == 422
                            && (a["kind"] == "memory_limit" || a["kind"] == "killed" || a["kind"] == "timeout"))
                },
            ),
        ),
        Attack::new(
            "stdout flood: 200 MiB from Python",
            "def main():\n    chunk = 'x' * (1024 * 1024)\n    for _ in range(200):\n        sys.stdout.write(chunk)\n    return 'flooded'",
            Expect::Answer("result kept, stdout cut at 1 MiB and marked truncated", |a| {
                a["result"] == "flooded"
                    && a["stdout_truncated"] == true
                    && a["stdout"].as_str().map(str::len) == Some(1 << 20)
            }),
        )
        .timeout(30.0),
        Attack::new(
            "stderr flood from a subprocess (yes) killed after 1 s",
            "import subprocess, time\ndef main():\n    p = subprocess.Popen(['/usr/bin/yes'], stdout=2)\n    time.sleep(1)\n    p.kill()\n    p.wait()\n    return 'flooded'",
            Expect::Answer("result kept, stderr truncated", |a| a["result"] == "flooded" && a["stderr_truncated"] == true),
        ),
        Attack::new(
            "disk fill: one huge file in /tmp",
            "def main():\n    written = 0\n    try:\n        with open('/tmp/big', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)\n                written += 1\n    except OSError as e:\n        return {'mib': written, 'error': _errno_name(e.errno)}",
            Expect::Answer("EFBIG or ENOSPC within the 64 MiB cap", |a| {
                as_u64(a, "mib") <= 64 && a["result"]["error"].as_str().is_some_and(|e| e == "EFBIG" || e == "ENOSPC")
            }),
        ),
        Attack::new(
            "disk fill: inodes (empty files until refused)",
            "def main():\n    n = 0\n    try:\n        while True:\n            os.close(os.open(f'/tmp/f{n}', os.O_CREAT | os.O_WRONLY))\n            n += 1\n    except OSError as e:\n        return {'files': n, 'error': _errno_name(e.errno)}",
            Expect::Answer("ENOSPC within the 16384-inode cap", |a| {
                as_u64(a, "files") <= 16384 && a["result"]["error"] == "ENOSPC"
            }),
        ),
        Attack::new(
            "huge result (50 MB string)",
            "def main():\n    return 'x' * (50 * 1024 * 1024)",
            Expect::Kind(422, "result_too_large"),
        ),
        Attack::new(
            "deep recursion",
            "def main():\n    def f(n):\n        return f(n + 1)\n    return f(0)",
            Expect::Kind(422, "runtime_error"),
        ),
        Attack::new(
            "deep recursion past the C stack (recursion limit raised)",
            "def main():\n    sys.setrecursionlimit(10 ** 8)\n    def f(n):\n        return f(n + 1) + 1\n    return f(0)",
            // Python 3.11 keeps pure-Python frames off the C stack, so this
            // fills the run's memory with frames until an error (or the
            // timeout, on a slow machine: formatting millions of frames).
            Expect::Verdict("422 runtime_error, killed or timeout", |status, a| {
                status == 422 && ["runtime_error", "killed", "timeout"].iter().any(|kind| a["kind"] == *kind)
            }),
        )
        .timeout(SHORT),
        Attack::new("infinite loop", "def main():\n    while True:\n        pass", Expect::Kind(422, "timeout")).timeout(SHORT),
        Attack::new("sleep", "import time\ndef main():\n    time.sleep(3600)", Expect::Kind(422, "timeout")).timeout(SHORT),
        Attack::new(
            "busy loop that ignores every catchable signal",
            "import signal\ndef main():\n    for sig in signal.valid_signals():\n        try:\n            signal.signal(sig, signal.SIG_IGN)\n        except (OSError, ValueError):\n            pass\n    while True:\n        pass",
            Expect::Kind(422, "timeout"),
        )
        .timeout(SHORT),
        Attack::new(
            "a child that outlives main() and keeps writing",
            "import time\ndef main():\n    if os.fork() == 0:\n        while True:\n            try:\n                os.write(1, b'still here\\n')\n            except OSError:\n                pass\n            time.sleep(0.01)\n    time.sleep(0.2)\n    return 'parent done'",
            Expect::Answer("the parent's result; the child dies with the run", |a| {
                a["result"] == "parent done"
                    && a["stdout"].as_str().is_some_and(|out| out.starts_with("still here\n"))
            }),
        ),
        Attack::new(
            "a setsid daemon that detaches and sleeps",
            "import subprocess\ndef main():\n    subprocess.Popen(['/bin/sh', '-c', 'sleep 1000 &'], start_new_session=True)\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            import time\n            time.sleep(1000)\n        os._exit(0)\n    return 'detached'",
            Expect::Result(json!("detached")),
        ),
        Attack::new(
            "raise its own hard limits",
            "import resource\ndef main():\n    out = {}\n    for name in ['RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_AS', 'RLIMIT_CPU']:\n        limit = getattr(resource, name)\n        try:\n            resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n            out[name] = 'ALLOWED'\n        except (OSError, ValueError) as e:\n            out[name] = type(e).__name__\n    return out",
            Expect::AllRefused,
        ),
        Attack::new(
            "open files until refused",
            "def main():\n    fds = []\n    try:\n        while True:\n            fds.append(os.open('/dev/null', os.O_RDONLY))\n    except OSError as e:\n        return {'opened': len(fds), 'error': _errno_name(e.errno)}",
            Expect::Answer("EMFILE within the 256-fd cap", |a| {
                a["result"]["error"] == "EMFILE" && as_u64(a, "opened") <= 256
            }),
        ),
    ]
}

#[tokio::test]
async fn resource_abuse_ends_in_the_runs_own_verdict() {
    let service = Service::start(&["--workers", "1"]).await;
    run_all(&service, "resources", resource_attacks()).await;
}
