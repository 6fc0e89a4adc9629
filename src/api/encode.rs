//! JSON of entries, pages of entries and event frames, written as parts that share the
//! entry's document bytes: a document is never copied to be sent, and a page is streamed
//! entry by entry instead of being built whole in memory.

use super::dto::{EntryView, NotificationView};
use crate::register::Page;
use crate::register::budget::Held;
use crate::register::entry::Entry;
use crate::register::recent::Derived;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::collections::VecDeque;
use std::convert::Infallible;

/// Parts smaller than this are copied into one chunk with their neighbours; larger ones
/// (documents) are sent as they are.
const COALESCE_BYTES: usize = 16 * 1024;
/// Answers smaller than this are sent whole, with a `content-length` (one write, no chunked
/// framing); larger ones are streamed.
const WHOLE_BELOW: usize = 64 * 1024;

/// The JSON object of `entry` (an [`EntryView`]), with its document when `with_document`, as
/// parts: the fields, the document bytes themselves, and the closing brace.
pub fn entry_parts(entry: &Entry, with_document: bool) -> Vec<Bytes> {
    let mut head = serde_json::to_vec(&EntryView::new(entry, false)).unwrap_or_default();
    // Stored documents are canonical JSON; one that is not (a replica fed by a faulty hub)
    // is left out rather than breaking the JSON around it, as `EntryView` does.
    if !with_document
        || !head.ends_with(b"}")
        || serde_json::from_slice::<serde::de::IgnoredAny>(&entry.document).is_err()
    {
        return vec![Bytes::from(head)];
    }
    head.pop();
    head.extend_from_slice(b",\"document\":");
    vec![
        Bytes::from(head),
        entry.document.clone(),
        Bytes::from_static(b"}"),
    ]
}

/// The SSE frame of `entry` (`id:`, `event:`, `data:` the notification JSON, with the whole
/// entry when `include_entry`). Compact JSON has no raw newlines, so one `data:` line holds it.
/// A frame below [`COALESCE_BYTES`] is one contiguous part; a larger one shares the entry's
/// document bytes between its other parts.
pub fn event_frame(entry: &Entry, include_entry: bool) -> Derived {
    let notification =
        serde_json::to_vec(&NotificationView::new(entry, false)).unwrap_or_else(|_| b"{}".into());
    let mut head = format!(
        "id: {}\nevent: {}\ndata: ",
        entry.version,
        entry.entry_type.event_name()
    )
    .into_bytes();
    head.extend_from_slice(&notification);
    if !include_entry {
        head.extend_from_slice(b"\n\n");
        return Derived {
            own_bytes: head.len(),
            parts: vec![Bytes::from(head)].into(),
        };
    }
    head.pop();
    head.extend_from_slice(b",\"entry\":");
    let mut parts = vec![Bytes::from(head)];
    let entry_parts = entry_parts(entry, true);
    let shares_document = entry_parts.len() == 3;
    parts.extend(entry_parts);
    parts.push(Bytes::from_static(b"}\n\n"));
    let total: usize = parts.iter().map(Bytes::len).sum();
    if total < COALESCE_BYTES {
        // A small frame is one piece, made once for every subscriber: one write, one HTTP/2
        // DATA frame per event, at the cost of one copy of a small document.
        return Derived {
            own_bytes: total,
            parts: vec![Bytes::from(parts.concat())].into(),
        };
    }
    Derived {
        own_bytes: total
            - if shares_document {
                entry.document.len()
            } else {
                0
            },
        parts: parts.into(),
    }
}

/// A `200 application/json` response of one entry with its document, holding `held` (its
/// bytes in the read budget) until the body is sent.
pub fn entry_response(
    status: StatusCode,
    mut headers: HeaderMap,
    entry: &Entry,
    held: Option<Held>,
) -> Response {
    // The entry is its blueprint's newest when answered for a blueprint or a write, and an
    // immutable entry of the log otherwise: its version is its tag either way.
    headers.insert(
        axum::http::header::ETAG,
        super::conditional::etag(entry.version),
    );
    let parts = entry_parts(entry, true);
    if parts.iter().map(Bytes::len).sum::<usize>() < WHOLE_BELOW {
        return json_response(status, headers, Body::from(parts.concat()));
    }
    let body = futures::stream::iter(parts).map(move |part| {
        let _until_sent = &held;
        Ok::<_, Infallible>(part)
    });
    json_response(status, headers, Body::from_stream(body))
}

/// An [`super::dto::EntryPage`] response streamed from `page` of the log or a history, with
/// documents: entries leave the page (and give their bytes back to the read budget) as they
/// are written. `next`, when more entries follow, is the `since` of the next page.
pub fn page_response(page: Page) -> Response {
    let with_documents = true;
    let next = page
        .more
        .then(|| page.entries.back().map(|e| e.version.to_string()))
        .flatten();
    let small = page.entries.iter().map(|e| e.document.len()).sum::<usize>() < WHOLE_BELOW;
    struct State {
        page: Page,
        /// The budget share of the entry being written, kept until its parts are out.
        writing: Option<Held>,
        pending: VecDeque<Bytes>,
        first: bool,
        tail: Option<Bytes>,
        with_documents: bool,
    }
    let tail = match next {
        Some(next) => format!(
            "],\"next\":{}}}",
            serde_json::to_string(&next).unwrap_or_default()
        ),
        None => "]}".to_owned(),
    };
    let state = State {
        page,
        writing: None,
        pending: VecDeque::from([Bytes::from_static(b"{\"items\":[")]),
        first: true,
        tail: Some(Bytes::from(tail)),
        with_documents,
    };
    let mut s = state;
    // Nothing in producing a chunk waits: the chunks are an iterator, streamed or collected.
    let chunks = std::iter::from_fn(move || {
        // Small parts go out together in one chunk, large ones (documents) on their own.
        let mut chunk = BytesMut::new();
        loop {
            if let Some(part) = s.pending.pop_front() {
                if part.len() >= COALESCE_BYTES {
                    if chunk.is_empty() {
                        return Some(part);
                    }
                    s.pending.push_front(part);
                    return Some(chunk.freeze());
                }
                chunk.extend_from_slice(&part);
                if chunk.len() >= COALESCE_BYTES {
                    return Some(chunk.freeze());
                }
                continue;
            }
            if let Some((entry, held)) = s.page.pop() {
                // The previous entry's parts are out: its budget share goes back.
                drop(s.writing.replace(held));
                if !s.first {
                    s.pending.push_back(Bytes::from_static(b","));
                }
                s.first = false;
                s.pending.extend(entry_parts(&entry, s.with_documents));
                continue;
            }
            if let Some(tail) = s.tail.take() {
                chunk.extend_from_slice(&tail);
            }
            return (!chunk.is_empty()).then(|| chunk.freeze());
        }
    });
    if small {
        let whole: Vec<Bytes> = chunks.collect();
        return json_response(StatusCode::OK, HeaderMap::new(), Body::from(whole.concat()));
    }
    let body = futures::stream::iter(chunks.map(Ok::<_, Infallible>));
    json_response(StatusCode::OK, HeaderMap::new(), Body::from_stream(body))
}

fn json_response(status: StatusCode, mut headers: HeaderMap, body: Body) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::budget::ReadBudget;
    use crate::register::genesis::genesis_entry;

    #[tokio::test]
    async fn pages_and_frames_are_the_json_of_their_views() {
        let entry = genesis_entry();
        let joined = |parts: &[Bytes]| parts.iter().flat_map(|p| p.to_vec()).collect::<Vec<_>>();
        let whole: serde_json::Value =
            serde_json::from_slice(&joined(&entry_parts(&entry, true))).expect("an entry is JSON");
        assert_eq!(
            whole,
            serde_json::to_value(EntryView::new(&entry, true)).unwrap()
        );
        let frame = event_frame(&entry, true);
        let text = String::from_utf8(joined(&frame.parts)).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(data).unwrap(),
            serde_json::to_value(NotificationView::new(&entry, true)).unwrap()
        );
        assert_eq!(frame.parts.len(), 1, "a small frame is one part");
        // A large document is shared, not copied into the frame.
        let mut large = entry.clone();
        large.document = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(COALESCE_BYTES)));
        let frame = event_frame(&large, true);
        let text = String::from_utf8(joined(&frame.parts)).unwrap();
        assert!(text.contains(&"x".repeat(COALESCE_BYTES)));
        assert!(
            frame
                .parts
                .iter()
                .any(|p| p.as_ptr() == large.document.as_ptr()),
            "the document's own bytes are a part"
        );
        assert_eq!(frame.own_bytes, text.len() - large.document.len());

        let budget = ReadBudget::new(1 << 20, Default::default());
        let mut entries = VecDeque::new();
        for _ in 0..3 {
            entries.push_back(entry.clone());
        }
        let page = Page {
            entries,
            more: true,
            held: budget.acquire(3 * entry.weight(), None).await.unwrap(),
        };
        let response = page_response(page);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 3);
        assert_eq!(page["items"][2], whole);
        assert_eq!(page["next"], "1", "the last version of the page");
        assert_eq!(budget.in_flight(), 0, "a sent page gives its bytes back");
    }
}
