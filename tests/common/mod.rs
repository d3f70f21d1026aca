//! Starts the real `pyexec` binary (real nsjail, real Python) on
//! `127.0.0.1:0` and talks HTTP to it.
//!
//! The worker code under test is the repository's own `worker/`, copied to a
//! world-readable temporary directory (the jail's unprivileged uid must be
//! able to read it). The sandbox venv and nsjail come from `scripts/install.sh`
//! (`/opt/pyexec`), or from `PYEXEC_SANDBOX_PYTHON` / `PYEXEC_NSJAIL`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

pub struct Service {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
    pub worker_dir: tempfile::TempDir,
    log: ServiceLog,
}

/// The last lines pyexec wrote to stderr, kept so that a test that fails
/// can say why the service misbehaved (`PYEXEC_TEST_LOGS=1` also echoes
/// them as they come).
#[derive(Clone, Default)]
pub struct ServiceLog(Arc<Mutex<VecDeque<String>>>);

impl ServiceLog {
    const KEEP_LINES: usize = 200;

    fn follow(&self, stderr: impl Read + Send + 'static) {
        let log = self.clone();
        let echo = std::env::var_os("PYEXEC_TEST_LOGS").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                let mut lines = log.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if lines.len() == Self::KEEP_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
    }

    pub fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in std::fs::read_dir(from).expect("read worker dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "__pycache__" || name == "tests" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
}

/// Set to `1` to skip, instead of fail, the tests that need the sandbox
/// when it is not installed. `scripts/test.sh` (CI) never sets it.
pub const ALLOW_NO_SANDBOX: &str = "PYEXEC_ALLOW_NO_SANDBOX";

/// Checks once that the sandbox these tests run (nsjail and the sandbox
/// venv, from `scripts/install.sh` or `PYEXEC_NSJAIL` /
/// `PYEXEC_SANDBOX_PYTHON`) is there. If not, says so in one line and ends
/// this test binary: with exit status 0 (skipped) under
/// `PYEXEC_ALLOW_NO_SANDBOX=1`, else 1 (failed), rather than one panic per
/// test.
pub fn require_sandbox() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let missing: Vec<String> =
            [("PYEXEC_NSJAIL", "/opt/pyexec/bin/nsjail"), ("PYEXEC_SANDBOX_PYTHON", "/opt/pyexec/venv/bin/python3")]
                .iter()
                .map(|(var, default)| std::env::var(var).unwrap_or_else(|_| (*default).to_string()))
                .filter(|path| !Path::new(path).is_file())
                .collect();
        if missing.is_empty() {
            return;
        }
        let target = std::env::args().next().unwrap_or_default();
        // target/debug/deps/NAME-HASH: the target's name.
        let target = Path::new(&target).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = target.rsplit_once('-').map_or(target.as_str(), |(name, _)| name).to_string();
        let line = format!(
            "the sandbox is not installed ({} missing): install it with `sudo scripts/install.sh`, or set PYEXEC_NSJAIL and PYEXEC_SANDBOX_PYTHON to it",
            missing.join(", ")
        );
        let skip = std::env::var(ALLOW_NO_SANDBOX).as_deref() == Ok("1");
        let line = if skip {
            format!("SKIPPED {target}: {line} ({ALLOW_NO_SANDBOX}=1)\n")
        } else {
            format!("FAILED {target}: {line} ({ALLOW_NO_SANDBOX}=1 skips these tests instead)\n")
        };
        // Straight to the fd: the test harness captures eprintln!.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::process::exit(i32::from(!skip));
    });
}

/// A world-readable copy of the repository's worker/ directory (after
/// [`require_sandbox`]: every test that runs the service makes one).
pub fn worker_copy() -> tempfile::TempDir {
    require_sandbox();
    let dir = tempfile::Builder::new().prefix("pyexec-worker-").tempdir_in("/tmp").expect("tempdir");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("worker");
    copy_tree(&source, dir.path());
    dir
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pyexec")
}

impl Service {
    /// Starts pyexec with 2 workers plus `args`, waits until /ready.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[]).await
    }

    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let worker_dir = worker_copy();
        let mut command = Command::new(binary());
        command.args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--workers") {
            command.args(["--workers", "2"]);
        }
        command
            .arg("--worker-dir")
            .arg(worker_dir.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start pyexec");
        let stdout = child.stdout.take().expect("stdout");
        let log = ServiceLog::default();
        log.follow(child.stderr.take().expect("stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(90)) else {
            let _ = child.kill(); // still running means stuck: stop it
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            std::thread::sleep(Duration::from_millis(100)); // let the log thread read the last lines
            panic!("pyexec did not print its address ({status}); its stderr:\n{}", log.text());
        };
        let base = line.strip_prefix("pyexec listening on ").expect("address line").to_string();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
        let service = Self { child, base, client, worker_dir, log };
        service.wait_ready(Duration::from_secs(90)).await;
        service
    }

    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(response) = self.client.get(format!("{}/ready", self.base)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pyexec did not become ready; its stderr:\n{}",
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a JSON body to /execute and returns the raw response (for
    /// tests that look at headers).
    pub async fn post_execute(&self, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/execute")).json(body).send().await.expect("an answer")
    }

    /// POSTs a JSON body to /execute; returns status and parsed body.
    pub async fn execute_body(&self, body: Value) -> (u16, Value) {
        let response = self.post_execute(&body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer {status}: {e}: {text}"));
        (status, value)
    }

    pub async fn run(&self, script: &str) -> (u16, Value) {
        self.execute_body(json!({ "script": script })).await
    }

    /// POSTs `body`, asserts the answer's status and error `kind`; returns
    /// the answer.
    pub async fn execute_expecting(&self, body: Value, status: u16, kind: &str) -> Value {
        let (got, answer) = self.execute_body(body.clone()).await;
        assert_eq!((got, answer["kind"].as_str()), (status, Some(kind)), "{body}: {answer}");
        answer
    }

    /// Runs a script that must fail with `status` and `kind`; returns the answer.
    pub async fn run_expecting(&self, script: &str, status: u16, kind: &str) -> Value {
        self.execute_expecting(json!({ "script": script }), status, kind).await
    }

    /// Runs a script that must succeed; returns its result.
    pub async fn ok(&self, script: &str) -> Value {
        let (status, body) = self.run(script).await;
        assert_eq!(status, 200, "expected success, got {body}");
        body
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.expect("metrics").text().await.expect("text")
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// What the service wrote to stderr so far (its last lines).
    pub fn stderr(&self) -> String {
        self.log.text()
    }

    pub fn signal(&self, signal: i32) {
        let signal = Signal::try_from(signal).expect("a known signal number");
        kill(Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|err| panic!("kill(service, {signal}): {err}"));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample line in Prometheus text, e.g.
/// `pyexec_requests_total{kind="ok"}`; `None` when the series is missing
/// (so a renamed series fails the test instead of reading as 0).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
}

/// The value of `series`, which must be present in `metrics`.
pub fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or_else(|| panic!("no series {series} in /metrics:\n{metrics}"))
}

/// The cgroup v1 memory hierarchy the workers' cgroups go in on this host.
pub const V1_MEMORY_PARENT: &str = "/sys/fs/cgroup/memory/pyexec";
/// The cgroup v1 pids hierarchy the workers' cgroups go in on this host.
pub const V1_PIDS_PARENT: &str = "/sys/fs/cgroup/pids/pyexec";

/// The name of the worker cgroup (under [`V1_MEMORY_PARENT`]) that holds
/// host process `pid`, e.g. `w123.1` or `NSJAIL.456`, from its
/// `/proc/PID/cgroup` memory line.
pub fn worker_cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|line| line.split_once(":memory:").map(|(_, path)| path.to_string()))?;
    let below = path.split_once("/pyexec/")?.1;
    Some(below.split('/').next()?.to_string())
}

/// How often [`wait_until`] checks its condition.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds. Panics, saying `what` was awaited and
/// for how long, if it does not hold within `limit`. The one way tests wait
/// for something to happen: bound `limit` by what the wait means, generously
/// (hosts differ 3-4x and CI is busy), never by how long it took once.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < limit, "waited {:?} (limit {limit:?}) for {what}", started.elapsed());
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (bounded) until `path` is gone; true if it is.
pub async fn wait_gone(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while path.exists() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    !path.exists()
}

/// The cgroup directories of the worker cgroup that holds host process
/// `pid` (v1: one per controller, memory and pids; v2: one), derived the
/// way the service lays them out (`CgroupPlan::parents`), or `None` when
/// this host has no cgroup hierarchy pyexec can use (the service then runs
/// on rlimits alone). Each returned directory exists now.
pub fn worker_cgroup_dirs(pid: u32) -> Option<Vec<PathBuf>> {
    let root = Path::new("/sys/fs/cgroup");
    let v1 = root.join("memory/memory.limit_in_bytes").exists() && root.join("pids/cgroup.procs").exists();
    let v2 = root.join("cgroup.controllers").exists();
    if !v1 && !v2 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    let dirs: Vec<PathBuf> = if v2 {
        let path = text.lines().find_map(|line| line.strip_prefix("0::")).expect("a v2 cgroup line");
        vec![root.join(path.trim_start_matches('/'))]
    } else {
        let name = worker_cgroup_of(pid).unwrap_or_else(|| panic!("pid {pid} in no pyexec cgroup: {text}"));
        [V1_MEMORY_PARENT, V1_PIDS_PARENT].iter().map(|parent| Path::new(parent).join(&name)).collect()
    };
    for dir in &dirs {
        assert!(
            dir.is_dir(),
            "worker cgroup {} does not exist (from /proc/{pid}/cgroup: {text})",
            dir.display()
        );
    }
    Some(dirs)
}
