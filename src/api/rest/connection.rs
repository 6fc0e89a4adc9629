//! A peer's replication surface: its hub connection, its checkpoint, and admin triggers.

use crate::api::AppState;
use crate::api::dto::{ApiQueryFull, CheckpointDto};
use crate::api::error::{ApiError, Problem};
use crate::api::extract::{ApiQuery, Caller};
use crate::peer::state::ConnectionView;
use crate::peer::sync::SyncOutcome;
use crate::peer::{Peer, PeerError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

fn peer(state: &AppState) -> Result<&Arc<Peer>, ApiError> {
    state.peer.as_ref().ok_or_else(|| {
        ApiError::not_found("this node is a hub; connection and sync state exist on peers")
    })
}

/// The peer's connection: state machine, current hub, each hub's status, backoff, heartbeats.
#[utoipa::path(get, path = "/api/v1/connection", tag = "replication",
    operation_id = "getConnection",
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 404, description = "Not a peer", body = Problem, content_type = "application/problem+json")))]
pub async fn connection(State(state): State<AppState>) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(peer(&state)?.connection()))
}

/// Drops the current session and reconnects (admin token).
#[utoipa::path(post, path = "/api/v1/connection/reconnect", tag = "replication",
    operation_id = "reconnectToHub",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Reconnecting"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a peer", body = Problem, content_type = "application/problem+json")))]
pub async fn reconnect(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    peer(&state)?.reconnect().await;
    Ok(StatusCode::ACCEPTED)
}

/// The replica's sync checkpoint.
#[utoipa::path(get, path = "/api/v1/sync/checkpoint", tag = "replication",
    operation_id = "getSyncCheckpoint",
    responses(
        (status = 200, description = "The checkpoint (absent fields before the first sync)", body = CheckpointDto),
        (status = 404, description = "Not a peer", body = Problem, content_type = "application/problem+json")))]
pub async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointDto>, ApiError> {
    let peer = peer(&state)?;
    let checkpoint = peer.checkpoint().await?.unwrap_or_default();
    Ok(Json(CheckpointDto {
        current_version: checkpoint.current_version,
        head_hash: checkpoint.head_hash,
        hub_id: checkpoint.hub_id,
        last_sync_time: checkpoint.last_sync_time,
        next_sync_due: checkpoint.next_sync_due,
        total_entries_synced: checkpoint.total_entries_synced,
        total_syncs: checkpoint.total_syncs,
        replica_version: state.register.head_version(),
    }))
}

/// Syncs now through the current hub session (`?full=true` for a full sync); admin token.
#[utoipa::path(post, path = "/api/v1/sync", tag = "replication",
    operation_id = "syncNow",
    params(ApiQueryFull),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sync ran", body = SyncOutcome),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a peer", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The hub refused the sync for now (rate or concurrency limit); `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The sync failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not connected to a hub", body = Problem, content_type = "application/problem+json")))]
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ApiQueryFull>,
) -> Result<Json<SyncOutcome>, ApiError> {
    caller.require_admin()?;
    let peer = peer(&state)?;
    match peer.sync_now(query.full.unwrap_or(false)).await {
        Ok(outcome) => Ok(Json(outcome)),
        Err(e) => {
            let error = ApiError::new(e.code(), e.to_string());
            Err(match e {
                PeerError::Refused {
                    retry_after: Some(wait),
                    ..
                } => error.with_retry_after(wait),
                _ => error,
            })
        }
    }
}
