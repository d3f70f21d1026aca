//! Attacks on the service through the worker: a run writes garbage and
//! forged frames to every fd it has, closes them, signals every process it
//! can see, or stops itself. The control socket is never among its fds
//! (CONTRACT section 3), so the worst a run can do is spoil its own answer.

use serde_json::json;

use crate::common::{value, Service};
use crate::{run_all, Attack, Expect};

/// A run may spoil its own answer, never another's: any well-formed answer
/// about this run is acceptable, a 5xx is not.
fn own_answer(status: u16, answer: &serde_json::Value) -> bool {
    (status == 200 || status == 422) && answer["kind"] != "internal"
}

fn worker_attacks() -> Vec<Attack> {
    vec![
        Attack::new(
            "garbage, oversized frame headers and forged frames to every fd",
            "import msgpack\ndef main():\n    forged_result = msgpack.packb({'outcome': 'ok', 'result': b'\"forged\"', 'error': None, 'traceback': None})\n    forged_frame = len(forged_result).to_bytes(4, 'big') + forged_result\n    payloads = [b'\\xff\\xff\\xff\\xff' + os.urandom(4096), forged_frame, os.urandom(65536), b'\\x00' * 8]\n    hit = 0\n    for fd in range(1024):\n        for payload in payloads:\n            try:\n                os.write(fd, payload)\n                hit += 1\n            except OSError:\n                pass\n    return hit",
            Expect::Verdict("this run's own answer (200 or 422), never a 5xx", own_answer),
        ),
        Attack::new(
            "a forged, well-formed result message, then exit",
            "import msgpack\ndef main():\n    forged = msgpack.packb({'outcome': 'ok', 'result': b'{\"forged\": true}', 'error': None, 'traceback': None}, use_bin_type=True)\n    for fd in range(3, 64):\n        try:\n            os.write(fd, forged)\n        except OSError:\n            pass\n    os._exit(0)",
            Expect::Verdict("this run's own answer (200 or 422), never a 5xx", own_answer),
        ),
        Attack::new(
            "close every fd, then return",
            "def main():\n    os.closerange(0, 65536)\n    return 'closed'",
            // The result channel sits above the run's RLIMIT_NOFILE, but a
            // closerange past it still reaches it: the answer says so.
            Expect::Kind(422, "runtime_error"),
        ),
        Attack::new(
            "SIGKILL every process it can see (kill -1)",
            "import signal, time\ndef main():\n    child = os.fork()\n    if child == 0:\n        time.sleep(30)\n        os._exit(0)\n    os.kill(-1, signal.SIGKILL)\n    _, status = os.waitpid(child, 0)\n    return {'own_child_killed': os.WIFSIGNALED(status), 'still_alive': True}",
            Expect::Result(json!({"own_child_killed": true, "still_alive": true})),
        ),
        Attack::new(
            "signal the run's init (pid 1) with SIGKILL, SIGTERM, SIGSTOP",
            "import signal\ndef main():\n    for sig in [signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP, signal.SIGINT]:\n        os.kill(1, sig)\n    return 'init ignores them'",
            Expect::Result(json!("init ignores them")),
        ),
        Attack::new(
            "signal every pid number (looking for nsjail or the zygote)",
            "import signal\ndef main():\n    reached = []\n    for pid in range(3, 4096):\n        try:\n            os.kill(pid, signal.SIGKILL)\n            reached.append(pid)\n        except OSError:\n            pass\n    return reached",
            Expect::Result(json!([])),
        ),
        Attack::new(
            "SIGSTOP itself",
            "import signal\ndef main():\n    os.kill(os.getpid(), signal.SIGSTOP)\n    return 'resumed'",
            Expect::Kind(422, "timeout"),
        )
        .timeout(1.5),
        Attack::new(
            "SIGSTOP its whole process group",
            "import signal\ndef main():\n    os.killpg(0, signal.SIGSTOP)\n    return 'resumed'",
            Expect::Kind(422, "timeout"),
        )
        .timeout(1.5),
        Attack::new(
            "exit through os._exit without a result",
            "def main():\n    os._exit(3)",
            Expect::Kind(422, "killed"),
        ),
        Attack::new(
            "segfault",
            "def main():\n    ctypes.string_at(0)",
            Expect::Kind(422, "killed"),
        ),
    ]
}

#[tokio::test]
async fn worker_attacks_spoil_only_the_runs_own_answer() {
    let service = Service::start(&["--workers", "1"]).await;
    let spawns = |text: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with("pyexec_worker_spawns_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // The pool's one worker and its hot standby are both started before the
    // attacks, so a later spawn can only be a replacement.
    let started = (1 + pyexec::pool::HOT_STANDBY) as f64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut before = service.metrics().await;
    while spawns(&before) < started {
        assert!(std::time::Instant::now() < deadline, "the hot standby never started:\n{before}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        before = service.metrics().await;
    }
    run_all(&service, "worker", worker_attacks()).await;
    // Signals and fds never reached the zygote or nsjail: the one worker
    // was never replaced.
    let after = service.metrics().await;
    assert_eq!(spawns(&before), spawns(&after), "no worker was replaced:\n{after}");
    assert_eq!(
        value(&after, "pyexec_workers{state=\"idle\"}") + value(&after, "pyexec_workers{state=\"busy\"}"),
        1.0
    );
}
