//! The cap on open HTTP connections (`--max-connections`) and the short
//! answer a connection over the cap gets.
//!
//! This module counts connections and answers refused ones with raw bytes
//! (no hyper connection is built for them); it never reads a request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::CONTENT_LENGTH;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::metrics::{GaugeGuard, Metrics};

/// At most this many refused connections are being answered at once;
/// beyond that a refused connection is closed without an answer.
const REFUSALS_IN_FLIGHT: usize = 64;
/// A refused connection is closed after this long at the latest.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// At most this much of what a refused client sent is read and discarded.
const REFUSAL_DISCARD_BYTES: usize = 64 * 1024;

/// Admits connections up to the limit and answers the others.
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    answer: Bytes,
    open: IntGauge,
    refused: IntCounter,
}

/// Held by an admitted connection until it ends.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    _open: GaugeGuard,
}

impl ConnectionLimit {
    /// A limit of `max` open connections, counted in `metrics`.
    pub fn new(max: usize, metrics: &Metrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            answer: render(ApiError::TooManyConnections { max }),
            open: metrics.http_connections.clone(),
            refused: metrics.http_connections_refused.clone(),
        }
    }

    /// A slot for a new connection, or `None` when all are taken.
    pub fn admit(&self) -> Option<ConnectionSlot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(ConnectionSlot { _permit: permit, _open: GaugeGuard::new(&self.open) })
    }

    /// Answers `stream` with 503 `overloaded` and closes it.
    ///
    /// SECURITY: the refusal itself is bounded (at most
    /// [`REFUSALS_IN_FLIGHT`] at once, each at most [`REFUSAL_TIME`] and
    /// [`REFUSAL_DISCARD_BYTES`]), so a flood of connections cannot turn
    /// the answers into the resource it exhausts.
    pub fn refuse(&self, stream: TcpStream) {
        self.refused.inc();
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return; // dropping the stream closes it
        };
        let answer = self.answer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_TIME, answer_and_close(stream, &answer)).await;
        });
    }
}

/// Writes the answer, ends our side, then reads (and discards) what the
/// client sends until it closes: closing with its request unread would
/// make the kernel answer with a reset, which can destroy our answer
/// before the client reads it (see `body.rs`).
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) -> std::io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut seen = 0;
    while seen <= REFUSAL_DISCARD_BYTES {
        match stream.read(&mut sink).await? {
            0 => break,
            n => seen += n,
        }
    }
    Ok(())
}

/// The error's answer as HTTP/1.1 bytes (status line, headers, body).
fn render(error: ApiError) -> Bytes {
    let (parts, body) = error.into_response().into_parts();
    // A `Full` body is ready at once and cannot fail.
    let body = futures_util::FutureExt::now_or_never(body.collect())
        .and_then(Result::ok)
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let mut out =
        format!("HTTP/1.1 {} {}\r\n", parts.status.as_str(), parts.status.canonical_reason().unwrap_or(""))
            .into_bytes();
    for (name, value) in parts.headers.iter().filter(|(name, _)| *name != CONTENT_LENGTH) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: usize) -> (ConnectionLimit, Metrics) {
        let metrics = Metrics::register(&prometheus::Registry::new()).expect("metrics");
        (ConnectionLimit::new(max, &metrics), metrics)
    }

    #[test]
    fn admits_up_to_the_limit_and_frees_slots_on_drop() {
        let (limit, metrics) = limit(2);
        let first = limit.admit().expect("first");
        let second = limit.admit().expect("second");
        assert!(limit.admit().is_none(), "third is over the limit");
        assert_eq!(metrics.http_connections.get(), 2);
        drop(first);
        assert_eq!(metrics.http_connections.get(), 1);
        assert!(limit.admit().is_some(), "a freed slot is reusable");
        drop(second);
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let (limit, _) = limit(7);
        let text = String::from_utf8(limit.answer.to_vec()).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        for header in ["connection: close", "retry-after: 1", "content-type: application/json"] {
            assert!(head.contains(header), "{header} missing from {head}");
        }
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["kind"], "overloaded");
        assert!(body["error"].as_str().expect("message").contains("limit is 7"));
    }
}
