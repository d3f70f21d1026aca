//! The seccomp filters, end to end: the per-run deny-list and the
//! jail-wide Kafel policy, both from `src/worker/seccomp_policy.rs`, in the
//! real service. A refused call is an
//! error the script sees (a normal 200 answer), never a dead worker.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, worker_copy, Service};
use serde_json::{json, Value};

const REFUSED_SCRIPT: &str = include_str!("scripts/seccomp_refused.py");
const EPERM: i64 = 1;
const ENOSYS: i64 = 38;

async fn still_healthy(service: &Service) {
    let body = service.ok("def main():\n    return {'sum': 2 + 2}").await;
    assert_eq!(body["result"], json!({"sum": 4}));
}

#[tokio::test]
async fn every_refused_call_fails_with_eperm_and_clone3_with_enosys() {
    let service = Service::start(&["--workers", "1"]).await;
    let body = service.ok(REFUSED_SCRIPT).await;
    let result = &body["result"];
    let errnos: BTreeMap<String, i64> =
        serde_json::from_value(result["errno"].clone()).expect("{name: errno}");
    let unlisted: Vec<&str> = pyexec::worker::seccomp_policy::refused()
        .iter()
        .map(|call| call.name)
        .filter(|name| !errnos.contains_key(*name))
        .collect();
    assert!(unlisted.is_empty(), "the script calls every refused syscall: missing {unlisted:?}");
    assert!(errnos.len() >= 60, "{} calls made", errnos.len());
    let wrong: Vec<(&String, &i64)> = errnos
        .iter()
        .filter(|(name, errno)| **errno != if name.as_str() == "clone3" { ENOSYS } else { EPERM })
        .collect();
    assert!(wrong.is_empty(), "calls not refused as expected: {wrong:?}");
    // One filter from nsjail (the jail policy), one from the run init.
    let status = result["status"].as_array().expect("Seccomp lines");
    assert!(status.contains(&json!("Seccomp:\t2")), "{status:?}");
    assert!(status.contains(&json!("Seccomp_filters:\t2")), "{status:?}");
    still_healthy(&service).await;
}

#[tokio::test]
async fn threads_and_subprocesses_still_work() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "\
import concurrent.futures, subprocess, sys, threading
import numpy as np, pandas as pd

def main():
    box = []
    t = threading.Thread(target=lambda: box.append(sum(range(10))))
    t.start()
    t.join()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        squares = sorted(pool.map(lambda x: x * x, range(6)))
    true = subprocess.run(['/bin/true']).returncode
    child = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid() > 1)'],
                           capture_output=True, text=True)
    frame = pd.DataFrame({'k': [1, 2, 1], 'v': np.arange(3.0)})
    return {'thread': box, 'pool': squares, 'true': true, 'python': child.stdout.strip(),
            'pandas': frame.groupby('k')['v'].sum().to_dict()}
";
    let body = service.ok(script).await;
    assert_eq!(
        body["result"],
        json!({"thread": [45], "pool": [0, 1, 4, 9, 16, 25], "true": 0, "python": "True",
               "pandas": {"1": 2.0, "2": 1.0}})
    );
    still_healthy(&service).await;
}

/// Every Python process of the jail carries the jail policy; the spares
/// waiting for a request (run-init + runner) already carry the run filter
/// too: it is installed off the request path.
#[tokio::test]
async fn zygote_has_the_jail_filter_and_idle_spares_the_run_filter() {
    let service = Service::start(&["--workers", "1", "--spares-per-worker", "2"]).await;
    still_healthy(&service).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Per worker: the zygote, the plain and the plotting fork server and
    // their standby copies with 1 filter; 2 plain spares and 1 plotting
    // spare x (run-init + runner) with 2. The pool's worker and its hot standby
    // are both started.
    let workers = 1 + pyexec::pool::HOT_STANDBY;
    let expected = BTreeMap::from([(1, 5 * workers), (2, 6 * workers)]);
    let counts = loop {
        let counts = python_filter_counts(service.pid());
        if counts == expected || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counts, expected, "Seccomp_filters -> processes");
}

/// How many descendant processes of `root` that run pyexec's code (the
/// Python ones and each run's `run-init`) have N seccomp filters.
fn python_filter_counts(root: i32) -> BTreeMap<u32, usize> {
    let mut parents = BTreeMap::new();
    let mut filters = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default().to_owned()
        };
        parents.insert(pid, field("PPid:").parse::<i32>().unwrap_or(0));
        let name = field("Name:");
        if name.starts_with("python") || name == "run-init" {
            filters.insert(pid, field("Seccomp_filters:").parse::<u32>().unwrap_or(0));
        }
    }
    let descends = |mut pid: i32| {
        while let Some(&parent) = parents.get(&pid) {
            if parent == root {
                return true;
            }
            pid = parent;
        }
        false
    };
    let mut counts = BTreeMap::new();
    for (&pid, &n) in &filters {
        if descends(pid) {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    counts
}

/// A syscall through another ABI kills the run (the filter cannot judge
/// numbers of another table); the worker answers the next request.
#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn another_abi_kills_the_run_and_the_worker_goes_on() {
    let service = Service::start(&["--workers", "1"]).await;
    let x32 = "import ctypes\ndef main():\n    return ctypes.CDLL(None).syscall(0x40000000 | 39)";
    let answer = service.run_expecting(x32, 422, "killed").await;
    assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    still_healthy(&service).await;
    let int80 = "\
import ctypes, mmap
def main():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20 (getpid); int 0x80; ret
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
";
    service.run_expecting(int80, 422, "killed").await;
    still_healthy(&service).await;
}

/// The answer for a refused call is the script's own error, with its
/// traceback: nothing about the worker changes.
#[tokio::test]
async fn a_refused_call_is_an_ordinary_python_error() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "import socket\ndef main():\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)";
    let answer: Value = service.run_expecting(script, 422, "runtime_error").await;
    let error = answer["error"].as_str().expect("error");
    assert!(error.contains("PermissionError") && error.contains("Operation not permitted"), "{error}");
    still_healthy(&service).await;
}

/// On a machine without a run filter the first spare fails and the service
/// refuses to start (exit 69); it never serves a script unfiltered. The
/// unknown machine is simulated by emptying the worker's list of supported
/// machines in a copy of the worker code.
#[test]
fn an_unknown_machine_keeps_the_service_from_starting() {
    let worker = worker_copy();
    let module = worker.path().join("pyexec_worker/seccomp.py");
    let source = std::fs::read_to_string(&module).expect("seccomp.py");
    let patched: Vec<&str> = source
        .lines()
        .map(|line| if line.starts_with("SUPPORTED_MACHINES = ") { "SUPPORTED_MACHINES = ()" } else { line })
        .collect();
    assert!(patched.contains(&"SUPPORTED_MACHINES = ()"), "seccomp.py defines SUPPORTED_MACHINES");
    std::fs::write(&module, patched.join("\n")).expect("write seccomp.py");

    let mut child = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--worker-dir"])
        .arg(worker.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pyexec");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pyexec kept running although no run filter can be built");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("no syscall table for machine"), "{stderr}");
    assert!(stderr.contains("refusing to run scripts without the syscall filter"), "{stderr}");
    assert!(!stdout.contains("listening"), "never serves: {stdout}");
}
