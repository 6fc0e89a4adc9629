//! A span per REST request (method, path, query with tokens redacted, status) continuing the
//! caller's W3C trace context, and a debug line when it is answered.

use super::access::redacted_query;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// Runs the request in an `http` span; the query is logged and traced only redacted.
pub async fn request_span(request: Request, next: Next) -> Response {
    let query = request.uri().query().map(redacted_query);
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        query = query.as_deref().unwrap_or(""),
        status = tracing::field::Empty,
    );
    crate::telemetry::adopt_context(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(
        parent: &span,
        status,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "answered"
    );
    response
}
