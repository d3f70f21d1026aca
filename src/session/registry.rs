//! The registry of open sessions: create, run a cell, info, close, and the
//! reaper that ends idle and expired sessions.
//!
//! Each entry holds its worker behind an async mutex: a call takes it with
//! `try_lock` (a second call meanwhile is [`SessionError::Busy`]) and runs in
//! its own task, so a client that goes away mid-cell does not leave the
//! worker with an answer in flight. A session whose cell ended it (timeout,
//! memory, killed) or whose worker failed leaves the registry at once; its
//! worker is stopped, which frees every process and byte it held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex as AsyncMutex;

use super::id::{redacted, IdDigest, SessionId};
use super::metrics::SessionMetrics;
use super::{Created, SessionError, SessionInfo, SessionSpec};
use crate::config::{LimitsConfig, SessionConfig};
use crate::pool::WorkerPool;
use crate::protocol::{Outcome, RunReport};
use crate::worker::{Cell, Worker};

/// How long a session's worker may take to stop before it is killed.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(2);

pub(super) struct Entry {
    pub(super) digest: IdDigest,
    /// The first characters of the id, for logs.
    pub(super) label: String,
    pub(super) created_at: SystemTime,
    pub(super) expires: Instant,
    pub(super) expires_at: SystemTime,
    pub(super) idle_timeout: Duration,
    pub(super) timeout: Duration,
    pub(super) last_used: Mutex<(Instant, SystemTime)>,
    pub(super) calls: AtomicU64,
    /// The host pid of the session worker's nsjail: `close` kills it when a
    /// cell holds the worker.
    pub(super) nsjail_pid: Option<u32>,
    /// `None` once the session ended (a call that waited for it finds it gone).
    pub(super) worker: Arc<AsyncMutex<Option<Worker>>>,
}

impl Entry {
    pub(super) fn idle_since(&self) -> Instant {
        self.last_used.lock().map(|used| used.0).unwrap_or_else(|_| Instant::now())
    }

    fn touch(&self) {
        if let Ok(mut used) = self.last_used.lock() {
            *used = (Instant::now(), SystemTime::now());
        }
    }
}

pub(super) struct State {
    pub(super) open: HashMap<IdDigest, Arc<Entry>>,
    /// Creates under way (counted against `--max-sessions`).
    pub(super) reserved: usize,
    pub(super) closed: bool,
}

pub(super) struct Inner {
    pub(super) config: SessionConfig,
    pub(super) limits: LimitsConfig,
    pub(super) pool: WorkerPool,
    pub(super) metrics: SessionMetrics,
    pub(super) state: Mutex<State>,
    /// A started worker waiting for the next create (kept once sessions are used).
    pub(super) standby: Mutex<Option<Worker>>,
    pub(super) refilling: AtomicBool,
}

/// The open sessions. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Sessions {
    pub(super) inner: Arc<Inner>,
}

impl Sessions {
    /// An empty registry; [`Sessions::start_reaper`] starts ending idle sessions.
    /// Workers are started through `pool`'s manager, but never taken from
    /// the pool itself.
    pub fn new(
        config: SessionConfig,
        limits: LimitsConfig,
        pool: WorkerPool,
        metrics: SessionMetrics,
    ) -> Self {
        let state = State { open: HashMap::new(), reserved: 0, closed: false };
        let inner = Inner {
            config,
            limits,
            pool,
            metrics,
            state: Mutex::new(state),
            standby: Mutex::new(None),
            refilling: AtomicBool::new(false),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Opens a session on a worker of its own.
    ///
    /// # Errors
    /// `Invalid` for an out-of-range field, `TooMany` at `--max-sessions`,
    /// `Unavailable` when no worker starts, `WorkerLost` when it died while
    /// opening; a script-side failure (a file /tmp refused) is `Ok(Err(report))`.
    pub async fn create(&self, spec: SessionSpec) -> Result<Result<Created, Box<RunReport>>, SessionError> {
        // Own task: a client gone mid-create does not drop a worker half-way
        // through its opening (the session is then reaped as idle).
        let sessions = self.clone();
        tokio::spawn(async move { sessions.create_now(spec).await })
            .await
            .map_err(|e| SessionError::Unavailable(format!("the create task failed: {e}")))?
    }

    async fn create_now(&self, spec: SessionSpec) -> Result<Result<Created, Box<RunReport>>, SessionError> {
        let started = Instant::now();
        let (timeout, memory_mib, idle_timeout) = self.validate(&spec)?;
        let id =
            SessionId::generate().map_err(|e| SessionError::Unavailable(format!("no random id: {e}")))?;
        self.reserve()?;
        let reserved = Reservation(self);
        let mut worker = self.take_worker().await?;
        let lifetime = self.inner.config.max_lifetime;
        let opened = worker.open_session(memory_mib * 1024 * 1024, lifetime, spec.files).await;
        let report = match opened {
            Ok(report) => report,
            Err(error) => {
                tokio::spawn(worker.kill());
                return Err(SessionError::WorkerLost(error.to_string()));
            }
        };
        if report.outcome != Outcome::Ok {
            tokio::spawn(worker.shutdown(STOP_GRACE));
            if report.outcome == Outcome::WorkerLost {
                return Err(SessionError::WorkerLost(report.error.unwrap_or_default()));
            }
            return Ok(Err(Box::new(report)));
        }
        let now = (Instant::now(), SystemTime::now());
        let entry = Arc::new(Entry {
            digest: id.digest(),
            label: redacted(id.as_str()),
            created_at: now.1,
            expires: now.0 + lifetime,
            expires_at: now.1 + lifetime,
            idle_timeout,
            timeout,
            last_used: Mutex::new(now),
            calls: AtomicU64::new(0),
            nsjail_pid: worker.host_pid(),
            worker: Arc::new(AsyncMutex::new(Some(worker))),
        });
        let created = Created { id: id.as_str().to_owned(), idle_timeout, expires_at: entry.expires_at };
        {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                self.end(&entry, "shutdown");
                return Err(SessionError::Unavailable("the service is shutting down".into()));
            }
            state.open.insert(entry.digest, entry.clone());
        }
        drop(reserved);
        self.inner.metrics.open.inc();
        self.inner.metrics.calls.with_label_values(&["create"]).observe(started.elapsed().as_secs_f64());
        tracing::info!(session = %entry.label, worker_ms = started.elapsed().as_millis() as u64, "session created");
        self.refill_standby();
        Ok(Ok(created))
    }

    /// Runs `code` as the session's next cell (`timeout`: this call's, else
    /// the session's default). The report says `session_ended` when the cell
    /// ended the session (timeout, memory, killed).
    ///
    /// # Errors
    /// `NotFound`, `Busy`, `Invalid` (timeout out of range), `WorkerLost`.
    pub async fn run(
        &self,
        id: &str,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<RunReport, SessionError> {
        let started = Instant::now();
        let entry = self.find(id)?;
        let timeout = within("timeout", timeout, self.inner.limits.max_timeout, entry.timeout)?;
        let mut guard = entry.worker.clone().try_lock_owned().map_err(|_| SessionError::Busy)?;
        if guard.is_none() {
            return Err(SessionError::NotFound);
        }
        let limits = &self.inner.limits;
        let cell = Cell {
            code,
            timeout,
            max_output_bytes: limits.max_output_bytes,
            max_result_bytes: limits.max_result_bytes,
            max_figures: limits.max_figures,
            max_figures_bytes: limits.max_figures_bytes,
        };
        // Own task: a client gone mid-cell still leaves the worker in a known state.
        let answer = tokio::spawn(async move {
            let result = match guard.as_mut() {
                Some(worker) => worker.run_cell(cell).await,
                None => unreachable_ended(),
            };
            (guard, result)
        })
        .await;
        let (mut guard, result) =
            answer.map_err(|e| SessionError::WorkerLost(format!("cell task failed: {e}")))?;
        entry.calls.fetch_add(1, Ordering::Relaxed);
        entry.touch();
        self.inner.metrics.calls.with_label_values(&["execute"]).observe(started.elapsed().as_secs_f64());
        match result {
            Ok(mut report) if report.session_ended != Some(true) && report.outcome != Outcome::WorkerLost => {
                if !self.lock().open.contains_key(&entry.digest) {
                    // Deleted or reaped as the cell ended: its worker goes now.
                    stop(guard.take(), "deleted", &entry.label);
                }
                report.session_ended = Some(false);
                Ok(report)
            }
            Ok(mut report) => {
                let reason = match report.outcome {
                    Outcome::Timeout => "timeout",
                    Outcome::MemoryLimit => "memory_limit",
                    _ => "killed",
                };
                stop(guard.take(), reason, &entry.label);
                if !self.forget(&entry) {
                    // Deleted (and counted) while this cell ran.
                    return Err(SessionError::NotFound);
                }
                self.inner.metrics.ended.with_label_values(&[reason]).inc();
                report.session_ended = Some(true);
                if report.outcome == Outcome::WorkerLost {
                    report.outcome = Outcome::Killed;
                }
                Ok(report)
            }
            Err(error) => {
                if let Some(worker) = guard.take() {
                    tokio::spawn(worker.kill());
                }
                if !self.forget(&entry) {
                    // Deleted while this cell ran (its worker was killed then).
                    return Err(SessionError::NotFound);
                }
                self.inner.metrics.ended.with_label_values(&["killed"]).inc();
                tracing::warn!(session = %entry.label, error = %error, "session worker lost");
                Err(SessionError::WorkerLost(error.to_string()))
            }
        }
    }

    /// What is known about a session.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn info(&self, id: &str) -> Result<SessionInfo, SessionError> {
        let entry = self.find(id)?;
        let last_used_at = entry.last_used.lock().map(|used| used.1).unwrap_or(entry.created_at);
        Ok(SessionInfo {
            created_at: entry.created_at,
            last_used_at,
            expires_at: entry.expires_at,
            calls: entry.calls.load(Ordering::Relaxed),
        })
    }

    /// Ends a session now (a running cell is cut off with it).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn close(&self, id: &str) -> Result<(), SessionError> {
        let entry = self.find(id)?;
        self.forget(&entry);
        self.end(&entry, "deleted");
        Ok(())
    }

    /// Ends every session (service shutdown) and stops the standby.
    pub async fn shutdown(&self) {
        let entries: Vec<Arc<Entry>> = {
            let mut state = self.lock();
            state.closed = true;
            state.open.drain().map(|(_, entry)| entry).collect()
        };
        let mut stops = tokio::task::JoinSet::new();
        for entry in entries {
            self.inner.metrics.open.dec();
            self.inner.metrics.ended.with_label_values(&["shutdown"]).inc();
            let worker = entry.worker.clone();
            stops.spawn(async move {
                if let Some(worker) = worker.lock().await.take() {
                    worker.shutdown(STOP_GRACE).await;
                }
            });
        }
        if let Some(standby) = self.inner.standby.lock().ok().and_then(|mut s| s.take()) {
            stops.spawn(standby.shutdown(STOP_GRACE));
        }
        // A cell still running holds its worker: bounded by its timeout.
        let _ = tokio::time::timeout(self.inner.limits.max_timeout + STOP_GRACE, async {
            while stops.join_next().await.is_some() {}
        })
        .await;
    }

    /// Whether sessions are on (`--max-sessions` above 0).
    pub fn enabled(&self) -> bool {
        self.inner.config.max_sessions > 0
    }

    /// How many sessions are open.
    pub fn open_count(&self) -> usize {
        self.lock().open.len()
    }

    // --- internals ------------------------------------------------------

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the map itself is intact.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn validate(&self, spec: &SessionSpec) -> Result<(Duration, u64, Duration), SessionError> {
        let limits = &self.inner.limits;
        let config = &self.inner.config;
        let timeout = within("timeout", spec.timeout, limits.max_timeout, limits.default_timeout)?;
        let (min, max) = (limits.min_memory_mib, config.max_memory_mib);
        let memory = match spec.memory_mib {
            Some(mib) if !(min..=max).contains(&mib) => {
                return Err(SessionError::Invalid(format!(
                    "field \"memory\" must be a whole number of MiB from {min} to {max}, got {mib}"
                )))
            }
            Some(mib) => mib,
            None => limits.default_memory_mib.min(max),
        };
        let idle = within("idle_timeout", spec.idle_timeout, config.idle_timeout, config.idle_timeout)?;
        Ok((timeout, memory, idle))
    }

    fn reserve(&self) -> Result<(), SessionError> {
        let mut state = self.lock();
        let max = self.inner.config.max_sessions;
        if state.closed {
            return Err(SessionError::Unavailable("the service is shutting down".into()));
        }
        if state.open.len() + state.reserved >= max {
            return Err(SessionError::TooMany { max });
        }
        state.reserved += 1;
        Ok(())
    }

    fn find(&self, id: &str) -> Result<Arc<Entry>, SessionError> {
        let digest = IdDigest::of(id);
        let state = self.lock();
        let entry = state.open.get(&digest).filter(|entry| entry.digest.matches(&digest)).cloned();
        drop(state);
        let entry = entry.ok_or(SessionError::NotFound)?;
        if Instant::now() >= entry.expires {
            // Expired between two reaper passes: it is gone for the caller.
            if let Ok(guard) = entry.worker.clone().try_lock_owned() {
                drop(guard);
                self.forget(&entry);
                self.end(&entry, "lifetime");
            }
            return Err(SessionError::NotFound);
        }
        Ok(entry)
    }

    /// Takes the entry out of the registry (once; later calls get `NotFound`).
    pub(super) fn forget(&self, entry: &Entry) -> bool {
        let removed = self.lock().open.remove(&entry.digest).is_some();
        if removed {
            self.inner.metrics.open.dec();
        }
        removed
    }

    /// Stops a forgotten session's worker in the background.
    pub(super) fn end(&self, entry: &Arc<Entry>, reason: &'static str) {
        self.inner.metrics.ended.with_label_values(&[reason]).inc();
        let worker = entry.worker.clone();
        let label = entry.label.clone();
        let nsjail_pid = entry.nsjail_pid;
        tokio::spawn(async move {
            match worker.try_lock() {
                Ok(mut guard) => stop(guard.take(), reason, &label),
                Err(_) => {
                    // A running cell holds the worker: kill its jail now;
                    // the cell's call then finds the session gone and stops it.
                    tracing::info!(session = %label, reason, "session ended during a cell; killing its worker");
                    if let Some(pid) = nsjail_pid.and_then(|pid| i32::try_from(pid).ok()) {
                        // ESRCH (already gone) is fine.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        });
    }
}

/// Releases a `--max-sessions` slot held by a create, however it ends.
struct Reservation<'a>(&'a Sessions);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.reserved = state.reserved.saturating_sub(1);
    }
}

/// `value` when it is in `(0, max]`, `default` when absent.
fn within(
    field: &str,
    value: Option<Duration>,
    max: Duration,
    default: Duration,
) -> Result<Duration, SessionError> {
    match value {
        Some(t) if t.is_zero() || t > max => Err(SessionError::Invalid(format!(
            "field \"{field}\" must be a number of seconds in (0, {}]",
            max.as_secs_f64()
        ))),
        Some(t) => Ok(t),
        None => Ok(default),
    }
}

fn stop(worker: Option<Worker>, reason: &'static str, label: &str) {
    if let Some(worker) = worker {
        tracing::info!(session = %label, reason, worker = worker.id(), "session ended");
        tokio::spawn(worker.shutdown(STOP_GRACE));
    }
}

fn unreachable_ended() -> Result<RunReport, crate::worker::WorkerError> {
    Err(crate::worker::WorkerError::Fatal { worker: 0, error: "the session ended".into() })
}
