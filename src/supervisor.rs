//! Keeps the pool at its configured size: the fail-closed preflight, warm-up
//! to N workers (deadpool creates lazily and has no minimum), replacement of
//! broken workers in their own pool slot with exponential backoff, the idle
//! health check (every [`IDLE_CHECK`]: a worker whose nsjail or zygote died
//! or stays stopped while idle is replaced now, not found by a request), and
//! orderly shutdown of every worker.
//!
//! The supervisor never sees HTTP. It meets request traffic only through the
//! pool: broken workers reach it over the repair channel.

use std::time::Duration;

use deadpool::managed::Object;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::pool::{Repair, WorkerManager, WorkerPool};
use crate::worker::WorkerError;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const WORKER_STOP_GRACE: Duration = Duration::from_secs(2);
/// How often idle workers are checked. A dead idle worker is found within
/// one period, a stopped one within `STOP_SAMPLES` periods (0.4 s).
pub const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Runs the background replacement loop.
pub struct Supervisor {
    pool: WorkerPool,
    tasks: JoinSet<()>,
}

impl Supervisor {
    /// Starts the first worker and fails if it cannot: the service must not
    /// come up when the sandbox does not work (no namespaces, no numpy).
    ///
    /// # Errors
    /// The first worker's start-up error, which says what is missing.
    pub async fn preflight(pool: &WorkerPool) -> Result<Object<WorkerManager>, WorkerError> {
        pool.inner().get().await.map_err(|error| match error {
            deadpool::managed::PoolError::Backend(error) => error,
            other => WorkerError::Fatal { worker: 0, error: other.to_string() },
        })
    }

    /// Takes over the pool: finishes warm-up (holding `first` so every
    /// further `get` creates a new worker) and starts repairing.
    pub fn start(
        pool: WorkerPool,
        first: Object<WorkerManager>,
        repairs: mpsc::UnboundedReceiver<Repair>,
    ) -> Self {
        let mut tasks = JoinSet::new();
        tasks.spawn(warm_up(pool.clone(), first));
        tasks.spawn(repair_loop(pool.clone(), repairs));
        tasks.spawn(idle_check_loop(pool.clone()));
        Self { pool, tasks }
    }

    /// Stops replacing workers and shuts every idle worker down. Call after
    /// the HTTP server has drained, so no worker is leased any more.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let idle = self.pool.inner().retain(|_, _| false);
        self.pool.inner().close();
        let mut stops = JoinSet::new();
        for worker in idle.removed.into_iter().chain(self.pool.take_standbys()) {
            stops.spawn(worker.shutdown(WORKER_STOP_GRACE));
        }
        while stops.join_next().await.is_some() {}
        tracing::info!("all workers stopped");
    }
}

/// Creates workers until the pool holds its configured number, retrying with
/// backoff; objects are held until all exist so each `get` creates.
async fn warm_up(pool: WorkerPool, first: Object<WorkerManager>) {
    let mut held = vec![first];
    let mut backoff = BACKOFF_START;
    while held.len() < pool.size() {
        let missing = pool.size() - held.len();
        let mut creates = JoinSet::new();
        for _ in 0..missing {
            let pool = pool.clone();
            creates.spawn(async move { pool.inner().get().await });
        }
        let mut failed = false;
        while let Some(joined) = creates.join_next().await {
            match joined {
                Ok(Ok(object)) => held.push(object),
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "warm-up: worker failed to start");
                    failed = true;
                }
                Err(error) => tracing::error!(error = %error, "warm-up task failed"),
            }
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
    drop(held);
    pool.mark_warm();
    tracing::info!(workers = pool.size(), "pool warm");
}

/// Every [`IDLE_CHECK`]: takes dead or stopped idle workers out of the pool,
/// kills them, and starts replacements that wait as standbys.
async fn idle_check_loop(pool: WorkerPool) {
    let mut starting = JoinSet::new();
    let mut tick = tokio::time::interval(IDLE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(_) = starting.join_next(), if !starting.is_empty() => continue,
        }
        if !pool.is_warm() {
            continue;
        }
        for (worker, fault) in pool.remove_faulty_idle() {
            tracing::warn!(
                worker = worker.id(),
                reason = fault.reason.label(),
                component = fault.component.label(),
                "idle worker faulty, replacing"
            );
            tokio::spawn(worker.kill());
        }
        for _ in starting.len()..pool.missing() {
            starting.spawn(start_standby(pool.clone()));
        }
    }
}

async fn start_standby(pool: WorkerPool) {
    let mut backoff = BACKOFF_START;
    let worker = loop {
        match pool.inner().manager().start_worker().await {
            Ok(worker) => break worker,
            Err(error) => {
                pool.record_start_error(&error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    if let Some(surplus) = pool.add_standby(worker) {
        // A request's `create` filled the slot meanwhile.
        surplus.shutdown(WORKER_STOP_GRACE).await;
    }
}

/// Replaces each broken worker inside its own pool slot.
async fn repair_loop(pool: WorkerPool, mut repairs: mpsc::UnboundedReceiver<Repair>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            Some(repair) = repairs.recv() => { running.spawn(repair_one(pool.clone(), repair)); }
            Some(_) = running.join_next(), if !running.is_empty() => {}
            else => break,
        }
    }
}

async fn repair_one(pool: WorkerPool, repair: Repair) {
    let Repair { mut object, reason } = repair;
    let old_id = object.id();
    tracing::warn!(worker = old_id, reason = reason.label(), "replacing worker");
    // Stop a wedged zygote (and any run it still hosts) before starting the
    // next one, so the replacement does not compete with it for CPU.
    object.kill_now();
    let mut backoff = BACKOFF_START;
    // The hot standby, when one waits, replaces it at once (the idle check
    // then starts the next standby).
    let fresh = loop {
        if let Some(standby) = pool.take_standby() {
            break standby;
        }
        match pool.inner().manager().start_worker().await {
            Ok(worker) => break worker,
            Err(error) => {
                pool.record_start_error(&error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    let old = std::mem::replace(&mut *object, fresh);
    tracing::info!(old = old_id, new = object.id(), "worker replaced");
    drop(object);
    pool.repairing(-1);
    old.kill().await;
}
