//! The service's Prometheus metrics, registered on a `Registry` that main
//! builds and passes down (never the global default registry).
//!
//! Names and labels are a stable interface: the dashboards and alert rules
//! in `dashboards/` depend on them. This module only defines and encodes
//! metrics; the layers that own the events update them.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::http::error_kind::ErrorKind;
use crate::worker::{Component, RecycleReason};

/// The `kind` label values of `pyexec_requests_total`, all pre-registered:
/// `ok` plus every [`ErrorKind`].
pub fn request_kinds() -> impl Iterator<Item = &'static str> {
    std::iter::once("ok").chain(ErrorKind::ALL.iter().map(|kind| kind.as_str()))
}

/// Buckets for request, queue and run durations: dense around the 1-5 ms
/// fast path, reaching the longest allowed timeout.
const LATENCY_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Buckets for worker start-up (importing numpy and pandas takes ~0.2 s).
const START_BUCKETS: [f64; 11] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Every metric the service exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `pyexec_requests_total{kind}`.
    pub requests: IntCounterVec,
    /// `pyexec_request_duration_seconds`.
    pub request_duration: Histogram,
    /// `pyexec_queue_wait_seconds`.
    pub queue_wait: Histogram,
    /// `pyexec_run_duration_seconds`.
    pub run_duration: Histogram,
    /// `pyexec_workers{state}`.
    pub workers: IntGaugeVec,
    /// `pyexec_pool_size`.
    pub pool_size: IntGauge,
    /// `pyexec_worker_spawns_total`.
    pub worker_spawns: IntCounter,
    /// `pyexec_worker_recycles_total{reason}`.
    pub worker_recycles: IntCounterVec,
    /// `pyexec_worker_start_duration_seconds`.
    pub worker_start: Histogram,
    /// Faults of the workers' own processes, by `component`.
    pub worker_faults: IntCounterVec,
    /// Runs retried on another worker after their worker was lost.
    pub run_retries: IntCounter,
    /// `pyexec_in_flight_requests`.
    pub in_flight: IntGauge,
    /// `pyexec_queue_length`.
    pub queue_length: IntGauge,
    /// `pyexec_build_info{version}`.
    pub build_info: Gauge,
    /// `pyexec_http_connections`.
    pub http_connections: IntGauge,
    /// `pyexec_http_connections_refused_total`.
    pub http_connections_refused: IntCounter,
}

/// Registration failed: a duplicate name, a bug.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates every metric and registers it (plus the process collector) on
    /// `registry`.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        };
        let metrics = Self {
            registry: registry.clone(),
            requests: IntCounterVec::new(
                Opts::new(
                    "pyexec_requests_total",
                    "Answered /execute and session requests (and unroutable ones), by outcome kind.",
                ),
                &["kind"],
            )?,
            request_duration: histogram(
                "pyexec_request_duration_seconds",
                "Time from reading a /execute request to writing its answer.",
                &LATENCY_BUCKETS,
            )?,
            queue_wait: histogram(
                "pyexec_queue_wait_seconds",
                "Time a /execute request waited for a free worker.",
                &LATENCY_BUCKETS,
            )?,
            run_duration: histogram(
                "pyexec_run_duration_seconds",
                "Time a worker spent on one run, from sending the script to its verdict.",
                &LATENCY_BUCKETS,
            )?,
            workers: IntGaugeVec::new(Opts::new("pyexec_workers", "Workers by state."), &["state"])?,
            pool_size: IntGauge::new("pyexec_pool_size", "Configured number of workers.")?,
            worker_spawns: IntCounter::new("pyexec_worker_spawns_total", "Workers started successfully.")?,
            worker_recycles: IntCounterVec::new(
                Opts::new(
                    "pyexec_worker_recycles_total",
                    "Workers returned to the pool after a run (reason run_finished) or replaced, by reason.",
                ),
                &["reason"],
            )?,
            worker_start: histogram(
                "pyexec_worker_start_duration_seconds",
                "Time from spawning a worker to its zygote being ready.",
                &START_BUCKETS,
            )?,
            worker_faults: IntCounterVec::new(
                Opts::new(
                    "pyexec_worker_faults_total",
                    "Faults of a worker's own processes (died or stopped, not by the script), by component.",
                ),
                &["component"],
            )?,
            run_retries: IntCounter::new(
                "pyexec_run_retries_total",
                "Runs retried once on another worker because their worker was lost.",
            )?,
            in_flight: IntGauge::new("pyexec_in_flight_requests", "/execute requests being handled.")?,
            queue_length: IntGauge::new("pyexec_queue_length", "/execute requests waiting for a worker.")?,
            build_info: Gauge::with_opts(
                Opts::new("pyexec_build_info", "Always 1; the version label names the build.")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            )?,
            http_connections: IntGauge::new("pyexec_http_connections", "Open HTTP connections.")?,
            http_connections_refused: IntCounter::new(
                "pyexec_http_connections_refused_total",
                "HTTP connections refused over --max-connections (answered 503 overloaded and closed).",
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.request_duration.clone()))?;
        registry.register(Box::new(metrics.queue_wait.clone()))?;
        registry.register(Box::new(metrics.run_duration.clone()))?;
        registry.register(Box::new(metrics.workers.clone()))?;
        registry.register(Box::new(metrics.pool_size.clone()))?;
        registry.register(Box::new(metrics.worker_spawns.clone()))?;
        registry.register(Box::new(metrics.worker_recycles.clone()))?;
        registry.register(Box::new(metrics.worker_start.clone()))?;
        registry.register(Box::new(metrics.worker_faults.clone()))?;
        registry.register(Box::new(metrics.run_retries.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        registry.register(Box::new(metrics.queue_length.clone()))?;
        registry.register(Box::new(metrics.build_info.clone()))?;
        registry.register(Box::new(metrics.http_connections.clone()))?;
        registry.register(Box::new(metrics.http_connections_refused.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        // Pre-create every label so rates start at 0 instead of being absent.
        for kind in request_kinds() {
            metrics.requests.with_label_values(&[kind]);
        }
        for reason in RecycleReason::ALL {
            metrics.worker_recycles.with_label_values(&[reason.label()]);
        }
        for state in ["idle", "busy", "starting"] {
            metrics.workers.with_label_values(&[state]);
        }
        for component in Component::ALL {
            metrics.worker_faults.with_label_values(&[component.label()]);
        }
        metrics.build_info.set(1.0);
        Ok(metrics)
    }

    /// Counts one recycle or replacement.
    pub fn recycled(&self, reason: RecycleReason) {
        self.worker_recycles.with_label_values(&[reason.label()]).inc();
    }

    /// Counts one fault of a worker's own process.
    pub fn fault(&self, component: Component) {
        self.worker_faults.with_label_values(&[component.label()]).inc();
    }

    /// The registry, for a module that registers metrics of its own (the
    /// MCP endpoint).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one answered request of this kind.
    pub fn request(&self, kind: &str) {
        self.requests.with_label_values(&[kind]).inc();
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for I/O; a malformed metric would
        // be a bug caught by the tests, so an error just yields what we have.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Increments a gauge now and decrements it when dropped, so the gauge
/// stays right when a request future is cancelled (the client went away).
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// `gauge.inc()` until the guard is dropped.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_contract_metric_with_help() {
        let metrics = Metrics::register(&Registry::new()).expect("registers");
        let text = String::from_utf8(metrics.encode()).expect("utf8");
        for name in [
            "pyexec_requests_total",
            "pyexec_request_duration_seconds",
            "pyexec_queue_wait_seconds",
            "pyexec_run_duration_seconds",
            "pyexec_workers",
            "pyexec_pool_size",
            "pyexec_worker_spawns_total",
            "pyexec_worker_recycles_total",
            "pyexec_worker_start_duration_seconds",
            "pyexec_in_flight_requests",
            "pyexec_queue_length",
            "pyexec_build_info",
            "pyexec_http_connections",
            "pyexec_http_connections_refused_total",
            "pyexec_worker_faults_total",
            "pyexec_run_retries_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} missing");
        }
        for kind in request_kinds() {
            let line = format!(r#"pyexec_requests_total{{kind="{kind}"}} 0"#);
            assert!(text.lines().any(|l| l == line), "{line} missing");
        }
        assert!(text.contains(r#"pyexec_worker_faults_total{component="fork_server"} 0"#));
        assert!(text.contains(r#"pyexec_worker_recycles_total{reason="startup_failure"} 0"#));
    }

    #[test]
    fn gauge_guard_decrements_when_dropped() {
        let gauge = IntGauge::new("g", "help").expect("gauge");
        let guard = GaugeGuard::new(&gauge);
        assert_eq!(gauge.get(), 1);
        drop(guard);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn registering_twice_on_one_registry_fails() {
        let registry = Registry::new();
        Metrics::register(&registry).expect("first");
        assert!(Metrics::register(&registry).is_err());
    }
}
