//! Command-line flags with `PYEXEC_*` environment twins, validated into
//! per-layer sub-configs before any socket is bound or worker spawned.
//!
//! This module owns parsing and validation only; it never reads the
//! environment after start-up and never touches the network or processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

const MIB: u64 = 1024 * 1024;

/// RAM-backed tmpfs mounts of --tmp-size-mib each run gets: `/tmp` and
/// `/dev/shm`. Counted in the worker cgroup's limit and in the pod sizing
/// (deploy/sizing.json `tmpfs_per_run`).
pub const TMPFS_PER_RUN: u64 = 2;

/// Which cgroup hierarchy caps a worker's memory and process count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CgroupMode {
    /// Use v2 when `/sys/fs/cgroup` is a unified hierarchy, else v1 when its
    /// memory and pids controllers are mounted, else no cgroup backstop.
    Auto,
    /// cgroup v1 (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`).
    V1,
    /// cgroup v2 (nsjail `--use_cgroupv2`).
    V2,
    /// No cgroup backstop: per-run rlimits only.
    Off,
}

/// Whether each run gets its own cgroup leaf under its worker's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunCgroup {
    /// A leaf per spare: the run's `memory` caps all of its processes.
    On,
    /// Only the worker-wide cgroup (made by nsjail).
    Off,
}

/// A feature switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The flags as the user typed them. docs/configuration.md lists each one.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pyexec",
    version,
    about = "Runs untrusted Python scripts over HTTP in warm nsjail sandboxes",
    after_help = "Commands:\n  \
                  serve   serve HTTP with the options above (the default: `pyexec [OPTIONS]` does the same)\n  \
                  run     run a script on a pyexec service and print its output (see `pyexec run --help`)\n  \
                  session drive a notebook session on a pyexec service (see `pyexec session --help`)\n  \
                  doctor  check this node or pod before going live, with these options (see `pyexec doctor --help`)"
)]
pub struct Flags {
    /// Address to serve HTTP on.
    #[arg(long, env = "PYEXEC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Number of warm workers (sandboxes running a zygote). Default: CPUs.
    #[arg(long, env = "PYEXEC_WORKERS")]
    pub workers: Option<usize>,
    /// Timeout of a run when the request gives none, in seconds.
    #[arg(long, env = "PYEXEC_DEFAULT_TIMEOUT_SECS", default_value_t = 10.0)]
    pub default_timeout_secs: f64,
    /// Largest timeout a request may ask for, in seconds.
    #[arg(long, env = "PYEXEC_MAX_TIMEOUT_SECS", default_value_t = 60.0)]
    pub max_timeout_secs: f64,
    /// Memory a run may allocate when the request gives none, in MiB.
    #[arg(long, env = "PYEXEC_DEFAULT_MEMORY_MIB", default_value_t = 256)]
    pub default_memory_mib: u64,
    /// Smallest memory limit a request may ask for, in MiB.
    #[arg(long, env = "PYEXEC_MIN_MEMORY_MIB", default_value_t = 16)]
    pub min_memory_mib: u64,
    /// Largest memory limit a request may ask for, in MiB.
    #[arg(long, env = "PYEXEC_MAX_MEMORY_MIB", default_value_t = 1024)]
    pub max_memory_mib: u64,
    /// Largest request body accepted, in bytes [default: room for
    /// --max-files-bytes of files in base64 plus 1 MiB of script; 1 MiB with
    /// --max-files 0]. Less than the files take is refused at start-up.
    #[arg(long, env = "PYEXEC_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Most stdout (and, separately, stderr) kept per run, in bytes.
    #[arg(long, env = "PYEXEC_MAX_OUTPUT_BYTES", default_value_t = MIB)]
    pub max_output_bytes: u64,
    /// Largest serialized result of main(), in bytes.
    #[arg(long, env = "PYEXEC_MAX_RESULT_BYTES", default_value_t = 4 * MIB)]
    pub max_result_bytes: u64,
    /// Most input files a request may send in "files".
    #[arg(long, env = "PYEXEC_MAX_FILES", default_value_t = 16)]
    pub max_files: u64,
    /// Most bytes of all input files of a request together (decoded), in
    /// bytes; at most the run's /tmp and the largest file a run may write.
    #[arg(long, env = "PYEXEC_MAX_FILES_BYTES", default_value_t = 8 * MIB)]
    pub max_files_bytes: u64,
    /// Most matplotlib figures returned per run (0: never render figures).
    #[arg(long, env = "PYEXEC_MAX_FIGURES", default_value_t = 8)]
    pub max_figures: u64,
    /// Most PNG bytes of all returned figures together, in bytes.
    #[arg(long, env = "PYEXEC_MAX_FIGURES_BYTES", default_value_t = 4 * MIB)]
    pub max_figures_bytes: u64,
    /// Most notebook sessions open at once; one more gets 503 overloaded.
    /// Each holds a worker of its own, outside the /execute pool: size the
    /// pod for --workers + this many workers. 0 (the default): sessions are off.
    #[arg(long, env = "PYEXEC_MAX_SESSIONS", default_value_t = 0)]
    pub max_sessions: usize,
    /// A session unused this long is ended (and its memory freed), in seconds;
    /// also the largest `idle_timeout` a session may ask for.
    #[arg(long, env = "PYEXEC_SESSION_IDLE_TIMEOUT_SECS", default_value_t = 600.0)]
    pub session_idle_timeout_secs: f64,
    /// A session is ended this long after it was created, used or not, in seconds.
    #[arg(long, env = "PYEXEC_SESSION_MAX_LIFETIME_SECS", default_value_t = 3600.0)]
    pub session_max_lifetime_secs: f64,
    /// Largest memory limit a session may ask for (it caps the whole
    /// session), in MiB. Default: --max-memory-mib.
    #[arg(long, env = "PYEXEC_SESSION_MAX_MEMORY_MIB")]
    pub session_max_memory_mib: Option<u64>,
    /// How long a request waits for a free worker before 503 overloaded, in seconds.
    #[arg(long, env = "PYEXEC_QUEUE_TIMEOUT_SECS", default_value_t = 5.0)]
    pub queue_timeout_secs: f64,
    /// Bearer token required on /execute and /mcp (`Authorization: Bearer TOKEN`). Unset: no auth.
    /// /health, /ready and /metrics stay open: probes and scrapers carry no
    /// secret; restrict who reaches them with --listen or a NetworkPolicy.
    #[arg(long, env = "PYEXEC_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The MCP endpoint `/mcp` (Streamable HTTP; same token as /execute). `off`: 404.
    #[arg(long, env = "PYEXEC_MCP", value_enum, default_value_t = Switch::On)]
    pub mcp: Switch,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection waits for its next request, in seconds.
    #[arg(long, env = "PYEXEC_HEADER_READ_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_read_timeout_secs: f64,
    /// How long a client may take to send a request body, in seconds
    /// (slower: 408 request_timeout and the connection is closed).
    #[arg(long, env = "PYEXEC_BODY_READ_TIMEOUT_SECS", default_value_t = 30.0)]
    pub body_read_timeout_secs: f64,
    /// How long writing an answer may make no progress (the client reads
    /// nothing) before the connection is closed, in seconds.
    #[arg(long, env = "PYEXEC_WRITE_STALL_TIMEOUT_SECS", default_value_t = 30.0)]
    pub write_stall_timeout_secs: f64,
    /// Most open HTTP connections; one more gets 503 overloaded
    /// (`Retry-After: 1`, `Connection: close`) and is closed. Probes count
    /// too: keep it above the expected clients plus probes, and below the
    /// file-descriptor limit (`ulimit -n`).
    #[arg(long, env = "PYEXEC_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// nsjail binary.
    #[arg(long, env = "PYEXEC_NSJAIL", default_value = "/opt/pyexec/bin/nsjail")]
    pub nsjail: PathBuf,
    /// Python of the sandbox venv (must live under a world-readable prefix).
    #[arg(long, env = "PYEXEC_SANDBOX_PYTHON", default_value = "/opt/pyexec/venv/bin/python3")]
    pub sandbox_python: PathBuf,
    /// Directory holding zygote.py and the pyexec_worker package.
    #[arg(long, env = "PYEXEC_WORKER_DIR", default_value = "/opt/pyexec/worker")]
    pub worker_dir: PathBuf,
    /// Which cgroup hierarchy caps each worker's memory and process count.
    #[arg(long, env = "PYEXEC_CGROUP", value_enum, default_value_t = CgroupMode::Auto)]
    pub cgroup: CgroupMode,
    /// cgroup v2 only: the cgroup under which the workers' cgroups are made,
    /// as a path in pyexec's cgroup namespace (as /proc/self/cgroup shows it,
    /// e.g. /kubepods/pod1). Default: the cgroup pyexec runs in (in a
    /// Kubernetes pod, the container's); pyexec then first moves its own
    /// processes into its `supervisor` child, as cgroup v2 allows no
    /// processes in a cgroup whose controllers are enabled for children.
    #[arg(long, env = "PYEXEC_CGROUP_PARENT")]
    pub cgroup_parent: Option<PathBuf>,
    /// Per-run cgroup leaves: each run's memory and process count are
    /// capped as a whole (every process of the run together), not only per
    /// process (RLIMIT_AS). `off` keeps only the worker-wide cgroup.
    /// Ignored with `--cgroup off`.
    #[arg(long, env = "PYEXEC_RUN_CGROUP", value_enum, default_value_t = RunCgroup::On)]
    pub run_cgroup: RunCgroup,
    /// Size of each run's private /tmp, in MiB.
    #[arg(long, env = "PYEXEC_TMP_SIZE_MIB", default_value_t = 64)]
    pub tmp_size_mib: u64,
    /// Processes and threads a run may have (RLIMIT_NPROC).
    #[arg(long, env = "PYEXEC_MAX_PROCESSES", default_value_t = 32)]
    pub max_processes: u64,
    /// Open files a run may have (RLIMIT_NOFILE), 16 to 1000.
    #[arg(long, env = "PYEXEC_MAX_OPEN_FILES", default_value_t = 256)]
    pub max_open_files: u64,
    /// Largest file a run may write (RLIMIT_FSIZE), in MiB.
    #[arg(long, env = "PYEXEC_MAX_FILE_SIZE_MIB", default_value_t = 16)]
    pub max_file_size_mib: u64,
    /// Isolated plain runners each worker keeps ready (1-8): more cut the
    /// latency of back-to-back requests; each costs ~5 MiB, ~9 MiB once it
    /// has pre-walked pandas while idle. Each worker also keeps one plotting
    /// spare (matplotlib warm) for scripts that may draw.
    #[arg(long, env = "PYEXEC_SPARES_PER_WORKER", default_value_t = 2)]
    pub spares_per_worker: u64,
    /// Host uid and gid the sandboxes run as (unprivileged).
    #[arg(long, env = "PYEXEC_SANDBOX_UID", default_value_t = 99999)]
    pub sandbox_uid: u32,
    /// How long a worker may take to start (import numpy and pandas), in seconds.
    #[arg(long, env = "PYEXEC_WORKER_START_TIMEOUT_SECS", default_value_t = 30.0)]
    pub worker_start_timeout_secs: f64,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, env = "PYEXEC_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub shutdown_timeout_secs: f64,
    /// Format of the log lines on stderr.
    #[arg(long, env = "PYEXEC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// An absolute cgroup path with no `..` or `.` component.
fn valid_cgroup_path(path: &std::path::Path) -> bool {
    use std::path::Component;
    path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// A flag whose value parsed but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value for --{flag}: {reason}")]
pub struct ConfigError {
    /// The flag, without the leading dashes.
    pub flag: &'static str,
    /// What is wrong and what would be right.
    pub reason: String,
}

impl ConfigError {
    fn new(flag: &'static str, reason: impl Into<String>) -> Self {
        Self { flag, reason: reason.into() }
    }
}

/// Limits a request may set, and the defaults when it does not.
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Timeout when the request gives none.
    pub default_timeout: Duration,
    /// Largest timeout a request may ask for.
    pub max_timeout: Duration,
    /// Memory (MiB) when the request gives none.
    pub default_memory_mib: u64,
    /// Smallest memory limit (MiB) a request may ask for.
    pub min_memory_mib: u64,
    /// Largest memory limit (MiB) a request may ask for.
    pub max_memory_mib: u64,
    /// Most stdout/stderr kept per run.
    pub max_output_bytes: u64,
    /// Largest serialized result.
    pub max_result_bytes: u64,
    /// Most input files per request.
    pub max_files: u64,
    /// Most decoded bytes of all input files of a request.
    pub max_files_bytes: u64,
    /// Most figures returned per run.
    pub max_figures: u64,
    /// Most PNG bytes of all figures of a run.
    pub max_figures_bytes: u64,
}

#[cfg(test)]
impl LimitsConfig {
    /// The limits of a service started without flags, for other modules' tests.
    pub fn defaults() -> Self {
        let flags = Flags::try_parse_from(["pyexec"]).expect("no flags parse");
        flags.validate().expect("the defaults are valid").limits
    }
}

/// The API token: its `Debug` never shows the value, so logging a config
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token's bytes, for the comparison in `http::auth` only.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// What the HTTP layer needs.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Bearer token, when auth is on.
    pub api_token: Option<ApiToken>,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Time allowed for a request's headers, and for an idle keep-alive
    /// connection to start its next request.
    pub header_read_timeout: Duration,
    /// Time allowed for a request's body.
    pub body_read_timeout: Duration,
    /// Longest a write to a client may make no progress.
    pub write_stall_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Whether `/mcp` is served.
    pub mcp: bool,
}

/// What spawning one sandboxed worker needs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// nsjail binary.
    pub nsjail: PathBuf,
    /// Python of the sandbox venv.
    pub python: PathBuf,
    /// Directory with zygote.py.
    pub worker_dir: PathBuf,
    /// cgroup backstop selection.
    pub cgroup: CgroupMode,
    /// cgroup v2: where the workers' cgroups go (`None`: pyexec's own).
    pub cgroup_parent: Option<PathBuf>,
    /// A cgroup leaf per run under the worker's cgroup.
    pub run_cgroup: bool,
    /// Size of each run's /tmp.
    pub tmp_size_bytes: u64,
    /// RLIMIT_NPROC of a run.
    pub max_processes: u64,
    /// RLIMIT_NOFILE of a run.
    pub max_open_files: u64,
    /// RLIMIT_FSIZE of a run.
    pub max_file_size_bytes: u64,
    /// Isolated runners kept ready per worker.
    pub spares: u64,
    /// Host uid/gid of the sandbox.
    pub uid: u32,
    /// Largest frame either side may send.
    pub max_frame_bytes: u64,
    /// Memory cap (bytes) for the whole worker when a cgroup is used.
    pub worker_memory_bytes: u64,
    /// How long the zygote may take to become ready.
    pub start_timeout: Duration,
}

/// What the pool and supervisor need.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of warm workers.
    pub workers: usize,
    /// How long a request waits for a worker.
    pub queue_timeout: Duration,
}

/// Notebook sessions.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Most sessions open at once (0: sessions are disabled).
    pub max_sessions: usize,
    /// Default and largest idle timeout.
    pub idle_timeout: Duration,
    /// Age at which a session is ended.
    pub max_lifetime: Duration,
    /// Largest memory a session may ask for, in MiB.
    pub max_memory_mib: u64,
}

/// The validated configuration, split by layer.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP front end.
    pub http: HttpConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Worker spawning.
    pub sandbox: SandboxConfig,
    /// Pool sizing.
    pub pool: PoolConfig,
    /// Notebook sessions.
    pub sessions: SessionConfig,
    /// Format of the log lines on stderr.
    pub log_format: LogFormat,
}

fn seconds(flag: &'static str, value: f64, max: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 || value > max {
        return Err(ConfigError::new(flag, format!("{value} is not a number of seconds in (0, {max}]")));
    }
    Ok(Duration::from_secs_f64(value))
}

fn within<T: PartialOrd + std::fmt::Display>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if !range.contains(&value) {
        return Err(ConfigError::new(
            flag,
            format!("{value} is not between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// Room in a default body for the script and the fields around the files.
const SCRIPT_ROOM_BYTES: u64 = MIB;

/// The JSON one input file can add beyond its base64: a 255-byte name, its
/// quotes, the colon, the value's quotes and padding, the comma.
const FILE_ENTRY_BYTES: u64 = 255 + 12;

/// Bytes of body that `max_files` files of `max_files_bytes` in all can
/// take in base64 JSON; `None` if that overflows.
fn files_body_bytes(max_files: u64, max_files_bytes: u64) -> Option<u64> {
    max_files_bytes.div_ceil(3).checked_mul(4)?.checked_add(max_files.checked_mul(FILE_ENTRY_BYTES)?)
}

/// `--max-body-bytes`: given, it must carry the files cap (else that cap
/// could never be reached: a client would get 413 for files the service
/// says it accepts); not given, the files cap in base64 plus the script's room.
fn body_cap(given: Option<u64>, max_files: u64, max_files_bytes: u64) -> Result<u64, ConfigError> {
    let files = if max_files == 0 { Some(0) } else { files_body_bytes(max_files, max_files_bytes) };
    let files =
        files.ok_or_else(|| ConfigError::new("max-files-bytes", "is too large to fit any request body"))?;
    match given {
        None => files
            .checked_add(SCRIPT_ROOM_BYTES)
            .ok_or_else(|| ConfigError::new("max-files-bytes", "is too large to fit any request body")),
        Some(body) if body < files.max(1) => Err(ConfigError::new(
            "max-body-bytes",
            format!(
                "{body} bytes cannot carry --max-files-bytes {max_files_bytes} ({max_files} files in base64 \
                 JSON take up to {files} bytes): raise --max-body-bytes, or lower --max-files-bytes \
                 (--max-files 0 refuses files)"
            ),
        )),
        Some(body) => Ok(body),
    }
}

/// `mib` MiB in bytes; an error naming `flag` when that does not fit in 64
/// bits (a wrapped size would silently become a tiny cap).
fn mib_bytes(flag: &'static str, mib: u64) -> Result<u64, ConfigError> {
    mib.checked_mul(MIB)
        .ok_or_else(|| ConfigError::new(flag, format!("{mib} MiB is more bytes than 64 bits can count")))
}

/// The largest frame a worker may send or receive: a run request (script
/// and input files, both decoded from one body, so bounded by it) or a
/// result with both output streams and the figures, plus room for the
/// envelope. It must fit the codec's 4 GiB length field.
fn frame_cap(limits: &LimitsConfig, max_body_bytes: u64) -> Result<u64, ConfigError> {
    let answer = limits
        .max_output_bytes
        .checked_mul(2)
        .and_then(|output| output.checked_add(limits.max_result_bytes))
        .and_then(|answer| answer.checked_add(limits.max_figures_bytes));
    answer
        .and_then(|answer| answer.max(max_body_bytes).checked_add(64 * 1024))
        .filter(|&frame| frame <= u64::from(u32::MAX))
        .ok_or_else(|| {
            ConfigError::new(
                "max-result-bytes",
                "--max-result-bytes + 2 x --max-output-bytes + --max-figures-bytes, and --max-body-bytes, \
                 must each fit a 4 GiB frame: lower them",
            )
        })
}

/// The worker cgroup's memory cap: room for the zygote and the spare (512
/// MiB), the run's own limit and its tmpfs mounts (/tmp and /dev/shm, each
/// --tmp-size-mib).
fn worker_memory_cap(max_memory_mib: u64, tmp_size_bytes: u64) -> Result<u64, ConfigError> {
    max_memory_mib
        .checked_add(512)
        .and_then(|mib| mib.checked_mul(MIB))
        .and_then(|bytes| bytes.checked_add(TMPFS_PER_RUN.checked_mul(tmp_size_bytes)?))
        .ok_or_else(|| {
            ConfigError::new(
                "max-memory-mib",
                "--max-memory-mib + 512 MiB + 2 x --tmp-size-mib (the worker cgroup's cap) is more bytes \
                 than 64 bits can count: lower them",
            )
        })
}

fn positive(flag: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(flag, "must be greater than 0"));
    }
    Ok(value)
}

impl Flags {
    /// Checks every value and splits them into the layers' configs.
    ///
    /// # Errors
    /// The first flag whose value is out of range, with the reason.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let workers = match self.workers {
            Some(0) => return Err(ConfigError::new("workers", "must be at least 1")),
            Some(n) if n > 256 => return Err(ConfigError::new("workers", format!("{n} is more than 256"))),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let max_timeout = seconds("max-timeout-secs", self.max_timeout_secs, 3600.0)?;
        let default_timeout = seconds("default-timeout-secs", self.default_timeout_secs, 3600.0)?;
        if default_timeout > max_timeout {
            return Err(ConfigError::new("default-timeout-secs", "must not exceed --max-timeout-secs"));
        }
        positive("min-memory-mib", self.min_memory_mib)?;
        if self.max_memory_mib < self.min_memory_mib {
            return Err(ConfigError::new("max-memory-mib", "must be at least --min-memory-mib"));
        }
        if !(self.min_memory_mib..=self.max_memory_mib).contains(&self.default_memory_mib) {
            return Err(ConfigError::new(
                "default-memory-mib",
                "must lie between --min-memory-mib and --max-memory-mib",
            ));
        }
        let max_output_bytes = positive("max-output-bytes", self.max_output_bytes)?;
        let max_result_bytes = positive("max-result-bytes", self.max_result_bytes)?;
        let api_token = match self.api_token {
            Some(token) if token.trim().is_empty() => {
                return Err(ConfigError::new("api-token", "must not be empty (unset it to disable auth)"))
            }
            Some(token) if token.chars().any(|c| !c.is_ascii_graphic()) => {
                // A header value cannot carry it, so no client could ever match.
                return Err(ConfigError::new(
                    "api-token",
                    "must be printable ASCII without spaces (it travels in an HTTP header)",
                ));
            }
            token => token.map(ApiToken),
        };
        let max_connections = within("max-connections", self.max_connections, 1..=1_000_000)?;
        let tmp_size_bytes = mib_bytes("tmp-size-mib", positive("tmp-size-mib", self.tmp_size_mib)?)?;
        let max_file_size_bytes =
            mib_bytes("max-file-size-mib", positive("max-file-size-mib", self.max_file_size_mib)?)?;
        let max_files = within("max-files", self.max_files, 0..=1000)?;
        // The runner writes the files into the run's /tmp under the run's own
        // RLIMIT_FSIZE: a cap over either would fail inside the run instead of
        // with a clear 400.
        if self.max_files_bytes > tmp_size_bytes.min(max_file_size_bytes) {
            return Err(ConfigError::new(
                "max-files-bytes",
                "must not exceed --tmp-size-mib nor --max-file-size-mib (the files must fit the run's /tmp)",
            ));
        }
        let max_body_bytes = body_cap(self.max_body_bytes, max_files, self.max_files_bytes)?;
        let max_figures = within("max-figures", self.max_figures, 0..=64)?;
        let max_figures_bytes = positive("max-figures-bytes", self.max_figures_bytes)?;
        let limits = LimitsConfig {
            default_timeout,
            max_timeout,
            default_memory_mib: self.default_memory_mib,
            min_memory_mib: self.min_memory_mib,
            max_memory_mib: self.max_memory_mib,
            max_output_bytes,
            max_result_bytes,
            max_files,
            max_files_bytes: self.max_files_bytes,
            max_figures,
            max_figures_bytes,
        };
        let max_frame_bytes = frame_cap(&limits, max_body_bytes)?;
        let worker_memory_bytes = worker_memory_cap(self.max_memory_mib, tmp_size_bytes)?;
        let session_max_memory_mib = self.session_max_memory_mib.unwrap_or(self.max_memory_mib);
        if !(self.min_memory_mib..=self.max_memory_mib).contains(&session_max_memory_mib) {
            // The worker cgroup is sized for --max-memory-mib.
            return Err(ConfigError::new(
                "session-max-memory-mib",
                "must lie between --min-memory-mib and --max-memory-mib",
            ));
        }
        let sessions = SessionConfig {
            max_sessions: within("max-sessions", self.max_sessions, 0..=1024)?,
            idle_timeout: seconds("session-idle-timeout-secs", self.session_idle_timeout_secs, 86_400.0)?,
            max_lifetime: seconds(
                "session-max-lifetime-secs",
                self.session_max_lifetime_secs,
                7.0 * 86_400.0,
            )?,
            max_memory_mib: session_max_memory_mib,
        };
        Ok(Config {
            sessions,
            http: HttpConfig {
                listen: self.listen,
                max_body_bytes,
                api_token,
                shutdown_timeout: seconds("shutdown-timeout-secs", self.shutdown_timeout_secs, 3600.0)?,
                header_read_timeout: seconds(
                    "header-read-timeout-secs",
                    self.header_read_timeout_secs,
                    3600.0,
                )?,
                body_read_timeout: seconds("body-read-timeout-secs", self.body_read_timeout_secs, 3600.0)?,
                write_stall_timeout: seconds(
                    "write-stall-timeout-secs",
                    self.write_stall_timeout_secs,
                    3600.0,
                )?,
                max_connections,
                mcp: self.mcp == Switch::On,
            },
            limits,
            sandbox: SandboxConfig {
                nsjail: self.nsjail,
                python: self.sandbox_python,
                worker_dir: self.worker_dir,
                cgroup: self.cgroup,
                cgroup_parent: match self.cgroup_parent {
                    Some(path) if !valid_cgroup_path(&path) => {
                        return Err(ConfigError::new(
                            "cgroup-parent",
                            format!(
                                "{} must be an absolute path without '..', e.g. /kubepods/pod1",
                                path.display()
                            ),
                        ))
                    }
                    other => other,
                },
                run_cgroup: self.run_cgroup == RunCgroup::On,
                tmp_size_bytes,
                max_processes: positive("max-processes", self.max_processes)?,
                // Below 1023, the fd the runner keeps its result pipe on
                // (worker/pyexec_worker/isolation.py RESULT_FD): a run's own
                // fds stay under it, so closing them all spares the result.
                max_open_files: within("max-open-files", self.max_open_files, 16..=1000)?,
                max_file_size_bytes,
                spares: within("spares-per-worker", self.spares_per_worker, 1..=8)?,
                uid: match self.sandbox_uid {
                    0 => return Err(ConfigError::new("sandbox-uid", "must not be 0 (root)")),
                    uid => uid,
                },
                max_frame_bytes,
                worker_memory_bytes,
                start_timeout: seconds("worker-start-timeout-secs", self.worker_start_timeout_secs, 600.0)?,
            },
            pool: PoolConfig {
                workers,
                queue_timeout: seconds("queue-timeout-secs", self.queue_timeout_secs, 3600.0)?,
            },
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["pyexec"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse").validate()
    }

    #[test]
    fn defaults_validate() {
        let config = parse(&[]).expect("defaults are valid");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.limits.default_timeout, Duration::from_secs(10));
        // The 16 files of 8 MiB in all, in base64, and 1 MiB of script.
        assert_eq!(config.http.max_body_bytes, (8 * MIB).div_ceil(3) * 4 + 16 * 267 + MIB);
        assert_eq!(config.limits.max_result_bytes, 4 * MIB);
        assert!(config.pool.workers >= 1);
        assert!(config.sandbox.max_frame_bytes > 6 * MIB);
    }

    #[test]
    fn rejects_zero_workers_naming_the_flag() {
        let err = parse(&["--workers", "0"]).expect_err("0 workers is invalid");
        assert_eq!(err.flag, "workers");
        assert!(err.to_string().starts_with("invalid value for --workers"));
    }

    #[test]
    fn the_body_cap_carries_the_files_cap() {
        let body = |args: &[&str]| parse(args).map(|c| c.http.max_body_bytes);
        // Derived from the files cap, when not given.
        assert_eq!(
            body(&["--max-files-bytes", "3000", "--max-files", "2"]).expect("valid"),
            4000 + 2 * 267 + MIB
        );
        assert_eq!(body(&["--max-files", "0"]).expect("valid"), MIB);
        // Given: at least what the files take, naming both flags otherwise.
        let err = parse(&["--max-body-bytes", "1048576"]).expect_err("8 MiB of files cannot fit 1 MiB");
        assert_eq!(err.flag, "max-body-bytes");
        assert!(err.to_string().contains("--max-files-bytes 8388608"), "{err}");
        assert_eq!(body(&["--max-body-bytes", "1024", "--max-files", "0"]).expect("no files"), 1024);
        assert_eq!(
            body(&["--max-body-bytes", "1024", "--max-files-bytes", "500", "--max-files", "1"])
                .expect("fits"),
            1024
        );
        assert_eq!(
            parse(&["--max-body-bytes", "0", "--max-files", "0"]).expect_err("zero").flag,
            "max-body-bytes"
        );
    }

    #[test]
    fn rejects_default_timeout_above_max() {
        let err = parse(&["--default-timeout-secs", "20", "--max-timeout-secs", "5"]).expect_err("invalid");
        assert_eq!(err.flag, "default-timeout-secs");
    }

    #[test]
    fn rejects_non_finite_and_negative_durations() {
        assert_eq!(parse(&["--queue-timeout-secs=-1"]).expect_err("neg").flag, "queue-timeout-secs");
        assert_eq!(parse(&["--queue-timeout-secs", "NaN"]).expect_err("nan").flag, "queue-timeout-secs");
    }

    #[test]
    fn rejects_default_memory_outside_range() {
        let err = parse(&["--default-memory-mib", "4096"]).expect_err("above max");
        assert_eq!(err.flag, "default-memory-mib");
    }

    #[test]
    fn open_files_stay_below_the_result_fd() {
        assert_eq!(parse(&[]).expect("default").sandbox.max_open_files, 256);
        assert_eq!(parse(&["--max-open-files", "15"]).expect_err("few").flag, "max-open-files");
        assert_eq!(parse(&["--max-open-files", "1001"]).expect_err("many").flag, "max-open-files");
    }

    #[test]
    fn spares_per_worker_is_bounded() {
        assert_eq!(parse(&[]).expect("default").sandbox.spares, 2);
        assert_eq!(parse(&["--spares-per-worker", "0"]).expect_err("zero").flag, "spares-per-worker");
        assert_eq!(parse(&["--spares-per-worker", "9"]).expect_err("many").flag, "spares-per-worker");
    }

    #[test]
    fn file_and_figure_caps_are_bounded() {
        let limits = parse(&[]).expect("defaults").limits;
        assert_eq!((limits.max_files, limits.max_files_bytes), (16, 8 * MIB));
        assert_eq!((limits.max_figures, limits.max_figures_bytes), (8, 4 * MIB));
        assert_eq!(parse(&["--max-files", "1001"]).expect_err("many").flag, "max-files");
        assert_eq!(parse(&["--max-files-bytes", "67108865"]).expect_err("over /tmp").flag, "max-files-bytes");
        let err = parse(&["--max-files-bytes", "20971520"]).expect_err("over the file size cap");
        assert_eq!(err.flag, "max-files-bytes");
        assert!(parse(&["--max-files-bytes", "20971520", "--max-file-size-mib", "32"]).is_ok());
        assert_eq!(parse(&["--max-figures", "65"]).expect_err("many").flag, "max-figures");
        assert!(parse(&["--max-figures", "0"]).is_ok());
        assert_eq!(parse(&["--max-figures-bytes", "0"]).expect_err("zero").flag, "max-figures-bytes");
    }

    #[test]
    fn rejects_root_sandbox_uid_and_empty_token() {
        assert_eq!(parse(&["--sandbox-uid", "0"]).expect_err("root").flag, "sandbox-uid");
        assert_eq!(parse(&["--api-token", " "]).expect_err("empty").flag, "api-token");
    }

    #[test]
    fn connection_limits_and_read_timeouts() {
        let http = parse(&[]).expect("defaults").http;
        assert_eq!(http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(http.body_read_timeout, Duration::from_secs(30));
        assert_eq!(http.max_connections, 1024);
        assert_eq!(http.write_stall_timeout, Duration::from_secs(30));
        assert_eq!(
            parse(&["--write-stall-timeout-secs=-3"]).expect_err("neg").flag,
            "write-stall-timeout-secs"
        );
        let http = parse(&[
            "--header-read-timeout-secs",
            "0.5",
            "--body-read-timeout-secs",
            "2",
            "--max-connections",
            "3",
        ])
        .expect("valid")
        .http;
        assert_eq!(
            (http.header_read_timeout, http.body_read_timeout, http.max_connections),
            (Duration::from_millis(500), Duration::from_secs(2), 3)
        );
        assert_eq!(
            parse(&["--header-read-timeout-secs", "0"]).expect_err("zero").flag,
            "header-read-timeout-secs"
        );
        assert_eq!(
            parse(&["--body-read-timeout-secs", "inf"]).expect_err("inf").flag,
            "body-read-timeout-secs"
        );
        assert_eq!(parse(&["--max-connections", "0"]).expect_err("zero").flag, "max-connections");
        assert!(Flags::try_parse_from(["pyexec", "--max-connections", "-1"]).is_err());
    }

    #[test]
    fn mcp_is_on_unless_turned_off() {
        assert!(parse(&[]).expect("defaults").http.mcp);
        assert!(!parse(&["--mcp", "off"]).expect("off").http.mcp);
        assert!(parse(&["--mcp", "on"]).expect("on").http.mcp);
    }

    #[test]
    fn api_token_is_checked_and_never_printed() {
        assert_eq!(parse(&["--api-token", "two words"]).expect_err("space").flag, "api-token");
        assert_eq!(parse(&["--api-token", "caf\u{e9}"]).expect_err("non-ascii").flag, "api-token");
        let config = parse(&["--api-token", "s3cret-token"]).expect("valid");
        assert_eq!(config.http.api_token.as_ref().map(ApiToken::as_bytes), Some(&b"s3cret-token"[..]));
        assert!(!format!("{config:?}").contains("s3cret"), "the token must not appear in Debug output");
    }

    #[test]
    fn unparseable_values_are_clap_errors() {
        assert!(Flags::try_parse_from(["pyexec", "--listen", "nonsense"]).is_err());
        assert!(Flags::try_parse_from(["pyexec", "--cgroup", "v3"]).is_err());
        for bad in ["kubepods/pod1", "/kubepods/../x"] {
            let flags = Flags::try_parse_from(["pyexec", "--cgroup-parent", bad]).expect("parses");
            assert_eq!(flags.validate().expect_err(bad).flag, "cgroup-parent");
        }
        let flags = Flags::try_parse_from(["pyexec", "--cgroup-parent", "/kubepods/pod1"]).expect("parses");
        assert_eq!(flags.validate().expect("valid").sandbox.cgroup_parent, Some("/kubepods/pod1".into()));
    }

    #[test]
    fn derived_sizes_that_overflow_are_refused_naming_the_flags() {
        let huge = u64::MAX.to_string();
        let refused = |args: &[&str]| parse(args).expect_err("overflow must be refused");
        let err = refused(&["--tmp-size-mib", &huge]);
        assert_eq!(err.flag, "tmp-size-mib");
        assert!(err.reason.contains("64 bits"), "{err}");
        let err = refused(&["--max-file-size-mib", &huge]);
        assert_eq!(err.flag, "max-file-size-mib");
        // The worker cgroup's cap: max memory + 512 MiB + 2 x /tmp.
        let err = refused(&["--max-memory-mib", &(u64::MAX / MIB).to_string()]);
        assert_eq!(err.flag, "max-memory-mib");
        assert!(err.reason.contains("--tmp-size-mib"), "{err}");
        // Output and result whose sum wraps around u64, not just past 4 GiB.
        let err = refused(&["--max-output-bytes", &(u64::MAX / 2).to_string(), "--max-result-bytes", "4096"]);
        assert_eq!(err.flag, "max-result-bytes");
        assert!(err.reason.contains("--max-output-bytes"), "{err}");
        // Past 4 GiB without wrapping: the same error.
        let err = refused(&["--max-output-bytes", &(3 * 1024 * MIB).to_string()]);
        assert_eq!(err.flag, "max-result-bytes");
    }
}
