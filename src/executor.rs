//! Runs one job on a leased worker and turns whatever happened into a
//! verdict: the zygote's report, or an answer of ours when the worker
//! itself failed.
//!
//! A worker lost during a run (its nsjail or zygote died, stayed stopped,
//! or broke the protocol; or the zygote reports `worker_lost`) is not the
//! script's doing: the job is retried once on another worker (runs have no
//! effects outside their sandbox, so a second run is safe), counted in
//! `pyexec_run_retries_total`. If that worker is lost too, or the first
//! one missed its whole deadline (no time left to retry), the answer is
//! [`ExecuteError::WorkerLost`] (503 `worker_lost`, `Retry-After: 1`).
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
    /// The worker running the job was lost, and the retry too (or there
    /// was no time left for one).
    #[error("the service lost the worker running this request: {0}")]
    WorkerLost(String),
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

/// What one attempt on one worker gave.
enum Attempt {
    /// A verdict (of the script, or `timeout`).
    Done(Box<RunReport>),
    /// The worker was lost; a retry may still answer.
    Lost(String),
    /// The worker was lost after the whole deadline: no retry.
    LostLate(String),
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

    /// Leases a worker, runs `job`, and gives the worker back; once more on
    /// another worker if the first was lost.
    ///
    /// # Errors
    /// See [`ExecuteError`]; every verdict about the *script* is `Ok`.
    pub async fn execute(&self, job: Job) -> Result<RunReport, ExecuteError> {
        let why = match self.attempt(job.clone()).await? {
            Attempt::Done(report) => return Ok(*report),
            Attempt::LostLate(why) => return Err(ExecuteError::WorkerLost(why)),
            Attempt::Lost(why) => why,
        };
        self.metrics.run_retries.inc();
        tracing::warn!(error = %why, "worker lost during a run; retrying once on another worker");
        match self.attempt(job).await? {
            Attempt::Done(report) => Ok(*report),
            Attempt::Lost(again) | Attempt::LostLate(again) => {
                Err(ExecuteError::WorkerLost(format!("{why}; on retry: {again}")))
            }
        }
    }

    async fn attempt(&self, job: Job) -> Result<Attempt, ExecuteError> {
        let mut lease = self.pool.lease().await.map_err(|error| match error {
            LeaseError::Overloaded { .. } => ExecuteError::Overloaded { retry_after: Duration::from_secs(1) },
            LeaseError::Unavailable(why) => ExecuteError::Unavailable(why),
            LeaseError::Closed => ExecuteError::Unavailable("the service is shutting down".into()),
        })?;
        let metrics = self.metrics.clone();
        // Own task: if the client goes away, the run still completes and the
        // worker returns to the pool in a known state.
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
        Ok(match result {
            Ok(report) if report.outcome == Outcome::WorkerLost => {
                Attempt::Lost(report.error.unwrap_or_else(|| "the zygote lost the run's sandbox".into()))
            }
            Ok(report) => Attempt::Done(Box::new(report)),
            Err(error @ WorkerError::Unresponsive { .. }) => {
                tracing::warn!(error = %error, "worker killed after missing its deadline");
                Attempt::LostLate(error.to_string())
            }
            Err(error) => {
                tracing::warn!(error = %error, "worker lost during a run");
                Attempt::Lost(error.to_string())
            }
        })
    }
}
