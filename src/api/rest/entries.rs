//! The log itself: entries after a version, paged.

use super::{page_limit, since};
use crate::api::AppState;
use crate::api::dto::{EntryPage, SinceParams};
use crate::api::encode::page_response;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::ApiQuery;
use axum::extract::State;
use axum::response::Response;

/// Entries with `version > since`, oldest first, with documents. A page ends after `limit`
/// entries or before its entries exceed `limits.maxPageBytes` (it always holds at least one);
/// `next` is then the `since` of the following page. Pages are streamed, and the bytes they
/// hold come from the node's read budget: when other large reads hold it for longer than
/// `limits.readBudgetWait`, the answer is 503 with `Retry-After`.
#[utoipa::path(get, path = "/api/v1/system-register/entries", tag = "register",
    operation_id = "listEntries",
    params(SinceParams),
    responses(
        (status = 200, description = "A page of the log: at most `limit` entries, ending before `limits.maxPageBytes` (at least one entry); `next` is the `since` of the next page", body = EntryPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Other large reads hold the node's read budget (`limits.readBudgetBytes`); `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn entries(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    let limit = page_limit(params.limit)?;
    let since = since(params.since)?;
    let register = &state.register;
    let page = register
        .entries_after(
            since,
            register.page_bound(limit),
            Some(state.config.limits.read_budget_wait),
        )
        .await?;
    Ok(page_response(page))
}
