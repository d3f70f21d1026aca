//! pyexec runs untrusted Python scripts over HTTP in warm, per-run isolated
//! nsjail sandboxes.
//!
//! # Layout
//!
//! Data flows one way; nothing lower imports anything higher:
//!
//! ```text
//! main -> http ----------> executor -> pool (lease) -> worker (nsjail + zygote) -> protocol
//!      -> supervisor --------------------^  (warm-up to N, replaces broken workers)
//! ```
//!
//! - [`config`]: flags and `PYEXEC_*` twins, validated before anything starts;
//!   [`config_reference`] renders them as `docs/configuration.md`.
//! - [`http`]: hyper front end, routes, the one `ApiError` -> response table.
//! - [`mcp`]: the `/mcp` Model Context Protocol endpoint (rmcp); `http`'s route
//!   hook hands it authorized requests, its tools run code through [`executor`].
//! - [`executor`]: leases a worker, runs a job, turns worker failures into verdicts.
//! - [`pool`]: the deadpool `Manager` of workers and the `Lease` requests hold.
//! - [`session`]: notebook sessions (a spare kept alive, on a worker of its
//!   own started through the pool's manager, never a pool worker); http
//!   calls it, it calls worker.
//! - [`supervisor`]: fail-closed preflight, warm-up, replacement with backoff, shutdown.
//! - [`worker`]: one nsjail + zygote: spawning, the nsjail argv, cgroups, the conversation.
//! - [`protocol`]: messages and length-prefixed MessagePack framing.
//! - [`metrics`]: the Prometheus metrics on the service's own registry.
//! - [`cli`]: `pyexec run`, a client of the HTTP API; it imports nothing of
//!   the server above and nothing above imports it.
//! - [`doctor`]: `pyexec doctor`, the self-check before going live; it reads
//!   [`config`] and the worker's public API (cgroup detection, the nsjail
//!   argv) and serves nothing. Nothing else imports it.
//!
//! The Python side (the zygote and the per-run isolation) lives in `worker/`
//! at the repository root; `docs/internals.md` describes both halves.

pub mod cli;
pub mod config;
pub mod config_reference;
pub mod doctor;
pub mod executor;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod session;
pub mod supervisor;
mod vocabulary;
pub mod worker;
