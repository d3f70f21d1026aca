//! `POST /execute` with `multipart/form-data`, sent by curl itself, against
//! the real binary: the script and its files as they are, no base64.

mod common;

use std::path::Path;
use std::process::Command;

use common::Service;
use serde_json::{json, Value};

/// `curl -F ...` to /execute; (HTTP status, JSON answer).
fn curl(service: &Service, dir: &Path, form: &[&str]) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir).args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"]);
    for part in form {
        cmd.args(["-F", part]);
    }
    let out = cmd
        .arg(service.url("/execute"))
        .output()
        .expect("curl runs (scripts/install.sh --with-test-tools installs it)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), serde_json::from_str(body).unwrap_or_else(|_| json!({ "raw": body })))
}

#[tokio::test]
async fn curl_sends_a_script_and_its_files_without_base64() {
    let service = Service::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let job = "import pandas as pd\nimport helpers\n\ndef main():\n    df = pd.read_csv('data.csv')\n    \
               return {'total': helpers.total(df), 'raw': list(open('blob.bin', 'rb').read())}\n";
    std::fs::write(dir.path().join("job.py"), job).expect("write");
    std::fs::write(dir.path().join("helpers.py"), "def total(df):\n    return int(df['n'].sum())\n")
        .expect("write");
    std::fs::write(dir.path().join("data.csv"), "n\n1\n2\n39\n").expect("write");
    std::fs::write(dir.path().join("blob.bin"), [0u8, 255, 10, 13]).expect("write");

    let (status, answer) = curl(
        &service,
        dir.path(),
        &[
            "script=@job.py",
            "data.csv=@data.csv",
            "helpers.py=@helpers.py",
            "blob.bin=@blob.bin",
            "timeout=20",
            "memory=128",
        ],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!({"total": 42, "raw": [0, 255, 10, 13]}));

    // The limits read from text parts as from JSON numbers.
    let (status, answer) =
        curl(&service, dir.path(), &["script=import time\ndef main():\n    time.sleep(5)", "timeout=0.5"]);
    assert_eq!((status, answer["kind"].as_str()), (422, Some("timeout")), "{answer}");
}

#[tokio::test]
async fn form_refusals_are_those_of_json_bodies() {
    let service =
        Service::start(&["--max-files", "1", "--max-files-bytes", "4", "--max-body-bytes", "4096"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("big.bin"), [7u8; 5]).expect("write");
    std::fs::write(dir.path().join("huge.bin"), vec![7u8; 8192]).expect("write");
    let kind = |(status, answer): (u16, Value)| {
        (
            status,
            answer["kind"].as_str().unwrap_or_default().to_owned(),
            answer["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    for (form, expected) in [
        (vec!["data.csv=a"], "\"script\" is required"),
        (vec!["script=def main(): return 1", "memory=lots"], "\"memory\""),
        (vec!["script=def main(): return 1", "script=x"], "part \"script\" appears twice"),
        (vec!["script=def main(): return 1", "a=1", "b=2"], "--max-files"),
        (vec!["script=def main(): return 1", "big.bin=@big.bin"], "--max-files-bytes"),
        (vec!["script=def main(): return 1", "..=x"], "files[\"..\"]"),
    ] {
        let (status, k, message) = kind(curl(&service, dir.path(), &form));
        assert_eq!((status, k.as_str()), (400, "invalid_request"), "{form:?}: {message}");
        assert!(message.contains(expected), "{form:?}: {message} should contain {expected}");
    }
    // Over the body cap: 413, as for JSON.
    let (status, k, _) =
        kind(curl(&service, dir.path(), &["script=def main(): return 1", "huge.bin=@huge.bin"]));
    assert_eq!((status, k.as_str()), (413, "payload_too_large"));
    // A form without a boundary is not a form.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: multipart/form-data",
            "--data",
            "x",
        ])
        .arg(service.url("/execute"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "415");
}
