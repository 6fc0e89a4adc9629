//! A hub's peer sessions: heartbeat health, version lag, sync state.

use crate::api::AppState;
use crate::api::error::{ApiError, Problem};
use crate::protocol::SessionView;
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Sessions of a hub.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeersView {
    /// The hub's head version (lags are measured against it).
    pub head_version: i64,
    /// Full sync streams served since start.
    pub full_syncs: u64,
    /// Incremental sync streams served since start.
    pub incremental_syncs: u64,
    /// One entry per connected (or timed-out, not yet removed) peer, ordered by peer id.
    pub peers: Vec<SessionView>,
}

fn hub(state: &AppState) -> Result<&Arc<crate::hub::Hub>, ApiError> {
    state
        .hub
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this node is not a hub; peer sessions live on hubs"))
}

/// Every peer session with heartbeat status and version lag.
#[utoipa::path(get, path = "/api/v1/peers", tag = "peers",
    operation_id = "listPeers",
    responses(
        (status = 200, description = "Peer sessions", body = PeersView),
        (status = 404, description = "Not a hub", body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(state): State<AppState>) -> Result<Json<PeersView>, ApiError> {
    let hub = hub(&state)?;
    let (full_syncs, incremental_syncs) = hub.sync_counts();
    Ok(Json(PeersView {
        full_syncs,
        incremental_syncs,
        head_version: state.register.head_version(),
        peers: hub.sessions(),
    }))
}

/// One peer's session.
#[utoipa::path(get, path = "/api/v1/peers/{peerId}", tag = "peers",
    operation_id = "getPeer",
    params(("peerId" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "No session for this peer, or not a hub", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Path(peer_id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let hub = hub(&state)?;
    hub.session(&peer_id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no session for peer {peer_id:?}")))
}
