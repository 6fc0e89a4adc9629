//! A hub's status (with its sessions) and its view of one peer's sync progress.

use crate::protocol::{HubSummary, PeerSyncState, PeerSyncView, SessionStatus, SessionView};
use crate::wire::proto;

fn session_status_to_wire(s: SessionStatus) -> proto::PeerConnectionStatus {
    match s {
        SessionStatus::Connected => proto::PeerConnectionStatus::Connected,
        SessionStatus::HeartbeatTimeout => proto::PeerConnectionStatus::HeartbeatTimeout,
        SessionStatus::Syncing => proto::PeerConnectionStatus::Syncing,
    }
}

fn peer_to_wire(s: &SessionView) -> proto::ConnectedPeerInfo {
    proto::ConnectedPeerInfo {
        peer_id: s.peer_id.clone(),
        session_id: s.session_id.clone(),
        connected_at: s.connected_at,
        last_heartbeat_at: s.last_heartbeat_at,
        last_sync_version: s.last_sync_version,
        status: session_status_to_wire(s.status) as i32,
    }
}

fn count_i32(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// Wire form of the hub status.
pub fn status_to_wire(s: HubSummary) -> proto::CentralNodeStatus {
    proto::CentralNodeStatus {
        node_id: s.node_id,
        health: if s.healthy {
            proto::NodeHealth::Healthy
        } else {
            proto::NodeHealth::Unhealthy
        } as i32,
        current_system_register_version: s.current_version,
        total_blueprints: count_i32(s.total_blueprints),
        active_peer_count: count_i32(s.active_peer_count),
        last_blueprint_published_at: s.last_published_at,
        uptime_seconds: i64::try_from(s.uptime_seconds).unwrap_or(i64::MAX),
        connected_peers: s.peers.iter().map(peer_to_wire).collect(),
        head_hash: s.head_hash,
    }
}

/// A hub's status as a peer reads it.
pub fn hub_status_from_wire(s: proto::CentralNodeStatus) -> crate::link::HubStatus {
    crate::link::HubStatus {
        hub_id: s.node_id,
        head_version: s.current_system_register_version,
        head_hash: s.head_hash,
        active_peers: u32::try_from(s.active_peer_count).unwrap_or(0),
    }
}

/// Wire form of a checkpoint.
pub fn peer_sync_to_wire(c: PeerSyncView) -> proto::SyncCheckpoint {
    proto::SyncCheckpoint {
        peer_id: c.peer_id,
        current_version: c.current_version,
        last_sync_time: c.last_sync_time,
        total_blueprints: count_i32(c.total_blueprints),
        central_node_id: c.hub_id,
        next_sync_due: c.next_sync_due,
        status: match c.status {
            PeerSyncState::UpToDate => proto::CheckpointStatus::UpToDate,
            PeerSyncState::Behind => proto::CheckpointStatus::Behind,
            PeerSyncState::Syncing => proto::CheckpointStatus::Syncing,
        } as i32,
    }
}

/// Domain form of a checkpoint (unknown statuses read as behind).
pub fn peer_sync_from_wire(c: proto::SyncCheckpoint) -> PeerSyncView {
    PeerSyncView {
        peer_id: c.peer_id,
        current_version: c.current_version,
        last_sync_time: c.last_sync_time,
        total_blueprints: i64::from(c.total_blueprints),
        hub_id: c.central_node_id,
        next_sync_due: c.next_sync_due,
        status: match proto::CheckpointStatus::try_from(c.status) {
            Ok(proto::CheckpointStatus::UpToDate) => PeerSyncState::UpToDate,
            Ok(proto::CheckpointStatus::Syncing) => PeerSyncState::Syncing,
            _ => PeerSyncState::Behind,
        },
    }
}
