//! `sorcha.peer.v1.Heartbeat` on the hub.

use super::peer_auth::{AuthenticatedPeer, authorize, authorize_as};
use crate::hub::Hub;
use crate::protocol::SessionId;
use crate::wire::convert;
use crate::wire::proto::heartbeat_server::Heartbeat;
use crate::wire::proto::{
    HeartbeatAcknowledgement, HeartbeatMessage, HeartbeatStatus, HeartbeatStatusRequest,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The heartbeat service.
#[derive(Debug, Clone)]
pub struct HeartbeatService {
    /// The hub.
    pub hub: Arc<Hub>,
}

#[tonic::async_trait]
impl Heartbeat for HeartbeatService {
    type MonitorHeartbeatStream =
        Pin<Box<dyn Stream<Item = Result<HeartbeatAcknowledgement, Status>> + Send>>;

    async fn send_heartbeat(
        &self,
        request: Request<HeartbeatMessage>,
    ) -> Result<Response<HeartbeatAcknowledgement>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let hb = convert::heartbeat_from_wire(request.into_inner())?;
        let ack = self.hub.heartbeat(hb).await?;
        Ok(Response::new(convert::ack_to_wire(ack)))
    }

    async fn monitor_heartbeat(
        &self,
        request: Request<Streaming<HeartbeatMessage>>,
    ) -> Result<Response<Self::MonitorHeartbeatStream>, Status> {
        let hub = Arc::clone(&self.hub);
        let caller = request.extensions().get::<AuthenticatedPeer>().cloned();
        let acks = request.into_inner().then(move |message| {
            let hub = Arc::clone(&hub);
            let caller = caller.clone();
            async move {
                let message = message?;
                authorize_as(caller.as_ref(), &message.peer_id)?;
                let hb = convert::heartbeat_from_wire(message)?;
                let ack = hub.heartbeat(hb).await?;
                Ok(convert::ack_to_wire(ack))
            }
        });
        // The first error ends the stream with its status.
        Ok(Response::new(Box::pin(acks)))
    }

    async fn get_heartbeat_status(
        &self,
        request: Request<HeartbeatStatusRequest>,
    ) -> Result<Response<HeartbeatStatus>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        let peer = convert::peer_id_from_wire(&r.peer_id)?;
        let report = self
            .hub
            .heartbeat_status(&peer, &SessionId::from(r.session_id))?;
        Ok(Response::new(convert::report_to_wire(report)))
    }
}
