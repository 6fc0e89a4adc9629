//! REST/JSON handlers, one file per resource.

pub mod blueprints;
pub mod connection;
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
