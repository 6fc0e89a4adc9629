//! The HTTP server of the one port: HTTP/1.1 and HTTP/2 (h2c or over TLS) on one listener,
//! with the connection limits from `limits.*`:
//! - request-head size (HTTP/1.1 headers, HTTP/2 header lists, i.e. gRPC metadata);
//! - a deadline for a complete HTTP/1.1 request head (slow clients);
//! - HTTP/2 keep-alive pings that close connections whose peer stopped answering;
//! - an idle timeout: a connection on which no byte moves either way for that long is closed
//!   (a client that connects and sends nothing, a forgotten keep-alive connection). Open
//!   streams are never idle for long: SSE sends keep-alive comments and HTTP/2 pings;
//! - a cap on concurrent HTTP/2 streams per connection.
//!
//! Shutdown stops accepting and asks every connection to finish gracefully (HTTP/2 GOAWAY,
//! HTTP/1.1 after the current response); the caller bounds how long that may take.

use crate::config::LimitsConfig;
use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits for open
/// connections to finish.
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    limits: &LimitsConfig,
    shutdown: CancellationToken,
) where
    L::Io: Unpin,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    let idle_timeout = limits.idle_timeout;
    loop {
        let (io, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (builder, shutdown) = (Arc::clone(&builder), shutdown.clone());
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let started = Instant::now();
            let activity = Arc::new(AtomicU64::new(0));
            let io = ActivityIo {
                inner: io,
                started,
                last_active_ms: Arc::clone(&activity),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                let idle_deadline = started
                    + Duration::from_millis(activity.load(Ordering::Relaxed))
                    + idle_timeout;
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            // Resets, timeouts and protocol errors of single clients.
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = shutdown.cancelled(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep_until(idle_deadline) => {
                        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
                        if last + idle_timeout <= Instant::now() {
                            tracing::debug!("closing an idle connection");
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// An I/O stream that records when bytes last moved (ms since `started`).
struct ActivityIo<T> {
    inner: T,
    started: Instant,
    last_active_ms: Arc<AtomicU64>,
}

impl<T> ActivityIo<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
