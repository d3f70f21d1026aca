//! CONTRACT section 2: what one run can and cannot do. Each test runs
//! something hostile, then checks the next run does not see it.

mod common;

use common::Service;
use serde_json::json;

#[tokio::test]
async fn tmp_is_private_writable_and_gone_after_the_run() {
    let service = Service::start(&["--workers", "1"]).await;
    let body = service
        .ok("import os\ndef main():\n    open('/tmp/left.txt', 'w').write('x')\n    open('here.txt', 'w').write('y')\n    return [os.getcwd(), sorted(os.listdir('/tmp'))]")
        .await;
    assert_eq!(body["result"], json!(["/tmp", ["here.txt", "left.txt"]]));
    let body = service.ok("import os\ndef main():\n    return os.listdir('/tmp')").await;
    assert_eq!(body["result"], json!([]), "files of the previous run are gone");
}

#[tokio::test]
async fn filesystem_outside_tmp_is_read_only() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "def main():\n    out = {}\n    for path in ['/usr/evil', '/evil', '/proc/evil', '/pyexec/evil', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname']:\n        try:\n            open(path, 'w')\n            out[path] = 'WROTE'\n        except OSError as e:\n            out[path] = type(e).__name__\n    return out";
    let body = service.ok(script).await;
    for (path, verdict) in body["result"].as_object().expect("map") {
        assert_ne!(verdict, "WROTE", "{path} must not be writable");
    }
    // No /etc at all: in a pod, Kubernetes mounts /etc/hosts, resolv.conf and
    // hostname separately, and a recursive read-only bind could leave them
    // writable; they are simply not in the jail.
    let body = service
        .ok("import os\ndef main():\n    return [os.path.exists(p) for p in ['/etc', '/etc/passwd', '/etc/hosts', '/root', '/home', '/var']]")
        .await;
    assert_eq!(body["result"], json!([false, false, false, false, false, false]), "no host files");
}

#[tokio::test]
async fn background_processes_die_with_the_run() {
    let service = Service::start(&["--workers", "1"]).await;
    let spawn = "import subprocess, os\ndef main():\n    p = subprocess.Popen(['/bin/sh', '-c', 'setsid sleep 1000 & sleep 1000'], start_new_session=True)\n    pid = os.fork()\n    if pid == 0:\n        os.setsid()\n        import time\n        time.sleep(1000)\n    return sorted(int(x) for x in os.listdir('/proc') if x.isdigit())";
    let body = service.ok(spawn).await;
    assert!(
        body["result"].as_array().expect("pids").len() >= 3,
        "children were alive during the run: {body}"
    );
    let body = service
        .ok("import os\ndef main():\n    return sorted(int(x) for x in os.listdir('/proc') if x.isdigit())")
        .await;
    let pids = body["result"].as_array().expect("pids");
    assert!(pids.len() <= 2, "only the run itself (and its init) are visible, got {pids:?}");
}

#[tokio::test]
async fn a_run_sees_no_other_process() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "import os\ndef main():\n    procs = {}\n    for pid in os.listdir('/proc'):\n        if pid.isdigit():\n            try:\n                procs[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n            except OSError:\n                procs[pid] = '?'\n    return procs";
    let body = service.ok(script).await;
    let procs = body["result"].as_object().expect("map");
    assert!(procs.len() <= 2, "{procs:?}");
    for cmdline in procs.values() {
        let cmdline = cmdline.as_str().expect("str");
        assert!(!cmdline.contains("nsjail") && !cmdline.contains("pyexec "), "sees {cmdline}");
    }
}

#[tokio::test]
async fn monkeypatching_does_not_leak_into_the_next_run() {
    let service = Service::start(&["--workers", "1"]).await;
    service
        .ok("import json, pandas as pd\ndef main():\n    json.dumps = lambda *a, **k: 'HACKED'\n    pd.DataFrame.sum = lambda self, *a, **k: 'HACKED'\n    import builtins\n    builtins.len = lambda x: -1\n    return 1")
        .await;
    let body = service.ok("import json, pandas as pd\ndef main():\n    return [json.dumps([1]), int(pd.DataFrame({'a': [1, 2]})['a'].sum()), len('ab')]").await;
    assert_eq!(body["result"], json!(["[1]", 3, 2]));
}

#[tokio::test]
async fn no_network() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "import socket\ndef main():\n    out = []\n    for host in [('127.0.0.1', 8080), ('10.0.0.1', 80), ('1.1.1.1', 53)]:\n        s = socket.socket()\n        s.settimeout(1)\n        try:\n            s.connect(host)\n            out.append('connected')\n        except OSError as e:\n            out.append(type(e).__name__)\n    try:\n        socket.getaddrinfo('example.com', 80)\n        out.append('resolved')\n    except OSError as e:\n        out.append(type(e).__name__)\n    return out";
    let body = service.ok(script).await;
    for verdict in body["result"].as_array().expect("list") {
        assert!(verdict != "connected" && verdict != "resolved", "{body}");
    }
}

#[tokio::test]
async fn service_environment_is_invisible() {
    let service = Service::start_with_env(
        &[],
        &[("PYEXEC_API_TOKEN", "do-not-leak"), ("AWS_SECRET_ACCESS_KEY", "nope")],
    )
    .await;
    let response = service
        .client
        .post(service.url("/execute"))
        .header("authorization", "Bearer do-not-leak")
        .json(&json!({"script": "import os\ndef main():\n    return dict(os.environ)"}))
        .send()
        .await
        .expect("send");
    let body: serde_json::Value = response.json().await.expect("json");
    let env = body["result"].as_object().expect("env map");
    let text = body["result"].to_string();
    assert!(!text.contains("do-not-leak") && !text.contains("nope"), "{text}");
    assert!(!env.contains_key("PYEXEC_API_TOKEN") && !env.contains_key("AWS_SECRET_ACCESS_KEY"));
    assert!(env.len() <= 12, "small fixed environment, got {env:?}");
}

#[tokio::test]
async fn runs_cannot_touch_the_zygote_or_escape_their_namespaces() {
    let service = Service::start(&["--workers", "1"]).await;
    let script = "import os, signal\ndef main():\n    out = {}\n    out['uid'] = os.getuid()\n    try:\n        os.kill(1, signal.SIGKILL)\n        out['kill1'] = 'sent'\n    except OSError as e:\n        out['kill1'] = type(e).__name__\n    try:\n        os.setuid(0)\n        out['setuid'] = 'root'\n    except OSError as e:\n        out['setuid'] = type(e).__name__\n    try:\n        os.unshare(0)\n    except AttributeError:\n        pass\n    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n    out['unshare_user'] = libc.unshare(0x10000000)\n    out['dumpable_mem'] = os.path.exists('/proc/1/mem') and os.access('/proc/1/mem', os.W_OK)\n    return out";
    let body = service.ok(script).await;
    let result = &body["result"];
    assert_ne!(result["uid"], 0, "{result}");
    assert_ne!(result["setuid"], "root", "{result}");
    assert_eq!(result["unshare_user"], -1, "no nested user namespaces: {result}");
    assert_eq!(result["dumpable_mem"], false, "{result}");
    // Whatever it tried, the service answers normally.
    assert_eq!(service.ok("def main():\n    return 'alive'").await["result"], "alive");
}
