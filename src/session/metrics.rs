//! The session metrics, registered on the service's registry next to
//! `crate::metrics` (kept apart so the session layer owns its names).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Why a session ended (the `reason` label).
pub const END_REASONS: [&str; 7] =
    ["deleted", "idle", "lifetime", "timeout", "memory_limit", "killed", "shutdown"];

/// Buckets of session calls: a warm create or a trivial cell takes
/// milliseconds, a cold create (a worker start) seconds.
const CALL_BUCKETS: [f64; 16] =
    [0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// `pyexec_sessions`, `pyexec_sessions_ended_total{reason}`,
/// `pyexec_session_call_duration_seconds{call}`.
#[derive(Clone)]
pub struct SessionMetrics {
    /// Open sessions.
    pub open: IntGauge,
    /// Ended sessions by reason.
    pub ended: IntCounterVec,
    /// Duration of `create` and `execute` calls.
    pub calls: HistogramVec,
}

impl SessionMetrics {
    /// Creates and registers the session metrics.
    ///
    /// # Errors
    /// When a name is already registered (a bug).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            open: IntGauge::new("pyexec_sessions", "Open notebook sessions.")?,
            ended: IntCounterVec::new(
                Opts::new("pyexec_sessions_ended_total", "Notebook sessions ended, by reason."),
                &["reason"],
            )?,
            calls: HistogramVec::new(
                HistogramOpts::new(
                    "pyexec_session_call_duration_seconds",
                    "Time of a session call (create, execute), from the request to its answer.",
                )
                .buckets(CALL_BUCKETS.to_vec()),
                &["call"],
            )?,
        };
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.ended.clone()))?;
        registry.register(Box::new(metrics.calls.clone()))?;
        for reason in END_REASONS {
            metrics.ended.with_label_values(&[reason]);
        }
        for call in ["create", "execute"] {
            metrics.calls.with_label_values(&[call]);
        }
        Ok(metrics)
    }
}
