//! One port serves HTTP/1.1 REST, h2c gRPC (health, reflection v1 and v1alpha) and gRPC-Web.

use crate::support::TestHub;
use futures::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn rest_grpc_and_grpc_web_share_one_port() {
    let hub = TestHub::start().await;

    // HTTP/1.1 REST.
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let r = http1.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let health: serde_json::Value = r.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "hub");

    // h2c gRPC health.
    let channel = tonic::transport::Channel::from_shared(hub.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel.clone());
    for service in ["", "sorcha.peer.v1.SystemRegisterSync"] {
        let status = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    // Reflection v1 lists our contract and health.
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        );
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "sorcha.peer.v1.CentralNodeConnection",
        "sorcha.peer.v1.SystemRegisterSync",
        "sorcha.peer.v1.Heartbeat",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    // Reflection v1alpha answers too.
    let mut alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel,
        );
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    assert!(responses.next().await.unwrap().is_ok());

    // gRPC-Web over HTTP/1.1: Health/Check with an empty request message.
    let frame = [0u8, 0, 0, 0, 0];
    let r = http1
        .post(hub.url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let body = r.bytes().await.unwrap();
    // Data frame: flag 0, length 2, HealthCheckResponse{status = SERVING (field 1 = 1)}.
    assert_eq!(&body[..7], &[0, 0, 0, 0, 2, 0x08, 0x01]);
    // Then a trailers frame (flag 0x80) carrying grpc-status 0.
    assert_eq!(body[7], 0x80);
    let trailers = String::from_utf8_lossy(&body[12..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    hub.stop().await;
}
