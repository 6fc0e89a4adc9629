//! `sorcha.peer.v1.CentralNodeConnection` on the hub.

use super::peer_auth::authorize;
use crate::hub::Hub;
use crate::protocol::SessionId;
use crate::wire::convert;
use crate::wire::proto::central_node_connection_server::CentralNodeConnection;
use crate::wire::proto::{
    CentralNodeStatus, ConnectRequest, ConnectionResponse, DisconnectRequest,
    DisconnectionResponse, StatusRequest,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The connection service.
#[derive(Debug, Clone)]
pub struct ConnectionService {
    /// The hub.
    pub hub: Arc<Hub>,
}

#[tonic::async_trait]
impl CentralNodeConnection for ConnectionService {
    async fn connect_to_central_node(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectionResponse>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let request = convert::connect_from_wire(request.into_inner())?;
        let grant = self.hub.connect(request).await?;
        Ok(Response::new(convert::grant_to_wire(&grant)))
    }

    async fn disconnect_from_central_node(
        &self,
        request: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectionResponse>, Status> {
        authorize(request.extensions(), &request.get_ref().peer_id)?;
        let r = request.into_inner();
        let peer = convert::peer_id_from_wire(&r.peer_id)?;
        let at = self.hub.disconnect(
            &peer,
            &SessionId::from(r.session_id),
            &convert::goodbye_from_wire(r.reason, r.detail),
        )?;
        Ok(Response::new(DisconnectionResponse {
            success: true,
            message: "session ended".into(),
            disconnected_at: at,
        }))
    }

    async fn get_central_node_status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<CentralNodeStatus>, Status> {
        // Anyone authenticated may ask; a named peer must be the caller.
        if !request.get_ref().peer_id.is_empty() {
            authorize(request.extensions(), &request.get_ref().peer_id)?;
        }
        let r = request.into_inner();
        let status = self.hub.summary(r.include_peer_list).await?;
        Ok(Response::new(convert::status_to_wire(status)))
    }
}
