//! The reaper: every [`REAP_EVERY`], ends the sessions unused for their
//! idle timeout and those past `--session-max-lifetime-secs`. A session in
//! a call is skipped (the call is bounded by its timeout) and reaped at the
//! next pass after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::registry::{Entry, Sessions};

/// How often the reaper looks for idle and expired sessions.
const REAP_EVERY: Duration = Duration::from_millis(250);

impl Sessions {
    /// Spawns the reaper (idle timeout, maximum lifetime).
    pub fn start_reaper(&self) -> tokio::task::JoinHandle<()> {
        let sessions = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sessions.reap();
            }
        })
    }

    /// Ends the sessions past their idle timeout or lifetime (not one in a call).
    pub(super) fn reap(&self) {
        let now = Instant::now();
        let due: Vec<(Arc<Entry>, &'static str)> = self
            .lock()
            .open
            .values()
            .filter_map(|entry| {
                if now >= entry.expires {
                    Some((entry.clone(), "lifetime"))
                } else if now.duration_since(entry.idle_since()) >= entry.idle_timeout {
                    Some((entry.clone(), "idle"))
                } else {
                    None
                }
            })
            .collect();
        for (entry, reason) in due {
            // A session in a call is not idle; a long cell is bounded by its timeout.
            let Ok(guard) = entry.worker.clone().try_lock_owned() else { continue };
            drop(guard);
            if self.forget(&entry) {
                self.end(&entry, reason);
            }
        }
    }
}
