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
//! An SSE subscription arriving as the first request of an HTTP/1.1 connection is served by
//! the lean path in `event_stream.rs`, everything else by hyper.
//!
//! Shutdown stops accepting and asks every connection to finish gracefully (HTTP/2 GOAWAY,
//! HTTP/1.1 after the current response); the caller bounds how long that may take.

mod activity;
mod event_stream;

use crate::config::LimitsConfig;
use activity::{Activity, ActivityIo};
use axum::Router;
use axum::serve::Listener;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds the node's listener with a listen backlog of `backlog` connections (tokio's
/// `TcpListener::bind` uses 1024, too few for a hub whose peers reconnect at once).
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted node can take its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

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
    let (head_deadline, max_head) = (
        limits.header_read_timeout.min(idle_timeout),
        limits.max_header_bytes,
    );
    loop {
        let (io, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (builder, shutdown, router) = (Arc::clone(&builder), shutdown.clone(), router.clone());
        connections.spawn(async move {
            let activity = Activity::new();
            let mut io = ActivityIo::new(io, activity.clone());
            let mut head = Vec::new();
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                read = tokio::time::timeout(
                    head_deadline,
                    event_stream::read_request(&mut io, &mut head, max_head),
                ) => read,
            };
            match first {
                Ok(Ok(Some(request))) => {
                    drop(head);
                    event_stream::serve(io, router, request, idle_timeout).await;
                }
                Ok(Ok(None)) => {
                    io.replay(Bytes::from(head));
                    // Boxed: the hyper connection's state would otherwise size every
                    // connection task, including the lean event-stream ones.
                    Box::pin(serve_with_hyper(
                        builder,
                        io,
                        router,
                        activity,
                        idle_timeout,
                        shutdown,
                    ))
                    .await;
                }
                // The client left or sent no complete head in time.
                Ok(Err(_)) | Err(_) => {}
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection with hyper (HTTP/1.1 or HTTP/2) until it ends, shutdown finishes it,
/// or no byte moved for `idle_timeout`.
async fn serve_with_hyper<T>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: T,
    router: Router,
    activity: Activity,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
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
            () = activity.idle(idle_timeout) => {
                tracing::debug!("closing an idle connection");
                return;
            }
        }
    }
}
