//! Limits and verdicts: timeouts, memory, fork bombs, output floods. After
//! each, the next request must be answered normally and quickly.

mod common;

use std::time::{Duration, Instant};

use common::Service;
use serde_json::json;

async fn next_request_is_fast(service: &Service) {
    let started = Instant::now();
    let body = service.ok("def main():\n    return 'next'").await;
    assert_eq!(body["result"], "next");
    assert!(started.elapsed() < Duration::from_secs(3), "next request took {:?}", started.elapsed());
}

async fn timed(service: &Service, body: serde_json::Value) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let (status, answer) = service.execute_body(body).await;
    (status, answer, started.elapsed())
}

#[tokio::test]
async fn infinite_loop_times_out_near_the_timeout() {
    let service = Service::start(&[]).await;
    let (status, body, took) =
        timed(&service, json!({"script": "def main():\n    while True:\n        pass", "timeout": 1.0}))
            .await;
    assert_eq!((status, body["kind"].as_str()), (422, Some("timeout")), "{body}");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_millis(2500), "took {took:?}");
    next_request_is_fast(&service).await;
}

#[tokio::test]
async fn sleep_times_out_near_the_timeout_and_keeps_output() {
    let service = Service::start(&[]).await;
    let script = "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(60)";
    let (status, body, took) = timed(&service, json!({"script": script, "timeout": 0.5})).await;
    assert_eq!((status, body["kind"].as_str()), (422, Some("timeout")), "{body}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(2000), "took {took:?}");
    assert_eq!(body["stdout"], "started\n");
    next_request_is_fast(&service).await;
}

#[tokio::test]
async fn timeout_above_the_server_maximum_is_refused() {
    let service = Service::start(&["--max-timeout-secs", "5", "--default-timeout-secs", "5"]).await;
    service
        .execute_expecting(
            json!({"script": "def main():\n    return 1", "timeout": 6}),
            400,
            "invalid_request",
        )
        .await;
}

#[tokio::test]
async fn big_allocations_hit_the_memory_limit() {
    let service = Service::start(&[]).await;
    for script in [
        "def main():\n    x = bytearray(3 * 1024 ** 3)\n    return len(x)",
        "import numpy as np\ndef main():\n    return float(np.ones((3 * 1024 ** 3) // 8).sum())",
        "def main():\n    chunks = []\n    while True:\n        chunks.append(bytearray(50 * 1024 * 1024))",
    ] {
        service.run_expecting(script, 422, "memory_limit").await;
        next_request_is_fast(&service).await;
    }
}

#[tokio::test]
async fn memory_limit_is_per_request() {
    let service = Service::start(&[]).await;
    let script = "def main():\n    x = bytearray(100 * 1024 * 1024)\n    return len(x)";
    service.execute_expecting(json!({"script": script, "memory": 64}), 422, "memory_limit").await;
    let (status, body) = service.execute_body(json!({"script": script, "memory": 512})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], 100 * 1024 * 1024);
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let service = Service::start(&[]).await;
    let script = "import os\ndef main():\n    n = 0\n    try:\n        while True:\n            if os.fork() == 0:\n                import time\n                time.sleep(100)\n            n += 1\n    except OSError as e:\n        return {'forked': n, 'error': type(e).__name__}";
    let (status, body) = service.execute_body(json!({"script": script, "timeout": 10})).await;
    assert_eq!(status, 200, "{body}");
    let forked = body["result"]["forked"].as_u64().expect("count");
    assert!(forked < 64, "the process cap stops the bomb early, forked {forked}");
    next_request_is_fast(&service).await;

    let classic = "import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass";
    service.execute_expecting(json!({"script": classic, "timeout": 1}), 422, "timeout").await;
    next_request_is_fast(&service).await;
}

#[tokio::test]
async fn output_flood_is_truncated() {
    let service = Service::start(&[]).await;
    let script = "import sys\ndef main():\n    chunk = 'x' * (1024 * 1024)\n    for _ in range(200):\n        sys.stdout.write(chunk)\n    print('err', file=sys.stderr)\n    return 'done'";
    let (status, body) = service.execute_body(json!({"script": script, "timeout": 30})).await;
    assert_eq!(status, 200, "{}", &body.to_string()[..200.min(body.to_string().len())]);
    assert_eq!(body["result"], "done");
    assert_eq!(body["stdout_truncated"], true);
    assert_eq!(body["stdout"].as_str().expect("stdout").len(), 1024 * 1024);
    assert_eq!(body["stderr"], "err\n");
    next_request_is_fast(&service).await;
}

#[tokio::test]
async fn fd_level_output_of_subprocesses_is_captured() {
    let service = Service::start(&[]).await;
    let body = service
        .ok("import os, subprocess\ndef main():\n    os.write(1, b'raw fd\\n')\n    subprocess.run(['/bin/echo', 'from child'])\n    return 0")
        .await;
    assert_eq!(body["stdout"], "raw fd\nfrom child\n");
}

#[tokio::test]
async fn disk_fill_is_capped() {
    let service = Service::start(&[]).await;
    let script = "def main():\n    written = 0\n    try:\n        with open('/tmp/big', 'wb') as f:\n            while True:\n                f.write(b'x' * 1024 * 1024)\n                written += 1\n    except OSError as e:\n        return {'mib': written, 'error': type(e).__name__}";
    let body = service.ok(script).await;
    assert!(body["result"]["mib"].as_u64().expect("mib") <= 64, "{body}");
    next_request_is_fast(&service).await;
}
