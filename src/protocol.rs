//! The peer protocol in domain terms: what hubs and peers say to each other, free of any
//! transport types. `api/grpc` translates these to and from the `sorcha.peer.v1` wire messages;
//! the hub implements them and the peer's client speaks them.

use crate::register::entry::{Entry, EntryType};
use bytes::Bytes;
use std::time::Duration;

/// One entry of a sync stream. The hub vouches for the register up to some of them with a
/// checkpoint note signed over that entry's version and chain hash: the last entry of every
/// page it reads and the last of the stream, so a peer that trusts hub keys can apply the
/// stream in steps that each end at a head the hub signed.
#[derive(Debug, Clone)]
pub struct SyncedEntry {
    /// The entry.
    pub entry: Entry,
    /// The hub's checkpoint note covering exactly this entry, if it sent one here.
    pub checkpoint: Option<String>,
}

impl From<Entry> for SyncedEntry {
    fn from(entry: Entry) -> Self {
        SyncedEntry {
            entry,
            checkpoint: None,
        }
    }
}

/// What kind of node a caller says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A replicating peer.
    Peer,
    /// A hub (the wire also says "Central").
    Hub,
}

impl NodeKind {
    /// Reads the wire's `node_type` ("Peer", "Hub", "Central"; case-insensitive; empty = Peer).
    pub fn parse(node_type: &str) -> Option<Self> {
        match node_type.to_ascii_lowercase().as_str() {
            "" | "peer" => Some(NodeKind::Peer),
            "hub" | "central" => Some(NodeKind::Hub),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Peer => "Peer",
            NodeKind::Hub => "Hub",
        }
    }
}

/// What a peer tells a hub about itself when connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDescription {
    /// Address the peer can be reached at (informational).
    pub address: String,
    /// Port (informational).
    pub port: u16,
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
    /// The node software it runs ("" = not said).
    pub software_version: String,
}

/// A connection request.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The peer's id.
    pub peer_id: PeerId,
    /// The peer's description.
    pub peer: PeerDescription,
    /// Newest version the peer holds.
    pub last_known_version: i64,
    /// The peer's clock at connect, Unix ms.
    pub connection_time: i64,
    /// Every hub the peer could reach said it holds its fair share: take it above the share
    /// (a peer sends this to the least loaded of them, after a jittered pause).
    pub insist: bool,
    /// The id of the hub whose session the peer just lost ("" = none): the hub it connects
    /// to stops counting that one toward fair shares until it shows it is alive.
    pub lost_hub: String,
    /// A relay's path to a hub: its own id, then the relays above it, nearest first (empty
    /// from a peer that serves no one).
    pub relay_path: Vec<String>,
}

impl ConnectRequest {
    /// A request from `peer_id` that describes nothing and holds nothing.
    pub fn new(peer_id: PeerId) -> Self {
        Self {
            peer_id,
            peer: PeerDescription::default(),
            last_known_version: 0,
            connection_time: 0,
            insist: false,
            lost_hub: String::new(),
            relay_path: Vec::new(),
        }
    }
}

/// What a hub grants a connecting peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionGrant {
    /// New session id.
    pub session_id: SessionId,
    /// The hub's node id.
    pub hub_id: String,
    /// The hub's head version.
    pub current_version: i64,
    /// The hub's head chain hash.
    pub head_hash: String,
    /// The hub's signed checkpoint of that head (a C2SP signed note), if it sent one.
    pub checkpoint: Option<String>,
    /// The verifier key of the checkpoints it hands out (`name+keyid+base64`), if any.
    pub checkpoint_key: Option<String>,
    /// The answering node's path to a hub: empty from a hub; a relay's own id, then the
    /// relays above it.
    pub relay_path: Vec<String>,
    /// When the session started, Unix ms.
    pub connected_at: i64,
    /// Heartbeat period the peer should use.
    pub heartbeat_interval: Duration,
    /// Heartbeat answer timeout.
    pub heartbeat_timeout: Duration,
    /// Periodic sync period.
    pub sync_interval: Duration,
    /// Whether push notifications are on.
    pub push_enabled: bool,
    /// Concurrent syncs allowed.
    pub max_concurrent_syncs: u32,
}

/// Why a peer disconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Not said.
    Unknown,
    /// The peer shuts down.
    Shutdown,
    /// Heartbeats failed.
    HeartbeatTimeout,
    /// The peer moves to another hub.
    Failover,
    /// An error.
    Error,
    /// The user asked.
    ClientRequest,
}

/// The longest explanation of a refusal a peer sends (goodbye detail, heartbeat refusal) and
/// a hub keeps, in characters.
pub const MAX_REFUSAL_CHARS: usize = 500;

/// How loaded a hub that refused a peer for its fair share is: its live sessions and its cap.
/// A peer refused by every hub it could reach goes to the one with the fewest sessions (a
/// refusal comes at the cap, so every refusing hub is "full" by its own count; its count is
/// what tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLoad {
    /// Live sessions the hub holds.
    pub sessions: u32,
    /// The most it holds by its fair share.
    pub cap: u32,
}

/// A peer's goodbye: why it leaves, in a code and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// Why, as a code.
    pub reason: DisconnectReason,
    /// Why, in words ("" = not said). With [`DisconnectReason::Error`], why the peer refuses
    /// the hub's data: the hub lists it as refused.
    pub detail: String,
}

impl From<DisconnectReason> for Goodbye {
    fn from(reason: DisconnectReason) -> Self {
        Self {
            reason,
            detail: String::new(),
        }
    }
}

pub use crate::register::subscription::Filters;

/// A push notification about one appended entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Blueprint id.
    pub blueprint_id: String,
    /// Register version.
    pub version: i64,
    /// Publication time.
    pub published_at: i64,
    /// Publisher.
    pub published_by: String,
    /// JSON summary of the document, at most [`MAX_SUMMARY_BYTES`].
    pub summary: Bytes,
    /// Entry type.
    pub entry_type: EntryType,
    /// Document checksum.
    pub checksum: String,
    /// Per-stream sequence number, from 1, no gaps.
    pub sequence_number: i64,
    /// Chain hash of the entry.
    pub chain_hash: String,
}

/// Largest notification summary.
pub const MAX_SUMMARY_BYTES: usize = 4096;

impl Notification {
    /// The notification for `entry` at `sequence_number`.
    pub fn for_entry(entry: &Entry, sequence_number: i64) -> Self {
        Self::with_summary(entry, summary(entry), sequence_number)
    }

    /// The notification for `entry` with its already derived [`summary`].
    pub fn with_summary(entry: &Entry, summary: Bytes, sequence_number: i64) -> Self {
        Self {
            blueprint_id: entry.blueprint_id.clone(),
            version: entry.version,
            published_at: entry.published_at,
            published_by: entry.published_by.clone(),
            summary,
            entry_type: entry.entry_type,
            checksum: entry.checksum.clone(),
            sequence_number,
            chain_hash: entry.chain_hash.clone(),
        }
    }
}

/// A short JSON summary of a blueprint document: its `title`, `description` and `version`
/// fields when present (strings cut to fit), never more than [`MAX_SUMMARY_BYTES`].
pub fn summary(entry: &Entry) -> Bytes {
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice(&entry.document) else {
        return Bytes::from_static(b"{}");
    };
    let mut out = serde_json::Map::new();
    for key in ["title", "name", "description", "version"] {
        if let Some(value) = doc.get(key) {
            let value = match value {
                serde_json::Value::String(s) if s.len() > 1000 => {
                    let mut cut = 1000;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    serde_json::Value::String(s[..cut].to_owned())
                }
                serde_json::Value::String(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Bool(_) => value.clone(),
                _ => continue,
            };
            out.insert(key.to_owned(), value);
        }
    }
    let bytes = serde_json::to_vec(&out).unwrap_or_else(|_| b"{}".to_vec());
    if bytes.len() > MAX_SUMMARY_BYTES {
        return Bytes::from_static(b"{}");
    }
    Bytes::from(bytes)
}

/// A heartbeat from a peer.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Peer id.
    pub peer_id: PeerId,
    /// Session id.
    pub session_id: SessionId,
    /// The peer's clock, Unix ms.
    pub timestamp: i64,
    /// Increases by one per heartbeat of a session.
    pub sequence_number: i64,
    /// Newest version the peer holds.
    pub last_sync_version: i64,
    /// Chain hash of the peer's head.
    pub head_hash: String,
    /// Why the peer refuses what the hub sends while staying connected ("" = nothing).
    pub refusal: String,
    /// The version its last verified hub checkpoint covers (0 = it checks none, or none yet).
    pub trusted_version: i64,
    /// A relay's downstream peers as it knows them (`hub_id` unset; `via` the relays between
    /// it and each peer); empty from a peer that serves no one.
    pub downstream: Vec<crate::store::fleet::FleetRecord>,
}

/// The most downstream peers one heartbeat reports (a relay's own session limit is of that
/// order); more are dropped with a warning by the relay.
pub const MAX_DOWNSTREAM_REPORTED: usize = 10_000;

/// What a hub advises a peer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecommendedAction {
    /// Carry on.
    None,
    /// The peer is behind: sync now.
    Sync,
    /// Heartbeat less often.
    ReduceFrequency,
    /// Move to another hub.
    Failover,
    /// The session is unknown: connect again.
    Reconnect,
}

/// A hub's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// False when the session is unknown.
    pub success: bool,
    /// The hub's clock, Unix ms.
    pub timestamp: i64,
    /// The hub's node id.
    pub hub_id: String,
    /// The hub's head version.
    pub current_version: i64,
    /// The hub's head chain hash.
    pub head_hash: String,
    /// The hub's signed checkpoint of that head (a C2SP signed note), if it sent one.
    pub checkpoint: Option<String>,
    /// Notes (e.g. an out-of-order sequence number).
    pub message: String,
    /// What to do.
    pub action: RecommendedAction,
    /// Observed one-way delay (hub clock − peer timestamp, ≥ 0), ms.
    pub server_latency_ms: i64,
    /// From a relay: its own state with its hubs (`Isolated`: cut off, serving its replica);
    /// `None` from a hub.
    pub relay_state: Option<crate::peer::state::ConnectionState>,
}

/// State of a peer session on the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Heartbeats arrive.
    Connected,
    /// No heartbeat within the session timeout; removed after the grace period.
    HeartbeatTimeout,
    /// A sync stream is running.
    Syncing,
}

/// Heartbeat health of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReport {
    /// Peer id.
    pub peer_id: String,
    /// Session id.
    pub session_id: String,
    /// Last heartbeat, Unix ms (0 = none yet).
    pub last_heartbeat_time: i64,
    /// Intervals missed since the last heartbeat.
    pub missed_heartbeats: u32,
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

/// A session as shown to operators and in the hub status.
#[derive(Debug, Clone, PartialEq)]
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

/// The hub's view of a peer's sync progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSyncView {
    /// Peer id.
    pub peer_id: String,
    /// Newest version the peer holds, as far as the hub knows.
    pub current_version: i64,
    /// Last completed sync stream, Unix ms (0 = none).
    pub last_sync_time: i64,
    /// Blueprints in the register.
    pub total_blueprints: i64,
    /// The hub's node id.
    pub hub_id: String,
    /// When the next periodic sync is due, Unix ms.
    pub next_sync_due: i64,
    /// Up to date, behind or syncing.
    pub status: PeerSyncState,
}

/// Sync state of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSyncState {
    /// At the hub's head.
    UpToDate,
    /// Behind the hub's head.
    Behind,
    /// A sync stream is running.
    Syncing,
}

/// A hub's summary of itself: head, health, sessions (the wire's `CentralNodeStatus`; a peer
/// reads the part it needs as [`crate::link::HubStatus`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HubSummary {
    /// Node id.
    pub node_id: String,
    /// False when the register failed its integrity check.
    pub healthy: bool,
    /// Head version.
    pub current_version: i64,
    /// Head chain hash.
    pub head_hash: String,
    /// Blueprints in the register.
    pub total_blueprints: i64,
    /// Sessions currently connected.
    pub active_peer_count: usize,
    /// `publishedAt` of the head entry (0 when empty).
    pub last_published_at: i64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Sessions, when asked for.
    pub peers: Vec<SessionView>,
}

/// A peer id that passed the node-id rule ([`crate::register::validation::NODE_ID_RULE`]);
/// the hub checks an id once, where it arrives, and hands this on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId(String);

impl PeerId {
    /// Checks `id` against the rule.
    pub fn parse(id: &str) -> Result<Self, crate::register::validation::ValidationError> {
        Self::parse_as("peer_id", id)
    }

    /// Checks `id`, given as `field` (named in the refusal), against the rule.
    pub fn parse_as(
        field: &'static str,
        id: &str,
    ) -> Result<Self, crate::register::validation::ValidationError> {
        crate::register::validation::node_id(field, id)?;
        Ok(Self(id.to_owned()))
    }

    /// The id a node takes from its hostname when `nodeId` is not set: the hostname with
    /// each character the rule does not allow made `-`, cut to the rule's length.
    pub fn from_hostname(hostname: &str) -> Self {
        Self(crate::register::validation::node_id_from_hostname(hostname))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session id, as the hub issued it. Any text may arrive on the wire; the hub looks it up
/// and answers an unknown one with "unknown session".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
