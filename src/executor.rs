//! Runs one job on a leased worker and turns whatever happened into a
//! verdict: the zygote's report, or a synthesized one when the worker itself
//! failed (wedged past its deadline, died mid-run).
//!
//! The executor is what the HTTP layer calls; it hides leases, workers and
//! processes behind `execute`.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::pool::{LeaseError, WorkerPool};
use crate::protocol::{Outcome, RunReport};
pub use crate::worker::Job;
use crate::worker::WorkerError;

/// Why a job got no verdict.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// No worker became free within the queue timeout.
    #[error("all workers are busy; retry after {retry_after:?}")]
    Overloaded {
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The sandbox cannot start.
    #[error("the sandbox is unavailable: {0}")]
    Unavailable(String),
    /// A bug or a misbehaving worker.
    #[error("{0}")]
    Internal(String),
}

/// Runs jobs on the pool.
#[derive(Clone)]
pub struct Executor {
    pool: WorkerPool,
    metrics: Metrics,
}

impl Executor {
    /// An executor over `pool`.
    pub fn new(pool: WorkerPool, metrics: Metrics) -> Self {
        Self { pool, metrics }
    }

    /// Leases a worker, runs `job`, and gives the worker back.
    ///
    /// # Errors
    /// See [`ExecuteError`]; every verdict about the *script* is `Ok`.
    pub async fn execute(&self, job: Job) -> Result<RunReport, ExecuteError> {
        let mut lease = self.pool.lease().await.map_err(|error| match error {
            LeaseError::Overloaded { .. } => ExecuteError::Overloaded { retry_after: Duration::from_secs(1) },
            LeaseError::Unavailable(why) => ExecuteError::Unavailable(why),
            LeaseError::Closed => ExecuteError::Unavailable("the service is shutting down".into()),
        })?;
        let metrics = self.metrics.clone();
        // Own task: if the client goes away, the run still completes and the
        // worker returns to the pool in a known state.
        let timeout = job.timeout;
        let run = tokio::spawn(async move {
            let started = Instant::now();
            let result = match lease.worker() {
                Some(worker) => worker.run(job).await,
                None => return Err(ExecuteError::Internal("lease without a worker".into())),
            };
            metrics.run_duration.observe(started.elapsed().as_secs_f64());
            lease.finish();
            Ok(result)
        });
        let result = run.await.map_err(|e| ExecuteError::Internal(format!("run task failed: {e}")))??;
        match result {
            Ok(report) => Ok(report),
            Err(error @ WorkerError::Unresponsive { .. }) => {
                tracing::warn!(error = %error, "worker killed after missing its deadline");
                Ok(synthesized(
                    Outcome::Timeout,
                    format!("the run exceeded its {}s timeout", timeout.as_secs_f64()),
                ))
            }
            Err(error @ WorkerError::Crashed { .. }) => {
                tracing::warn!(error = %error, "worker died during a run");
                Ok(synthesized(
                    Outcome::Killed,
                    "the sandbox died during the run; it has been replaced".into(),
                ))
            }
            Err(error) => Err(ExecuteError::Internal(error.to_string())),
        }
    }
}

fn synthesized(outcome: Outcome, error: String) -> RunReport {
    RunReport {
        id: 0,
        outcome,
        result: None,
        error: Some(error),
        traceback: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: 0.0,
        usage: None,
        figures: Vec::new(),
        figures_truncated: false,
    }
}
