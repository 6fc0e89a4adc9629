//! Who may read, and the bearer token of a request.
//!
//! With `auth.publicReads = false` every `GET`/`HEAD` under `/api/` — the dashboard's reads,
//! the event stream, a peer's replication views — needs a token of any role; with
//! `auth.publicMetrics = false` so does `/metrics`. `/health`, `/ready`, the dashboard's page
//! and the API documents stay open. `EventSource` cannot send headers, so the event stream
//! also takes the token as `?access_token=`; such a query is redacted wherever a request is
//! logged or traced ([`redacted_query`]) and a token never appears in an error body.

use super::AppState;
use super::error::ApiError;
use crate::auth::Identity;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// Reads of paths under this prefix follow `auth.publicReads` (the API's resources).
pub const API_PREFIX: &str = "/api/";

/// True for a path whose reads follow `auth.publicReads`.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with(API_PREFIX)
}

/// The query parameter carrying a token on the event stream.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// The bearer token of `Authorization: Bearer <token>`: `None` without the header, an error
/// when the header is not of that form.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <token>'"))
}

/// The `access_token` of a query string, if it has one (decoded).
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == ACCESS_TOKEN_PARAM)
        .map(|(_, value)| value.into_owned())
}

/// `query` with the value of every `access_token` replaced by `<redacted>` (keys are compared
/// decoded, as the query extractor reads them).
pub fn redacted_query(query: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        form_urlencoded::parse(key.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == ACCESS_TOKEN_PARAM)
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    Cow::Owned(
        query
            .split('&')
            .map(|pair| {
                if secret(pair) {
                    Cow::Owned(format!("{ACCESS_TOKEN_PARAM}=<redacted>"))
                } else {
                    Cow::Borrowed(pair)
                }
            })
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// Who is calling a read: a header token, or on the event stream an `access_token`.
fn reader(state: &AppState, request: &Request, query_allowed: bool) -> Result<Identity, ApiError> {
    let (presented, invalid) = match bearer_token(request.headers())? {
        Some(token) => (Cow::Borrowed(token), "the bearer token is not valid"),
        None => match request.uri().query().and_then(query_token) {
            Some(token) if query_allowed => (Cow::Owned(token), "the access_token is not valid"),
            Some(_) => {
                return Err(ApiError::unauthorized(format!(
                    "{ACCESS_TOKEN_PARAM} is accepted only on the event stream \
                     ({}); send Authorization: Bearer <token>",
                    super::sse::EVENTS_PATH
                )));
            }
            None => {
                return Err(ApiError::unauthorized(
                    "this node's reads need a token (auth.publicReads = false): send \
                     Authorization: Bearer <token>, or ?access_token=<token> on the event stream",
                ));
            }
        },
    };
    // Every role reads.
    state
        .tokens
        .authenticate(&presented)
        .ok_or_else(|| ApiError::unauthorized(invalid))
}

fn is_read(request: &Request) -> bool {
    matches!(*request.method(), Method::GET | Method::HEAD)
}

/// Middleware of the `/api/` paths: reads need a token unless `auth.publicReads`.
pub async fn api_reads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.config.auth.public_reads || !is_read(&request) {
        return next.run(request).await;
    }
    let query_allowed = request.uri().path() == super::sse::EVENTS_PATH;
    match reader(&state, &request, query_allowed) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware of `/metrics`: a scrape needs a token unless `auth.publicMetrics`.
pub async fn metrics_reads(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.auth.public_metrics || !is_read(&request) {
        return next.run(request).await;
    }
    match reader(&state, &request, false) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_are_redacted_however_they_are_spelled() {
        assert_eq!(redacted_query("since=3"), "since=3");
        assert_eq!(
            redacted_query("since=3&access_token=s3cret&type=published"),
            "since=3&access_token=<redacted>&type=published"
        );
        assert_eq!(
            redacted_query("access%5Ftoken=s3cret&access_token"),
            "access_token=<redacted>&access_token=<redacted>"
        );
        assert!(!redacted_query("a=1&access_token=x%20y").contains("x%20y"));
        assert_eq!(
            query_token("since=1&access_token=a%2Bb").as_deref(),
            Some("a+b")
        );
        assert_eq!(query_token("since=1"), None);
    }
}
