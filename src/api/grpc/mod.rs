//! gRPC on the shared port: the generated `sorcha.peer.v1` contract, `grpc.health.v1` and
//! server reflection (v1 and v1alpha), all reachable over h2c and gRPC-Web.

pub mod connection;
pub mod heartbeat;
pub mod peer_auth;
pub mod status;
pub mod sync;

use crate::hub::Hub;
use crate::wire::proto;
use axum::Router;
use std::sync::Arc;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Service names reported by `grpc.health.v1`: the whole server ("") and each contract service.
pub const HEALTH_SERVICES: [&str; 4] = [
    "",
    "sorcha.peer.v1.CentralNodeConnection",
    "sorcha.peer.v1.SystemRegisterSync",
    "sorcha.peer.v1.Heartbeat",
];

/// Builds the gRPC routes — the three Sorcha services when this node is a hub, health and
/// reflection always — as an axum router with gRPC-Web support; returns the health reporter
/// so shutdown can report NOT_SERVING.
pub async fn router(
    hub: Option<Arc<Hub>>,
    credentials: peer_auth::PeerCredentials,
    limits: &crate::config::LimitsConfig,
) -> Result<(Router, HealthReporter), tonic_reflection::server::Error> {
    let max_request_bytes = limits.max_grpc_request_bytes;
    let call_timeout = limits.grpc_call_timeout;
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in HEALTH_SERVICES {
        reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    // Connects refused for their credentials are listed in the hub's fleet as `refused`.
    let refusals = hub.clone();
    let mut routes = tonic::service::Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    if let Some(hub) = hub {
        routes = routes
            .add_service(
                proto::central_node_connection_server::CentralNodeConnectionServer::new(
                    connection::ConnectionService {
                        hub: Arc::clone(&hub),
                    },
                )
                .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                proto::system_register_sync_server::SystemRegisterSyncServer::new(
                    sync::SyncService {
                        hub: Arc::clone(&hub),
                    },
                )
                .max_decoding_message_size(max_request_bytes),
            )
            .add_service(
                proto::heartbeat_server::HeartbeatServer::new(heartbeat::HeartbeatService { hub })
                    .max_decoding_message_size(max_request_bytes),
            );
    }
    let router = routes
        .into_axum_router()
        .layer(axum::middleware::from_fn(move |request, next| {
            call_deadline(call_timeout, request, next)
        }))
        .layer(axum::middleware::from_fn(
            request_errors_are_invalid_arguments,
        ))
        .layer(axum::middleware::from_fn(trace_context))
        .layer(axum::middleware::from_fn(move |request, next| {
            peer_auth::require_peer(credentials.clone(), refusals.clone(), request, next)
        }))
        .layer(tonic_web::GrpcWebLayer::new());
    Ok((router, reporter))
}

/// Runs each gRPC call in a span that continues the caller's trace (W3C `traceparent`).
async fn trace_context(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = tracing::info_span!("grpc", path = %request.uri().path());
    crate::telemetry::adopt_context(&span, request.headers());
    next.run(request).instrument(span).await
}

/// Bounds the time a call may take to produce its response — the whole of a unary call, the
/// setup of a stream (streams then run as long as the peer reads them).
async fn call_deadline(
    timeout: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, timeout_ms = timeout.as_millis() as u64, "gRPC call timed out");
            status::status(
                crate::error_code::ErrorCode::Timeout,
                format!(
                    "the hub did not answer within limits.grpcCallTimeout ({} ms)",
                    timeout.as_millis()
                ),
            )
            .into_http::<axum::body::Body>()
        }
    }
}

/// tonic reports a request it cannot decode (malformed protobuf, invalid UTF-8 in a string,
/// a truncated frame) as INTERNAL and an oversized one as OUT_OF_RANGE; the contract keeps
/// INTERNAL for our own bugs. This rewrites those answers (always trailers-only: the request
/// is decoded before any reply) to INVALID_ARGUMENT and RESOURCE_EXHAUSTED, keeping the
/// message that says what was wrong.
///
/// Why by message text: tonic makes these statuses inside its own stream decoder (frame
/// length, truncated frame, prost's error) and hands them on as plain statuses; no hook sees
/// a typed cause. Our codec (`wire::codec`) sees prost's errors only, and serves the client as
/// well, where a hub's malformed reply must stay INTERNAL (INVALID_ARGUMENT would be a
/// permanent refusal to a peer). The texts are pinned by the `G04`–`G06`, `G18` and `G20`
/// cases of `robustness::every_bad_input_gets_a_clear_answer_and_nothing_stored_changes`, so a
/// tonic that words them differently fails the test command rather than answering INTERNAL.
async fn request_errors_are_invalid_arguments(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let rewritten = match status {
        // Messages are percent-encoded on the wire.
        Some("13")
            if message.starts_with("failed%20to%20decode")
                || message.starts_with("Unexpected%20EOF") =>
        {
            Some("3")
        }
        Some("11") if message.contains("message%20length%20too%20large") => Some("8"),
        _ => None,
    };
    if let Some(code) = rewritten {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static(code));
    }
    response
}

/// Marks every service NOT_SERVING (at shutdown).
pub async fn report_not_serving(reporter: &HealthReporter) {
    for service in HEALTH_SERVICES {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}
