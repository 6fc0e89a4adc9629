//! A gRPC-Web client over HTTP/1.1 (tonic's gRPC-Web client layer on a plain HTTP/1 client)
//! runs ConnectToCentralNode, FullSync and SendHeartbeat against the hub's single port.

use crate::support::TestHub;
use futures::StreamExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sorcha_peer::wire::proto::central_node_connection_client::CentralNodeConnectionClient;
use sorcha_peer::wire::proto::heartbeat_client::HeartbeatClient;
use sorcha_peer::wire::proto::system_register_sync_client::SystemRegisterSyncClient;
use sorcha_peer::wire::proto::{ConnectRequest, HeartbeatMessage, PeerInfo, SyncRequest};
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn grpc_web_client_runs_full_sync_and_heartbeat() {
    let hub = TestHub::start().await;
    hub.publish("web-1", json!({"title": "via grpc-web"})).await;
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let svc = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(http1);
    let origin: http::Uri = hub.url("").parse().unwrap();

    let mut connection = CentralNodeConnectionClient::with_origin(svc.clone(), origin.clone());
    let grant = connection
        .connect_to_central_node(ConnectRequest {
            peer_id: "web-peer".into(),
            peer_info: Some(PeerInfo {
                node_type: "Peer".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(grant.success);
    assert_eq!(grant.current_system_register_version, 2);

    let mut sync = SystemRegisterSyncClient::with_origin(svc.clone(), origin.clone());
    let entries: Vec<_> = sync
        .full_sync(SyncRequest {
            peer_id: "web-peer".into(),
            session_id: grant.session_id.clone(),
            full_sync: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(
        entries.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(entries[1].blueprint_id, "web-1");
    assert_eq!(entries[1].chain_hash, grant.head_hash);

    let mut heartbeat = HeartbeatClient::with_origin(svc, origin);
    let ack = heartbeat
        .send_heartbeat(HeartbeatMessage {
            peer_id: "web-peer".into(),
            session_id: grant.session_id,
            sequence_number: 1,
            last_sync_version: 2,
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ack.success);
    assert_eq!(ack.current_system_register_version, 2);
    hub.stop().await;
}
