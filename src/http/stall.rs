//! A connection whose writes may not stall longer than a limit
//! (`--write-stall-timeout-secs`): a client that stops reading its answer gets
//! the connection closed.
//!
//! SECURITY: without it, a client that sends requests with large answers
//! and never reads them keeps each answer (up to the result plus both
//! output streams) in memory and its connection slot for as long as it
//! likes; hyper has no write timeout of its own. This module only times
//! writes; it never looks at the bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::Sleep;

/// Wraps a connection's I/O; a write (or flush) that cannot make progress
/// for `limit` fails with `TimedOut`, which ends the connection.
pub struct WriteStallLimit<T> {
    inner: T,
    limit: Duration,
    /// Running while the client is not taking bytes; reset by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStallLimit<T> {
    /// Guards `inner`'s writes with `limit`.
    pub fn new(inner: T, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Called when a write is pending: Ready(error) once the stall lasts
    /// `limit`, else Pending (the timer wakes the task).
    fn poll_stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.poll_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: Read + Unpin> Read for WriteStallLimit<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for WriteStallLimit<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    fn write_all<'a, T: Write + Unpin>(
        io: &'a mut T,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + 'a {
        let mut sent = 0;
        std::future::poll_fn(move |cx| {
            while sent < buf.len() {
                match Pin::new(&mut *io).poll_write(cx, &buf[sent..]) {
                    Poll::Ready(Ok(n)) => sent += n,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(()))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_ends_the_connection() {
        // A 64-byte pipe whose other end never reads.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guarded = WriteStallLimit::new(TokioIo::new(ours), Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let error = write_all(&mut guarded, &[0u8; 1024]).await.expect_err("the stall times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = WriteStallLimit::new(TokioIo::new(ours), Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 64];
            let mut total = 0;
            while total < 1024 {
                tokio::time::sleep(Duration::from_secs(4)).await; // under the limit each time
                total += theirs.read(&mut chunk).await.expect("read");
            }
            total
        });
        write_all(&mut guarded, &[0u8; 1024]).await.expect("progress resets the timer");
        assert_eq!(reader.await.expect("reader"), 1024);
    }
}
