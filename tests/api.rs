//! The HTTP contract, row by row, against the real binary.

mod common;

use common::Service;
use serde_json::json;

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let service = Service::start(&[]).await;
    let health = service.client.get(service.url("/health")).send().await.expect("health");
    assert_eq!(health.status(), 200);
    let ready = service.client.get(service.url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    let metrics = service.client.get(service.url("/metrics")).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.expect("text").contains("pyexec_requests_total"));
}

#[tokio::test]
async fn success_has_result_stdout_stderr_and_duration() {
    let service = Service::start(&[]).await;
    let body = service
        .ok("import sys\ndef main():\n    print('to out')\n    print('to err', file=sys.stderr)\n    return {'sum': 2 + 2}")
        .await;
    assert_eq!(body["result"], json!({"sum": 4}));
    assert_eq!(body["stdout"], "to out\n");
    assert_eq!(body["stderr"], "to err\n");
    assert!(body["duration_ms"].as_f64().expect("duration") > 0.0);
    assert!(body.get("stdout_truncated").is_none());
}

#[tokio::test]
async fn client_errors_are_4xx_with_kinds() {
    let service = Service::start(&[]).await;
    let post = |body: &'static str, content_type: &'static str| {
        service.client.post(service.url("/execute")).header("content-type", content_type).body(body).send()
    };
    let kind = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON error body");
        (
            status,
            body["kind"].as_str().expect("kind").to_string(),
            body["error"].as_str().expect("error").to_string(),
        )
    };

    let (status, k, _) = kind(post("{\"script\": ", "application/json").await.expect("send")).await;
    assert_eq!((status, k.as_str()), (400, "invalid_json"));

    for (body, field) in [
        ("{}", "script"),
        ("{\"script\": \"\"}", "script"),
        ("{\"script\": 42}", "script"),
        ("{\"script\": \"x\", \"extra\": 1}", "extra"),
        ("{\"script\": \"x\", \"timeout\": -1}", "timeout"),
        ("{\"script\": \"x\", \"timeout\": 100000}", "timeout"),
        ("{\"script\": \"x\", \"memory\": 1}", "memory"),
        ("{\"script\": \"def main(): return 1\", \"script\": \"x\"}", "\"script\" appears twice"),
        ("{\"script\": \"x\", \"files\": {\"a\": \"\", \"a\": \"\"}}", "\"files\"[\"a\"] appears twice"),
    ] {
        let (status, k, message) = kind(post(body, "application/json").await.expect("send")).await;
        assert_eq!((status, k.as_str()), (400, "invalid_request"), "{body}");
        assert!(message.contains(field), "{message} should name {field}");
    }

    let (status, k, _) = kind(post("{\"script\": \"x\"}", "text/plain").await.expect("send")).await;
    assert_eq!((status, k.as_str()), (415, "unsupported_media_type"));
    let (status, k, _) =
        kind(post("{\"script\": \"x\"}", "application/json; charset=utf-8").await.expect("send")).await;
    assert_ne!(k, "unsupported_media_type", "parameters on the media type are fine ({status})");

    let response = service.client.get(service.url("/nope")).send().await.expect("send");
    let (status, k, _) = kind(response).await;
    assert_eq!((status, k.as_str()), (404, "not_found"));

    let response = service.client.get(service.url("/execute")).send().await.expect("send");
    assert_eq!(response.headers()["allow"], "POST");
    let (status, k, _) = kind(response).await;
    assert_eq!((status, k.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let service = Service::start(&["--max-body-bytes", "1024", "--max-files", "0"]).await;
    let script = format!("def main():\n    return '{}'", "x".repeat(2000));
    let (status, body) = service.run(&script).await;
    assert_eq!(status, 413);
    assert_eq!(body["kind"], "payload_too_large");

    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let response = service
        .client
        .post(service.url("/execute"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    // And the service still serves.
    service.ok("def main():\n    return 1").await;
}

/// A client that sends its headers, then (a moment later, as a large
/// upload does) its body, must get the 413 rather than a connection reset:
/// the service answers at once, then reads and discards a bounded amount
/// of what the client sends before it closes the connection.
#[tokio::test]
async fn refused_body_gets_its_answer_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let service = Service::start(&["--max-body-bytes", "1024", "--max-files", "0", "--workers", "1"]).await;
    let address = service.base.trim_start_matches("http://").to_string();
    let body = format!("{{\"script\": \"{}\"}}", "x".repeat(200_000));
    for attempt in 0..10 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
        let head = format!(
            "POST /execute HTTP/1.1\r\nHost: pyexec\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("headers");
        // Clients such as hyper's give up on the answer when a body write
        // fails, so the service must take the whole (modest) body.
        for piece in body.as_bytes().chunks(50_000) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let written = stream.write_all(piece).await;
            assert!(written.is_ok(), "attempt {attempt}: the body write failed: {written:?}");
        }
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(
            text.starts_with("http/1.1 413"),
            "attempt {attempt}: expected a 413, got {read:?} and {text:?}"
        );
        assert!(text.contains("connection: close") && text.contains("payload_too_large"), "{text}");
    }
    service.ok("def main():\n    return 1").await;
}

#[tokio::test]
async fn api_token_is_required_when_configured() {
    let service = Service::start_with_env(&[], &[("PYEXEC_API_TOKEN", "s3cret")]).await;
    let send = |auth: Option<&'static str>| {
        let mut request = service
            .client
            .post(service.url("/execute"))
            .json(&json!({"script": "def main():\n    return 7"}));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for (case, auth) in [
        ("missing header", None),
        ("wrong scheme", Some("Basic czNjcmV0")),
        ("no scheme", Some("s3cret")),
        ("wrong token, same length", Some("Bearer s3creT")),
        ("shorter token", Some("Bearer s3cre")),
        ("longer token", Some("Bearer s3cret-and-more")),
        ("empty token", Some("Bearer ")),
    ] {
        let refused = send(auth).await.expect("send");
        assert_eq!(refused.status(), 401, "{case}");
        assert_eq!(refused.headers()["www-authenticate"], "Bearer", "{case}");
        let body: serde_json::Value = refused.json().await.expect("json");
        assert_eq!(body["kind"], "unauthorized", "{case}");
    }
    for auth in ["Bearer s3cret", "bearer s3cret"] {
        let good = send(Some(auth)).await.expect("send");
        assert_eq!(good.status(), 200, "{auth}");
        let body: serde_json::Value = good.json().await.expect("json");
        assert_eq!(body["result"], 7);
    }
    // Probes and the scraper stay open: they carry no secret and reveal none.
    for path in ["/health", "/ready", "/metrics"] {
        let response = service.client.get(service.url(path)).send().await.expect("send");
        assert_eq!(response.status(), 200, "{path} must not need the token");
    }
    let metrics = service.metrics().await;
    assert_eq!(common::sample(&metrics, r#"pyexec_requests_total{kind="unauthorized"}"#), Some(7.0));
}

#[tokio::test]
async fn script_verdicts_are_422_with_kinds() {
    let service = Service::start(&[]).await;

    let body = service.run_expecting("def main(:\n    return 1", 422, "syntax_error").await;
    assert!(body["error"].as_str().expect("error").contains("line 1"), "{body}");

    service.run_expecting("x = 1", 422, "missing_main").await;
    service.run_expecting("main = 5", 422, "missing_main").await;

    let body = service
        .run_expecting(
            "def helper():\n    return 1 / 0\n\ndef main():\n    print('before')\n    return helper()",
            422,
            "runtime_error",
        )
        .await;
    let traceback = body["traceback"].as_str().expect("traceback");
    assert!(traceback.contains("line 2") && traceback.contains("line 6"), "{traceback}");
    assert!(traceback.contains("ZeroDivisionError"), "{traceback}");
    assert!(
        !traceback.contains("pyexec_worker") && !traceback.contains("/pyexec/"),
        "no service frames: {traceback}"
    );
    assert_eq!(body["stdout"], "before\n");

    service.run_expecting("import sys\ndef main():\n    sys.exit(3)", 422, "runtime_error").await;

    service
        .run_expecting("raise ValueError('at import')\ndef main():\n    return 1", 422, "runtime_error")
        .await;
}

#[tokio::test]
async fn results_must_be_json() {
    let service = Service::start(&[]).await;
    for (script, hint) in [
        ("def main():\n    return {1, 2}", "set"),
        ("def main():\n    return b'raw'", "bytes"),
        ("def main():\n    return float('nan')", "NaN"),
        ("import pandas as pd\ndef main():\n    return pd.DataFrame({'a': [1]})", "to_dict"),
        ("def main():\n    return object()", "object"),
    ] {
        let body = service.run_expecting(script, 422, "result_not_json").await;
        let message = body["error"].as_str().expect("error");
        assert!(message.contains(hint), "{message} should mention {hint}");
    }

    let body = service
        .ok("import numpy as np\ndef main():\n    return {'i': np.int64(3), 'f': np.float32(0.5), 'b': np.bool_(True), 'a': np.arange(4).reshape(2, 2)}")
        .await;
    assert_eq!(body["result"], json!({"i": 3, "f": 0.5, "b": true, "a": [[0, 1], [2, 3]]}));

    let body = service.ok("def main():\n    return '{\"not\": \"parsed\"}'").await;
    assert_eq!(body["result"], "{\"not\": \"parsed\"}", "a str stays a JSON string");
    let body = service.ok("def main():\n    return None").await;
    assert!(body["result"].is_null());
    let body = service.ok("def main():\n    return [1, 'two', 3.5, False, None, {'n': (1, 2)}]").await;
    assert_eq!(body["result"], json!([1, "two", 3.5, false, null, {"n": [1, 2]}]));
}

#[tokio::test]
async fn oversized_result_is_422() {
    let service = Service::start(&["--max-result-bytes", "1000000"]).await;
    service.run_expecting("def main():\n    return 'x' * 2_000_000", 422, "result_too_large").await;
    service.ok("def main():\n    return 'x' * 1000").await;
}

#[tokio::test]
async fn runs_that_die_are_killed() {
    let service = Service::start(&[]).await;
    for script in [
        "import os\ndef main():\n    print('going')\n    os._exit(3)",
        "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)\n    return 'survived'",
        "import ctypes\ndef main():\n    return ctypes.string_at(0)",
    ] {
        service.run_expecting(script, 422, "killed").await;
        service.ok("def main():\n    return 1").await;
    }
}
