//! `pyexec run`: the command-line client. Reads a script (and `--file`s),
//! POSTs it to a pyexec service's `/execute`, prints what the script
//! printed and returned, and exits with a status a shell script can test.
//!
//! This module is a client of the HTTP API only: it imports nothing of the
//! server (no config, pool or worker), and no server module imports it.

mod client;
mod figures;
mod render;
pub mod session;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Parser;
use reqwest::Method;
use serde_json::{json, Map, Value};

use client::{Connection, Service};
use render::{Rendered, Sent};
/// Exit status (sysexits.h `EX_CANTCREAT`): a figure could not be saved.
pub const EXIT_CANT_CREATE: u8 = 73;

pub use render::{EXIT_OK, EXIT_REFUSED, EXIT_SCRIPT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE};

/// `pyexec run SCRIPT [options]`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pyexec run",
    bin_name = "pyexec run",
    version,
    about = "Runs a Python script on a pyexec service: prints what it printed, then what main() returned",
    after_help = "Exit status: 0 success, 1 the script failed (its error and traceback on stderr), \
                  2 the service refused the request, 64 bad flags or an unreadable file, \
                  69 the service is unreachable or failed (5xx), 73 a figure could not be saved."
)]
pub struct RunArgs {
    /// Python file defining main(); `-` reads the script from standard input.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Wall-clock limit of the run, in seconds (default: the service's).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Memory limit of the run, in MiB (default: the service's).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// A file for the run, sent under its base name (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Directory to save the figures the run returns, as figure-N.png.
    #[arg(long, value_name = "DIR")]
    pub figures: Option<PathBuf>,
    /// The service and how long to wait for it.
    #[command(flatten)]
    pub connection: Connection,
}

/// A problem with the command line or the files it names (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value the service would refuse anyway.
    #[error("invalid value for --{flag}: {reason}")]
    Flag {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The script or a `--file` cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error, or what is wrong with its content or name.
        reason: String,
    },
    /// A figure cannot be saved, or `--figures` is not a directory.
    #[error("cannot write {}: {reason}", path.display())]
    Unwritable {
        /// The file or directory.
        path: PathBuf,
        /// The OS error, or what is wrong.
        reason: String,
    },
}

/// Entry point of `pyexec run`; `args` starts with the word `run`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match RunArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's own message: what is wrong, the usage line, and --help.
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pyexec run: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let rendered = runtime.block_on(run(&args));
    emit(&rendered)
}

/// Prints what was rendered and turns its code into the exit status.
fn emit(rendered: &Rendered) -> ExitCode {
    // A closed pipe (`pyexec run x.py | head`) is not worth a panic.
    let _ = std::io::stdout().write_all(rendered.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(rendered.stderr.as_bytes());
    ExitCode::from(rendered.code)
}

/// Sends the request the flags describe and renders the answer.
async fn run(args: &RunArgs) -> Rendered {
    let failed = |code: u8, message: String| Rendered {
        code,
        stderr: format!("pyexec run: {message}\n"),
        ..Default::default()
    };
    let service = match Service::new(&args.connection, args.timeout) {
        Ok(service) => service,
        Err(error) => {
            return failed(if error.is_usage() { EXIT_USAGE } else { EXIT_UNAVAILABLE }, error.to_string())
        }
    };
    let figures_dir = match args.figures.as_deref().map(figures::check_dir).transpose() {
        Ok(dir) => dir,
        Err(error) => return failed(EXIT_USAGE, error.to_string()),
    };
    let body = match request_body(args) {
        Ok(body) => body,
        Err(error) => return failed(EXIT_USAGE, error.to_string()),
    };
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(error) => return failed(EXIT_USAGE, format!("cannot encode the request: {error}")),
    };
    match service.send(Method::POST, "/execute", bytes).await {
        Ok(answer) => {
            let mut rendered =
                render::render(&answer, &args.connection.url, Sent { files: !args.files.is_empty() });
            if answer.status == 200 {
                let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                match figures::save(&body, figures_dir.as_deref()) {
                    Ok(lines) => rendered.stderr.push_str(&lines),
                    Err(error) => {
                        rendered.stderr.push_str(&format!("pyexec run: {error}\n"));
                        rendered.code = EXIT_CANT_CREATE;
                    }
                }
            }
            rendered
        }
        Err(error) => failed(EXIT_UNAVAILABLE, error.to_string()),
    }
}

/// The `/execute` body: the script, the limits given, and the files.
///
/// # Errors
/// [`CliError`] when a file cannot be read or a limit makes no sense.
pub fn request_body(args: &RunArgs) -> Result<Value, CliError> {
    let mut body = Map::new();
    body.insert("script".into(), Value::String(read_script(&args.script)?));
    if let Some(timeout) = args.timeout {
        if !timeout.is_finite() || timeout <= 0.0 {
            return Err(CliError::Flag {
                flag: "timeout",
                reason: format!("{timeout} is not a positive number of seconds"),
            });
        }
        body.insert("timeout".into(), json!(timeout));
    }
    if let Some(memory) = args.memory {
        body.insert("memory".into(), json!(memory));
    }
    if !args.files.is_empty() {
        body.insert("files".into(), Value::Object(encode_files(&args.files)?));
    }
    Ok(Value::Object(body))
}

fn read_script(path: &Path) -> Result<String, CliError> {
    let unreadable = |reason: String| CliError::Unreadable { path: path.to_path_buf(), reason };
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|error| unreadable(error.to_string()))?;
        bytes
    } else {
        std::fs::read(path).map_err(|error| unreadable(error.to_string()))?
    };
    String::from_utf8(bytes).map_err(|_| unreadable("the script is not UTF-8 text".into()))
}

/// `{base name: base64 of the bytes}`; two files with one base name are
/// refused rather than one silently replacing the other.
fn encode_files(paths: &[PathBuf]) -> Result<Map<String, Value>, CliError> {
    let mut files = BTreeMap::new();
    for path in paths {
        let unreadable = |reason: String| CliError::Unreadable { path: path.clone(), reason };
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| unreadable("the file name is missing or not UTF-8".into()))?;
        let bytes = std::fs::read(path).map_err(|error| unreadable(error.to_string()))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        if files.insert(name.to_string(), Value::String(encoded)).is_some() {
            return Err(unreadable(format!("another --file is also named {name:?}")));
        }
    }
    Ok(files.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str], script: &Path) -> RunArgs {
        let mut argv = vec!["run".to_string(), script.display().to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        RunArgs::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn body_has_script_limits_and_base64_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("job.py");
        std::fs::write(&script, "def main():\n    return 1\n").expect("write");
        let data = dir.path().join("data.csv");
        std::fs::write(&data, b"a,b\n1,2\n\xff").expect("write");
        let data = data.display().to_string();
        let body = request_body(&args(&["--timeout", "2.5", "--memory", "64", "--file", &data], &script))
            .expect("body");
        assert_eq!(body["script"], "def main():\n    return 1\n");
        assert_eq!(body["timeout"], 2.5);
        assert_eq!(body["memory"], 64);
        assert_eq!(body["files"], json!({"data.csv": "YSxiCjEsMgr/"}));
        let plain = request_body(&args(&[], &script)).expect("body");
        assert_eq!(plain.as_object().map(Map::len), Some(1), "only the script: {plain}");
    }

    #[test]
    fn unreadable_inputs_and_bad_limits_are_usage_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.py");
        let error = request_body(&args(&[], &missing)).expect_err("missing script").to_string();
        assert!(error.starts_with(&format!("cannot read {}", missing.display())), "{error}");

        let script = dir.path().join("ok.py");
        std::fs::write(&script, "x").expect("write");
        let binary = dir.path().join("binary.py");
        std::fs::write(&binary, b"\xff\xfe").expect("write");
        assert!(request_body(&args(&[], &binary)).expect_err("not UTF-8").to_string().contains("not UTF-8"));
        for timeout in ["0", "-1", "NaN", "inf"] {
            let flag = format!("--timeout={timeout}");
            let error = request_body(&args(&[&flag], &script)).expect_err(timeout).to_string();
            assert!(error.starts_with("invalid value for --timeout"), "{error}");
        }
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).expect("mkdir");
        std::fs::write(nested.join("ok.py"), "y").expect("write");
        let (a, b) = (script.display().to_string(), nested.join("ok.py").display().to_string());
        let error = request_body(&args(&["--file", &a, "--file", &b], &script)).expect_err("dup").to_string();
        assert!(error.contains("also named \"ok.py\""), "{error}");
    }
}
