//! The log itself: entries after a version, paged.

use super::{page_limit, since};
use crate::api::AppState;
use crate::api::dto::{EntryPage, EntryView, SinceParams};
use crate::api::error::{ApiError, Problem};
use crate::api::extract::ApiQuery;
use axum::Json;
use axum::extract::State;

/// Entries with `version > since`, oldest first, with documents.
#[utoipa::path(get, path = "/api/v1/system-register/entries", tag = "register",
    params(SinceParams),
    responses(
        (status = 200, description = "A page of the log; `next` is the `since` of the next page", body = EntryPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json")))]
pub async fn entries(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<SinceParams>,
) -> Result<Json<EntryPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let since = since(params.since)?;
    let mut page = state.register.entries_after(since, limit + 1).await?;
    let more = page.len() > limit;
    page.truncate(limit);
    Ok(Json(EntryPage {
        next: more
            .then(|| page.last().map(|e| e.version.to_string()))
            .flatten(),
        items: page.iter().map(|e| EntryView::new(e, true)).collect(),
    }))
}
