//! Heartbeats, their acknowledgements and a hub's heartbeat report of a peer.

use super::{MAX_SOFTWARE_CHARS, peer_id_from_wire, present};
use crate::protocol::{
    Heartbeat, HeartbeatAck, HeartbeatHealth, HeartbeatReport, RecommendedAction, SessionId,
};
use crate::register::validation::ValidationError;
use crate::store::fleet::{Condition, FleetRecord};
use crate::wire::proto;

/// Domain form of a heartbeat; the peer id is checked.
pub fn heartbeat_from_wire(m: proto::HeartbeatMessage) -> Result<Heartbeat, ValidationError> {
    Ok(Heartbeat {
        peer_id: peer_id_from_wire(&m.peer_id)?,
        session_id: SessionId::from(m.session_id),
        timestamp: m.timestamp,
        sequence_number: m.sequence_number,
        last_sync_version: m.last_sync_version,
        head_hash: m.head_hash,
        refusal: m
            .refusal
            .chars()
            .take(crate::protocol::MAX_REFUSAL_CHARS)
            .collect(),
        trusted_version: m.trusted_version.max(0),
        downstream: m
            .downstream
            .into_iter()
            .take(crate::protocol::MAX_DOWNSTREAM_REPORTED)
            .map(downstream_from_wire)
            .collect::<Result<_, _>>()?,
    })
}

/// A reported downstream peer: its id and the relays on its way follow the node-id rule; its
/// condition is one of the fleet's (an unknown one reads `stale`).
fn downstream_from_wire(d: proto::DownstreamPeer) -> Result<FleetRecord, ValidationError> {
    let id = |field: &'static str, v: &str| {
        crate::protocol::PeerId::parse_as(field, v).map(|p| p.as_str().to_owned())
    };
    Ok(FleetRecord {
        peer_id: id("downstream.peer_id", &d.peer_id)?,
        hub_id: String::new(),
        condition: Condition::parse(&d.condition).unwrap_or(Condition::Stale),
        applied_version: d.applied_version.max(0),
        trusted_version: d.trusted_version.max(0),
        behind_since: (d.behind_since > 0).then_some(d.behind_since),
        last_heartbeat_at: d.last_heartbeat_at,
        connected_since: d.connected_since,
        first_seen: d.first_seen,
        clock_offset_ms: d.clock_offset_ms,
        software_version: d
            .software_version
            .chars()
            .take(MAX_SOFTWARE_CHARS)
            .collect(),
        refusal: (!d.refusal.is_empty()).then(|| {
            d.refusal
                .chars()
                .take(crate::protocol::MAX_REFUSAL_CHARS)
                .collect()
        }),
        changed_at: d.changed_at,
        via: d
            .via
            .iter()
            .map(|v| id("downstream.via", v))
            .collect::<Result<_, _>>()?,
    })
}

fn downstream_to_wire(r: &FleetRecord) -> proto::DownstreamPeer {
    proto::DownstreamPeer {
        peer_id: r.peer_id.clone(),
        condition: r.condition.name().to_owned(),
        applied_version: r.applied_version,
        trusted_version: r.trusted_version,
        behind_since: r.behind_since.unwrap_or(0),
        last_heartbeat_at: r.last_heartbeat_at,
        connected_since: r.connected_since,
        first_seen: r.first_seen,
        clock_offset_ms: r.clock_offset_ms,
        software_version: r.software_version.clone(),
        refusal: r.refusal.clone().unwrap_or_default(),
        changed_at: r.changed_at,
        via: r.via.clone(),
    }
}

/// Wire form of a heartbeat.
pub fn heartbeat_to_wire(h: &Heartbeat) -> proto::HeartbeatMessage {
    proto::HeartbeatMessage {
        peer_id: h.peer_id.to_string(),
        timestamp: h.timestamp,
        sequence_number: h.sequence_number,
        last_sync_version: h.last_sync_version,
        session_id: h.session_id.to_string(),
        node_type: "Peer".into(),
        metrics: None,
        head_hash: h.head_hash.clone(),
        refusal: h.refusal.clone(),
        trusted_version: h.trusted_version,
        downstream: h.downstream.iter().map(downstream_to_wire).collect(),
    }
}

fn action_to_wire(a: RecommendedAction) -> proto::RecommendedAction {
    match a {
        RecommendedAction::None => proto::RecommendedAction::None,
        RecommendedAction::Sync => proto::RecommendedAction::Sync,
        RecommendedAction::ReduceFrequency => proto::RecommendedAction::ReduceFrequency,
        RecommendedAction::Failover => proto::RecommendedAction::Failover,
        RecommendedAction::Reconnect => proto::RecommendedAction::Reconnect,
    }
}

fn action_from_wire(value: i32) -> RecommendedAction {
    match proto::RecommendedAction::try_from(value) {
        Ok(proto::RecommendedAction::Sync) => RecommendedAction::Sync,
        Ok(proto::RecommendedAction::ReduceFrequency) => RecommendedAction::ReduceFrequency,
        Ok(proto::RecommendedAction::Failover) => RecommendedAction::Failover,
        Ok(proto::RecommendedAction::Reconnect) => RecommendedAction::Reconnect,
        _ => RecommendedAction::None,
    }
}

/// Wire form of a heartbeat answer.
pub fn ack_to_wire(a: HeartbeatAck) -> proto::HeartbeatAcknowledgement {
    proto::HeartbeatAcknowledgement {
        success: a.success,
        timestamp: a.timestamp,
        central_node_id: a.hub_id,
        current_system_register_version: a.current_version,
        message: a.message,
        recommended_action: action_to_wire(a.action) as i32,
        server_latency_ms: a.server_latency_ms,
        head_hash: a.head_hash,
        checkpoint: a.checkpoint.unwrap_or_default(),
        relay_state: a
            .relay_state
            .map(|s| s.name().to_owned())
            .unwrap_or_default(),
    }
}

/// Domain form of a heartbeat answer.
pub fn ack_from_wire(a: proto::HeartbeatAcknowledgement) -> HeartbeatAck {
    HeartbeatAck {
        success: a.success,
        timestamp: a.timestamp,
        hub_id: a.central_node_id,
        current_version: a.current_system_register_version,
        head_hash: a.head_hash,
        checkpoint: present(a.checkpoint),
        message: a.message,
        action: action_from_wire(a.recommended_action),
        server_latency_ms: a.server_latency_ms,
        relay_state: crate::peer::state::ConnectionState::parse(&a.relay_state),
    }
}

fn health_to_wire(h: HeartbeatHealth) -> proto::HeartbeatHealthStatus {
    match h {
        HeartbeatHealth::Unknown => proto::HeartbeatHealthStatus::Unknown,
        HeartbeatHealth::Healthy => proto::HeartbeatHealthStatus::Healthy,
        HeartbeatHealth::Warning => proto::HeartbeatHealthStatus::Warning,
        HeartbeatHealth::Critical => proto::HeartbeatHealthStatus::Critical,
        HeartbeatHealth::Timeout => proto::HeartbeatHealthStatus::Timeout,
        HeartbeatHealth::Disconnected => proto::HeartbeatHealthStatus::Disconnected,
    }
}

fn health_from_wire(value: i32) -> HeartbeatHealth {
    match proto::HeartbeatHealthStatus::try_from(value) {
        Ok(proto::HeartbeatHealthStatus::Healthy) => HeartbeatHealth::Healthy,
        Ok(proto::HeartbeatHealthStatus::Warning) => HeartbeatHealth::Warning,
        Ok(proto::HeartbeatHealthStatus::Critical) => HeartbeatHealth::Critical,
        Ok(proto::HeartbeatHealthStatus::Timeout) => HeartbeatHealth::Timeout,
        Ok(proto::HeartbeatHealthStatus::Disconnected) => HeartbeatHealth::Disconnected,
        _ => HeartbeatHealth::Unknown,
    }
}

/// Wire form of a heartbeat report.
pub fn report_to_wire(r: HeartbeatReport) -> proto::HeartbeatStatus {
    proto::HeartbeatStatus {
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
        health_status: health_to_wire(r.health) as i32,
    }
}

/// Domain form of a heartbeat report.
pub fn report_from_wire(r: proto::HeartbeatStatus) -> HeartbeatReport {
    HeartbeatReport {
        peer_id: r.peer_id,
        session_id: r.session_id,
        last_heartbeat_time: r.last_heartbeat_time,
        missed_heartbeats: u32::try_from(r.missed_heartbeats).unwrap_or(0),
        is_healthy: r.is_healthy,
        status_message: r.status_message,
        total_heartbeats_received: r.total_heartbeats_received,
        total_heartbeats_missed: r.total_heartbeats_missed,
        average_latency_ms: r.average_latency_ms,
        last_known_sync_version: r.last_known_sync_version,
        version_lag: r.version_lag,
        health: health_from_wire(r.health_status),
    }
}
