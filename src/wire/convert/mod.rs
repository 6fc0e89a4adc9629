//! Conversions between the domain types and the generated `sorcha.peer.v1` messages: the only
//! place where the wire's defaults (empty for absent, 0 for no limit) are read and written and
//! where what arrives from the wire is checked (peer ids, limits, ports). Entries, sessions and
//! notifications here; heartbeats in `heartbeats.rs`, a hub's status and its view of a peer's
//! sync in `status.rs`.

mod heartbeats;
mod status;

pub use heartbeats::{
    ack_from_wire, ack_to_wire, heartbeat_from_wire, heartbeat_to_wire, report_from_wire,
    report_to_wire,
};
pub use status::{hub_status_from_wire, peer_sync_from_wire, peer_sync_to_wire, status_to_wire};

use super::proto;
use crate::protocol::{
    ConnectRequest, ConnectionGrant, DisconnectReason, Filters, Goodbye, Notification,
    PeerDescription, PeerId, SessionId, SyncedEntry,
};
use crate::register::entry::{Entry, EntryType};
use crate::register::signature::PublisherSignature;
use crate::register::validation::ValidationError;
use std::time::Duration;

/// Wire enum of an entry type.
pub fn notification_type(t: EntryType) -> proto::NotificationType {
    match t {
        EntryType::Published => proto::NotificationType::BlueprintPublished,
        EntryType::Updated => proto::NotificationType::BlueprintUpdated,
        EntryType::Deprecated => proto::NotificationType::BlueprintDeprecated,
    }
}

/// Entry type of a wire enum value; `None` for UNKNOWN and unknown values.
pub fn entry_type(value: i32) -> Option<EntryType> {
    match proto::NotificationType::try_from(value).ok()? {
        proto::NotificationType::BlueprintPublished => Some(EntryType::Published),
        proto::NotificationType::BlueprintUpdated => Some(EntryType::Updated),
        proto::NotificationType::BlueprintDeprecated => Some(EntryType::Deprecated),
        proto::NotificationType::Unknown => None,
    }
}

/// Wire form of an entry.
pub fn entry_to_wire(e: &Entry) -> proto::SystemRegisterEntry {
    proto::SystemRegisterEntry {
        blueprint_id: e.blueprint_id.clone(),
        register_id: e.register_id.clone(),
        blueprint_document: e.document.clone(),
        published_at: e.published_at,
        published_by: e.published_by.clone(),
        version: e.version,
        is_active: e.is_active,
        publication_transaction_id: e.publication_transaction_id.clone().unwrap_or_default(),
        checksum: e.checksum.clone(),
        metadata: e.metadata.clone(),
        chain_hash: e.chain_hash.clone(),
        entry_type: notification_type(e.entry_type) as i32,
        signature: e.signature.as_deref().map(signature_to_wire),
        checkpoint: String::new(),
    }
}

/// An optional text field: proto3 sends an absent one as empty.
fn present(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// Wire form of a sync stream's entry, with the hub's checkpoint note when it carries one.
pub fn synced_to_wire(s: &SyncedEntry) -> proto::SystemRegisterEntry {
    proto::SystemRegisterEntry {
        checkpoint: s.checkpoint.clone().unwrap_or_default(),
        ..entry_to_wire(&s.entry)
    }
}

/// Domain form of a sync stream's entry.
pub fn synced_from_wire(mut w: proto::SystemRegisterEntry) -> SyncedEntry {
    let checkpoint = present(std::mem::take(&mut w.checkpoint));
    SyncedEntry {
        entry: entry_from_wire(w),
        checkpoint,
    }
}

/// Wire form of a publisher signature: the key name, and the key id followed by the signature.
pub fn signature_to_wire(s: &PublisherSignature) -> proto::PublisherSignature {
    let mut value = Vec::with_capacity(68);
    value.extend_from_slice(&s.key_id.to_be_bytes());
    value.extend_from_slice(&s.signature);
    proto::PublisherSignature {
        previous_version: s.previous_version,
        key_name: s.key_name.clone(),
        value: value.into(),
    }
}

/// Domain form of a wire signature; `None` when it is not 68 bytes. Such an entry then hashes
/// as unsigned, and chain verification refuses it.
pub fn signature_from_wire(w: proto::PublisherSignature) -> Option<PublisherSignature> {
    let (id, sig) = w.value.split_at_checked(4)?;
    Some(PublisherSignature {
        previous_version: w.previous_version,
        key_name: w.key_name,
        key_id: u32::from_be_bytes(id.try_into().ok()?),
        signature: sig.try_into().ok()?,
    })
}

/// Domain form of a wire entry. A sender without our `entry_type` field gets its type inferred
/// (inactive → deprecated, else published); chain verification catches a wrong guess.
pub fn entry_from_wire(w: proto::SystemRegisterEntry) -> Entry {
    let entry_type = entry_type(w.entry_type).unwrap_or(if w.is_active {
        EntryType::Published
    } else {
        EntryType::Deprecated
    });
    Entry {
        version: w.version,
        blueprint_id: w.blueprint_id,
        register_id: w.register_id,
        document: w.blueprint_document,
        published_at: w.published_at,
        published_by: w.published_by,
        is_active: w.is_active,
        publication_transaction_id: present(w.publication_transaction_id),
        checksum: w.checksum,
        metadata: w.metadata,
        chain_hash: w.chain_hash,
        entry_type,
        signature: w.signature.and_then(signature_from_wire).map(Box::new),
    }
}

/// A peer id as it reaches the hub, checked against the node-id rule here, once.
pub fn peer_id_from_wire(id: &str) -> Result<PeerId, ValidationError> {
    PeerId::parse(id)
}

/// A sync request's `max_blueprints`: 0 is no limit; a negative one is refused.
pub fn sync_limit_from_wire(max_blueprints: i32) -> Result<Option<u32>, ValidationError> {
    match u32::try_from(max_blueprints) {
        Ok(0) => Ok(None),
        Ok(max) => Ok(Some(max)),
        Err(_) => Err(ValidationError::Field(format!(
            "max_blueprints {max_blueprints} is negative; use 0 for no limit"
        ))),
    }
}

/// The wire's `max_blueprints` of a sync limit (0: none).
pub fn sync_limit_to_wire(max: Option<u32>) -> i32 {
    max.map_or(0, |max| i32::try_from(max).unwrap_or(i32::MAX))
}

/// Domain form of a connect request; the peer id is checked.
pub fn connect_from_wire(r: proto::ConnectRequest) -> Result<ConnectRequest, ValidationError> {
    let info = r.peer_info.unwrap_or_default();
    let caps = info.capabilities.unwrap_or_default();
    let port = u16::try_from(info.port).map_err(|_| {
        ValidationError::Field(format!(
            "peer_info.port {} is out of range 0-65535",
            info.port
        ))
    })?;
    Ok(ConnectRequest {
        peer_id: peer_id_from_wire(&r.peer_id)?,
        peer: PeerDescription {
            address: info.address,
            port,
            node_type: info.node_type,
            supported_protocols: info.supported_protocols,
            supports_push_notifications: caps.supports_push_notifications,
            supports_incremental_sync: caps.supports_incremental_sync,
            max_blueprint_size: caps.max_blueprint_size,
            is_nat_restricted: caps.is_nat_restricted,
            software_version: info
                .software_version
                .chars()
                .take(MAX_SOFTWARE_CHARS)
                .collect(),
        },
        last_known_version: r.last_known_version,
        connection_time: r.connection_time,
        insist: r.insist,
        lost_hub: if r.lost_hub.is_empty() {
            r.lost_hub
        } else {
            crate::protocol::PeerId::parse_as("lost_hub", &r.lost_hub)?
                .as_str()
                .to_owned()
        },
        relay_path: r
            .relay_path
            .iter()
            .map(|id| {
                Ok(crate::protocol::PeerId::parse_as("relay_path", id)?
                    .as_str()
                    .to_owned())
            })
            .collect::<Result<_, _>>()?,
    })
}

/// Wire form of a connect request.
pub fn connect_to_wire(r: &ConnectRequest) -> proto::ConnectRequest {
    proto::ConnectRequest {
        peer_id: r.peer_id.to_string(),
        peer_info: Some(proto::PeerInfo {
            address: r.peer.address.clone(),
            port: i32::from(r.peer.port),
            node_type: r.peer.node_type.clone(),
            supported_protocols: r.peer.supported_protocols.clone(),
            capabilities: Some(proto::PeerCapabilities {
                supports_push_notifications: r.peer.supports_push_notifications,
                supports_incremental_sync: r.peer.supports_incremental_sync,
                max_blueprint_size: r.peer.max_blueprint_size,
                is_nat_restricted: r.peer.is_nat_restricted,
            }),
            software_version: r.peer.software_version.clone(),
        }),
        last_known_version: r.last_known_version,
        connection_time: r.connection_time,
        insist: r.insist,
        lost_hub: r.lost_hub.clone(),
        relay_path: r.relay_path.clone(),
    }
}

fn secs_i32(d: Duration) -> i32 {
    // Round up so a sub-second test interval is never advertised as 0.
    i32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// Wire form of a connection grant.
pub fn grant_to_wire(g: &ConnectionGrant) -> proto::ConnectionResponse {
    proto::ConnectionResponse {
        success: true,
        message: "connected".into(),
        session_id: g.session_id.to_string(),
        central_node_id: g.hub_id.clone(),
        current_system_register_version: g.current_version,
        connected_at: g.connected_at,
        heartbeat_interval_seconds: secs_i32(g.heartbeat_interval),
        config: Some(proto::ConnectionConfig {
            heartbeat_timeout_seconds: secs_i32(g.heartbeat_timeout),
            periodic_sync_interval_minutes: i32::try_from(g.sync_interval.as_secs().div_ceil(60))
                .unwrap_or(i32::MAX),
            push_notifications_enabled: g.push_enabled,
            max_concurrent_syncs: i32::try_from(g.max_concurrent_syncs).unwrap_or(i32::MAX),
        }),
        head_hash: g.head_hash.clone(),
        checkpoint: g.checkpoint.clone().unwrap_or_default(),
        checkpoint_key: g.checkpoint_key.clone().unwrap_or_default(),
        relay_path: g.relay_path.clone(),
    }
}

/// Domain form of a connection response (durations in the wire's units).
pub fn grant_from_wire(r: proto::ConnectionResponse) -> ConnectionGrant {
    let config = r.config.unwrap_or_default();
    let secs = |s: i32| Duration::from_secs(u64::try_from(s).unwrap_or(0));
    ConnectionGrant {
        session_id: SessionId::from(r.session_id),
        hub_id: r.central_node_id,
        current_version: r.current_system_register_version,
        head_hash: r.head_hash,
        checkpoint: present(r.checkpoint),
        checkpoint_key: present(r.checkpoint_key),
        relay_path: r.relay_path,
        connected_at: r.connected_at,
        heartbeat_interval: secs(r.heartbeat_interval_seconds),
        heartbeat_timeout: secs(config.heartbeat_timeout_seconds),
        sync_interval: secs(config.periodic_sync_interval_minutes.saturating_mul(60)),
        push_enabled: config.push_notifications_enabled,
        max_concurrent_syncs: u32::try_from(config.max_concurrent_syncs).unwrap_or(0),
    }
}

/// Domain form of a disconnect reason.
pub fn reason_from_wire(value: i32) -> DisconnectReason {
    match proto::DisconnectReason::try_from(value) {
        Ok(proto::DisconnectReason::Shutdown) => DisconnectReason::Shutdown,
        Ok(proto::DisconnectReason::HeartbeatTimeout) => DisconnectReason::HeartbeatTimeout,
        Ok(proto::DisconnectReason::Failover) => DisconnectReason::Failover,
        Ok(proto::DisconnectReason::Error) => DisconnectReason::Error,
        Ok(proto::DisconnectReason::ClientRequest) => DisconnectReason::ClientRequest,
        _ => DisconnectReason::Unknown,
    }
}

/// The longest software version a hub keeps, in characters.
pub(super) const MAX_SOFTWARE_CHARS: usize = 80;

/// Domain form of a goodbye: the reason and its detail (cut to
/// [`crate::protocol::MAX_REFUSAL_CHARS`]).
pub fn goodbye_from_wire(reason: i32, detail: String) -> Goodbye {
    Goodbye {
        reason: reason_from_wire(reason),
        detail: detail
            .chars()
            .take(crate::protocol::MAX_REFUSAL_CHARS)
            .collect(),
    }
}

/// Wire form of a disconnect reason.
pub fn reason_to_wire(reason: DisconnectReason) -> proto::DisconnectReason {
    match reason {
        DisconnectReason::Unknown => proto::DisconnectReason::Unknown,
        DisconnectReason::Shutdown => proto::DisconnectReason::Shutdown,
        DisconnectReason::HeartbeatTimeout => proto::DisconnectReason::HeartbeatTimeout,
        DisconnectReason::Failover => proto::DisconnectReason::Failover,
        DisconnectReason::Error => proto::DisconnectReason::Error,
        DisconnectReason::ClientRequest => proto::DisconnectReason::ClientRequest,
    }
}

/// Domain form of subscription filters; unknown type values are refused.
pub fn filters_from_wire(f: Option<proto::SubscriptionFilters>) -> Result<Filters, String> {
    let f = f.unwrap_or_default();
    let types = f
        .notification_types
        .iter()
        .map(|t| {
            entry_type(*t).ok_or_else(|| format!("notification type {t} is not a filterable type"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Filters {
        blueprint_ids: f.blueprint_ids,
        publisher_ids: f.publisher_ids,
        types,
        metadata: f.metadata_filters,
    })
}

/// Wire form of subscription filters.
pub fn filters_to_wire(f: &Filters) -> proto::SubscriptionFilters {
    proto::SubscriptionFilters {
        blueprint_ids: f.blueprint_ids.clone(),
        publisher_ids: f.publisher_ids.clone(),
        notification_types: f
            .types
            .iter()
            .map(|t| notification_type(*t) as i32)
            .collect(),
        metadata_filters: f.metadata.clone(),
    }
}

/// Wire form of a notification.
pub fn notification_to_wire(n: Notification) -> proto::BlueprintNotification {
    proto::BlueprintNotification {
        blueprint_id: n.blueprint_id,
        version: n.version,
        published_at: n.published_at,
        published_by: n.published_by,
        blueprint_summary: n.summary,
        r#type: notification_type(n.entry_type) as i32,
        checksum: n.checksum,
        sequence_number: n.sequence_number,
        chain_hash: n.chain_hash,
    }
}

/// Domain form of a notification; `None` for an unknown type.
pub fn notification_from_wire(n: proto::BlueprintNotification) -> Option<Notification> {
    Some(Notification {
        entry_type: entry_type(n.r#type)?,
        blueprint_id: n.blueprint_id,
        version: n.version,
        published_at: n.published_at,
        published_by: n.published_by,
        summary: n.blueprint_summary,
        checksum: n.checksum,
        sequence_number: n.sequence_number,
        chain_hash: n.chain_hash,
    })
}
