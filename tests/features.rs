//! Input files, resource usage and matplotlib figures, against the real
//! binary (real nsjail, real Python with pandas and matplotlib).

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::Service;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Width and height from a PNG's signature and IHDR chunk (panics if the
/// bytes are not a PNG).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "PNG of {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "first chunk is IHDR");
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (word(16), word(20))
}

fn figures(body: &Value) -> &Vec<Value> {
    body["figures"].as_array().unwrap_or_else(|| panic!("\"figures\" is a list: {body}"))
}

fn decoded(figure: &Value) -> Vec<u8> {
    STANDARD.decode(figure["data"].as_str().expect("data is a string")).expect("data is base64")
}

fn usage_of(body: &Value) -> (f64, f64, u64) {
    let usage = &body["usage"];
    let wall = usage["wall_ms"].as_f64().unwrap_or_else(|| panic!("wall_ms in {body}"));
    let cpu = usage["cpu_ms"].as_f64().unwrap_or_else(|| panic!("cpu_ms in {body}"));
    let rss = usage["max_rss_kib"].as_u64().unwrap_or_else(|| panic!("max_rss_kib in {body}"));
    (wall, cpu, rss)
}

#[tokio::test]
async fn files_land_in_tmp_and_pandas_reads_a_csv() {
    let service = Service::start(&[]).await;
    let csv = b"city,temp\nOslo,3\nRome,18\nOslo,5\n";
    let blob: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let script = "import os, pandas as pd\n\
                  def main():\n\
                  \x20   df = pd.read_csv('data.csv')\n\
                  \x20   with open('/tmp/blob.bin', 'rb') as f:\n\
                  \x20       blob = f.read()\n\
                  \x20   st = os.stat('data.csv')\n\
                  \x20   return {'mean': df.groupby('city')['temp'].mean().to_dict(), 'blob': list(blob),\n\
                  \x20           'mode': oct(st.st_mode & 0o777), 'cwd': os.getcwd(), 'names': sorted(os.listdir('.'))}";
    let body = json!({"script": script, "files": {"data.csv": b64(csv), "blob.bin": b64(&blob)}});
    let (status, answer) = service.execute_body(body).await;
    assert_eq!(status, 200, "{answer}");
    let result = &answer["result"];
    assert_eq!(result["mean"], json!({"Oslo": 4.0, "Rome": 18.0}));
    let round_trip: Vec<u8> =
        result["blob"].as_array().expect("list").iter().map(|v| v.as_u64().expect("byte") as u8).collect();
    assert_eq!(round_trip, blob, "binary bytes survive the round trip");
    assert_eq!(result["mode"], "0o644");
    assert_eq!(result["cwd"], "/tmp");
    assert_eq!(result["names"], json!(["blob.bin", "data.csv"]));

    // The next run's /tmp is fresh: the files are gone.
    let next = service.ok("import os\ndef main():\n    return os.listdir('/tmp')").await;
    assert_eq!(next["result"], json!([]));
}

/// The files cap is reachable with the default body cap: 8 MiB of CSV, a
/// third more in base64, still fits (the body default derives from it);
/// and pandas reads it within the default `memory` (its parallel reader's
/// threads once spent 256 MiB of address space on malloc arenas).
#[tokio::test]
async fn a_csv_at_the_files_cap_fits_the_default_body() {
    let service = Service::start(&[]).await;
    let row = b"1234567,8901234\n";
    let rows = (8 * 1024 * 1024 - 4) / row.len();
    let csv: Vec<u8> = b"a,b\n".iter().chain(row.iter().cycle().take(rows * row.len())).copied().collect();
    let script = "import pandas as pd\ndef main():\n    return len(pd.read_csv('data.csv'))";
    let body = json!({"script": script, "files": {"data.csv": b64(&csv)}, "timeout": 30});
    let (status, answer) = service.execute_body(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!(rows));
}

#[tokio::test]
async fn each_bad_file_is_a_400_naming_it() {
    let service = Service::start(&["--max-files", "2", "--max-files-bytes", "8"]).await;
    let long = "n".repeat(256);
    for (files, expected) in [
        (json!({"../x": ""}), r#"files["../x"]: name must not contain '/' or be '.' or '..'"#),
        (json!({"a/b": ""}), r#"files["a/b"]"#),
        (json!({".": ""}), r#"files["."]"#),
        (json!({"..": ""}), r#"files[".."]"#),
        (json!({"": ""}), "name must not be empty"),
        (json!({"a\u{0}b": ""}), "NUL"),
        (json!({ long.as_str(): "" }), "256 bytes long, over the limit of 255"),
        (json!({"a": "not base64!"}), r#"files["a"]: not valid base64"#),
        (json!({"a": 42}), r#"files["a"]: the content must be a base64 string"#),
        (json!(["a"]), "field \"files\" must be an object"),
        (json!({"a": "", "b": "", "c": ""}), "3 files, over the limit of 2 (--max-files)"),
        (json!({"a": b64(b"12345"), "b": b64(b"6789")}), "--max-files-bytes"),
    ] {
        let body = json!({"script": "def main():\n    return 1", "files": files});
        let answer = service.execute_expecting(body, 400, "invalid_request").await;
        let message = answer["error"].as_str().expect("error");
        assert!(message.contains(expected), "{files}: {message} should contain {expected}");
    }
    // At the caps exactly: accepted.
    let body = json!({"script": "import os\ndef main():\n    return os.path.getsize('b')",
                      "files": {"a": b64(b"1234"), "b": b64(b"5678")}});
    let (status, answer) = service.execute_body(body).await;
    assert_eq!((status, &answer["result"]), (200, &json!(4)), "{answer}");
}

#[tokio::test]
async fn usage_is_reported_and_grows_with_cpu_and_memory() {
    let service = Service::start(&[]).await;
    let idle = service.ok("def main():\n    return 1").await;
    let (wall, cpu, rss) = usage_of(&idle);
    assert!(wall > 0.0 && cpu >= 0.0 && rss > 10_000, "plausible trivial usage: {idle}");
    assert!(cpu <= wall * 2.0 + 5.0, "one thread cannot use much more CPU than wall time: {idle}");

    let busy =
        service.ok("import time\ndef main():\n    end = time.process_time() + 0.3\n    while time.process_time() < end:\n        pass\n    return 1").await;
    let (busy_wall, busy_cpu, _) = usage_of(&busy);
    assert!(busy_cpu >= 250.0, "a 0.3 s busy loop counts its CPU: {busy}");
    assert!(busy_wall >= busy_cpu * 0.9, "wall covers the CPU of one thread: {busy}");

    let big = service
        .ok("import numpy as np\ndef main():\n    a = np.ones(200 * 2**20 // 8)\n    return float(a.sum())")
        .await;
    let (_, _, big_rss) = usage_of(&big);
    assert!(big_rss >= rss + 150 * 1024, "a 200 MiB array raises max_rss_kib ({rss} -> {big_rss}): {big}");

    // 422 answers of script errors carry it too.
    let failed = service.run_expecting("def main():\n    return 1 / 0", 422, "runtime_error").await;
    let (_, _, failed_rss) = usage_of(&failed);
    assert!(failed_rss > 10_000, "{failed}");
    service.run_expecting("def main(:\n    pass", 422, "syntax_error").await["usage"]["wall_ms"]
        .as_f64()
        .expect("syntax errors have usage");

    // A run killed by a signal: measured by its init (wait4).
    let killed =
        service.run_expecting("import os\ndef main():\n    os.kill(os.getpid(), 9)", 422, "killed").await;
    let (_, _, killed_rss) = usage_of(&killed);
    assert!(killed_rss > 10_000, "{killed}");

    // A wall-clock timeout: only the wall time is known.
    let body = json!({"script": "import time\ndef main():\n    time.sleep(10)", "timeout": 0.5});
    let timed_out = service.execute_expecting(body, 422, "timeout").await;
    assert!(timed_out["usage"]["wall_ms"].as_f64().expect("wall") >= 450.0, "{timed_out}");
    assert!(timed_out["usage"]["cpu_ms"].is_null(), "{timed_out}");
}

const PLOT: &str = "import matplotlib.pyplot as plt\n";

#[tokio::test]
async fn one_figure_comes_back_as_a_png_of_its_size() {
    let service = Service::start(&[]).await;
    let script = format!(
        "{PLOT}def main():\n    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n    ax.plot([1, 3, 2])\n    return 'drawn'"
    );
    let body = service.ok(&script).await;
    assert_eq!(body["result"], "drawn");
    let [figure] = figures(&body).as_slice() else { panic!("one figure: {body}") };
    assert_eq!(figure["format"], "png");
    assert_eq!((figure["width"].as_u64(), figure["height"].as_u64()), (Some(200), Some(150)));
    assert_eq!(png_size(&decoded(figure)), (200, 150));
    assert!(body.get("figures_truncated").is_none());
}

#[tokio::test]
async fn open_figures_return_in_order_and_closed_ones_do_not() {
    let service = Service::start(&[]).await;
    let script = format!(
        "{PLOT}def main():\n\
         \x20   plt.figure(figsize=(2, 2), dpi=40)\n\
         \x20   closed = plt.figure(figsize=(5, 5), dpi=40)\n\
         \x20   plt.figure(figsize=(3, 1), dpi=40)\n\
         \x20   plt.close(closed)\n\
         \x20   return plt.get_fignums()"
    );
    let body = service.ok(&script).await;
    assert_eq!(body["result"], json!([1, 3]));
    let sizes: Vec<(u32, u32)> = figures(&body).iter().map(|f| png_size(&decoded(f))).collect();
    assert_eq!(sizes, [(80, 80), (120, 40)]);

    // Nothing drawn: an empty list, no flag.
    let plain = service.ok("def main():\n    return 1").await;
    assert_eq!(plain["figures"], json!([]));
    assert!(plain.get("figures_truncated").is_none());
    // All closed: nothing either.
    let closed = service
        .ok(&format!("{PLOT}def main():\n    plt.plot([1])\n    plt.close('all')\n    return 1"))
        .await;
    assert_eq!(closed["figures"], json!([]));
    // A failed script renders nothing.
    let failed = service
        .run_expecting(
            &format!("{PLOT}def main():\n    plt.plot([1])\n    return {{1}}"),
            422,
            "result_not_json",
        )
        .await;
    assert!(failed.get("figures").is_none(), "{failed}");
}

#[tokio::test]
async fn figures_over_the_caps_are_dropped_and_flagged() {
    let service = Service::start(&["--max-figures", "2"]).await;
    let three = format!(
        "{PLOT}def main():\n    for _ in range(3):\n        plt.figure(figsize=(1, 1), dpi=30)\n    return 3"
    );
    let body = service.ok(&three).await;
    assert_eq!(figures(&body).len(), 2, "{body}");
    assert_eq!(body["figures_truncated"], true);

    let bytes_capped = Service::start(&["--max-figures-bytes", "2000"]).await;
    let big = format!(
        "{PLOT}import numpy as np\ndef main():\n    plt.figure(figsize=(1, 1), dpi=20)\n    \
         plt.figure(figsize=(4, 4), dpi=50)\n    plt.imshow(np.random.rand(64, 64))\n    return 2"
    );
    let body = bytes_capped.ok(&big).await;
    let kept = figures(&body);
    assert_eq!(kept.len(), 1, "the small first figure fits, the noisy second does not: {body}");
    assert_eq!(png_size(&decoded(&kept[0])), (20, 20));
    assert_eq!(body["figures_truncated"], true);
}

#[tokio::test]
async fn a_figure_that_cannot_render_is_a_runtime_error() {
    let service = Service::start(&[]).await;
    let script = format!(
        "{PLOT}import matplotlib.artist as martist\n\
         class Boom(martist.Artist):\n\
         \x20   def draw(self, renderer):\n\
         \x20       raise RuntimeError('boom')\n\
         def main():\n\
         \x20   plt.figure().add_artist(Boom())\n\
         \x20   return 1"
    );
    let body = service.run_expecting(&script, 422, "runtime_error").await;
    assert_eq!(body["error"], "rendering figure 1 failed: RuntimeError: boom", "{body}");
    assert!(body["traceback"].as_str().expect("traceback").contains("line 5, in draw"), "{body}");
    assert!(body["usage"]["cpu_ms"].as_f64().is_some(), "{body}");
}

#[tokio::test]
async fn rendering_stays_within_the_runs_memory_and_time_limits() {
    let service = Service::start(&[]).await;
    // 30000 x 30000 pixels: the renderer's buffer is over the run's memory.
    let huge = format!("{PLOT}def main():\n    plt.figure(figsize=(300, 300))\n    return 1");
    let body = service.run_expecting(&huge, 422, "memory_limit").await;
    assert!(body["error"].as_str().expect("error").starts_with("rendering the figures"), "{body}");
    // Rendering counts against the run's own timeout.
    let slow = format!(
        "{PLOT}def main():\n    for _ in range(8):\n        plt.figure(figsize=(40, 40))\n        plt.plot(range(100))\n    return 1"
    );
    service.execute_expecting(json!({"script": slow, "timeout": 0.5}), 422, "timeout").await;
    // And the worker serves the next request normally.
    service.ok("def main():\n    return 1").await;
}
