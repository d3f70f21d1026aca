//! Notebook sessions against the real binary, real nsjail and real Python,
//! over HTTP: state across cells, the last-expression rules, errors that
//! keep the session and limits that end it, isolation between sessions and
//! from `/execute`, busy/unknown/delete, `--max-sessions`, the idle and
//! lifetime reapers, auth, metrics and `pyexec session`.

mod common;

use std::time::{Duration, Instant};

use common::{binary, sample, value, Service};
use serde_json::{json, Value};

async fn send(service: &Service, request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("non-JSON answer {status} from {}: {e}: {text}", service.base));
    (status, value)
}

async fn create(service: &Service, body: Value) -> (u16, Value) {
    send(service, service.client.post(service.url("/sessions")).json(&body)).await
}

async fn open(service: &Service, body: Value) -> String {
    let (status, answer) = create(service, body).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().expect("id").to_string()
}

async fn cell(service: &Service, id: &str, code: &str) -> (u16, Value) {
    let url = service.url(&format!("/sessions/{id}/execute"));
    send(service, service.client.post(url).json(&json!({ "code": code }))).await
}

/// A cell that must succeed; returns its answer.
async fn ok(service: &Service, id: &str, code: &str) -> Value {
    let (status, answer) = cell(service, id, code).await;
    assert_eq!(status, 200, "{code}: {answer}");
    answer
}

async fn gone(service: &Service, id: &str) {
    let (status, answer) = cell(service, id, "1").await;
    assert_eq!((status, answer["kind"].as_str()), (404, Some("session_not_found")), "{answer}");
    let (status, _) = send(service, service.client.get(service.url(&format!("/sessions/{id}")))).await;
    assert_eq!(status, 404);
}

/// Host pids whose parent is `pid` (the service's nsjail children).
fn child_pids(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| {
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then(|| head.split_whitespace().next()?.parse().ok()).flatten()
        })
        .collect()
}

fn children_of(pid: i32) -> usize {
    child_pids(pid).len()
}

/// Whether `pid` still runs (a zombie or a missing entry does not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[tokio::test]
async fn sessions_keep_state_stay_isolated_and_end_on_limits() {
    let service = Service::start(&["--workers", "1", "--max-sessions", "2"]).await;

    // State persists: a DataFrame, a file, an import.
    let id = open(&service, json!({"files": {"in.csv": "YSxiCjEsMgozLDQK"}})).await;
    assert!(id.len() >= 22 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
    let first = ok(&service, &id, "import pandas as pd\ndf = pd.read_csv('in.csv')\nprint('loaded')").await;
    assert_eq!(
        (first["result"].clone(), first["stdout"].as_str()),
        (Value::Null, Some("loaded\n")),
        "{first}"
    );
    assert!(first.get("display").is_none(), "{first}");
    assert_eq!(ok(&service, &id, "int(df['a'].sum() + df['b'].sum())").await["result"], 10);
    ok(&service, &id, "with open('notes.txt', 'w') as f:\n    f.write('kept')\nimport statistics").await;
    assert_eq!(ok(&service, &id, "open('notes.txt').read()").await["result"], "kept");
    assert_eq!(ok(&service, &id, "statistics.mean([1, 2, 3])").await["result"], 2);

    // The last-expression rules.
    assert_eq!(ok(&service, &id, "x = 41").await["result"], Value::Null);
    assert_eq!(ok(&service, &id, "x + 1").await["result"], 42);
    let numpy = ok(&service, &id, "import numpy as np\nnp.arange(3) * np.float64(1.5)").await;
    assert_eq!(numpy["result"], json!([0.0, 1.5, 3.0]));
    let frame = ok(&service, &id, "df").await;
    assert_eq!(frame["result"], Value::Null);
    let shown = frame["display"].as_str().expect("display");
    assert!(shown.contains('a') && shown.contains('3'), "{shown}");
    let big =
        ok(&service, &id, "class Big:\n    def __repr__(self):\n        return 'y' * 200_000\nBig()").await;
    assert_eq!(big["display"].as_str().map(str::len), Some(64 * 1024));

    // Errors keep the session, with the cell's own line numbers.
    let (status, error) = cell(&service, &id, "y = 1\n\ndef f():\n    return 1 / 0\nf()").await;
    assert_eq!(
        (status, error["kind"].as_str(), error["session_ended"].as_bool()),
        (422, Some("runtime_error"), Some(false))
    );
    let tb = error["traceback"].as_str().expect("traceback");
    assert!(tb.contains("line 5") && tb.contains("line 4") && tb.contains("ZeroDivisionError"), "{tb}");
    let (status, error) = cell(&service, &id, "def broken(:\n").await;
    assert_eq!((status, error["kind"].as_str()), (422, Some("syntax_error")), "{error}");
    assert_eq!(ok(&service, &id, "x, y").await["result"], json!([41, 1]));

    // Figures from a cell, shown once.
    let drawn = ok(&service, &id, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n'drawn'").await;
    assert_eq!(drawn["figures"].as_array().map(Vec::len), Some(1), "{drawn}");
    assert_eq!(drawn["figures"][0]["format"], "png");
    assert_eq!(ok(&service, &id, "1").await["figures"], json!([]));

    // GET tells; unknown ids are 404.
    let (status, info) = send(&service, service.client.get(service.url(&format!("/sessions/{id}")))).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["id"], id.as_str());
    assert!(info["calls"].as_u64().expect("calls") >= 15, "{info}");
    for key in ["created_at", "last_used_at", "expires_at"] {
        assert!(info[key].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{info}");
    }
    gone(&service, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;

    // A second session sees nothing of the first, and draws other numbers.
    let other = open(&service, json!({})).await;
    let (status, error) = cell(&service, &other, "df").await;
    assert_eq!((status, error["kind"].as_str()), (422, Some("runtime_error")), "{error}");
    let listing = ok(&service, &other, "import os\nsorted(os.listdir('/tmp'))").await;
    assert_eq!(listing["result"], json!([]), "{listing}");
    let pids =
        ok(&service, &other, "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit())").await;
    assert_eq!(pids["result"], json!([1, 2]), "only its own init and runner: {pids}");
    let draw = "import numpy as np\nnp.random.rand(4).tolist()";
    let (a, b) =
        (ok(&service, &id, draw).await["result"].clone(), ok(&service, &other, draw).await["result"].clone());
    assert_ne!(a, b, "two sessions drew the same numpy stream");
    // ...and an /execute run sees nothing of either.
    let run = service
        .ok("import os\n\ndef main():\n    return [sorted(os.listdir('/tmp')), 'df' in globals()]")
        .await;
    assert_eq!(run["result"], json!([[], false]));

    // --max-sessions: one more is 503 overloaded with Retry-After.
    let response =
        service.client.post(service.url("/sessions")).json(&json!({})).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let refused: Value = response.json().await.expect("json");
    assert_eq!(refused["kind"], "overloaded");

    // With --max-sessions open, /execute keeps its whole pool: every
    // worker is idle (none is held by a session) and runs succeed.
    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, "pyexec_sessions"), Some(2.0));
    assert!(children_of(service.pid()) >= 4, "the pool's worker, its hot standby, the two sessions' workers");
    assert_eq!(sample(&metrics, r#"pyexec_workers{state="idle"}"#), Some(1.0), "{metrics}");
    let scripts: Vec<String> = (0..6).map(|i| format!("def main():\n    return {i}")).collect();
    let runs = scripts.iter().map(|script| service.run(script));
    for (i, (status, body)) in futures_util::future::join_all(runs).await.into_iter().enumerate() {
        assert_eq!((status, body["result"].as_u64()), (200, Some(i as u64)), "{body}");
    }

    // One call at a time.
    let slow = cell(&service, &other, "import time\ntime.sleep(5)\n'slept'");
    let busy = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cell(&service, &other, "1").await
    };
    let ((slow_status, slow_answer), (busy_status, busy_answer)) = tokio::join!(slow, busy);
    assert_eq!((slow_status, slow_answer["result"].as_str()), (200, Some("slept")), "{slow_answer}");
    assert_eq!((busy_status, busy_answer["kind"].as_str()), (409, Some("session_busy")), "{busy_answer}");

    // A timeout ends the session; so does a memory bomb; delete works.
    let url = service.url(&format!("/sessions/{other}/execute"));
    let (status, answer) = send(
        &service,
        service.client.post(url).json(&json!({"code": "while True:\n    pass", "timeout": 1})),
    )
    .await;
    assert_eq!(
        (status, answer["kind"].as_str(), answer["session_ended"].as_bool()),
        (422, Some("timeout"), Some(true))
    );
    gone(&service, &other).await;
    let bomb = open(&service, json!({"memory": 64})).await;
    ok(&service, &bomb, "kept = 1").await;
    let (status, answer) = cell(&service, &bomb, "hog = bytearray(512 * 1024 * 1024)").await;
    assert_eq!(
        (status, answer["kind"].as_str(), answer["session_ended"].as_bool()),
        (422, Some("memory_limit"), Some(true))
    );
    gone(&service, &bomb).await;
    // A cell that kills its own interpreter ends the session too.
    let doomed = open(&service, json!({})).await;
    let (status, answer) =
        cell(&service, &doomed, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)").await;
    assert_eq!(
        (status, answer["kind"].as_str(), answer["session_ended"].as_bool()),
        (422, Some("killed"), Some(true))
    );
    gone(&service, &doomed).await;
    let (status, _) = send(&service, service.client.delete(service.url(&format!("/sessions/{id}")))).await;
    assert_eq!(status, 204);
    gone(&service, &id).await;

    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, "pyexec_sessions"), Some(0.0));
    for (reason, count) in [("deleted", 1.0), ("timeout", 1.0), ("memory_limit", 1.0), ("killed", 1.0)] {
        assert_eq!(
            value(&metrics, &format!("pyexec_sessions_ended_total{{reason=\"{reason}\"}}")),
            count,
            "{reason}"
        );
    }
    assert!(value(&metrics, r#"pyexec_session_call_duration_seconds_count{call="execute"}"#) >= 20.0);
    // Nothing is left behind: the sessions' workers are gone. The service's
    // nsjail children are the pool's worker, its hot standby and at most
    // the one started session worker that waits for the next create.
    let pid = service.pid();
    let deadline = Instant::now() + Duration::from_secs(30);
    while children_of(pid) > 3 {
        let states: Vec<String> = child_pids(pid)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
            .collect();
        assert!(Instant::now() < deadline, "the session workers did not stop: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reapers_auth_and_the_cli() {
    let token = "s3ssion-token";
    let service = Service::start(&[
        "--workers",
        "1",
        "--max-sessions",
        "2",
        "--api-token",
        token,
        "--session-idle-timeout-secs",
        "60",
        "--session-max-lifetime-secs",
        "8",
    ])
    .await;
    let bearer = format!("Bearer {token}");

    // Auth: every session route needs the token.
    let (status, _) = create(&service, json!({})).await;
    assert_eq!(status, 401);
    let authed = |request: reqwest::RequestBuilder| request.header("authorization", bearer.as_str());
    let (status, body) = send(
        &service,
        authed(service.client.post(service.url("/sessions"))).json(&json!({"idle_timeout": 1})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["idle_timeout"], 1.0);
    let idle = body["id"].as_str().expect("id").to_string();
    let (status, _) = send(&service, service.client.get(service.url(&format!("/sessions/{idle}")))).await;
    assert_eq!(status, 401);
    let (status, body) = send(
        &service,
        authed(service.client.post(service.url("/sessions"))).json(&json!({"idle_timeout": 61})),
    )
    .await;
    assert_eq!((status, body["kind"].as_str()), (400, Some("invalid_request")), "{body}");

    // The CLI drives a session (token from the environment).
    let cli = |args: &[&str]| {
        std::process::Command::new(binary())
            .arg("session")
            .args(args)
            .env("PYEXEC_URL", &service.base)
            .env("PYEXEC_API_TOKEN", token)
            .output()
            .expect("pyexec session runs")
    };
    let made = cli(&["new"]);
    assert_eq!(made.status.code(), Some(0), "{}", String::from_utf8_lossy(&made.stderr));
    let id = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (dir.path().join("one.py"), dir.path().join("two.py"));
    std::fs::write(&one, "total = 20\nprint('set')\n").expect("write");
    std::fs::write(&two, "total + 22\n").expect("write");
    let ran = cli(&["run", &id, one.to_str().expect("path")]);
    assert_eq!(
        (ran.status.code(), String::from_utf8_lossy(&ran.stdout).into_owned()),
        (Some(0), "set\nnull\n".into()),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let ran = cli(&["run", &id, two.to_str().expect("path")]);
    assert_eq!(
        (ran.status.code(), String::from_utf8_lossy(&ran.stdout).into_owned()),
        (Some(0), "42\n".into())
    );
    assert_eq!(cli(&["rm", &id]).status.code(), Some(0));
    let again = cli(&["run", &id, two.to_str().expect("path")]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("session_not_found"));

    // A delete during a running cell ends it now: the cell's 60 s sleep is
    // cut off and its call finds the session gone.
    let (status, body) =
        send(&service, authed(service.client.post(service.url("/sessions"))).json(&json!({}))).await;
    assert_eq!(status, 201, "{body}");
    let doomed = body["id"].as_str().expect("id").to_string();
    let started = Instant::now();
    let sleeper = send(
        &service,
        authed(service.client.post(service.url(&format!("/sessions/{doomed}/execute"))))
            .json(&json!({"code": "import time\ntime.sleep(60)", "timeout": 60})),
    );
    let deleter = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        send(&service, authed(service.client.delete(service.url(&format!("/sessions/{doomed}"))))).await
    };
    let ((cut_status, cut), (deleted, _)) = tokio::join!(sleeper, deleter);
    assert_eq!(deleted, 204);
    assert_eq!((cut_status, cut["kind"].as_str()), (404, Some("session_not_found")), "{cut}");
    assert!(started.elapsed() < Duration::from_secs(50), "the cell was not cut off: {:?}", started.elapsed());

    // The idle reaper (1 s) and the lifetime reaper (8 s).
    let (status, body) =
        send(&service, authed(service.client.post(service.url("/sessions"))).json(&json!({}))).await;
    assert_eq!(status, 201, "{body}");
    let old = body["id"].as_str().expect("id").to_string();
    let alive = |id: String| {
        let request = authed(service.client.get(service.url(&format!("/sessions/{id}"))));
        async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    common::wait_until(Duration::from_secs(30), "the idle reaper", || {
        let check = alive(idle.clone());
        async move { check.await == 404 }
    })
    .await;
    common::wait_until(Duration::from_secs(60), "the lifetime reaper", || {
        let check = alive(old.clone());
        async move { check.await == 404 }
    })
    .await;
    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, r#"pyexec_sessions_ended_total{reason="idle"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"pyexec_sessions_ended_total{reason="lifetime"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"pyexec_sessions_ended_total{reason="deleted"}"#), Some(2.0));
    assert_eq!(sample(&metrics, r#"pyexec_sessions_ended_total{reason="killed"}"#), Some(0.0));

    // Stopping the service ends the sessions still open: none of its jails
    // (pool, standbys, sessions) outlives it.
    let (status, body) =
        send(&service, authed(service.client.post(service.url("/sessions"))).json(&json!({}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let url = service.url(&format!("/sessions/{id}/execute"));
    let (status, answer) =
        send(&service, authed(service.client.post(url)).json(&json!({"code": "'here'"}))).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("here")), "{answer}");
    let jails = child_pids(service.pid());
    assert!(jails.len() >= 3, "pool worker, hot standby, the session: {jails:?}");
    service.signal(15);
    common::wait_until(Duration::from_secs(30), "every jail stopping with the service", || {
        let jails = jails.clone();
        async move { !jails.iter().any(|pid| running(*pid)) }
    })
    .await;
}

#[tokio::test]
async fn sessions_off_answer_sessions_disabled_which_no_retry_cures() {
    // --max-sessions defaults to 0: sessions are off.
    let service = Service::start(&["--workers", "1"]).await;
    let response =
        service.client.post(service.url("/sessions")).json(&json!({})).send().await.expect("an answer");
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("retry-after").is_none(), "waiting does not turn sessions on");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["kind"], "sessions_disabled", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("--max-sessions")), "{body}");
    let metrics = service.metrics().await;
    assert!(
        metrics.lines().any(|l| l == r#"pyexec_requests_total{kind="sessions_disabled"} 1"#),
        "{metrics}"
    );
}
