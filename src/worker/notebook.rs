//! A worker hosting a notebook session: the zygote keeps one spare alive
//! and feeds it cells (`worker/pyexec_worker/notebook.py`).
//!
//! Owns only the two exchanges (open, cell) over the control socket; the
//! session's lifetime, ids and limits belong to `crate::session`. A worker
//! that hosts a session serves nothing else and is stopped when the session
//! ends.

use std::time::Duration;

use super::{Worker, WorkerError, RUN_GRACE};
use crate::protocol::{CellRequest, InputFile, RunReport, SessionRequest, ToWorker};

/// How long the zygote may take to open a session (it takes a ready spare,
/// hands it its limits and files: milliseconds; seconds on a busy host).
pub const OPEN_DEADLINE: Duration = Duration::from_secs(15);

/// One cell as the session layer hands it to its worker.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The cell's source.
    pub code: String,
    /// Wall-clock limit; passing it ends the session.
    pub timeout: Duration,
    /// Most stdout/stderr kept.
    pub max_output_bytes: u64,
    /// Largest serialized value of the last expression.
    pub max_result_bytes: u64,
    /// Most figures returned.
    pub max_figures: u64,
    /// Most PNG bytes of all figures together.
    pub max_figures_bytes: u64,
}

impl Worker {
    /// The host pid of the worker's nsjail, for a kill while a cell holds
    /// the worker (it stays ours, unreaped, until the `Worker` is dropped,
    /// so the pid cannot be reused meanwhile).
    pub fn host_pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Turns one of the zygote's spares into this worker's session.
    ///
    /// # Errors
    /// A [`WorkerError`] when the worker itself failed; a session that could
    /// not open (e.g. a file /tmp refused) is an `Ok` report that is not `ok`.
    pub async fn open_session(
        &mut self,
        memory_bytes: u64,
        lifetime: Duration,
        files: Vec<InputFile>,
    ) -> Result<RunReport, WorkerError> {
        let id = self.next_run;
        self.next_run += 1;
        let request = ToWorker::Session(SessionRequest {
            id,
            memory_bytes,
            timeout_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
            files,
        });
        self.exchange(request, id, OPEN_DEADLINE).await
    }

    /// Runs the next cell of this worker's session.
    ///
    /// # Errors
    /// A [`WorkerError`] when the worker itself failed (the session is then
    /// lost); every verdict about the cell is in the report.
    pub async fn run_cell(&mut self, cell: Cell) -> Result<RunReport, WorkerError> {
        let id = self.next_run;
        self.next_run += 1;
        let deadline = cell.timeout + RUN_GRACE;
        let request = ToWorker::Cell(CellRequest {
            id,
            script: cell.code,
            timeout_ms: u64::try_from(cell.timeout.as_millis()).unwrap_or(u64::MAX),
            max_output_bytes: cell.max_output_bytes,
            max_result_bytes: cell.max_result_bytes,
            max_figures: cell.max_figures,
            max_figures_bytes: cell.max_figures_bytes,
        });
        self.exchange(request, id, deadline).await
    }
}
