//! Server-Sent Events: `GET /api/v1/system-register/events`.
//!
//! Each event has `id:` = register version, `event:` = `blueprint.published|updated|deprecated`
//! and `data:` = the notification JSON. A client resumes with `Last-Event-ID` (or `?since=`):
//! entries after that version are replayed from the store before live events, in order with no
//! gaps or duplicates, because the stream is one cursor over the register (see
//! [`crate::register::Register::follow`]). The stream ends cleanly on shutdown.

use super::AppState;
use super::dto::{EventParams, NotificationView};
use super::encode;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::metrics::{SubscriberGuard, Transport, TransportLabels};
use crate::register::entry::{Entry, EntryType};
use crate::register::recent::{Form, SharedEntry};
use crate::register::validation;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, stream};
use std::convert::Infallible;
use std::sync::Arc;

/// Which entries a subscriber wants.
#[derive(Debug, Clone, Default)]
struct Filter {
    blueprint_id: Option<String>,
    published_by: Option<String>,
    entry_type: Option<EntryType>,
}

impl Filter {
    fn matches(&self, entry: &Entry) -> bool {
        self.blueprint_id
            .as_ref()
            .is_none_or(|id| *id == entry.blueprint_id)
            && self
                .published_by
                .as_ref()
                .is_none_or(|p| *p == entry.published_by)
            && self.entry_type.is_none_or(|t| t == entry.entry_type)
    }
}

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

fn filter_from(params: &EventParams) -> Result<Filter, ApiError> {
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
    Ok(Filter {
        blueprint_id: params.blueprint_id.clone(),
        published_by: params.published_by.clone(),
        entry_type,
    })
}

/// Live feed of register entries as Server-Sent Events, with replay on resume.
#[utoipa::path(get, path = "/api/v1/system-register/events", tag = "events",
    params(EventParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this version (wins over `since`)")),
    responses(
        (status = 200, description = "An event stream: `id:` version, `event:` blueprint.published|updated|deprecated, `data:` notification JSON",
            body = NotificationView, content_type = "text/event-stream"),
        (status = 400, description = "Bad filter or resume point", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many event streams open (`sse.maxSubscribers`); `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Response, ApiError> {
    let resume = resume_point(&headers, params.since)?;
    let filter = filter_from(&params)?;
    let include_entry = match params.include.as_deref() {
        None => false,
        Some("document") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "include={other:?} is not supported: use include=document"
            )));
        }
    };
    let Ok(slot) = Arc::clone(&state.sse_slots).try_acquire_owned() else {
        return Err(ApiError::unavailable(format!(
            "this node already serves {} event streams (sse.maxSubscribers); retry later",
            state.config.sse.max_subscribers
        ))
        .with_retry_after(state.config.sse.retry));
    };
    let after = resume.unwrap_or_else(|| state.register.head_version());
    let metrics = state.register.metrics();
    let subscriber = SubscriberGuard::new(metrics, Transport::Sse);
    let delivered = metrics
        .notifications_delivered
        .get_or_create(&TransportLabels {
            transport: Transport::Sse,
        })
        .clone();
    let register = Arc::clone(&state.register);
    let live = state
        .register
        .follow(after)
        .take_while(|item| {
            if let Err(e) = item {
                tracing::warn!(error = %e, "sse stream ended by a store error");
            }
            std::future::ready(item.is_ok())
        })
        .filter_map(move |item| {
            let _counted = (&subscriber, &slot);
            let frame = item
                .ok()
                .filter(|shared| filter.matches(&shared.entry))
                .map(|shared| {
                    delivered.inc();
                    // Encoded once per entry and shared; a frame with the entry shares the
                    // document bytes themselves.
                    let form = if include_entry {
                        Form::EventWithEntry
                    } else {
                        Form::Event
                    };
                    let parts = register.recent().derived(&shared, form, |entry| {
                        encode::event_frame(entry, include_entry)
                    });
                    // The entry (and, read from the store, its bytes in the read budget)
                    // lives until its frame is written.
                    (parts, Some(shared))
                });
            std::future::ready(frame)
        });
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
    // Whole frames are interleaved with keep-alives and cut at shutdown; only then are they
    // split into their parts (a frame with its entry shares the document's bytes).
    let body = stream::once(std::future::ready(retry))
        .chain(stream::select(live, keep_alive))
        .take_until(state.shutdown.clone().cancelled_owned())
        .flat_map(|(parts, shared): Frame| {
            stream::iter((0..parts.len()).map(move |i| {
                let _until_written = &shared;
                Ok::<_, Infallible>(parts[i].clone())
            }))
        });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// An event's encoded parts, with the entry they came from (if any) kept alive with them.
type Frame = (Arc<[Bytes]>, Option<Arc<SharedEntry>>);

/// A comment line: keeps proxies and the idle timeout from closing a quiet stream.
const KEEP_ALIVE: &[u8] = b":\n\n";
