//! Start-up, configuration errors, worker replacement and graceful shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, sample, value, worker_copy, Service};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::json;

fn run_binary(args: &[&str]) -> (i32, String) {
    let worker = worker_copy();
    let mut command = Command::new(binary());
    command.args(["--listen", "127.0.0.1:0", "--worker-dir"]).arg(worker.path());
    if !args.contains(&"--workers") {
        command.args(["--workers", "1"]);
    }
    let output = command.args(args).output().expect("run pyexec");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_flags_exit_64_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["--workers", "0"][..], "--workers"),
        (&["--listen", "not-an-address"][..], "--listen"),
        (&["--default-timeout-secs", "90", "--max-timeout-secs", "60"][..], "--default-timeout-secs"),
        (&["--cgroup", "v7"][..], "--cgroup"),
    ] {
        let (code, stderr) = run_binary(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(flag), "{stderr} should name {flag}");
    }
}

#[test]
fn refuses_to_start_without_a_working_sandbox() {
    let (code, stderr) = run_binary(&["--sandbox-python", "/nonexistent/python3"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("sandbox Python not found at /nonexistent/python3"), "{stderr}");

    // nsjail that cannot create anything: the zygote never becomes ready.
    let (code, stderr) = run_binary(&["--nsjail", "/bin/false"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("the sandbox cannot start"), "{stderr}");
    assert!(!stderr.contains("listening"), "never serves unsandboxed");
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn signal(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits"));
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|err| panic!("kill({pid}, {signal}): {err}"));
}

#[tokio::test]
async fn a_stopped_zygote_is_found_and_its_request_retried_on_another_worker() {
    let service = Service::start(&["--workers", "1"]).await;
    // The pool's worker is the oldest jail (the hot standby starts after warm-up).
    let mut jails = children(service.child.id());
    jails.sort_unstable();
    assert!(!jails.is_empty() && jails.len() <= 2, "one nsjail per worker plus the hot standby: {jails:?}");
    let zygote = children(jails[0]);
    assert!(!zygote.is_empty(), "nsjail runs the zygote");
    // Freeze the zygote: the supervisor sees it stopped in /proc (0.6 s at
    // most), kills the worker and runs the request once more elsewhere:
    // the client gets its normal answer, not a verdict against its script.
    let cgroups = common::worker_cgroup_dirs(zygote[0]);
    signal(zygote[0], Signal::SIGSTOP);
    let started = Instant::now();
    let answer = service.ok("def main():\n    return 1").await;
    assert_eq!(answer["result"], 1);
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    service.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(service.ok("def main():\n    return 'replaced'").await["result"], "replaced");
    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, "pyexec_worker_recycles_total{reason=\"stopped\"}"), Some(1.0));
    assert_eq!(sample(&metrics, "pyexec_run_retries_total"), Some(1.0));
    assert_eq!(sample(&metrics, "pyexec_worker_faults_total{component=\"zygote\"}"), Some(1.0));
    assert!(value(&metrics, "pyexec_worker_spawns_total") >= 2.0);
    assert!(!children(service.child.id()).contains(&jails[0]), "the old jail is gone");
    // A killed nsjail cannot remove its own cgroup; the supervisor removes
    // it (with per-run leaves, its whole tree).
    let Some(cgroups) = cgroups else {
        eprintln!("skipped the cgroup clean-up check: this host has no cgroup v1 or v2 hierarchy");
        return;
    };
    for leaf in cgroups {
        assert!(common::wait_gone(&leaf, Duration::from_secs(30)).await, "{} left behind", leaf.display());
    }
}

#[tokio::test]
async fn a_worker_that_dies_while_idle_is_replaced() {
    let service = Service::start(&["--workers", "1"]).await;
    let jails = children(service.child.id());
    signal(jails[0], Signal::SIGKILL);
    common::wait_until(Duration::from_secs(30), "the killed jail to be reaped", || async {
        !children(service.child.id()).contains(&jails[0])
    })
    .await;
    assert_eq!(service.ok("def main():\n    return 'fresh'").await["result"], "fresh");
    let metrics = service.metrics().await;
    assert_eq!(sample(&metrics, "pyexec_worker_recycles_total{reason=\"crash\"}"), Some(1.0));
}

#[tokio::test]
async fn sigterm_drains_in_flight_and_queued_requests_then_exits_zero() {
    let mut service = Service::start(&["--workers", "2", "--queue-timeout-secs", "10"]).await;
    let mut requests = Vec::new();
    for i in 0..5u64 {
        let client = service.client.clone();
        let url = service.url("/execute");
        requests.push(tokio::spawn(async move {
            let script = format!("import time\ndef main():\n    time.sleep(1.5)\n    return {i}");
            let response = client.post(url).json(&json!({"script": script})).send().await.expect("answered");
            (i, response.status().as_u16(), response.json::<serde_json::Value>().await.expect("json"))
        }));
    }
    // Two run, three wait in the queue when SIGTERM arrives (each run
    // takes 1.5 s, so all five are in flight well before the first ends).
    common::wait_until(Duration::from_secs(30), "the 5 requests to be in flight", || async {
        common::sample(&service.metrics().await, "pyexec_in_flight_requests") == Some(5.0)
    })
    .await;
    service.signal(15);
    common::wait_until(Duration::from_secs(30), "the service to log that it drains", || async {
        service.stderr().contains("stopped accepting; draining requests")
    })
    .await;
    // A draining service stops accepting, so a fresh connection is refused
    // or answered 503: it must never be told "ready".
    let fresh = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    match fresh.get(service.url("/ready")).send().await {
        Ok(ready) => assert_eq!(ready.status(), 503, "draining is not ready"),
        Err(err) => eprintln!("/ready while draining: not answered ({err}), as a closed listener does"),
    }
    for request in requests {
        let (i, status, body) = request.await.expect("task");
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["result"], i);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = service.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "pyexec did not exit after draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(children(service.child.id()).is_empty());
}

#[tokio::test]
async fn sandbox_that_cannot_restart_answers_unavailable_with_the_reason() {
    let service = Service::start(&["--workers", "1", "--queue-timeout-secs", "1"]).await;
    // Break the sandbox under the running service: the worker code is gone,
    // so no replacement zygote can start.
    std::fs::remove_file(service.worker_dir.path().join("zygote.py")).expect("remove zygote.py");
    let jails = children(service.child.id());
    signal(jails[0], Signal::SIGKILL);
    common::wait_until(Duration::from_secs(30), "the killed jail to be reaped", || async {
        !children(service.child.id()).contains(&jails[0])
    })
    .await;
    let response = service.post_execute(&json!({"script": "def main():\n    return 1"})).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["kind"], "unavailable", "{body}");
    assert!(body["error"].as_str().expect("error").contains("zygote.py"), "says what is missing: {body}");
    let metrics = service.metrics().await;
    assert!(value(&metrics, "pyexec_worker_recycles_total{reason=\"startup_failure\"}") >= 1.0);
    // Health stays up (the process serves); readiness does not.
    assert_eq!(service.client.get(service.url("/health")).send().await.expect("health").status(), 200);
    assert_eq!(service.client.get(service.url("/ready")).send().await.expect("ready").status(), 503);
}
