//! `pyexec session new|run|rm`: drive a notebook session from a shell.
//!
//! `new` prints the session's id alone on stdout (`ID=$(pyexec session new)`),
//! `run ID FILE` sends FILE (or `-`: stdin) as the next cell and prints like
//! `pyexec run` (output, then the value; a value that is not JSON as its
//! repr), `rm ID` deletes the session. Exit statuses are `pyexec run`'s.
//! A client of the HTTP API only, like the rest of `cli`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{Answer, Connection, Service};
use super::render::{self, Rendered, Sent, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE};
use super::{encode_files, figures, read_script, EXIT_CANT_CREATE};

/// `pyexec session COMMAND`.
#[derive(Parser, Debug)]
#[command(
    name = "pyexec session",
    bin_name = "pyexec session",
    version,
    about = "Drives a notebook session on a pyexec service: globals persist between cells",
    after_help = "Exit status: as `pyexec run` (0 success, 1 the cell failed, 2 refused, e.g. no such session, \
                  64 bad flags, 69 unreachable or 5xx)."
)]
pub struct SessionArgs {
    #[command(subcommand)]
    command: Command,
    /// The service and how long to wait for it.
    #[command(flatten)]
    connection: Connection,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Creates a session; prints its id.
    New {
        /// Default timeout of each cell, in seconds.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Memory of the whole session, in MiB.
        #[arg(long, value_name = "MIB")]
        memory: Option<u64>,
        /// Idle timeout, in seconds.
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<f64>,
        /// A file for the session's /tmp, under its base name (repeatable).
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
    },
    /// Runs FILE (`-`: standard input) as the session's next cell.
    Run {
        /// The session id.
        id: String,
        /// The cell's source.
        file: PathBuf,
        /// Timeout of this cell, in seconds.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Directory to save the figures the cell returns, as figure-N.png.
        #[arg(long, value_name = "DIR")]
        figures: Option<PathBuf>,
    },
    /// Deletes a session.
    Rm {
        /// The session id.
        id: String,
    },
}

/// Entry point of `pyexec session`; `args` starts with the word `session`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> std::process::ExitCode {
    let args = match SessionArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = error.print();
            return std::process::ExitCode::from(EXIT_USAGE);
        }
    };
    let rendered = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(session(&args)),
        Err(error) => failed(EXIT_UNAVAILABLE, format!("cannot start the async runtime: {error}")),
    };
    super::emit(&rendered)
}

fn failed(code: u8, message: String) -> Rendered {
    Rendered { code, stderr: format!("pyexec session: {message}\n"), ..Default::default() }
}

fn positive(flag: &'static str, value: Option<f64>) -> Result<Option<f64>, Rendered> {
    match value {
        Some(secs) if !secs.is_finite() || secs <= 0.0 => Err(failed(
            EXIT_USAGE,
            format!("invalid value for --{flag}: {secs} is not a positive number of seconds"),
        )),
        other => Ok(other),
    }
}

async fn session(args: &SessionArgs) -> Rendered {
    match session_call(args).await {
        Ok(rendered) | Err(rendered) => rendered,
    }
}

async fn session_call(args: &SessionArgs) -> Result<Rendered, Rendered> {
    let run_timeout = match &args.command {
        Command::Run { timeout, .. } => *timeout,
        Command::New { .. } | Command::Rm { .. } => None,
    };
    let service = Service::new(&args.connection, run_timeout).map_err(|error| {
        failed(if error.is_usage() { EXIT_USAGE } else { EXIT_UNAVAILABLE }, error.to_string())
    })?;
    let url = &args.connection.url;
    match &args.command {
        Command::New { timeout, memory, idle_timeout, files } => {
            let mut body = Map::new();
            if let Some(timeout) = positive("timeout", *timeout)? {
                body.insert("timeout".into(), json!(timeout));
            }
            if let Some(idle) = positive("idle-timeout", *idle_timeout)? {
                body.insert("idle_timeout".into(), json!(idle));
            }
            if let Some(memory) = memory {
                body.insert("memory".into(), json!(memory));
            }
            if !files.is_empty() {
                let encoded = encode_files(files).map_err(|error| failed(EXIT_USAGE, error.to_string()))?;
                body.insert("files".into(), Value::Object(encoded));
            }
            let answer = call(&service, Method::POST, "/sessions", &Value::Object(body)).await?;
            let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            match (answer.status, parsed.get("id").and_then(Value::as_str)) {
                (201, Some(id)) => {
                    Ok(Rendered { stdout: format!("{id}\n"), code: EXIT_OK, ..Default::default() })
                }
                _ => Ok(render::render(&answer, url, Sent { files: !files.is_empty() })),
            }
        }
        Command::Run { id, file, timeout, figures: dir } => {
            let dir = dir
                .as_deref()
                .map(figures::check_dir)
                .transpose()
                .map_err(|error| failed(EXIT_USAGE, error.to_string()))?;
            let code = read_script(file).map_err(|error| failed(EXIT_USAGE, error.to_string()))?;
            let mut body = Map::new();
            body.insert("code".into(), Value::String(code));
            if let Some(timeout) = positive("timeout", *timeout)? {
                body.insert("timeout".into(), json!(timeout));
            }
            let path = format!("/sessions/{}/execute", path_segment(id)?);
            let answer = call(&service, Method::POST, &path, &Value::Object(body)).await?;
            let mut rendered = render::render(&answer, url, Sent::default());
            if answer.status == 200 {
                let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                match figures::save(&parsed, dir.as_deref()) {
                    Ok(lines) => rendered.stderr.push_str(&lines),
                    Err(error) => {
                        rendered.stderr.push_str(&format!("pyexec session: {error}\n"));
                        rendered.code = EXIT_CANT_CREATE;
                    }
                }
            }
            Ok(rendered)
        }
        Command::Rm { id } => {
            let path = format!("/sessions/{}", path_segment(id)?);
            let answer = call(&service, Method::DELETE, &path, &Value::Null).await?;
            if answer.status == 204 {
                return Ok(Rendered { code: EXIT_OK, ..Default::default() });
            }
            Ok(render::render(&answer, url, Sent::default()))
        }
    }
}

/// An id as the service hands them out is URL-safe; anything else is refused here.
fn path_segment(id: &str) -> Result<&str, Rendered> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(id)
    } else {
        Err(failed(EXIT_REFUSED, "a session id has only letters, digits, '-' and '_'".into()))
    }
}

async fn call(service: &Service, method: Method, path: &str, body: &Value) -> Result<Answer, Rendered> {
    let bytes = if body.is_null() { Vec::new() } else { serde_json::to_vec(body).unwrap_or_default() };
    service.send(method, path, bytes).await.map_err(|error| failed(EXIT_UNAVAILABLE, error.to_string()))
}
