//! The HTTP front end: hyper 1.x connections on a tokio listener, routed to
//! the handlers in [`routes`], with graceful shutdown.
//!
//! This layer owns status codes and JSON shapes; it never sees a worker
//! process. Shutdown: stop accepting, let every accepted request (running
//! or still queued for a worker) get its answer within the deadline, close
//! idle keep-alive connections.
//!
//! Limits on what one client can hold (each a flag):
//! - `--max-connections` open connections; one more gets 503 and is closed
//!   ([`connections`]);
//! - `--header-read-timeout-secs` for a request's headers; in hyper the same
//!   timer also bounds how long an idle keep-alive connection waits for its
//!   next request (it starts whenever the connection waits for a request
//!   head; `tests/http_abuse.rs` checks both);
//! - `--body-read-timeout-secs` for the body (`body.rs`: 408, then close);
//! - `--write-stall-timeout-secs` for an answer the client stops reading
//!   ([`stall`]);
//! - header floods get hyper's defaults: more than 100 headers, or a
//!   request head over its read buffer (~400 KiB), get 431 and a close.

mod auth;
mod body;
mod connections;
pub mod error;
pub mod error_kind;
pub mod error_table;
pub(crate) mod files;
mod multipart;
pub mod request;
pub mod routes;
pub(crate) mod sessions;
mod stall;
mod strict_json;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use connections::ConnectionLimit;
pub use routes::App;
use stall::WriteStallLimit;

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
/// Returns whether every connection finished within the deadline.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> bool {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // SECURITY: slowloris: a client that sends its headers slowly, or keeps
    // an idle keep-alive connection open, is cut off after the timeout.
    builder.timer(TokioTimer::new()).header_read_timeout(app.http.header_read_timeout).keep_alive(true);
    let limit = ConnectionLimit::new(app.http.max_connections, &app.metrics);
    let write_stall_timeout = app.http.write_stall_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // SECURITY: a flood of connections is refused (answered, closed) at
        // the limit instead of each costing a task and buffers.
        let Some(slot) = limit.admit() else {
            tracing::debug!(peer = %peer, "connection refused: --max-connections reached");
            limit.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(routes::route(&app, request).await) }
        });
        let io = WriteStallLimit::new(TokioIo::new(stream), write_stall_timeout);
        let connection = builder.serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let deadline = app.http.shutdown_timeout;
    tracing::info!(deadline_secs = deadline.as_secs_f64(), "stopped accepting; draining requests");
    tokio::time::timeout(deadline, graceful.shutdown()).await.is_ok()
}
