//! A peer's replication surface: its hub connection, its checkpoint, and admin triggers.

use crate::api::AppState;
use crate::api::dto::{ApiQueryFull, CheckpointDto};
use crate::api::error::{ApiError, Problem};
use crate::api::extract::{ApiQuery, Caller};
use crate::peer::state::{AttemptOutcome, PeerState};
use crate::peer::{Peer, PeerError, sync, trust};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

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
    let peer = peer(&state)?;
    Ok(Json(ConnectionView {
        trust: Some(peer.trust().view().into()),
        ..ConnectionView::from(&peer.state())
    }))
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
// The published path and schema say "checkpoint"; in the code it is the sync progress.
pub async fn sync_progress(State(state): State<AppState>) -> Result<Json<CheckpointDto>, ApiError> {
    let peer = peer(&state)?;
    let progress = peer.sync_progress().await?.unwrap_or_default();
    Ok(Json(CheckpointDto {
        current_version: progress.current_version,
        head_hash: progress.head_hash,
        hub_id: progress.hub_id,
        last_sync_time: progress.last_sync_time,
        next_sync_due: progress.next_sync_due,
        total_entries_synced: progress.total_entries_synced,
        total_syncs: progress.total_syncs,
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
        Ok(outcome) => Ok(Json(outcome.into())),
        Err(e) => {
            let error = ApiError::classified(&e);
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

/// Where the peer is with its hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ConnectionState {
    /// Not connected and not trying (start-up, shutdown).
    Disconnected,
    /// Trying a hub.
    Connecting,
    /// In a session with a hub.
    Connected,
    /// A heartbeat was missed; one more and the peer fails over.
    HeartbeatTimeout,
    /// Every hub failed; serving the replica, retrying in the background.
    Isolated,
}

impl From<crate::peer::state::ConnectionState> for ConnectionState {
    fn from(state: crate::peer::state::ConnectionState) -> Self {
        use crate::peer::state::ConnectionState as S;
        match state {
            S::Disconnected => Self::Disconnected,
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::HeartbeatTimeout => Self::HeartbeatTimeout,
            S::Isolated => Self::Isolated,
        }
    }
}

/// What the peer knows about one configured hub.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubState {
    /// The hub's URL.
    pub url: String,
    /// Priority (0 = first).
    pub priority: usize,
    /// The hub's node id, once connected.
    pub hub_id: Option<String>,
    /// Connect attempts since the last success.
    pub failed_attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was last tried, Unix ms.
    pub last_attempt_at: Option<i64>,
    /// When the peer was last connected to it, Unix ms.
    pub last_connected_at: Option<i64>,
    /// The hub's head version as last seen.
    pub hub_version: Option<i64>,
    /// The hub's register is behind this peer's replica (not followed).
    pub hub_behind: bool,
    /// The hub's chain forks from the replica (not followed).
    pub divergent: bool,
    /// The hub sent entries whose publisher signatures do not verify; not followed
    /// (`peer.requireSignatures`).
    pub signature_refused: bool,
    /// The hub's checkpoints are not trusted, missing where needed, or contradict others;
    /// not followed (see `trust`).
    pub checkpoint_refused: bool,
    /// When it is a relay: its own state with its hubs as its last heartbeat answer said
    /// (`Isolated`: cut off from them, serving its replica); absent for a hub.
    pub relay_state: Option<ConnectionState>,
}

/// One connect attempt (the last 64 are kept).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Hub priority.
    pub hub: usize,
    /// When it started, Unix ms.
    pub at: i64,
    /// The backoff waited before it, ms.
    pub delay_ms: u64,
    /// `pending`, `connected` or the error.
    pub outcome: String,
}

/// The peer's connection, as `GET /api/v1/connection` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// State.
    pub state: ConnectionState,
    /// URL of the hub in use or being tried.
    pub current_hub: Option<String>,
    /// Session id with the current hub.
    pub session_id: Option<String>,
    /// Every configured hub, in priority order.
    pub hubs: Vec<HubState>,
    /// Consecutive missed heartbeats.
    pub missed_heartbeats: u32,
    /// Last acknowledged heartbeat, Unix ms.
    pub last_heartbeat_at: Option<i64>,
    /// Failovers since start.
    pub failovers: u64,
    /// Since when the peer is isolated, Unix ms.
    pub isolated_since: Option<i64>,
    /// Backoff before the next attempt, ms.
    pub next_backoff_ms: Option<u64>,
    /// The current (or last) hub's clock minus this node's, ms, estimated from the hub's
    /// timestamps; the peer sends its heartbeat times on the hub's clock.
    pub hub_clock_offset_ms: Option<i64>,
    /// Recent connect attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// Which hub keys are trusted (configured, or pinned on first use), the last checkpoint
    /// that covered the replica, and equivocation evidence.
    pub trust: Option<TrustView>,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncOutcome {
    /// Full (FullSync) or incremental.
    pub full: bool,
    /// Replica head before.
    pub from_version: i64,
    /// Replica head after.
    pub to_version: i64,
    /// Entries applied.
    pub applied: u64,
    /// Duration, ms.
    pub duration_ms: u64,
}

impl From<sync::SyncOutcome> for SyncOutcome {
    fn from(o: sync::SyncOutcome) -> Self {
        SyncOutcome {
            full: o.full,
            from_version: o.from_version,
            to_version: o.to_version,
            applied: o.applied,
            duration_ms: o.duration_ms,
        }
    }
}

/// The peer's trust, as `GET /api/v1/connection` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustView {
    /// Configured keys or trust on first use.
    pub mode: TrustMode,
    /// The configured keys (`Configured`).
    pub trusted_keys: Vec<String>,
    /// Keys pinned on first use, by hub URL (`FirstUse`).
    pub pinned_keys: std::collections::BTreeMap<String, String>,
    /// The last checkpoint that covered what the replica applied.
    pub last_checkpoint: Option<Vouched>,
    /// Equivocation evidence, oldest first (at most 16).
    pub equivocations: Vec<Equivocation>,
}

/// How the peer decides which hub keys to trust.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrustMode {
    /// `peer.trustedHubKeys`.
    Configured,
    /// Trust on first use: a key is pinned per hub URL.
    FirstUse,
}

/// A checkpoint that verified under a trusted key.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vouched {
    /// The head version it covers.
    pub version: i64,
    /// The head's chain hash, `sha256:<hex>`.
    pub chain_hash: String,
    /// The signer's verifier key (`name+keyid+base64`).
    pub key: String,
    /// The hub's time when it signed, Unix ms.
    pub timestamp_ms: i64,
    /// The signed note itself.
    pub note: String,
}

/// Evidence of equivocation: both notes.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Equivocation {
    /// Fork or rollback.
    pub kind: EquivocationKind,
    /// The hub URL that sent the second note.
    pub hub: String,
    /// The note held before.
    pub first: String,
    /// The note that contradicts it.
    pub second: String,
}

/// What kind of equivocation was seen.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EquivocationKind {
    /// Two checkpoints for one version with different hashes.
    Fork,
    /// A key vouched for a smaller head after a larger one.
    Rollback,
}

impl From<trust::TrustView> for TrustView {
    fn from(t: trust::TrustView) -> Self {
        TrustView {
            mode: match t.mode {
                trust::TrustMode::Configured => TrustMode::Configured,
                trust::TrustMode::FirstUse => TrustMode::FirstUse,
            },
            trusted_keys: t.trusted_keys,
            pinned_keys: t.pinned_keys,
            last_checkpoint: t.last_checkpoint.map(Vouched::from),
            equivocations: t
                .equivocations
                .into_iter()
                .map(|e| Equivocation {
                    kind: match e.kind {
                        trust::EquivocationKind::Fork => EquivocationKind::Fork,
                        trust::EquivocationKind::Rollback => EquivocationKind::Rollback,
                    },
                    hub: e.hub,
                    first: e.first,
                    second: e.second,
                })
                .collect(),
        }
    }
}

impl From<trust::Vouched> for Vouched {
    fn from(v: trust::Vouched) -> Self {
        Vouched {
            version: v.version,
            chain_hash: v.chain_hash,
            key: v.key,
            timestamp_ms: v.timestamp_ms,
            note: v.note,
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&PeerState> for ConnectionView {
    fn from(s: &PeerState) -> Self {
        Self {
            state: s.state.into(),
            current_hub: s.current.map(|i| s.hubs[i].url.clone()),
            session_id: s.session_id.clone(),
            hubs: s
                .hubs
                .iter()
                .enumerate()
                .map(|(priority, h)| HubState {
                    url: h.url.clone(),
                    priority,
                    hub_id: h.hub_id.clone(),
                    failed_attempts: h.failed_attempts,
                    last_error: h.last_error.clone(),
                    last_attempt_at: h.last_attempt_at,
                    last_connected_at: h.last_connected_at,
                    hub_version: h.hub_version,
                    hub_behind: h.hub_behind,
                    divergent: h.divergent,
                    signature_refused: h.signature_refused,
                    checkpoint_refused: h.checkpoint_refused,
                    relay_state: h.relay_state.map(Into::into),
                })
                .collect(),
            missed_heartbeats: s.missed_heartbeats,
            last_heartbeat_at: s.last_heartbeat_at,
            failovers: s.failovers,
            isolated_since: s.isolated_since,
            next_backoff_ms: s.next_backoff.map(millis),
            hub_clock_offset_ms: s.hub_clock_offset_ms,
            attempts: s
                .attempts
                .iter()
                .map(|a| Attempt {
                    hub: a.hub,
                    at: a.at,
                    delay_ms: millis(a.delay),
                    outcome: match &a.outcome {
                        AttemptOutcome::Pending => "pending".to_owned(),
                        AttemptOutcome::Connected => "connected".to_owned(),
                        AttemptOutcome::Failed(e) => e.clone(),
                    },
                })
                .collect(),
            trust: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionState;

    /// A relay's heartbeat answers name its state as `peer::state::ConnectionState::name`
    /// says; REST must name it the same way, or `relayState` and `state` would disagree.
    #[test]
    fn rest_names_connection_states_as_the_wire_does() {
        for state in crate::peer::state::ConnectionState::ALL {
            assert_eq!(
                serde_json::to_value(ConnectionState::from(state)).unwrap(),
                state.name(),
                "{state:?}"
            );
        }
    }
}
