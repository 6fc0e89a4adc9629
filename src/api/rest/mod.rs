//! REST/JSON handlers, one file per resource.

pub mod blueprints;
pub mod connection;
pub mod drain;
pub mod entries;
pub mod fleet;
pub mod node;
pub mod peers;

use super::error::ApiError;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Checks an optional `limit` query value.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::bad_request(format!(
            "limit {l} is out of range: use 1-{MAX_LIMIT}"
        ))),
    }
}

/// Reads a `{version}` path segment: a register version, an integer >= 1.
pub fn version_param(version: &str) -> Result<i64, ApiError> {
    version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::bad_request(format!(
            "version {version:?} is not a register version (an integer >= 1)"
        ))
    })
}

/// The node's hub, or 404 saying `what` lives on hubs.
pub fn hub_of<'a>(
    state: &'a super::AppState,
    what: &str,
) -> Result<&'a std::sync::Arc<crate::hub::Hub>, ApiError> {
    state
        .hub
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("this node is not a hub; {what}")))
}

/// Checks an optional `since` query value.
pub fn since(since: Option<i64>) -> Result<i64, ApiError> {
    match since {
        None => Ok(0),
        Some(s) if s >= 0 => Ok(s),
        Some(s) => Err(ApiError::bad_request(format!(
            "since {s} is negative: use a version >= 0"
        ))),
    }
}
