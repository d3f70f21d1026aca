//! The `pyexec` binary: config -> tracing -> preflight -> serve -> signal -> drain.
//!
//! `pyexec [serve] [FLAGS]` serves (the word `serve` is optional, so every
//! existing invocation keeps working); `pyexec run SCRIPT ...` is the
//! command-line client in [`pyexec::cli`]; `pyexec doctor [FLAGS]` is the
//! self-check in [`pyexec::doctor`].

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use pyexec::config::{Config, Flags, LogFormat};
use pyexec::executor::Executor;
use pyexec::http::{self, App};
use pyexec::metrics::Metrics;
use pyexec::pool::WorkerPool;
use pyexec::session::metrics::SessionMetrics;
use pyexec::session::Sessions;
use pyexec::supervisor::Supervisor;
use pyexec::worker::cgroup::CgroupPlan;

/// sysexits.h: command-line usage error.
const EX_USAGE: u8 = 64;
/// sysexits.h: a required service (the sandbox) is unavailable.
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    // The server's flags have no positional argument, so a first argument
    // `run`, `doctor`, `debug` or `serve` cannot be a value that used to mean something else.
    match args.get(1).and_then(|arg| arg.to_str()) {
        Some("run") => return pyexec::cli::main(args.into_iter().skip(1)),
        Some("session") => return pyexec::cli::session::main(args.into_iter().skip(1)),
        Some("doctor") => return pyexec::doctor::main(args.into_iter().skip(1)),
        Some("debug") => return debug(args),
        Some("serve") => {
            args.splice(0..2, [OsString::from("pyexec serve")]);
        }
        _ => {}
    }
    serve(args)
}

/// Hidden `pyexec debug seccomp-bpf` (the run filter as hex) and
/// `pyexec debug nsjail-argv [SERVER FLAGS]` (one worker's production argv,
/// one argument per line, without cgroup flags): the sandbox tests take
/// the boundary from the binary instead of keeping their own copy.
fn debug(args: Vec<OsString>) -> ExitCode {
    match args.get(2).and_then(|arg| arg.to_str()) {
        Some("seccomp-bpf") => match pyexec::worker::seccomp_policy::run_filter_bytes() {
            Ok(bytes) => {
                println!("{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("pyexec: {error}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        },
        Some("nsjail-argv") => {
            let mut flags = vec![OsString::from("pyexec debug nsjail-argv")];
            flags.extend(args.into_iter().skip(3));
            let config = match parse_config(flags) {
                Ok(config) => config,
                Err(code) => return code,
            };
            for arg in pyexec::worker::nsjail::render(&config.sandbox, &CgroupPlan::Off) {
                println!("{}", arg.to_string_lossy());
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("pyexec: usage: pyexec debug seccomp-bpf | pyexec debug nsjail-argv [SERVER FLAGS]");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn serve(args: Vec<OsString>) -> ExitCode {
    let config = match parse_config(args) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pyexec: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pyexec: {error:#}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// Flags and their validation; a bad value is one line and exit 64.
fn parse_config(args: Vec<OsString>) -> Result<Config, ExitCode> {
    let flags = match Flags::try_parse_from(args) {
        Ok(flags) => flags,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(error) => {
            let rendered = error.to_string();
            let line = rendered.lines().next().unwrap_or("invalid command line");
            eprintln!("pyexec: {}", line.trim_start_matches("error: "));
            return Err(ExitCode::from(EX_USAGE));
        }
    };
    flags.validate().map_err(|error| {
        eprintln!("pyexec: {error}");
        ExitCode::from(EX_USAGE)
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PYEXEC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_paths(config: &Config) -> anyhow::Result<()> {
    let sandbox = &config.sandbox;
    let zygote = sandbox.worker_dir.join("zygote.py");
    for (path, what, hint) in [
        (&sandbox.nsjail, "nsjail", "run scripts/install.sh or pass --nsjail"),
        (&sandbox.python, "the sandbox Python", "run scripts/install.sh or pass --sandbox-python"),
        (&zygote, "the worker code (zygote.py)", "run scripts/install.sh or pass --worker-dir"),
    ] {
        anyhow::ensure!(path.exists(), "{what} not found at {}; {hint}", path.display());
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    check_paths(&config)?;
    let cgroup = CgroupPlan::detect(
        config.sandbox.cgroup,
        std::path::Path::new("/sys/fs/cgroup"),
        config.sandbox.cgroup_parent.as_deref(),
    )?;
    let swept = cgroup.sweep_stale();
    if swept > 0 {
        tracing::info!(swept, "removed cgroups left by killed workers");
    }
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let (pool, repairs) =
        WorkerPool::new(config.pool.clone(), config.sandbox.clone(), cgroup.clone(), metrics.clone())
            .context("cannot build the worker pool")?;

    // Fail closed: no sandbox, no service.
    let first = Supervisor::preflight(&pool).await.context("the sandbox cannot start")?;
    tracing::info!(
        cgroup = cgroup.label(),
        python = %first.info().python,
        numpy = %first.info().numpy,
        pandas = %first.info().pandas,
        "sandbox preflight passed"
    );

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let address = listener.local_addr().context("listener has no address")?;
    // Tests and scripts read this line to find the port.
    println!("pyexec listening on http://{address}");
    tracing::info!(%address, workers = config.pool.workers, "serving");

    let supervisor = Supervisor::start(pool.clone(), first, repairs);
    let executor = Executor::new(pool.clone(), metrics.clone());
    let session_metrics =
        SessionMetrics::register(&registry).context("cannot register the session metrics")?;
    let sessions =
        Sessions::new(config.sessions.clone(), config.limits.clone(), pool.clone(), session_metrics);
    let reaper = sessions.start_reaper();
    let app = App::new(executor, pool.clone(), metrics, config.http.clone(), config.limits.clone());
    let app = Arc::new(app.with_sessions(sessions.clone()));
    let draining = pool.clone();
    let drained = http::serve(listener, app, async move {
        shutdown_signal().await;
        draining.start_draining();
    })
    .await;
    if !drained {
        tracing::warn!("shutdown deadline passed with requests still in flight");
    }
    reaper.abort();
    sessions.shutdown().await;
    supervisor.shutdown().await;
    // A worker killed during shutdown (a standby still starting) cannot
    // remove its own leaf; nothing of ours may outlive us.
    let swept = cgroup.sweep_stale();
    if swept > 0 {
        tracing::info!(swept, "removed the cgroups of workers killed at shutdown");
    }
    tracing::info!("bye");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
