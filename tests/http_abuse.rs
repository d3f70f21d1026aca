//! Abusive HTTP clients against the real service: slow headers, slow
//! bodies, idle and excess connections, malformed and hostile bodies,
//! header floods. After each attack a normal `/execute` must still answer
//! `{"sum": 4}`. Small limits come from the flags, so the tests are quick;
//! raw TCP is used where an HTTP client library cannot express the attack.

mod common;

use std::time::{Duration, Instant};

use common::{sample, value, Service};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUM: &str = "def main():\n    return {'sum': 2 + 2}";

/// The service still runs scripts normally.
async fn assert_serves(service: &Service) {
    let body = service.ok(SUM).await;
    assert_eq!(body["result"], json!({"sum": 4}), "{body}");
}

async fn connect(service: &Service) -> TcpStream {
    TcpStream::connect(service.base.trim_start_matches("http://")).await.expect("connect")
}

/// Reads one response (head plus a `Content-Length` body); `None` when the
/// connection ends (or fails) first.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&seen[..end + 4 + length]).into_owned());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset) and returns what
/// it sent before; panics after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was not closed within {limit:?}");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn slow_headers_get_the_connection_closed_while_others_are_served() {
    let service = Service::start(&["--header-read-timeout-secs", "1", "--workers", "1"]).await;
    let mut stream = connect(&service).await;
    let started = Instant::now();
    // A slowloris: one header byte every 100 ms, for up to 20 s.
    let trickle = b"POST /execute HTTP/1.1\r\nHost: pyexec\r\nX-Slow: ".iter().chain(&[b'a'; 200]);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for byte in trickle {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async {
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // hyper may answer 408 before closing
            }
        }
    };
    // Meanwhile, a normal client is served.
    let (closed_after, ()) = tokio::join!(
        async {
            tokio::select! {
                elapsed = closed => Some(elapsed),
                () = write => None,
            }
        },
        assert_serves(&service),
    );
    let closed_after = closed_after.expect("the slow client was never cut off");
    println!("slowloris connection closed after {closed_after:?} (header timeout 1 s)");
    assert!(closed_after >= Duration::from_millis(900), "closed too early: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(15), "closed too late: {closed_after:?}");
    assert_serves(&service).await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let service = Service::start(&["--header-read-timeout-secs", "1", "--workers", "1"]).await;
    let mut stream = connect(&service).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: pyexec\r\n\r\n").await.expect("request");
    let answer = read_response(&mut stream).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive, then idle: hyper's header timer covers the wait for the
    // next request head, so the idle connection is closed, silently.
    let idle_since = Instant::now();
    let rest = until_closed(&mut stream, Duration::from_secs(15)).await;
    let idle_for = idle_since.elapsed();
    println!("idle keep-alive connection closed after {idle_for:?} (header timeout 1 s)");
    assert!(rest.is_empty(), "nothing is sent on an idle close: {rest:?}");
    assert!(idle_for >= Duration::from_millis(900), "closed too early: {idle_for:?}");
    assert_serves(&service).await;
}

#[tokio::test]
async fn slow_body_gets_408_request_timeout_and_close() {
    let service = Service::start(&["--body-read-timeout-secs", "1", "--workers", "1"]).await;
    let body = format!("{{\"script\": \"{SUM}\"}}").replace('\n', "\\n");
    let mut stream = connect(&service).await;
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: pyexec\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let started = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for byte in body.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        answer = async {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut chunk).await {
                seen.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&seen).to_lowercase()
        } => answer,
        () = trickle => unreachable!("the trickle never ends by itself"),
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("no answer to a slow body within 20 s"),
    };
    let elapsed = started.elapsed();
    println!("slow body answered and closed after {elapsed:?} (body timeout 1 s)");
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close") && answer.contains("request_timeout"), "{answer}");
    assert_serves(&service).await;
    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, r#"pyexec_requests_total{kind="request_timeout"}"#), Some(1.0));
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_service_recovers() {
    const MAX: usize = 4;
    let service = Service::start(&["--max-connections", "4", "--workers", "1"]).await;
    // The harness's own client may hold one pooled connection, so count
    // how many raw connections got in rather than assume all 4 did.
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..MAX + 4 {
        let mut stream = connect(&service).await;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: pyexec\r\n\r\n").await.expect("request");
        let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
            .await
            .expect("an answer within 10 s")
            .expect("an answer before the close");
        if answer.starts_with("HTTP/1.1 200") {
            admitted.push(stream); // stays open, idle
        } else {
            let lower = answer.to_lowercase();
            assert!(lower.starts_with("http/1.1 503"), "{answer}");
            for part in ["connection: close", "retry-after: 1", "\"kind\":\"overloaded\""] {
                assert!(lower.contains(part), "{part} missing: {answer}");
            }
            until_closed(&mut stream, Duration::from_secs(5)).await;
            refused += 1;
        }
    }
    println!("{} admitted, {refused} refused with --max-connections {MAX}", admitted.len());
    assert!((MAX - 1..=MAX).contains(&admitted.len()), "{} admitted", admitted.len());
    assert!(refused >= 4, "{refused} refused");
    drop(admitted);
    // Closed connections free their slots (the server notices the close).
    common::wait_until(Duration::from_secs(30), "the closed connections to leave the gauge", || async {
        value(&service.metrics().await, "pyexec_http_connections") <= 2.0
    })
    .await;
    assert_serves(&service).await;
    let metrics = service.metrics().await;
    let refused_total = value(&metrics, "pyexec_http_connections_refused_total");
    assert!(refused_total >= refused as f64, "refused counter {refused_total} < {refused}");
    let open = value(&metrics, "pyexec_http_connections");
    assert!((1.0..=2.0).contains(&open), "open connections gauge is {open}");
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_the_service_lives() {
    let service = Service::start(&["--workers", "1"]).await;
    let post = |body: Vec<u8>| {
        service
            .client
            .post(service.url("/execute"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let kind = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON answer");
        (status, body["kind"].as_str().unwrap_or_default().to_string())
    };

    // Bad UTF-8 inside a JSON string.
    let answer =
        kind(post(b"{\"script\": \"\xff\xfe def main(): pass\"}".to_vec()).await.expect("send")).await;
    assert_eq!(answer, (400, "invalid_json".into()));
    assert_serves(&service).await;

    // 1,000,000 nested arrays (just under the 1 MiB body limit): the JSON
    // parser's recursion limit answers, the stack does not overflow.
    let answer = kind(post(vec![b'['; 1_000_000]).await.expect("send")).await;
    assert_eq!(answer, (400, "invalid_json".into()));
    let nested_objects = "{\"a\":".repeat(200_000).into_bytes();
    let answer = kind(post(nested_objects).await.expect("send")).await;
    assert_eq!(answer, (400, "invalid_json".into()));
    assert_serves(&service).await;
}

#[tokio::test]
async fn huge_declared_length_is_413_at_once() {
    let service = Service::start(&["--workers", "1"]).await;
    let mut stream = connect(&service).await;
    let started = Instant::now();
    stream
        .write_all(
            b"POST /execute HTTP/1.1\r\nHost: pyexec\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000000\r\n\r\n{\"script\": \"x\"}",
        )
        .await
        .expect("request");
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
        .await
        .expect("an answer within 10 s")
        .expect("an answer before the close");
    let elapsed = started.elapsed();
    println!("1 GB Content-Length answered after {elapsed:?}");
    let lower = answer.to_lowercase();
    assert!(lower.starts_with("http/1.1 413"), "{answer}");
    assert!(lower.contains("payload_too_large") && lower.contains("connection: close"), "{answer}");
    // The rest is never read: the connection is closed (after the bounded
    // discard of what was sent).
    until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_serves(&service).await;
    let metrics = service.metrics().await;
    let rss = value(&metrics, "process_resident_memory_bytes");
    assert!(rss < 512.0 * 1024.0 * 1024.0, "resident memory {rss} suggests the body was buffered");
}

#[tokio::test]
async fn header_floods_get_431_or_closed() {
    let service = Service::start(&["--workers", "1"]).await;
    let floods = [
        ("10,000 small headers", (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()),
        ("one 1 MiB header", format!("X-Big: {}\r\n", "a".repeat(1 << 20))),
    ];
    for (what, headers) in floods {
        let mut stream = connect(&service).await;
        let request = format!("GET /health HTTP/1.1\r\nHost: pyexec\r\n{headers}\r\n");
        // The server may close before it has read everything we send.
        let _ = stream.write_all(request.as_bytes()).await;
        let rest = until_closed(&mut stream, Duration::from_secs(15)).await;
        println!("{what}: answered {:?}", rest.lines().next().unwrap_or("(closed without an answer)"));
        assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 431"), "{what}: {rest}");
        assert_serves(&service).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_gets_the_connection_closed() {
    // An answer far larger than the kernel's socket buffers (the send
    // buffer grows to 4 MiB; it is still delivered after the close).
    let service = Service::start(&[
        "--write-stall-timeout-secs",
        "1",
        "--max-result-bytes",
        "16777216",
        "--workers",
        "1",
    ])
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so the answer cannot vanish into kernel buffers.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let address = service.base.trim_start_matches("http://").parse().expect("address");
    let mut stream = socket.connect(address).await.expect("connect");
    let body = json!({"script": "def main():\n    return 'x' * 12_000_000"}).to_string();
    let request = format!(
        "POST /execute HTTP/1.1\r\nHost: pyexec\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    // The run takes milliseconds; then the server's writes stall for 1 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            received += n;
        }
    })
    .await;
    println!("the stalled client got {received} bytes of a ~12,000,000-byte answer before the close");
    assert!(drained.is_ok(), "the connection stayed open (received {received} bytes)");
    assert!(received < 12_000_000, "the whole answer arrived ({received} bytes): the write never stalled");
    assert_serves(&service).await;
}
