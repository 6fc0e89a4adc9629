//! A lean HTTP/1.1 path for Server-Sent Events.
//!
//! An SSE subscriber holds its connection for hours and receives a few hundred bytes now and
//! then. Served by hyper, each such connection keeps hyper's HTTP/1.1 read buffer and header
//! write buffer (≈ 24 KiB) for its whole life, although after the request head neither is used
//! again. So a connection whose first request is `GET` on the events path over HTTP/1.1 is
//! served here instead: the head is read into a temporary buffer and parsed with `httparse`,
//! the request goes through the same router (every layer, extractor and error applies), the
//! response head is written once, and whatever the stream has ready — one event's parts (its
//! fields and the shared document bytes), or many events of a stream catching up — is written
//! as one chunk (`size`, the parts in place, CRLF) in one vectored write: per connection only
//! the socket and the subscriber's own stream state remain.
//!
//! Anything unusual — another method or path, HTTP/1.0, a request body, `Upgrade`, `Expect`,
//! a pipelined second request, a head that does not parse or is too large — is not served
//! here: the bytes read so far are handed to hyper unchanged, which answers as it always does.
//! The connection closes after the stream (`connection: close`), so no second request is ever
//! read on it.

use crate::api::sse::EVENTS_PATH;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version, header};
use bytes::Bytes;
use futures::StreamExt;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

/// The most headers a request served here may have (hyper's own limit is 100).
const MAX_HEADERS: usize = 100;

/// The largest non-streaming answer (an error problem) buffered to compute its length.
const MAX_PLAIN_BODY: usize = 1 << 20;

/// Reads the start of a connection into `buf` until it knows whether the first request is an
/// event-stream `GET` this module serves. Returns that request, or `None` when hyper should
/// serve the connection (with `buf` replayed first). An I/O error means the client is gone.
pub(super) async fn read_request<T: AsyncRead + Unpin>(
    io: &mut T,
    buf: &mut Vec<u8>,
    max_head_bytes: usize,
) -> std::io::Result<Option<Request<Body>>> {
    // The request line's start, built from the one events path.
    let prefix = [b"GET ".as_slice(), EVENTS_PATH.as_bytes()].concat();
    // Where the search for the blank line resumes: a head arriving a byte at a time is
    // scanned once, not once per byte.
    let mut scanned = 0;
    loop {
        let n = buf.len().min(prefix.len());
        if buf[..n] != prefix[..n] {
            return Ok(None);
        }
        if buf.len() >= prefix.len() {
            let from = scanned;
            let found = buf[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| from + i);
            scanned = buf.len().saturating_sub(3);
            if let Some(end) = found {
                let head_len = end + 4;
                // Bytes after the head would be a body or a pipelined request: hyper's job.
                // A head over the limit is hyper's too (431).
                return Ok((head_len == buf.len() && head_len <= max_head_bytes)
                    .then(|| parse(buf))
                    .flatten());
            }
            if buf.len() >= max_head_bytes {
                return Ok(None);
            }
        }
        buf.reserve(1024);
        if io.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Parses a complete request head; `None` for anything this module leaves to hyper.
fn parse(head: &[u8]) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return None,
    }
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let target = parsed.path?;
    let rest = target.strip_prefix(EVENTS_PATH)?;
    if !(rest.is_empty() || rest.starts_with('?')) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    let map = request.headers_mut();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::EXPECT,
        ]
        .contains(&name)
        {
            return None;
        }
        map.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(request)
}

/// Answers `request` through `router` on `io` and closes the connection. An event stream is
/// written chunk by chunk until it ends (shutdown), the client goes away, or a write waits
/// longer than `idle_timeout` (a client that stopped reading: no byte moves any more).
pub(super) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    mut io: T,
    router: Router,
    request: Request<Body>,
    idle_timeout: Duration,
) {
    let Ok(response) = router.oneshot(request).await;
    let (parts, body) = response.into_parts();
    let streaming = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_PLAIN_BODY).await else {
            return;
        };
        let mut out = head(&parts, Some(bytes.len()));
        out.extend_from_slice(&bytes);
        if within(idle_timeout, io.write_all(&out)).await.is_ok() {
            let _ = within(idle_timeout, io.shutdown()).await;
        }
        return;
    }
    if within(idle_timeout, write_all_flush(&mut io, &head(&parts, None)))
        .await
        .is_err()
    {
        return;
    }
    let mut frames = body.into_data_stream();
    let mut scratch = [0u8; 64];
    // Grows to what one write gathers (a few parts, usually one) and is reused.
    let mut ready = Vec::new();
    loop {
        tokio::select! {
            // An event may be several parts (its fields, the shared bytes of a large document,
            // the closing braces), and a stream catching up has many events ready: all that is
            // ready goes out as one chunk in one write.
            end = gather(&mut frames, &mut ready) => {
                if !ready.is_empty()
                    && within(idle_timeout, write_chunk(&mut io, &ready)).await.is_err()
                {
                    return;
                }
                ready.clear();
                match end {
                    None => {}
                    Some(Ok(())) => {
                        if within(idle_timeout, write_all_flush(&mut io, b"0\r\n\r\n")).await.is_ok() {
                            let _ = within(idle_timeout, io.shutdown()).await;
                        }
                        return;
                    }
                    Some(Err(e)) => {
                        // No final chunk: the client sees the stream broken and reconnects.
                        tracing::warn!(error = %e, "event stream failed");
                        return;
                    }
                }
            }
            // The client sends nothing more on this connection; reading notices it leaving
            // (EOF or reset) while the stream is quiet. Stray bytes are discarded.
            read = io.read(&mut scratch) => if !matches!(read, Ok(n) if n > 0) {
                return;
            },
        }
    }
}

/// Runs a write, allowing it `limit` once it has to wait. Most writes complete at once and
/// never arm a timer; one that cannot finish within `limit` fails with `TimedOut`.
async fn within<F: Future<Output = std::io::Result<()>>>(
    limit: Duration,
    write: F,
) -> std::io::Result<()> {
    tokio::pin!(write);
    if let Poll::Ready(done) = futures::poll!(write.as_mut()) {
        return done;
    }
    tokio::time::timeout(limit, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The response head: the router's status and headers, plus the framing this path uses.
fn head(parts: &axum::http::response::Parts, length: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match length {
        Some(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

async fn write_all_flush<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// The most parts gathered into one chunk (well under `IOV_MAX`, 1 024 on Linux).
const MAX_GATHERED_PARTS: usize = 64;

/// Gathering stops once this many bytes are ready: a large document goes out without waiting
/// for what follows it, and what is gathered but not yet written stays small.
const MAX_GATHERED_BYTES: usize = 64 * 1024;

/// Waits for the body's next part, then takes every part that is ready without waiting into
/// `ready` (bounded by [`MAX_GATHERED_PARTS`] and [`MAX_GATHERED_BYTES`]). Resolves to how the
/// body ended if it did — `Ok` at its end, the error if it failed — and `None` while it goes
/// on. The body is polled with the task's own waker throughout: a stream that has nothing more
/// ready keeps the wake-up it registered, and is not polled again until it fires.
fn gather<'a, S, E>(
    frames: &'a mut S,
    ready: &'a mut Vec<Bytes>,
) -> impl Future<Output = Option<Result<(), E>>> + 'a
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    std::future::poll_fn(move |cx| {
        let mut bytes: usize = ready.iter().map(Bytes::len).sum();
        loop {
            if ready.len() >= MAX_GATHERED_PARTS || bytes >= MAX_GATHERED_BYTES {
                return Poll::Ready(None);
            }
            match frames.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    if !data.is_empty() {
                        bytes += data.len();
                        ready.push(data);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(Some(Ok(()))),
                Poll::Pending if ready.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(None),
            }
        }
    })
}

/// Chunks up to this size are copied into one write on streams that cannot write vectored.
const COPY_BELOW: usize = 64 * 1024;

/// Writes `parts` as one chunk of the chunked transfer coding. The parts are shared by every
/// subscriber (an encoded event, a large document's bytes), so on a plain socket they are
/// written in place with vectored writes rather than copied; a stream that cannot write
/// vectored (TLS) gets one contiguous record when the chunk is small, and the parts one by one,
/// without a copy, when it is large.
async fn write_chunk<T: AsyncWrite + Unpin>(io: &mut T, parts: &[Bytes]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(Bytes::len).sum();
    // The chunk-size line, formatted on the stack: this runs per subscriber per write.
    let mut line = [0u8; 20];
    let size = {
        let mut cursor = std::io::Cursor::new(&mut line[..]);
        std::io::Write::write_fmt(&mut cursor, format_args!("{len:x}\r\n"))?;
        let n = usize::try_from(cursor.position()).unwrap_or(0);
        &line[..n]
    };
    if !io.is_write_vectored() {
        if len > COPY_BELOW {
            io.write_all(size).await?;
            for part in parts {
                io.write_all(part).await?;
            }
            return write_all_flush(io, b"\r\n").await;
        }
        let mut chunk = Vec::with_capacity(size.len() + len + 2);
        chunk.extend_from_slice(size);
        for part in parts {
            chunk.extend_from_slice(part);
        }
        chunk.extend_from_slice(b"\r\n");
        return write_all_flush(io, &chunk).await;
    }
    let piece = |i: usize| -> &[u8] {
        match i {
            0 => size,
            i if i <= parts.len() => &parts[i - 1],
            _ => b"\r\n",
        }
    };
    write_pieces(io, parts.len() + 2, piece).await?;
    io.flush().await
}

/// Writes pieces `0..count` (as `piece` gives them) in order with vectored writes. Only the
/// position is kept across waits; the slices of each write are built on the stack inside the
/// poll, so a connection's future stays small however many pieces one write takes.
async fn write_pieces<'a, T: AsyncWrite + Unpin>(
    io: &mut T,
    count: usize,
    piece: impl Fn(usize) -> &'a [u8],
) -> std::io::Result<()> {
    const SLICES: usize = MAX_GATHERED_PARTS + 2;
    let (mut index, mut offset) = (0, 0);
    std::future::poll_fn(|cx| {
        while index < count {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut n = 0;
            for (i, slot) in (index..count).zip(slices.iter_mut()) {
                let bytes = piece(i);
                *slot = IoSlice::new(if i == index { &bytes[offset..] } else { bytes });
                n += 1;
            }
            let mut written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            while index < count && written >= piece(index).len() - offset {
                written -= piece(index).len() - offset;
                (index, offset) = (index + 1, 0);
            }
            offset += written;
        }
        Poll::Ready(Ok(()))
    })
    .await
}

#[cfg(test)]
mod tests;
