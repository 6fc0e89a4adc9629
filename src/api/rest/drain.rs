//! Draining a hub on an operator's word: the same drain a SIGTERM starts (see
//! [`crate::hub::Hub::drain`]), without stopping the node.

use crate::api::AppState;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::Caller;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A hub's drain, as started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainView {
    /// Always true: the hub drains from now on, until it restarts.
    pub draining: bool,
    /// Peers in session when the answer was made (they leave over the period).
    pub peers: usize,
    /// `hub.drainPeriod`, ms.
    pub drain_period_ms: u64,
}

/// Drains this hub (admin token): it takes no new peers and sends its own to other hubs, one by
/// one over `hub.drainPeriod`, then keeps serving everything else until it is stopped. Asking
/// again while it drains changes nothing.
#[utoipa::path(post, path = "/api/v1/hub/drain", tag = "replication",
    operation_id = "drainHub",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Draining", body = DrainView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a hub", body = Problem, content_type = "application/problem+json")))]
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<DrainView>), ApiError> {
    caller.require_admin()?;
    let hub = std::sync::Arc::clone(super::hub_of(&state, "only hubs drain")?);
    // At least a moment, so the peers never all leave at once.
    let period = state
        .config
        .hub
        .drain_period
        .max(std::time::Duration::from_secs(1));
    let peers = hub.sessions().len();
    tokio::spawn(async move { hub.drain(period).await });
    Ok((
        StatusCode::ACCEPTED,
        Json(DrainView {
            draining: true,
            peers,
            drain_period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
        }),
    ))
}
