//! Many requests at once: each is answered correctly or shed with 503
//! `overloaded` + Retry-After, nothing else.

mod common;

use std::time::Duration;

use common::Service;
use serde_json::json;

#[tokio::test]
async fn sixty_four_parallel_requests_are_answered_or_shed() {
    let service = Service::start(&["--queue-timeout-secs", "2"]).await;
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let client = service.client.clone();
        let url = service.url("/execute");
        tasks.push(tokio::spawn(async move {
            let script =
                format!("import pandas as pd\ndef main():\n    return int(pd.Series(range({i})).sum())");
            let response = client.post(url).json(&json!({"script": script})).send().await.expect("send");
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").is_some();
            let body: serde_json::Value = response.json().await.expect("json");
            (i, status, retry_after, body)
        }));
    }
    let mut answered = 0;
    for task in tasks {
        let (i, status, retry_after, body) = task.await.expect("task");
        match status {
            200 => {
                assert_eq!(body["result"], json!((0..i).sum::<u64>()), "request {i} got another's answer");
                answered += 1;
            }
            503 => {
                assert_eq!(body["kind"], "overloaded");
                assert!(retry_after, "503 carries Retry-After");
            }
            other => panic!("request {i}: unexpected {other}: {body}"),
        }
    }
    assert!(answered > 0);
    assert_eq!(service.ok("def main():\n    return 1").await["result"], 1);
}

#[tokio::test]
async fn busy_pool_sheds_with_overloaded_after_the_queue_timeout() {
    let service = Service::start(&["--workers", "1", "--queue-timeout-secs", "0.3"]).await;
    let client = service.client.clone();
    let url = service.url("/execute");
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"script": "import time\ndef main():\n    time.sleep(5)\n    return 'slow'"}))
            .send()
            .await
    });
    common::wait_until(Duration::from_secs(30), "the slow request to hold the only worker", || async {
        common::sample(&service.metrics().await, "pyexec_workers{state=\"busy\"}") == Some(1.0)
    })
    .await;
    let response = service.post_execute(&json!({"script": "def main():\n    return 1"})).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers()["retry-after"].to_str().expect("ascii").parse::<u64>().expect("seconds") >= 1);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["kind"], "overloaded");
    let slow = slow.await.expect("task").expect("send");
    assert_eq!(slow.status(), 200);
    assert_eq!(service.ok("def main():\n    return 2").await["result"], 2, "recovers at once");
}
