//! The worker pool: a deadpool `Manager` whose `create` starts a worker and
//! waits for its `ready`, and whose `recycle` checks it is still healthy.
//!
//! Requests and the supervisor meet only here. A request takes a [`Lease`]
//! (a deadpool `Object`), and gives it back with [`Lease::finish`]: a healthy
//! worker returns to the pool, a broken one goes to the supervisor, which
//! replaces the worker *inside* the same pool slot. deadpool itself has no
//! minimum size and drops failed recycles silently, so warm-up, replacement
//! and counting are the supervisor's and this module's job.
//!
//! An idle worker found dead or stopped by the supervisor's check leaves
//! the pool ([`WorkerPool::remove_faulty_idle`]); its replacement, started
//! in the background, waits as a *standby* that deadpool's next `create`
//! takes at once, so no request pays for a worker start. One more started
//! worker than the pool's size ([`HOT_STANDBY`]) waits the same way, so a
//! lost worker is replaced at once instead of after a worker start (1-3 s
//! on a busy host): the pool is back at full size within one idle check.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{
    self, Metrics as ObjectMetrics, Object, PoolError, RecycleError, RecycleResult, Timeouts,
};
use tokio::sync::mpsc;

use crate::config::{PoolConfig, SandboxConfig};
use crate::metrics::{GaugeGuard, Metrics};
use crate::worker::cgroup::CgroupPlan;
use crate::worker::{FaultSink, IdleFault, RecycleReason, Worker, WorkerError};

/// Started workers kept beyond the pool's size, ready to replace a lost one.
pub const HOT_STANDBY: usize = 1;

/// Shared counters the readiness probe and the gauges read.
#[derive(Debug, Default)]
pub struct PoolState {
    starting: AtomicUsize,
    repairing: AtomicUsize,
    draining: AtomicBool,
    warm: AtomicBool,
    last_start_error: Mutex<Option<String>>,
    /// Started replacements of idle workers that left the pool, waiting
    /// for deadpool to `create` (it then takes one instead of starting).
    standby: Mutex<Vec<Worker>>,
}

impl PoolState {
    fn set_start_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_start_error.lock() {
            *last = error;
        }
    }

    fn start_error(&self) -> Option<String> {
        self.last_start_error.lock().ok().and_then(|last| last.clone())
    }

    fn standby_len(&self) -> usize {
        self.standby.lock().map(|standby| standby.len()).unwrap_or(0)
    }

    /// A healthy standby; dead or stopped ones met on the way are discarded.
    fn take_standby(&self) -> Option<Worker> {
        let mut standby = self.standby.lock().ok()?;
        while let Some(mut worker) = standby.pop() {
            if worker.idle_fault().is_none() {
                return Some(worker);
            }
            worker.discard();
        }
        None
    }

    /// Discards standbys found dead or stopped (the idle check).
    fn prune_standbys(&self) {
        if let Ok(mut standby) = self.standby.lock() {
            standby.retain_mut(|worker| {
                if worker.idle_fault().is_none() {
                    return true;
                }
                worker.discard();
                false
            });
        }
    }
}

/// Starts workers for deadpool and for the supervisor's repairs.
pub struct WorkerManager {
    sandbox: SandboxConfig,
    cgroup: CgroupPlan,
    metrics: Metrics,
    next_id: AtomicU64,
    state: Arc<PoolState>,
}

impl WorkerManager {
    /// Starts one worker, counting it in the gauges and metrics.
    ///
    /// # Errors
    /// The worker's start-up error.
    pub async fn start_worker(&self) -> Result<Worker, WorkerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.state.starting.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let faults: FaultSink = Arc::new(move |component| metrics.fault(component));
        let result = Worker::start(id, &self.sandbox, &self.cgroup, faults).await;
        self.state.starting.fetch_sub(1, Ordering::Relaxed);
        match &result {
            Ok(worker) => {
                self.metrics.worker_spawns.inc();
                self.metrics.worker_start.observe(started.elapsed().as_secs_f64());
                self.state.set_start_error(None);
                tracing::info!(
                    worker = id,
                    pid = worker.info().pid,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "worker ready"
                );
            }
            Err(error) => {
                self.metrics.recycled(RecycleReason::StartupFailure);
                self.state.set_start_error(Some(error.to_string()));
                tracing::error!(worker = id, error = %error, "worker failed to start");
            }
        }
        result
    }
}

impl managed::Manager for WorkerManager {
    type Type = Worker;
    type Error = WorkerError;

    async fn create(&self) -> Result<Worker, WorkerError> {
        match self.state.take_standby() {
            Some(worker) => Ok(worker),
            None => self.start_worker().await,
        }
    }

    async fn recycle(&self, worker: &mut Worker, _: &ObjectMetrics) -> RecycleResult<WorkerError> {
        if worker.is_healthy() {
            return Ok(());
        }
        // It died while idle; deadpool drops it and creates a new one.
        let reason = worker.broken().unwrap_or(RecycleReason::Crash);
        self.metrics.recycled(reason);
        tracing::warn!(worker = worker.id(), reason = reason.label(), "idle worker unhealthy, replacing");
        worker.discard();
        Err(RecycleError::message("worker is no longer healthy"))
    }
}

/// Why no worker could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Every worker stayed busy for the whole queue timeout.
    #[error("all {workers} workers stayed busy for {waited:?}")]
    Overloaded {
        /// Pool size.
        workers: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// Workers cannot be started.
    #[error("no sandbox worker can start: {0}")]
    Unavailable(String),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    Closed,
}

/// A broken worker handed to the supervisor for replacement in its slot.
pub struct Repair {
    /// The slot, still holding the broken worker.
    pub object: Object<WorkerManager>,
    /// Why it is being replaced.
    pub reason: RecycleReason,
}

/// The pool of warm workers.
#[derive(Clone)]
pub struct WorkerPool {
    inner: managed::Pool<WorkerManager>,
    config: PoolConfig,
    create_timeout: Duration,
    state: Arc<PoolState>,
    metrics: Metrics,
    repairs: mpsc::UnboundedSender<Repair>,
}

/// Counts of workers by state, for gauges and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Ready and waiting for a run.
    pub idle: usize,
    /// Leased to a request.
    pub busy: usize,
    /// Being started or repaired.
    pub starting: usize,
    /// Requests waiting for a worker.
    pub waiting: usize,
}

impl WorkerPool {
    /// Builds an empty pool (the supervisor fills it) and the receiving end of
    /// the repair channel.
    ///
    /// # Errors
    /// Never in practice: deadpool only fails to build without a runtime.
    pub fn new(
        config: PoolConfig,
        sandbox: SandboxConfig,
        cgroup: CgroupPlan,
        metrics: Metrics,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Repair>), managed::BuildError> {
        let state = Arc::new(PoolState::default());
        let create_timeout = sandbox.start_timeout + Duration::from_secs(1);
        let manager = WorkerManager {
            sandbox,
            cgroup,
            metrics: metrics.clone(),
            next_id: AtomicU64::new(1),
            state: state.clone(),
        };
        let inner = managed::Pool::builder(manager)
            .max_size(config.workers)
            .runtime(deadpool::Runtime::Tokio1)
            .build()?;
        metrics.pool_size.set(config.workers as i64);
        let (repairs, receiver) = mpsc::unbounded_channel();
        Ok((Self { inner, config, create_timeout, state, metrics, repairs }, receiver))
    }

    /// Waits up to the queue timeout for a worker.
    ///
    /// # Errors
    /// [`LeaseError::Overloaded`] after the queue timeout, `Unavailable` when
    /// workers cannot start, `Closed` while shutting down.
    pub async fn lease(&self) -> Result<Lease, LeaseError> {
        let timeouts = Timeouts {
            wait: Some(self.config.queue_timeout),
            create: Some(self.create_timeout),
            recycle: Some(Duration::from_secs(1)),
        };
        let started = Instant::now();
        let queued = GaugeGuard::new(&self.metrics.queue_length);
        let got = self.inner.timeout_get(&timeouts).await;
        drop(queued);
        let waited = started.elapsed();
        self.metrics.queue_wait.observe(waited.as_secs_f64());
        match got {
            Ok(object) => Ok(Lease { object: Some(object), pool: self.clone(), waited }),
            Err(PoolError::Closed) => Err(LeaseError::Closed),
            Err(PoolError::Backend(error)) => Err(LeaseError::Unavailable(error.to_string())),
            Err(PoolError::Timeout(_)) => match self.state.start_error() {
                // Nothing is serving and the last start failed: say why.
                Some(error) if self.counts().idle + self.counts().busy == 0 => {
                    Err(LeaseError::Unavailable(error))
                }
                _ => Err(LeaseError::Overloaded { workers: self.config.workers, waited }),
            },
            Err(other) => Err(LeaseError::Unavailable(other.to_string())),
        }
    }

    /// Workers by state.
    pub fn counts(&self) -> PoolCounts {
        let status = self.inner.status();
        let repairing = self.state.repairing.load(Ordering::Relaxed);
        let creating = self.state.starting.load(Ordering::Relaxed).saturating_sub(repairing);
        PoolCounts {
            // Standbys count as idle only up to the pool's size.
            idle: status.available
                + self.state.standby_len().min(self.config.workers.saturating_sub(status.size)),
            busy: status.size.saturating_sub(status.available).saturating_sub(repairing),
            starting: repairing + creating,
            waiting: status.waiting,
        }
    }

    /// Updates the worker gauges (called before each scrape).
    pub fn update_gauges(&self) {
        let counts = self.counts();
        for (state, value) in [("idle", counts.idle), ("busy", counts.busy), ("starting", counts.starting)] {
            self.metrics.workers.with_label_values(&[state]).set(value as i64);
        }
    }

    /// Ready when warm and not draining, with an idle worker or a full,
    /// healthy pool.
    pub fn is_ready(&self) -> bool {
        if self.state.draining.load(Ordering::Relaxed) || !self.state.warm.load(Ordering::Relaxed) {
            return false;
        }
        let counts = self.counts();
        counts.idle > 0 || (counts.idle + counts.busy == self.config.workers && counts.starting == 0)
    }

    /// Marks the pool as draining (readiness turns 503).
    pub fn start_draining(&self) {
        self.state.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_warm(&self) -> bool {
        self.state.warm.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_warm(&self) {
        self.state.warm.store(true, Ordering::Relaxed);
    }

    pub(crate) fn repairing(&self, delta: isize) {
        if delta >= 0 {
            self.state.repairing.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.state.repairing.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub(crate) fn inner(&self) -> &managed::Pool<WorkerManager> {
        &self.inner
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.config.workers
    }

    pub(crate) fn record_start_error(&self, error: &WorkerError) {
        self.state.set_start_error(Some(error.to_string()));
    }

    /// Takes every idle worker that is dead or stopped out of the pool,
    /// counting it, and returns them (to be killed) with why.
    pub(crate) fn remove_faulty_idle(&self) -> Vec<(Worker, IdleFault)> {
        self.state.prune_standbys();
        let mut faults = Vec::new();
        let removed = self.inner.retain(|worker, _| match worker.idle_fault() {
            Some(fault) => {
                faults.push(fault);
                false
            }
            None => true,
        });
        for fault in &faults {
            self.metrics.recycled(fault.reason);
        }
        removed.removed.into_iter().zip(faults).collect()
    }

    /// Keeps a started replacement as a standby when the pool (with its
    /// standbys) is short of its size; gives it back otherwise.
    pub(crate) fn add_standby(&self, worker: Worker) -> Option<Worker> {
        let size = self.inner.status().size;
        let Ok(mut standby) = self.state.standby.lock() else { return Some(worker) };
        if size + standby.len() < self.config.workers + HOT_STANDBY {
            standby.push(worker);
            None
        } else {
            Some(worker)
        }
    }

    /// How many started workers the pool lacks, counting standbys (and the
    /// hot standby).
    pub(crate) fn missing(&self) -> usize {
        let size = self.inner.status().size + self.state.standby_len();
        (self.config.workers + HOT_STANDBY).saturating_sub(size)
    }

    /// A started standby worker, if one waits.
    pub(crate) fn take_standby(&self) -> Option<Worker> {
        self.state.take_standby()
    }

    /// Removes every standby (shutdown).
    pub(crate) fn take_standbys(&self) -> Vec<Worker> {
        self.state.standby.lock().map(|mut standby| std::mem::take(&mut *standby)).unwrap_or_default()
    }
}

/// A worker leased to one request.
pub struct Lease {
    object: Option<Object<WorkerManager>>,
    pool: WorkerPool,
    waited: Duration,
}

impl Lease {
    /// The leased worker.
    pub fn worker(&mut self) -> Option<&mut Worker> {
        self.object.as_deref_mut()
    }

    /// How long the request waited for it.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Gives the worker back: to the pool when healthy, to the supervisor for
    /// replacement when not.
    pub fn finish(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        let Some(mut object) = self.object.take() else { return };
        if object.is_healthy() {
            self.pool.metrics.recycled(RecycleReason::RunFinished);
            return;
        }
        let reason = object.broken().unwrap_or(RecycleReason::Crash);
        self.pool.metrics.recycled(reason);
        self.pool.repairing(1);
        if let Err(mpsc::error::SendError(repair)) = self.pool.repairs.send(Repair { object, reason }) {
            // The supervisor is gone (shutdown): deadpool's recycle check
            // will discard the dead worker.
            self.pool.repairing(-1);
            drop(repair);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A request cancelled mid-run (client gone) still returns its worker.
        self.give_back();
    }
}
