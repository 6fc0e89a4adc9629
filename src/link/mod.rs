//! The peer's port to a hub: what a peer asks of a hub, in domain types and domain errors.
//!
//! The peer depends on [`HubLink`] and [`Dialer`] only. The gRPC client implements them over
//! the wire (`sorcha.peer.v1`); anything else that can answer like a hub — an in-process hub, a
//! simulated network — can stand in for it.

use crate::error_code::ErrorCode;
use crate::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
pub mod guard;

use async_trait::async_trait;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A failed hub call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct LinkError {
    /// The kind of failure (a hub that is down, corrupt or unreachable is `Unavailable`).
    pub code: ErrorCode,
    /// The hub's (or the transport's) message.
    pub message: String,
    /// How long the hub asked us to wait before retrying (rate limits).
    pub retry_after: Option<Duration>,
    /// How loaded a hub that refused for its fair share is.
    pub load: Option<crate::protocol::HubLoad>,
}

impl LinkError {
    /// An error of `code` without a retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            load: None,
        }
    }

    /// True when the hub refused the caller itself (its id or credentials), which retrying
    /// cannot change.
    pub fn is_permanent_refusal(&self) -> bool {
        self.code.is_permanent_refusal()
    }
}

/// A stream of items from a hub.
pub type LinkStream<T> = Pin<Box<dyn Stream<Item = Result<T, LinkError>> + Send>>;

/// A hub's state as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubStatus {
    /// The hub's node id.
    pub hub_id: String,
    /// Its head version.
    pub head_version: i64,
    /// Its head chain hash.
    pub head_hash: String,
    /// Peers with a session on it.
    pub active_peers: u32,
}

/// What a peer asks of one hub.
#[async_trait]
pub trait HubLink: Send + Sync {
    /// Opens a session.
    async fn open_session(&self, request: &ConnectRequest) -> Result<ConnectionGrant, LinkError>;

    /// Ends a session; `now_ms` is the time of leaving on the hub's clock.
    async fn close_session(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: Goodbye,
        now_ms: i64,
    ) -> Result<(), LinkError>;

    /// The hub's head and peer count.
    async fn status(&self, peer_id: &PeerId) -> Result<HubStatus, LinkError>;

    /// Streams the whole register (at most `max` entries; `None`: all), with the hub's
    /// checkpoints on some entries (see [`SyncedEntry`]).
    async fn full_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError>;

    /// Streams entries with `version > after` (at most `max`; `None`: all), with the hub's
    /// checkpoints on some entries.
    async fn incremental_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError>;

    /// Subscribes to push notifications after `resume_from` (0 = from now on).
    async fn subscribe(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError>;

    /// The hub's view of this peer's sync progress.
    async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, LinkError>;

    /// Sends one heartbeat.
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, LinkError>;

    /// The hub's heartbeat view of this peer.
    async fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, LinkError>;
}

/// Opens links to hubs by URL.
#[async_trait]
pub trait Dialer: Send + Sync {
    /// A link to the hub at `url`.
    async fn dial(&self, url: &str) -> Result<Arc<dyn HubLink>, LinkError>;
}
