//! Server-Sent Events: `GET /api/v1/system-register/events`.
//!
//! Each event has `id:` = register version, `event:` = `blueprint.published|updated|deprecated`
//! and `data:` = the notification JSON. A client resumes with `Last-Event-ID` (or `?since=`):
//! entries after that version are replayed from the store before live events, in order with no
//! gaps or duplicates, because the stream is one cursor over the register (see
//! [`crate::register::Register::follow`]). Once the replay has reached the node's head as it
//! was when the stream opened, one `event: caught-up` (no `id:`) says so — at once when there
//! is nothing to replay, with `"ahead": true` when the resume position is beyond this node's
//! head (a lagging peer, or a position from another register). At most once a second an
//! `event: checkpoint` (no `id:`) carries the node's newest signed checkpoint once the stream
//! has passed what it covers. The stream ends cleanly on shutdown.

use super::AppState;
use super::dto::{CaughtUpView, CheckpointEventView, EventParams, NotificationView};
use super::encode;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::metrics::Transport;
use crate::register::Register;
use crate::register::entry::EntryType;
use crate::register::recent::{Form, SharedEntry};
use crate::register::subscription::{Filters, Followed};
use crate::register::validation;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::{Either, FutureExt};
use futures::{StreamExt, stream};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the register's event stream is served (the path of [`events`]).
pub const EVENTS_PATH: &str = "/api/v1/system-register/events";

/// Parses the resume point: `Last-Event-ID` wins over `?since=` (a browser reconnects with the
/// original URL plus the header).
fn resume_point(headers: &HeaderMap, since: Option<i64>) -> Result<Option<i64>, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be a register version"))?
            .trim();
        let version: i64 = text.parse().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be a register version (an integer >= 0)")
        })?;
        if version < 0 {
            return Err(ApiError::bad_request("Last-Event-ID must be >= 0"));
        }
        return Ok(Some(version));
    }
    match since {
        Some(s) if s < 0 => Err(ApiError::bad_request(format!(
            "since {s} is negative: use a version >= 0"
        ))),
        other => Ok(other),
    }
}

fn filter_from(params: &EventParams) -> Result<Filters, ApiError> {
    if let Some(id) = &params.blueprint_id {
        validation::blueprint_id(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let Some(publisher) = &params.published_by {
        validation::published_by(publisher).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let entry_type = params
        .entry_type
        .as_deref()
        .map(|t| {
            EntryType::parse(t).ok_or_else(|| {
                ApiError::bad_request("type must be one of published, updated, deprecated")
            })
        })
        .transpose()?;
    Ok(Filters {
        blueprint_ids: params.blueprint_id.iter().cloned().collect(),
        publisher_ids: params.published_by.iter().cloned().collect(),
        types: entry_type.into_iter().collect(),
        metadata: Default::default(),
    })
}

/// One of the node's `sse.maxSubscribers` event-stream slots, held by a stream while it is
/// open; 503 with `Retry-After` when none is free.
pub fn stream_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.sse_slots)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable(format!(
                "this node already serves {} event streams (sse.maxSubscribers); retry later",
                state.config.sse.max_subscribers
            ))
            .with_retry_after(state.config.sse.retry)
        })
}

/// Live feed of register entries as Server-Sent Events, with replay on resume.
#[utoipa::path(get, path = "/api/v1/system-register/events", tag = "events",
    operation_id = "streamEvents",
    params(EventParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this version (wins over `since`)"),
        ("access_token" = Option<String>, Query, description = "A token, for `EventSource` (which cannot send headers), when this node's reads need one (`auth.publicReads = false`); redacted in logs and traces")),
    responses(
        (status = 200, description = "An event stream. Entries: `id:` version, `event:` blueprint.published|updated|deprecated, `data:` notification JSON (with `include=document`, the entry as well). After the replay of missed entries, one `event: caught-up` without `id:` whose `data:` is a `CaughtUpView` — at once when nothing is to be replayed, with `ahead: true` when the resume position is beyond this node's head. At most once a second, once the stream has passed the version it covers, an `event: checkpoint` without `id:` whose `data:` is a `CheckpointEventView` (the node's newest signed checkpoint). Comment lines keep the stream alive.",
            body = NotificationView, content_type = "text/event-stream",
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream"))),
        (status = 400, description = "Bad filter or resume point", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Reads need a token (`auth.publicReads = false`) and none, or an invalid one, was sent", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many event streams open (`sse.maxSubscribers`); `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Response, ApiError> {
    let resume = resume_point(&headers, params.since)?;
    let filter = filter_from(&params)?;
    let include_entry = include_entry(params.include.as_deref())?;
    let slot = stream_slot(&state)?;
    let (head_version, head_hash) = head_of(&state.register).await?;
    let after = resume.unwrap_or(head_version);
    let caught_up = caught_up_frame(&CaughtUpView {
        head_version,
        head_hash,
        ahead: after > head_version,
    });
    // Sent at once when nothing is to be replayed, else after the entry at that head.
    let (after_replay, at_once) = if after >= head_version {
        (None, Some(caught_up))
    } else {
        (Some(caught_up), None)
    };
    let cursor = Arc::new(CheckpointCursor::new(state.checkpoints.clone(), after));
    let entries = EntryFrames {
        register: Arc::clone(&state.register),
        include_entry,
        replay_ends_at: head_version,
        after_replay,
        cursor: Arc::clone(&cursor),
        slot,
    }
    .after(after, filter);
    let body = event_body(&state, at_once, entries, checkpoint_events(cursor));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

/// `?include=`: `document` adds each entry to its event.
fn include_entry(include: Option<&str>) -> Result<bool, ApiError> {
    match include {
        None => Ok(false),
        Some("document") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "include={other:?} is not supported: use include=document"
        ))),
    }
}

/// What one stream's entry events are made of.
struct EntryFrames {
    register: Arc<Register>,
    include_entry: bool,
    /// The head when the stream opened: the replay ends with the entry at it.
    replay_ends_at: i64,
    /// The `caught-up` event, when it is due after the replay.
    after_replay: Option<Frame>,
    cursor: Arc<CheckpointCursor>,
    /// The stream's `sse.maxSubscribers` permit, held while it runs.
    slot: tokio::sync::OwnedSemaphorePermit,
}

impl EntryFrames {
    /// The frames of every entry after `after` that passes `filter`, in version order, each
    /// followed by the `caught-up` event where the replay ends and by a `checkpoint` event
    /// when one has become due; the stream ends at a store error.
    fn after(
        self,
        after: i64,
        filter: Filters,
    ) -> impl futures::Stream<Item = Frame> + Send + use<> {
        let EntryFrames {
            register,
            include_entry,
            replay_ends_at,
            mut after_replay,
            cursor,
            slot,
        } = self;
        let form = if include_entry {
            Form::EventWithEntry
        } else {
            Form::Event
        };
        register
            .subscribe(after, filter, Transport::Sse)
            .take_while(|item| {
                if let Err(e) = item {
                    tracing::warn!(error = %e, "sse stream ended by a store error");
                }
                std::future::ready(item.is_ok())
            })
            .filter_map(|item| std::future::ready(item.ok()))
            .map(move |followed| {
                let _counted = &slot;
                let version = match &followed {
                    Followed::Wanted(shared) => shared.entry.version,
                    Followed::Skipped(version) => *version,
                };
                (
                    followed,
                    after_replay.take_if(|_| version >= replay_ends_at),
                )
            })
            .then(move |(followed, marker)| match followed {
                // Encoded once per entry and shared; a frame with the entry shares the document
                // bytes themselves.
                Followed::Wanted(shared) => {
                    let cursor = Arc::clone(&cursor);
                    Either::Left(
                        register
                            .derived_soon(&shared, form, move |entry| {
                                encode::event_frame(entry, include_entry)
                            })
                            // The entry (and, read from the store, its bytes in the read
                            // budget) lives until its frame is written. The position moves as
                            // the frame goes out, so a checkpoint never comes before what it
                            // covers.
                            .map(move |parts| {
                                let checkpoint = cursor.passed(shared.entry.version);
                                stream::iter([Some((parts, Some(shared))), marker, checkpoint])
                            }),
                    )
                }
                Followed::Skipped(version) => {
                    let checkpoint = cursor.passed(version);
                    Either::Right(std::future::ready(stream::iter([None, marker, checkpoint])))
                }
            })
            .flatten()
            .filter_map(std::future::ready)
    }
}

/// The response body: the `retry:` advice and anything due at once, then entry frames
/// interleaved with keep-alives and checkpoints, cut at shutdown. Whole frames are
/// interleaved; only then are they split into their parts (a frame with its entry shares the
/// document's bytes).
fn event_body(
    state: &AppState,
    at_once: Option<Frame>,
    entries: impl futures::Stream<Item = Frame> + Send + 'static,
    checkpoints: impl futures::Stream<Item = Frame> + Send + 'static,
) -> Body {
    let retry: Frame = (
        Arc::from([Bytes::from(format!(
            "retry: {}\n\n",
            state.config.sse.retry.as_millis()
        ))]),
        None,
    );
    let mut ticks = tokio::time::interval(state.config.sse.keep_alive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let keep_alive = tokio_stream::wrappers::IntervalStream::new(ticks)
        .map(|_| -> Frame { (Arc::from([Bytes::from_static(KEEP_ALIVE)]), None) });
    let frames = stream::iter(std::iter::once(retry).chain(at_once))
        .chain(stream::select(
            entries,
            stream::select(keep_alive, checkpoints),
        ))
        .take_until(state.shutdown.clone().cancelled_owned())
        .flat_map(|(parts, shared): Frame| {
            stream::iter((0..parts.len()).map(move |i| {
                let _until_written = &shared;
                Ok::<_, Infallible>(parts[i].clone())
            }))
        });
    Body::from_stream(frames)
}

/// The node's head version and hash as announced ([`Register::announced_head`]).
async fn head_of(register: &Register) -> Result<(i64, Option<String>), ApiError> {
    let head = register.announced_head().await?;
    Ok(head.map_or((0, None), |h| (h.version, Some(h.chain_hash))))
}

/// The node's newest checkpoint as an encoded `checkpoint` event, shared by every stream.
pub type CheckpointFeed = tokio::sync::watch::Receiver<Option<(i64, Frame)>>;

/// Starts the node's checkpoint feed: every [`CHECKPOINT_EVERY`], when the node's newest
/// checkpoint (a hub's of its head; a peer's last trusted one) is newer than the last, it is
/// encoded once and handed to every event stream. A quiet node wakes no stream.
pub fn checkpoint_feed(
    hub: Option<Arc<crate::hub::Hub>>,
    peer: Option<Arc<crate::peer::Peer>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> CheckpointFeed {
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0i64;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let newest = match (&hub, &peer) {
                (Some(hub), _) => hub.current_checkpoint().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the hub's checkpoint for event streams");
                    None
                }),
                (None, Some(peer)) => peer.trust().last_checkpoint().map(|v| (v.version, v.note)),
                (None, None) => None,
            };
            if let Some((version, note)) = newest.filter(|(v, _)| *v > sent) {
                sent = version;
                let frame = checkpoint_frame(&CheckpointEventView { version, note });
                if tx.send(Some((version, frame))).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Where one stream stands with the checkpoint feed: the version it has passed (sent, or
/// skipped by its filters) and the newest checkpoint it has sent. A checkpoint goes out once
/// the stream has passed the version it covers — when the feed brings it (a caught-up stream)
/// or when the stream gets there (a lagging one), after the entry, never before.
struct CheckpointCursor {
    feed: CheckpointFeed,
    position: AtomicI64,
    sent: AtomicI64,
}

impl CheckpointCursor {
    fn new(feed: CheckpointFeed, after: i64) -> Self {
        CheckpointCursor {
            feed,
            position: AtomicI64::new(after),
            sent: AtomicI64::new(0),
        }
    }

    /// The stream has passed `version`: the feed's checkpoint, if now due.
    fn passed(&self, version: i64) -> Option<Frame> {
        self.position.store(version, Ordering::Relaxed);
        self.due()
    }

    /// The feed's checkpoint when it covers no more than the stream has passed and is newer
    /// than the last one sent (each is sent once, whichever path finds it first).
    fn due(&self) -> Option<Frame> {
        let newest = self.feed.borrow();
        let (version, frame) = newest.as_ref()?;
        let fresh = *version <= self.position.load(Ordering::Relaxed)
            && self.sent.fetch_max(*version, Ordering::Relaxed) < *version;
        fresh.then(|| frame.clone())
    }
}

/// One stream's `checkpoint` events as the feed brings them; at most once per
/// [`CHECKPOINT_EVERY`] rather than after every append batch, as a fan-out of thousands of
/// streams would otherwise send as many checkpoints as entries.
fn checkpoint_events(
    cursor: Arc<CheckpointCursor>,
) -> impl futures::Stream<Item = Frame> + Send + use<> {
    let mut feed = cursor.feed.clone();
    feed.mark_changed();
    tokio_stream::wrappers::WatchStream::from_changes(feed)
        .filter_map(move |_| std::future::ready(cursor.due()))
}

/// How often an event stream may carry a `checkpoint` event (a hub re-signs its head at most
/// this often too).
pub const CHECKPOINT_EVERY: std::time::Duration = crate::hub::CHECKPOINT_REUSE;

/// Name of the event that carries a checkpoint.
pub const CHECKPOINT: &str = "checkpoint";

/// The `checkpoint` event: no `id:` (it is not an entry).
fn checkpoint_frame(view: &CheckpointEventView) -> Frame {
    let data = serde_json::to_string(view).unwrap_or_default();
    (
        Arc::from([Bytes::from(format!(
            "event: {CHECKPOINT}\ndata: {data}\n\n"
        ))]),
        None,
    )
}

/// The `caught-up` event: no `id:`, so a client's resume position stays the last entry's.
fn caught_up_frame(view: &CaughtUpView) -> Frame {
    let data = serde_json::to_string(view).unwrap_or_default();
    (
        Arc::from([Bytes::from(format!("event: {CAUGHT_UP}\ndata: {data}\n\n"))]),
        None,
    )
}

/// Name of the event that ends the replay.
pub const CAUGHT_UP: &str = "caught-up";

/// An event's encoded parts, with the entry they came from (if any) kept alive with them.
pub type Frame = (Arc<[Bytes]>, Option<Arc<SharedEntry>>);

/// A comment line: keeps proxies and the idle timeout from closing a quiet stream.
const KEEP_ALIVE: &[u8] = b":\n\n";
