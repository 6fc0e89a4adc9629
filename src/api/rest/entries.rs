//! The log itself: entries after a version, paged.

use super::{page_limit, since};
use crate::api::AppState;
use crate::api::conditional;
use crate::api::dto::EntryView;
use crate::api::dto::{EntryPage, SinceParams};
use crate::api::encode::{entry_response, page_response};
use crate::api::error::{ApiError, Problem};
use crate::api::extract::ApiQuery;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Entries with `version > since`, oldest first, with documents. A page ends after `limit`
/// entries or before its entries exceed `limits.maxPageBytes` (it always holds at least one);
/// `next` is then the `since` of the following page. Pages are streamed, and the bytes they
/// hold come from the node's read budget: when other large reads hold it for longer than
/// `limits.readBudgetWait`, the answer is 503 with `Retry-After`.
#[utoipa::path(get, path = "/api/v1/system-register/entries", tag = "register",
    operation_id = "listEntries",
    params(SinceParams,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of this page: 304 while the head has not moved")),
    responses(
        (status = 200, description = "A page of the log: at most `limit` entries, ending before `limits.maxPageBytes` (at least one entry); `next` is the `since` of the next page", body = EntryPage,
            headers(("ETag" = String, description = "The head version, quoted"))),
        (status = 304, description = "The head is still the one tagged by `If-None-Match`",
            headers(("ETag" = String, description = "The head version, quoted"))),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Other large reads hold the node's read budget (`limits.readBudgetBytes`); `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    let limit = page_limit(params.limit)?;
    let since = since(params.since)?;
    let register = &state.register;
    // The log only grows: a page is the same while the head is.
    let head = register.head_version();
    if conditional::if_none_match(&headers, head) {
        return Ok(conditional::not_modified(head));
    }
    let page = register
        .entries_after(
            since,
            register.page_bound(limit),
            Some(state.config.limits.read_budget_wait),
        )
        .await?;
    let mut response = page_response(page);
    response
        .headers_mut()
        .insert(header::ETAG, conditional::etag(head));
    Ok(response)
}

/// One entry of the log, with its document. Entries never change: the answer may be cached
/// for good.
#[utoipa::path(get, path = "/api/v1/system-register/entries/{version}", tag = "register",
    operation_id = "getEntry",
    params(("version" = i64, Path, description = "Register version", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of this entry: 304")),
    responses(
        (status = 200, description = "The entry", body = EntryView,
            headers(("ETag" = String, description = "The version, quoted"),
                ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"))),
        (status = 304, description = "The entry tagged by `If-None-Match` (entries never change)"),
        (status = 400, description = "Not a version", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No entry at this version", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Other large reads hold the node's read budget; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn entry(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = super::version_param(&version)?;
    let register = &state.register;
    if version <= register.head_version() && conditional::if_none_match(&headers, version) {
        return Ok(conditional::not_modified(version));
    }
    let (entry, held) = register
        .entry_at(version, Some(state.config.limits.read_budget_wait))
        .await?;
    let mut immutable = HeaderMap::new();
    immutable.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    Ok(entry_response(
        StatusCode::OK,
        immutable,
        &entry,
        Some(held),
    ))
}

/// `Cache-Control` of an entry: it never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
