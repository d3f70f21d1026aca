//! `pyexec run` against a real service: what it prints where, and its exit
//! status for each kind of answer.

mod common;

use std::path::Path;
use std::process::Output;

use common::{binary, Service};

/// Runs `pyexec run ARGS...` with a clean environment for its env twins.
async fn pyexec_run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(binary());
    command
        .arg("run")
        .args(args)
        .env_remove("PYEXEC_URL")
        .env_remove("PYEXEC_API_TOKEN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start pyexec run");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    child.wait_with_output().await.expect("pyexec run finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit status, showing both streams when it is not.
fn assert_exit(output: &Output, code: i32) -> (String, String) {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(code), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write file");
    path.display().to_string()
}

#[tokio::test]
async fn run_prints_output_and_result_and_exits_by_verdict() {
    let service = Service::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = ["--url", service.base.as_str()];

    let ok = write(
        dir.path(),
        "ok.py",
        "import sys\ndef main():\n    print('to out')\n    print('to err', file=sys.stderr)\n    return {'sum': 2 + 2}\n",
    );
    let output = pyexec_run(&[&ok, url[0], url[1]], &[], None).await;
    let (stdout, stderr) = assert_exit(&output, 0);
    assert_eq!(stdout, "to out\n{\n  \"sum\": 4\n}\n");
    assert_eq!(stderr, "to err\n");

    // The same script from standard input, the URL from PYEXEC_URL, and
    // limits passed through (an out-of-range one comes back as a refusal).
    let script = "def main():\n    return [1, 'two']\n";
    let output = pyexec_run(
        &["-", "--timeout", "5", "--memory", "64"],
        &[("PYEXEC_URL", &service.base)],
        Some(script),
    )
    .await;
    let (stdout, _) = assert_exit(&output, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON"),
        serde_json::json!([1, "two"])
    );
    let output = pyexec_run(&["-", url[0], url[1], "--memory", "1"], &[], Some(script)).await;
    let (stdout, stderr) = assert_exit(&output, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("(400 invalid_request)") && stderr.contains("\"memory\""), "{stderr}");

    let failing = write(dir.path(), "fails.py", "def main():\n    print('before')\n    return 1 / 0\n");
    let output = pyexec_run(&[&failing, url[0], url[1]], &[], None).await;
    let (stdout, stderr) = assert_exit(&output, 1);
    assert_eq!(stdout, "before\n");
    assert!(stderr.starts_with("pyexec: runtime_error: ZeroDivisionError"), "{stderr}");
    assert!(stderr.contains("Traceback") && stderr.contains("line 3, in main"), "{stderr}");

    // --file sends the file under its base name, into the run's /tmp.
    let data = write(dir.path(), "data.csv", "a,b\n1,2\n3,4\n");
    let reader = write(
        dir.path(),
        "reads.py",
        "import pandas as pd\ndef main():\n    return int(pd.read_csv('data.csv')['b'].sum())\n",
    );
    let output = pyexec_run(&[&reader, url[0], url[1], "--file", &data], &[], None).await;
    let (stdout, _) = assert_exit(&output, 0);
    assert_eq!(stdout, "6\n");

    // Figures: a hint without --figures, PNG files with it.
    let plot = write(
        dir.path(),
        "plot.py",
        "import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1, 2, 3])\n    return 'drawn'\n",
    );
    let output = pyexec_run(&[&plot, url[0], url[1]], &[], None).await;
    let (_, stderr) = assert_exit(&output, 0);
    assert!(stderr.contains("returned 1 figure(s); pass --figures DIR"), "{stderr}");
    let saved = tempfile::tempdir().expect("tempdir");
    let saved_dir = saved.path().display().to_string();
    let output = pyexec_run(&[&plot, url[0], url[1], "--figures", &saved_dir], &[], None).await;
    let (stdout, stderr) = assert_exit(&output, 0);
    assert_eq!(stdout, "\"drawn\"\n");
    assert!(stderr.contains("saved figure 1 (640x480)"), "{stderr}");
    let png = std::fs::read(saved.path().join("figure-1.png")).expect("figure-1.png written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
}

#[tokio::test]
async fn token_from_the_flag_or_the_environment() {
    let service = Service::start(&["--api-token", "cli-test-token"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(dir.path(), "job.py", "def main():\n    return 'hi'\n");
    let url = service.base.as_str();

    let output = pyexec_run(&[&script, "--url", url], &[], None).await;
    let (_, stderr) = assert_exit(&output, 2);
    assert!(stderr.contains("(401 unauthorized)"), "{stderr}");

    let output = pyexec_run(&[&script, "--url", url, "--token", "cli-test-token"], &[], None).await;
    assert_eq!(assert_exit(&output, 0).0, "\"hi\"\n");
    let output = pyexec_run(&[&script, "--url", url], &[("PYEXEC_API_TOKEN", "cli-test-token")], None).await;
    assert_eq!(assert_exit(&output, 0).0, "\"hi\"\n");
}

#[tokio::test]
async fn unreachable_service_exits_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(dir.path(), "job.py", "def main():\n    return 1\n");
    // A port that was free a moment ago and has nothing listening now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let output = pyexec_run(&[&script, "--url", &url], &[], None).await;
    let (stdout, stderr) = assert_exit(&output, 69);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(&format!("cannot reach the pyexec service at 127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn a_silent_service_is_given_up_after_the_read_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(dir.path(), "job.py", "def main():\n    return 1\n");
    // Connections land in the backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let output = pyexec_run(&[&script, "--url", &url, "--read-timeout", "1"], &[], None).await;
    let (stdout, stderr) = assert_exit(&output, 69);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("sent nothing for 1 s") && stderr.contains("--read-timeout"), "{stderr}");
    drop(silent);
}

#[tokio::test]
async fn usage_errors_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(dir.path(), "job.py", "def main():\n    return 1\n");
    let missing = dir.path().join("missing.csv").display().to_string();
    for (args, says) in [
        (vec![], "required"),
        (vec![script.as_str(), "--timeout", "soon"], "--timeout"),
        (vec![script.as_str(), "--file", missing.as_str()], "missing.csv"),
        (vec![script.as_str(), "--url", "ftp://example.com"], "only http:// and https://"),
        (vec![script.as_str(), "--connect-timeout", "0"], "--connect-timeout"),
        (vec!["/nonexistent/job.py"], "cannot read /nonexistent/job.py"),
    ] {
        let output = pyexec_run(&args, &[], None).await;
        let (_, stderr) = assert_exit(&output, 64);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
