//! Per-run cgroup leaves (`--run-cgroup on`, the default) on this host's
//! cgroup v1: a run's `memory` caps all of its processes together, not
//! only each one (RLIMIT_AS); its leaf is capped while it runs and gone
//! after it; nothing of it outlives the service; and the run cannot reach
//! cgroupfs. `--run-cgroup off` keeps today's per-process cap, which is
//! what shows the test can fail.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{wait_gone, Service, V1_MEMORY_PARENT, V1_PIDS_PARENT};
use serde_json::{json, Value};

/// Six forked children of 48 MiB each, all written (resident) and alive
/// together: 288 MiB, each far below its own RLIMIT_AS of 64 MiB more than
/// its parent's address space.
const SIX_CHILDREN: &str = r#"
import os, time
def main():
    pids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            block = bytearray(48 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(3)
            os._exit(0)
        pids.append(pid)
    return [os.waitpid(pid, 0)[1] for pid in pids]
"#;

fn worker_dirs(parent: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// The worker cgroups of `service` under `parent` (`w<service pid>.<id>`).
fn service_cgroups(service: &Service, parent: &str) -> Vec<PathBuf> {
    let prefix = format!("w{}.", service.child.id());
    worker_dirs(parent)
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect()
}

/// The run leaves (`run.*`) of the service's workers in the memory hierarchy.
fn run_leaves(service: &Service) -> Vec<PathBuf> {
    service_cgroups(service, V1_MEMORY_PARENT)
        .into_iter()
        .flat_map(|worker| worker_dirs(worker.to_str().unwrap_or_default()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("run.")))
        .collect()
}

fn read_number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

fn skip_without_v1() -> bool {
    let missing = !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    if missing {
        eprintln!("skipped: this host has no cgroup v1 memory controller (the VM test covers v2)");
    }
    missing
}

async fn six_children(service: &Service) -> (u16, Value) {
    service.execute_body(json!({"script": SIX_CHILDREN, "memory": 64, "timeout": 30})).await
}

#[tokio::test]
async fn children_together_over_the_run_memory_answer_memory_limit() {
    if skip_without_v1() {
        return;
    }
    let service = Service::start(&["--workers", "1"]).await;
    assert!(!run_leaves(&service).is_empty(), "each spare has a leaf");
    let (status, body) = six_children(&service).await;
    assert_eq!((status, body["kind"].as_str()), (422, Some("memory_limit")), "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("together exceeded its memory limit of 64 MiB"), "{body}");
    // The worker survived and serves the next run normally.
    assert_eq!(service.ok("def main():\n    return 'next'").await["result"], "next");
}

#[tokio::test]
async fn without_run_leaves_the_same_run_is_answered_200() {
    if skip_without_v1() {
        return;
    }
    // Today's per-process cap only: what the leaves are for.
    let service = Service::start(&["--workers", "1", "--run-cgroup", "off"]).await;
    assert!(run_leaves(&service).is_empty() && service_cgroups(&service, V1_MEMORY_PARENT).is_empty());
    let (status, body) = six_children(&service).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!([0, 0, 0, 0, 0, 0]), "{body}");
}

#[tokio::test]
async fn a_run_within_its_cap_is_ok_and_its_leaf_is_capped_then_removed() {
    if skip_without_v1() {
        return;
    }
    let service = Service::start(&["--workers", "1"]).await;
    let idle: Vec<PathBuf> = run_leaves(&service);
    let unlimited = idle.iter().map(|leaf| read_number(&leaf.join("memory.limit_in_bytes"))).max();
    let client = service.client.clone();
    let url = service.url("/execute");
    // Three children of 24 MiB (72 MiB together) in a 256 MiB run, alive
    // long enough to find the run's leaf from outside while it runs.
    let script = SIX_CHILDREN.replace("range(6)", "range(3)").replace("48 << 20", "24 << 20");
    let run = tokio::spawn(async move {
        let response =
            client.post(url).json(&json!({"script": script, "memory": 256, "timeout": 30})).send().await;
        let response = response.expect("answered");
        (response.status().as_u16(), response.json::<Value>().await.expect("json"))
    });
    // The running run's leaf is the one whose limit is no longer the
    // unlimited one the fork server left.
    let mut capped = None;
    for _ in 0..100 {
        capped = run_leaves(&service).into_iter().find(|leaf| {
            std::fs::read_to_string(leaf.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|limit| Some(limit) != unlimited)
        });
        if capped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leaf = capped.expect("the run's leaf gets the request's memory as its limit");
    let limit = read_number(&leaf.join("memory.limit_in_bytes"));
    // The request's 256 MiB plus one /tmp (64 MiB) on top of what the idle
    // spare held (a few MiB of its own pages).
    assert!((320 << 20..(320 + 128) << 20).contains(&limit), "limit {limit}");
    let pids = Path::new(V1_PIDS_PARENT)
        .join(leaf.parent().and_then(Path::file_name).expect("worker"))
        .join(leaf.file_name().expect("name"));
    assert_eq!(read_number(&pids.join("pids.max")), 32 + 8, "the run's own process cap");
    let (status, body) = run.await.expect("joined");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!([0, 0, 0]), "{body}");
    assert!(wait_gone(&leaf, Duration::from_secs(10)).await, "{} left after its run", leaf.display());
    assert!(wait_gone(&pids, Duration::from_secs(10)).await, "{} left after its run", pids.display());
}

#[tokio::test]
async fn the_run_cannot_reach_cgroupfs_or_its_caps() {
    if skip_without_v1() {
        return;
    }
    let service = Service::start(&["--workers", "1"]).await;
    // No fd of the worker cgroup survives into the run, no cgroupfs is
    // mounted, mounting one is refused, and the run's cgroup namespace is
    // rooted at its own leaf.
    let script = r#"
import os
def main():
    fds = {}
    for fd in os.listdir('/proc/self/fd'):
        try:
            fds[fd] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            pass
    mounts = open('/proc/self/mounts').read()
    try:
        os.makedirs('/tmp/cg', exist_ok=True)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mount(b'cgroup', b'/tmp/cg', b'cgroup', 0, b'memory')
        mount = (rc, ctypes.get_errno())
    except Exception as e:
        mount = repr(e)
    return {'fds': fds, 'cgroupfs': 'cgroup' in mounts, 'mount': mount,
            'cgroup': open('/proc/self/cgroup').read()}
"#;
    let body = service.ok(script).await;
    let result = &body["result"];
    let fds = result["fds"].as_object().expect("fds");
    assert!(!fds.contains_key("4") && !fds.contains_key("5"), "{body}");
    assert!(fds.values().all(|target| !target.as_str().unwrap_or_default().contains("cgroup")), "{body}");
    assert_eq!(result["cgroupfs"], false, "{body}");
    assert_eq!(result["mount"][0], -1, "mount refused: {body}");
    let memory_line = result["cgroup"].as_str().unwrap_or_default().lines().find(|l| l.contains(":memory:"));
    assert_eq!(memory_line.map(|l| l.rsplit(':').next()), Some(Some("/")), "{body}");
}

#[tokio::test]
async fn nothing_of_the_workers_cgroups_outlives_the_service() {
    if skip_without_v1() {
        return;
    }
    let mut service = Service::start(&["--workers", "2"]).await;
    assert_eq!(service.ok("def main():\n    return 1").await["result"], 1);
    let made: Vec<PathBuf> = [V1_MEMORY_PARENT, V1_PIDS_PARENT]
        .into_iter()
        .flat_map(|parent| service_cgroups(&service, parent))
        .collect();
    assert!(made.len() >= 4, "two workers, two hierarchies: {made:?}");
    service.signal(15);
    let mut exited = false;
    for _ in 0..300 {
        if let Ok(Some(_)) = service.child.try_wait() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited, "pyexec exits on SIGTERM");
    let left: Vec<&PathBuf> = made.iter().filter(|dir| dir.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
