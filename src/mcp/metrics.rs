//! The MCP endpoint's metrics, on the service's registry:
//! `pyexec_mcp_tool_calls_total{tool,kind}` and
//! `pyexec_mcp_tool_call_duration_seconds{tool}`. The runs a tool makes are
//! also counted where every run is (`pyexec_run_duration_seconds`,
//! `pyexec_queue_wait_seconds`); `pyexec_requests_total` stays the count of
//! `/execute` answers.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// Buckets of a tool call: a run, from milliseconds to the longest timeout.
const BUCKETS: [f64; 14] = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Counters and timings of tool calls.
#[derive(Clone)]
pub struct McpMetrics {
    calls: IntCounterVec,
    duration: HistogramVec,
}

impl McpMetrics {
    /// Registers the metrics next to the service's own.
    ///
    /// # Errors
    /// When a metric cannot be registered (registered twice: a bug).
    pub fn register(metrics: &Metrics) -> Result<Self, MetricsError> {
        let calls = IntCounterVec::new(
            Opts::new(
                "pyexec_mcp_tool_calls_total",
                "MCP tool calls answered, by tool and kind (ok or the error kind).",
            ),
            &["tool", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("pyexec_mcp_tool_call_duration_seconds", "Time to answer one MCP tool call.")
                .buckets(BUCKETS.to_vec()),
            &["tool"],
        )?;
        metrics.registry().register(Box::new(calls.clone()))?;
        metrics.registry().register(Box::new(duration.clone()))?;
        Ok(Self { calls, duration })
    }

    /// Counts one answered call.
    pub fn call(&self, tool: &str, kind: &str, started: Instant) {
        self.calls.with_label_values(&[tool, kind]).inc();
        self.duration.with_label_values(&[tool]).observe(started.elapsed().as_secs_f64());
    }
}
