//! The session workers' standby: one started worker waiting for the next
//! create, so that a create takes milliseconds instead of a worker start.
//! It is started only once sessions are used (after a create) and only
//! while fewer than `--max-sessions` are open.

use std::sync::atomic::Ordering;

use super::registry::{Sessions, STOP_GRACE};
use super::SessionError;
use crate::worker::Worker;

impl Sessions {
    /// The standby worker when a healthy one waits, else a freshly started one.
    pub(super) async fn take_worker(&self) -> Result<Worker, SessionError> {
        let standby = self.inner.standby.lock().ok().and_then(|mut standby| standby.take());
        if let Some(mut worker) = standby {
            if worker.idle_fault().is_none() && worker.is_healthy() {
                return Ok(worker);
            }
            tokio::spawn(worker.kill());
        }
        let manager = self.inner.pool.inner().manager();
        manager.start_worker().await.map_err(|error| SessionError::Unavailable(error.to_string()))
    }

    /// Starts the next create's worker in the background, once sessions are
    /// used and while fewer than `--max-sessions` are open.
    pub(super) fn refill_standby(&self) {
        if self.inner.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions = self.clone();
        tokio::spawn(async move {
            let wanted = {
                let state = sessions.lock();
                !state.closed && state.open.len() < sessions.inner.config.max_sessions
            };
            let empty = sessions.inner.standby.lock().map(|s| s.is_none()).unwrap_or(false);
            if wanted && empty {
                match sessions.inner.pool.inner().manager().start_worker().await {
                    Ok(worker) => {
                        let closed = sessions.lock().closed;
                        let surplus = match sessions.inner.standby.lock() {
                            Ok(mut standby) if standby.is_none() && !closed => standby.replace(worker),
                            _ => Some(worker),
                        };
                        if let Some(surplus) = surplus {
                            surplus.shutdown(STOP_GRACE).await;
                        }
                    }
                    Err(error) => tracing::warn!(error = %error, "cannot start a standby session worker"),
                }
            }
            sessions.inner.refilling.store(false, Ordering::Release);
        });
    }
}
