//! /metrics moves by exactly what was sent.

mod common;

use std::time::Duration;

use common::{sample, value, Service};
use serde_json::json;

#[tokio::test]
async fn counters_and_histograms_move_by_exactly_the_traffic() {
    let service = Service::start(&[]).await;
    let before = service.metrics().await;
    assert_eq!(sample(&before, "pyexec_pool_size"), Some(2.0));
    assert_eq!(sample(&before, "pyexec_worker_spawns_total"), Some(2.0));
    assert_eq!(sample(&before, "pyexec_workers{state=\"idle\"}"), Some(2.0));
    assert_eq!(sample(&before, "pyexec_requests_total{kind=\"ok\"}"), Some(0.0));

    for _ in 0..3 {
        service.ok("def main():\n    return 1").await;
    }
    for _ in 0..2 {
        let (status, _) = service.run("def main():\n    raise KeyError('x')").await;
        assert_eq!(status, 422);
    }
    let (status, _) = service
        .execute_body(json!({"script": "import time\ndef main():\n    time.sleep(5)", "timeout": 0.3}))
        .await;
    assert_eq!(status, 422);
    let (status, _) = service.run("").await;
    assert_eq!(status, 400);

    let after = service.metrics().await;
    assert_eq!(sample(&after, "pyexec_requests_total{kind=\"ok\"}"), Some(3.0));
    assert_eq!(sample(&after, "pyexec_requests_total{kind=\"runtime_error\"}"), Some(2.0));
    assert_eq!(sample(&after, "pyexec_requests_total{kind=\"timeout\"}"), Some(1.0));
    assert_eq!(sample(&after, "pyexec_requests_total{kind=\"invalid_request\"}"), Some(1.0));
    assert_eq!(sample(&after, "pyexec_request_duration_seconds_count"), Some(7.0));
    assert_eq!(sample(&after, "pyexec_queue_wait_seconds_count"), Some(6.0), "invalid requests never queue");
    assert_eq!(sample(&after, "pyexec_run_duration_seconds_count"), Some(6.0));
    assert!(value(&after, "pyexec_run_duration_seconds_sum") >= 0.3);
    assert_eq!(sample(&after, "pyexec_worker_recycles_total{reason=\"run_finished\"}"), Some(6.0));
    assert_eq!(
        sample(&after, "pyexec_worker_spawns_total"),
        Some(2.0),
        "a run timeout does not cost a worker"
    );
    assert_eq!(sample(&after, "pyexec_worker_start_duration_seconds_count"), Some(2.0));
    assert_eq!(sample(&after, "pyexec_in_flight_requests"), Some(0.0));
    assert_eq!(sample(&after, "pyexec_queue_length"), Some(0.0));
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    assert_eq!(sample(&after, "pyexec_build_info{version=\"0.1.0\"}"), Some(1.0));
}

#[tokio::test]
async fn gauges_recover_when_clients_disconnect_mid_request() {
    let service = Service::start(&["--workers", "1"]).await;
    let impatient =
        reqwest::Client::builder().timeout(std::time::Duration::from_millis(300)).build().expect("client");
    let mut gave_up = Vec::new();
    for _ in 0..3 {
        let client = impatient.clone();
        let url = service.url("/execute");
        gave_up.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"script": "import time\ndef main():\n    time.sleep(0.5)"}))
                .send()
                .await
        }));
    }
    for request in gave_up {
        assert!(request.await.expect("task").is_err(), "the client timed out");
    }
    // The abandoned run finishes in its own task and the worker comes back.
    let settled = |metrics: &str| {
        [
            ("pyexec_in_flight_requests", 0.0),
            ("pyexec_queue_length", 0.0),
            ("pyexec_workers{state=\"idle\"}", 1.0),
        ]
        .into_iter()
        .all(|(series, want)| value(metrics, series) == want)
    };
    common::wait_until(
        Duration::from_secs(30),
        "the gauges back at 0 in flight, 0 queued, 1 idle",
        || async { settled(&service.metrics().await) },
    )
    .await;
    assert_eq!(service.ok("def main():\n    return 'still serving'").await["result"], "still serving");
}
