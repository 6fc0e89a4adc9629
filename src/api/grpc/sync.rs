//! `sorcha.peer.v1.SystemRegisterSync` on the hub.

use super::peer_auth::authorize;
use crate::hub::Hub;
use crate::protocol::SessionId;
use crate::wire::convert;
use crate::wire::proto::system_register_sync_server::SystemRegisterSync;
use crate::wire::proto::{
    BlueprintNotification, CheckpointRequest, SubscriptionRequest, SyncCheckpoint, SyncRequest,
    SystemRegisterEntry,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The sync service.
#[derive(Debug, Clone)]
pub struct SyncService {
    /// The hub.
    pub hub: Arc<Hub>,
}

impl SyncService {
    fn stream(
        &self,
        r: SyncRequest,
        after: i64,
        full: bool,
    ) -> Result<BoxStream<SystemRegisterEntry>, Status> {
        let peer = convert::peer_id_from_wire(&r.peer_id)?;
        let max = convert::sync_limit_from_wire(r.max_blueprints)?;
        let entries = self
            .hub
            .sync(&peer, &SessionId::from(r.session_id), after, max, full)?;
        Ok(Box::pin(entries.map(|item| {
            item.map(|e| convert::synced_to_wire(&e))
                .map_err(Status::from)
        })))
    }
}

#[tonic::async_trait]
impl SystemRegisterSync for SyncService {
    type FullSyncStream = BoxStream<SystemRegisterEntry>;
    type IncrementalSyncStream = BoxStream<SystemRegisterEntry>;
    type SubscribeToPushNotificationsStream = BoxStream<BlueprintNotification>;

    async fn full_sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::FullSyncStream>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        tracing::info!(peer_id = %r.peer_id, max = r.max_blueprints, "full sync");
        let stream = self.stream(r, 0, true)?;
        Ok(Response::new(stream))
    }

    async fn incremental_sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::IncrementalSyncStream>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        let after = r.last_known_version;
        tracing::debug!(peer_id = %r.peer_id, after, "incremental sync");
        let stream = self.stream(r, after, false)?;
        Ok(Response::new(stream))
    }

    async fn subscribe_to_push_notifications(
        &self,
        request: Request<SubscriptionRequest>,
    ) -> Result<Response<Self::SubscribeToPushNotificationsStream>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        let filters = convert::filters_from_wire(r.filters)
            .map_err(|m| super::status::status(crate::error_code::ErrorCode::Invalid, m))?;
        let peer = convert::peer_id_from_wire(&r.peer_id)?;
        let resume_from = r.resume_from_version;
        let notifications =
            self.hub
                .subscribe(&peer, &SessionId::from(r.session_id), filters, resume_from)?;
        tracing::info!(peer_id = %peer, resume_from, "push subscription");
        Ok(Response::new(Box::pin(notifications.map(|item| {
            item.map(convert::notification_to_wire)
                .map_err(Status::from)
        }))))
    }

    async fn get_sync_checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<SyncCheckpoint>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        let peer = convert::peer_id_from_wire(&r.peer_id)?;
        let checkpoint = self
            .hub
            .peer_sync_view(&peer, &SessionId::from(r.session_id))
            .await?;
        Ok(Response::new(convert::peer_sync_to_wire(checkpoint)))
    }
}
