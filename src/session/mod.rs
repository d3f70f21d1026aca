//! Notebook sessions: a Python interpreter that keeps its globals between
//! calls, isolated like every run.
//!
//! A session is a spare kept alive (`worker/pyexec_worker/notebook.py`). Each
//! session holds a worker of its own (one nsjail + zygote), started outside
//! the `/execute` pool: sessions never take a pool worker, so `/execute`
//! keeps its workers and throughput however many sessions are open, and the
//! memory sessions may hold is capped at `--max-sessions` workers' worth
//! (plus one started standby that makes the next create take milliseconds
//! instead of a worker start; it is only kept once sessions are used).
//!
//! The public API ([`Sessions::create`], [`Sessions::run`],
//! [`Sessions::info`], [`Sessions::close`]) is what the HTTP handlers call
//! and what any other front end may call. Sessions live in memory only: a
//! restart of the service ends them all (their ids then get `NotFound`).
//!
//! Must not: see HTTP (status codes are `crate::http`'s), or log an id
//! whole (only [`id::redacted`]).

pub mod id;
pub mod metrics;
mod reaper;
mod registry;
mod standby;
mod time;

pub use registry::Sessions;
pub use time::rfc3339;

use std::time::{Duration, SystemTime};

use crate::protocol::InputFile;

/// What a new session asks for (every field validated by [`Sessions::create`]).
#[derive(Debug, Clone, Default)]
pub struct SessionSpec {
    /// Default timeout of each call; `None`: `--default-timeout-secs`.
    pub timeout: Option<Duration>,
    /// Memory of the whole session in MiB; `None`: `--default-memory-mib`.
    pub memory_mib: Option<u64>,
    /// Idle timeout; `None`: `--session-idle-timeout-secs` (also the maximum).
    pub idle_timeout: Option<Duration>,
    /// Files written into the session's `/tmp`.
    pub files: Vec<InputFile>,
}

/// A created session.
#[derive(Debug, Clone)]
pub struct Created {
    /// The session's id: the capability to use it.
    pub id: String,
    /// Its idle timeout.
    pub idle_timeout: Duration,
    /// When it ends at the latest.
    pub expires_at: SystemTime,
}

/// What [`Sessions::info`] tells.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// When it was created.
    pub created_at: SystemTime,
    /// When its last call ended (or it was created).
    pub last_used_at: SystemTime,
    /// When it ends at the latest.
    pub expires_at: SystemTime,
    /// Cells run so far.
    pub calls: u64,
}

/// Why a session call got no verdict.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session (never was, ended, or expired).
    #[error("no such session (it never existed, or it ended or expired); create one with POST /sessions")]
    NotFound,
    /// A call of this session is still running.
    #[error("the session is running another call; wait for its answer, then retry")]
    Busy,
    /// `--max-sessions` are open.
    #[error("{max} sessions are open, the most --max-sessions allows; delete one or retry later")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A field of the request is out of range.
    #[error("{0}")]
    Invalid(String),
    /// No worker could be started for the session.
    #[error("cannot start a sandbox for the session: {0}")]
    Unavailable(String),
    /// The session's worker was lost (the session is gone).
    #[error("the service lost the session's sandbox (not the code's doing): {0}")]
    WorkerLost(String),
}
