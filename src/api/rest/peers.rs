//! A hub's peer sessions: heartbeat health, version lag, sync state. The views here are the
//! REST shape of the hub's session records (`crate::protocol`), which stay free of it.

use crate::api::AppState;
use crate::api::error::{ApiError, Problem};
use crate::protocol;
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

/// A session as shown to operators and in the hub status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Peer id.
    pub peer_id: String,
    /// Session id.
    pub session_id: String,
    /// Peer's self-description.
    pub peer: PeerDescription,
    /// Session start, Unix ms.
    pub connected_at: i64,
    /// Last heartbeat, Unix ms (0 = none yet).
    pub last_heartbeat_at: i64,
    /// Newest version the peer reported or was sent.
    pub last_sync_version: i64,
    /// Session state.
    pub status: SessionStatus,
    /// Open push streams.
    pub push_streams: usize,
    /// Running sync streams.
    pub active_syncs: usize,
    /// Heartbeat view.
    pub heartbeat: HeartbeatReport,
}

/// What a peer tells a hub about itself when connecting.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerDescription {
    /// Address the peer can be reached at (informational).
    pub address: String,
    /// Port (informational).
    pub port: i32,
    /// The raw `node_type` string.
    pub node_type: String,
    /// Protocols the peer speaks.
    pub supported_protocols: Vec<String>,
    /// Whether it takes push notifications.
    pub supports_push_notifications: bool,
    /// Whether it does incremental sync.
    pub supports_incremental_sync: bool,
    /// Largest blueprint it accepts.
    pub max_blueprint_size: i32,
    /// Whether it sits behind NAT.
    pub is_nat_restricted: bool,
}

/// State of a peer session on the hub.
#[derive(Debug, Serialize, ToSchema)]
pub enum SessionStatus {
    /// Heartbeats arrive.
    Connected,
    /// No heartbeat within the session timeout; removed after the grace period.
    HeartbeatTimeout,
    /// A sync stream is running.
    Syncing,
}

/// Heartbeat health of a session.
#[derive(Debug, Serialize, ToSchema)]
pub enum HeartbeatHealth {
    /// Unknown.
    Unknown,
    /// On time.
    Healthy,
    /// One interval missed.
    Warning,
    /// Two or more intervals missed.
    Critical,
    /// Timed out.
    Timeout,
    /// No session.
    Disconnected,
}

/// The hub's heartbeat view of one peer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatReport {
    /// Peer id.
    pub peer_id: String,
    /// Session id.
    pub session_id: String,
    /// Last heartbeat, Unix ms (0 = none yet).
    pub last_heartbeat_time: i64,
    /// Intervals missed since the last heartbeat.
    pub missed_heartbeats: i32,
    /// Healthy or Warning.
    pub is_healthy: bool,
    /// Human-readable state.
    pub status_message: String,
    /// Heartbeats received in this session.
    pub total_heartbeats_received: i64,
    /// Intervals missed in this session.
    pub total_heartbeats_missed: i64,
    /// Mean of the last 10 observed latencies, ms.
    pub average_latency_ms: f64,
    /// Newest version the peer reported.
    pub last_known_sync_version: i64,
    /// Hub head − peer version (≥ 0).
    pub version_lag: i64,
    /// Health.
    pub health: HeartbeatHealth,
}

impl From<protocol::SessionView> for SessionView {
    fn from(s: protocol::SessionView) -> Self {
        let p = s.peer;
        SessionView {
            peer_id: s.peer_id,
            session_id: s.session_id,
            peer: PeerDescription {
                address: p.address,
                port: i32::from(p.port),
                node_type: p.node_type,
                supported_protocols: p.supported_protocols,
                supports_push_notifications: p.supports_push_notifications,
                supports_incremental_sync: p.supports_incremental_sync,
                max_blueprint_size: p.max_blueprint_size,
                is_nat_restricted: p.is_nat_restricted,
            },
            connected_at: s.connected_at,
            last_heartbeat_at: s.last_heartbeat_at,
            last_sync_version: s.last_sync_version,
            status: match s.status {
                protocol::SessionStatus::Connected => SessionStatus::Connected,
                protocol::SessionStatus::HeartbeatTimeout => SessionStatus::HeartbeatTimeout,
                protocol::SessionStatus::Syncing => SessionStatus::Syncing,
            },
            push_streams: s.push_streams,
            active_syncs: s.active_syncs,
            heartbeat: s.heartbeat.into(),
        }
    }
}

impl From<protocol::HeartbeatReport> for HeartbeatReport {
    fn from(r: protocol::HeartbeatReport) -> Self {
        HeartbeatReport {
            peer_id: r.peer_id,
            session_id: r.session_id,
            last_heartbeat_time: r.last_heartbeat_time,
            missed_heartbeats: i32::try_from(r.missed_heartbeats).unwrap_or(i32::MAX),
            is_healthy: r.is_healthy,
            status_message: r.status_message,
            total_heartbeats_received: r.total_heartbeats_received,
            total_heartbeats_missed: r.total_heartbeats_missed,
            average_latency_ms: r.average_latency_ms,
            last_known_sync_version: r.last_known_sync_version,
            version_lag: r.version_lag,
            health: match r.health {
                protocol::HeartbeatHealth::Unknown => HeartbeatHealth::Unknown,
                protocol::HeartbeatHealth::Healthy => HeartbeatHealth::Healthy,
                protocol::HeartbeatHealth::Warning => HeartbeatHealth::Warning,
                protocol::HeartbeatHealth::Critical => HeartbeatHealth::Critical,
                protocol::HeartbeatHealth::Timeout => HeartbeatHealth::Timeout,
                protocol::HeartbeatHealth::Disconnected => HeartbeatHealth::Disconnected,
            },
        }
    }
}

fn hub(state: &AppState) -> Result<&Arc<crate::hub::Hub>, ApiError> {
    super::hub_of(state, "peer sessions live on hubs")
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
        peers: hub.sessions().into_iter().map(SessionView::from).collect(),
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
        .map(|s| Json(s.into()))
        .ok_or_else(|| ApiError::not_found(format!("no session for peer {peer_id:?}")))
}
