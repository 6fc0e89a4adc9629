//! OTLP export: a hub and a peer (real processes) export spans to an in-process OTLP/gRPC
//! receiver; the peer's sync and the hub's work for it share one trace id.

use crate::support::{ADMIN, get_json, spawn_node_env, wait_for};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use std::sync::{Arc, Mutex};

/// (service instance, span name, trace id) of every span received.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let instance = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.instance.id")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((instance.clone(), span.name, span.trace_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_one_sync_form_one_trace_across_peer_and_hub() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Collector(Arc::clone(&received))))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("RUST_LOG", "info"),
    ];
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = spawn_node_env(hub_dir.path(), &["--node-id", "otel-hub"], &otel).await;
    for i in 0..3 {
        let (status, _) = crate::support::publish(
            &reqwest::Client::new(),
            hub.addr,
            ADMIN,
            &format!("o-{i}"),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let peer_dir = tempfile::tempdir().unwrap();
    let hub_url = format!("http://{}", hub.addr);
    let peer = spawn_node_env(
        peer_dir.path(),
        &[
            "--role",
            "peer",
            "--hub",
            &hub_url,
            "--node-id",
            "otel-peer",
        ],
        &otel,
    )
    .await;
    wait_for("peer synced", || async {
        (get_json(peer.addr, "/api/v1/system-register").await["headVersion"] == 4).then_some(())
    })
    .await;

    let (trace, hub_spans) = wait_for("a peer sync span and hub spans in its trace", || async {
        let got = received.lock().unwrap().clone();
        let sync = got
            .iter()
            .find(|(node, name, _)| node == "otel-peer" && name == "sync")?;
        let hub_spans: Vec<String> = got
            .iter()
            .filter(|(node, _, trace)| node == "otel-hub" && *trace == sync.2)
            .map(|(_, name, _)| name.clone())
            .collect();
        hub_spans
            .iter()
            .any(|n| n == "sync_stream")
            .then(|| (sync.2.clone(), hub_spans))
    })
    .await;
    assert_eq!(trace.len(), 16);
    assert!(hub_spans.iter().any(|n| n == "grpc"), "{hub_spans:?}");
    // Publishes on the hub were traced too.
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(node, name, _)| node == "otel-hub" && name == "publish")
    );
    drop((hub, peer));
}
