//! The hub as a [`HubLink`] in process: what the gRPC services do for a remote peer, without a
//! socket. A peer (or a simulation of many) can be pointed at a hub in the same process; errors
//! carry the same codes the gRPC client reads back from the wire.

use super::{Hub, HubError};
use crate::error_code::{Classified, caller_message};
use crate::link::{HubLink, HubStatus, LinkError, LinkStream};
use crate::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;

impl From<HubError> for LinkError {
    fn from(e: HubError) -> Self {
        let (retry_after, load) = match &e {
            HubError::RateLimited { retry_after, .. } => (Some(*retry_after), None),
            HubError::Full { load, .. } => (None, Some(*load)),
            _ => (None, None),
        };
        LinkError {
            code: e.code(),
            // What a remote peer would read from the wire, no more.
            message: caller_message(&e),
            retry_after,
            load,
        }
    }
}

/// A link to a hub in this process.
#[derive(Debug, Clone)]
pub struct LocalLink {
    hub: Arc<Hub>,
}

impl LocalLink {
    /// A link to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl HubLink for LocalLink {
    async fn open_session(&self, request: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
        Ok(self.hub.connect(request.clone()).await?)
    }

    async fn close_session(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: Goodbye,
        _now_ms: i64,
    ) -> Result<(), LinkError> {
        self.hub.disconnect(peer_id, session_id, &goodbye)?;
        Ok(())
    }

    async fn status(&self, _peer_id: &PeerId) -> Result<HubStatus, LinkError> {
        let status = self.hub.summary(false).await?;
        Ok(HubStatus {
            hub_id: status.node_id,
            head_version: status.current_version,
            head_hash: status.head_hash,
            active_peers: u32::try_from(status.active_peer_count).unwrap_or(u32::MAX),
        })
    }

    async fn full_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        let stream = self.hub.sync(peer_id, session_id, 0, max, true)?;
        Ok(Box::pin(stream.map(|r| r.map_err(LinkError::from))))
    }

    async fn incremental_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        let stream = self.hub.sync(peer_id, session_id, after, max, false)?;
        Ok(Box::pin(stream.map(|r| r.map_err(LinkError::from))))
    }

    async fn subscribe(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError> {
        let stream = self
            .hub
            .subscribe(peer_id, session_id, filters.clone(), resume_from)?;
        Ok(Box::pin(stream.map(|r| r.map_err(LinkError::from))))
    }

    async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, LinkError> {
        Ok(self.hub.peer_sync_view(peer_id, session_id).await?)
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
        Ok(self.hub.heartbeat(heartbeat.clone()).await?)
    }

    async fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, LinkError> {
        Ok(self.hub.heartbeat_status(peer_id, session_id)?)
    }
}
