//! A connection's I/O as the server sees it: it records when bytes last moved (for the idle
//! timeout, checked by the connection's task) and can replay bytes the server read ahead to
//! choose how to serve the connection.

use bytes::{Buf, Bytes};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The time bytes last moved on one connection (ms since it was accepted), shared by its
/// [`ActivityIo`] and its idle check (hyper's connections). Checking needs one timer per idle
/// period, not one per read or write.
#[derive(Debug, Clone)]
pub(super) struct Activity {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    /// A connection accepted now.
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle unless a byte moves before then.
    fn idle_at(&self, idle_timeout: Duration) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle_timeout
    }

    /// Waits until no byte has moved for `idle_timeout`.
    pub(super) async fn idle(&self, idle_timeout: Duration) {
        loop {
            let at = self.idle_at(idle_timeout);
            if at <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

/// An I/O stream that records in its [`Activity`] when bytes move, and reads any bytes given
/// to [`ActivityIo::replay`] before reading on.
pub(super) struct ActivityIo<T> {
    inner: T,
    activity: Activity,
    replay: Bytes,
}

impl<T> ActivityIo<T> {
    pub(super) fn new(inner: T, activity: Activity) -> Self {
        Self {
            inner,
            activity,
            replay: Bytes::new(),
        }
    }

    /// Makes `bytes` (already read from this stream) the next ones read, so whoever serves
    /// the connection sees it from its start.
    pub(super) fn replay(&mut self, bytes: Bytes) {
        self.replay = bytes;
    }

    fn touch(&self) {
        self.activity.touch();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            if self.replay.is_empty() {
                // Give the allocation back now rather than with the connection.
                self.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replays_what_was_read_ahead_then_reads_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b" world")
            .await
            .unwrap();
        drop(client);
        let mut io = ActivityIo::new(server, Activity::new());
        io.replay(Bytes::from_static(b"hello"));
        let mut small = [0u8; 3];
        io.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"lo world");
    }
}
