//! The gRPC implementation of [`crate::link::HubLink`]: a client of a hub's `sorcha.peer.v1`
//! services that speaks the wire contract and hands out domain types. Used by the peer role (via
//! [`GrpcDialer`]), the benchmark harness and tests; generated types stay behind it.

use crate::config::Secret;
use crate::error_code::ErrorCode;
use crate::link::{Dialer, HubLink, HubStatus, LinkError, LinkStream};
use crate::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
use crate::wire::convert;
use crate::wire::proto::central_node_connection_client::CentralNodeConnectionClient;
use crate::wire::proto::heartbeat_client::HeartbeatClient;
use crate::wire::proto::system_register_sync_client::SystemRegisterSyncClient;
use crate::wire::proto::{
    CheckpointRequest, DisconnectRequest, HeartbeatStatusRequest, StatusRequest,
    SubscriptionRequest, SyncRequest,
};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

impl From<tonic::Status> for LinkError {
    fn from(s: tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let retry_info = s.get_details_retry_info();
        let info = s
            .get_details_error_info()
            .filter(|i| i.domain == crate::error_table::HUB_DOMAIN);
        let reason = info.as_ref().map(|i| i.reason.as_str());
        let code = crate::error_table::from_grpc(s.code(), retry_info.is_some(), reason);
        let load = info.as_ref().and_then(|i| {
            let number = |key: &str| i.metadata.get(key)?.parse::<u32>().ok();
            Some(crate::protocol::HubLoad {
                sessions: number(crate::error_table::LOAD_SESSIONS_KEY)?,
                cap: number(crate::error_table::LOAD_CAP_KEY)?,
            })
        });
        let retry_after = retry_info.and_then(|r| r.retry_delay);
        // A transport failure (e.g. a TLS handshake) hides its cause in the source chain.
        let mut message = s.message().to_owned();
        let mut source = std::error::Error::source(&s);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        LinkError {
            code,
            message,
            retry_after,
            load,
        }
    }
}

fn transport_error(e: &tonic::transport::Error) -> LinkError {
    let mut message = format!("cannot connect: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    LinkError::new(ErrorCode::Unavailable, message)
}

/// Largest message a hub's answer may be: twice the largest entry, so no valid entry is ever
/// refused for its size.
const MAX_ANSWER_BYTES: usize = 2 * crate::register::validation::BSON_DOCUMENT_LIMIT;

/// How to reach a hub.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Timeout of the connection attempt.
    pub connect_timeout: Duration,
    /// Sent as `peer-id` metadata with `token` (hubs that require peer credentials).
    pub peer_id: Option<String>,
    /// Sent as `authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// PEM CA certificate trusted for `https://` hubs (else the system's roots).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// HTTP/2 keep-alive: a ping this often, and the connection closed when one is not
    /// answered within the second duration (a peer sets both from its heartbeat settings).
    /// `None`: 20 s / 20 s.
    pub keep_alive: Option<(Duration, Duration)>,
}

/// Metadata every call carries: the caller's trace context (W3C `traceparent`, so a peer's
/// sync and the hub's work for it form one trace) and, when configured, peer credentials.
#[derive(Clone)]
pub struct CallMetadata {
    credentials: Option<(AsciiMetadataValue, AsciiMetadataValue)>,
}

impl std::fmt::Debug for CallMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetadata")
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Interceptor for CallMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_context(request.metadata_mut());
        if let Some((peer_id, authorization)) = &self.credentials {
            request.metadata_mut().insert("peer-id", peer_id.clone());
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

type Intercepted = InterceptedService<Channel, CallMetadata>;

/// Client of one hub over gRPC: the wire implementation of [`HubLink`].
#[derive(Debug, Clone)]
pub struct HubClient {
    connection: CentralNodeConnectionClient<Intercepted>,
    sync: SystemRegisterSyncClient<Intercepted>,
    heartbeat: HeartbeatClient<Intercepted>,
}

impl HubClient {
    /// Opens an HTTP/2 channel to `url` (e.g. `http://127.0.0.1:5000`) within `timeout`,
    /// without credentials or a custom CA.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, LinkError> {
        Self::connect_with(
            url,
            &ClientOptions {
                connect_timeout: timeout,
                ..ClientOptions::default()
            },
        )
        .await
    }

    /// Opens an HTTP/2 channel to `url` (`http://` or `https://`) with `options`.
    pub async fn connect_with(url: &str, options: &ClientOptions) -> Result<Self, LinkError> {
        let invalid = |m: String| LinkError::new(ErrorCode::Invalid, m);
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| invalid(format!("hub URL {url:?} is invalid: {e}")))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .keep_alive_while_idle(true);
        let (ping_every, ping_timeout) = options
            .keep_alive
            .unwrap_or((Duration::from_secs(20), Duration::from_secs(20)));
        endpoint = endpoint
            .http2_keep_alive_interval(ping_every)
            .keep_alive_timeout(ping_timeout);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            match &options.ca_cert_pem {
                Some(pem) => tls = tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls = tls.with_native_roots(),
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| invalid(format!("TLS setup for {url} failed: {e}")))?;
        }
        let credentials = match (&options.peer_id, &options.token) {
            (Some(peer_id), Some(token)) => Some((
                AsciiMetadataValue::try_from(peer_id.as_str())
                    .map_err(|_| invalid(format!("peer id {peer_id:?} is not valid metadata")))?,
                AsciiMetadataValue::try_from(format!("Bearer {}", token.expose()))
                    .map_err(|_| invalid("peer token is not valid metadata".into()))?,
            )),
            _ => None,
        };
        let channel = endpoint.connect().await.map_err(|e| transport_error(&e))?;
        let limit = MAX_ANSWER_BYTES;
        let metadata = CallMetadata { credentials };
        Ok(Self {
            connection: CentralNodeConnectionClient::with_interceptor(
                channel.clone(),
                metadata.clone(),
            ),
            sync: SystemRegisterSyncClient::with_interceptor(channel.clone(), metadata.clone())
                .max_decoding_message_size(limit),
            heartbeat: HeartbeatClient::with_interceptor(channel, metadata),
        })
    }
}

#[async_trait]
impl HubLink for HubClient {
    /// Opens a session.
    async fn open_session(&self, request: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
        let response = self
            .connection
            .clone()
            .connect_to_central_node(convert::connect_to_wire(request))
            .await?
            .into_inner();
        Ok(convert::grant_from_wire(response))
    }

    /// Ends a session.
    async fn close_session(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: Goodbye,
        now_ms: i64,
    ) -> Result<(), LinkError> {
        self.connection
            .clone()
            .disconnect_from_central_node(DisconnectRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
                reason: convert::reason_to_wire(goodbye.reason) as i32,
                disconnect_time: now_ms,
                detail: goodbye.detail,
            })
            .await?;
        Ok(())
    }

    /// The hub's head version and hash, node id and peer count.
    async fn status(&self, peer_id: &PeerId) -> Result<HubStatus, LinkError> {
        let s = self
            .connection
            .clone()
            .get_central_node_status(StatusRequest {
                peer_id: peer_id.to_string(),
                include_peer_list: false,
            })
            .await?
            .into_inner();
        Ok(convert::hub_status_from_wire(s))
    }

    /// Streams the whole register (at most `max` entries; `None`: all).
    async fn full_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        let stream = self
            .sync
            .clone()
            .full_sync(SyncRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
                full_sync: true,
                max_blueprints: convert::sync_limit_to_wire(max),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(entries(stream))
    }

    /// Streams entries with `version > after` (at most `max`; `None`: all).
    async fn incremental_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        let stream = self
            .sync
            .clone()
            .incremental_sync(SyncRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
                last_known_version: after,
                max_blueprints: convert::sync_limit_to_wire(max),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(entries(stream))
    }

    /// Subscribes to push notifications after `resume_from` (0 = from now on).
    async fn subscribe(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError> {
        let stream = self
            .sync
            .clone()
            .subscribe_to_push_notifications(SubscriptionRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
                subscribe_time: 0,
                filters: Some(convert::filters_to_wire(filters)),
                resume_from_version: resume_from,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|item| async move {
            match item {
                Ok(n) => convert::notification_from_wire(n).map(Ok),
                Err(s) => Some(Err(LinkError::from(s))),
            }
        })))
    }

    /// The hub's view of this peer's sync progress.
    async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, LinkError> {
        let c = self
            .sync
            .clone()
            .get_sync_checkpoint(CheckpointRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
            })
            .await?
            .into_inner();
        Ok(convert::peer_sync_from_wire(c))
    }

    /// Sends one heartbeat.
    async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
        let ack = self
            .heartbeat
            .clone()
            .send_heartbeat(convert::heartbeat_to_wire(hb))
            .await?
            .into_inner();
        Ok(convert::ack_from_wire(ack))
    }

    /// The hub's heartbeat view of this peer.
    async fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, LinkError> {
        let r = self
            .heartbeat
            .clone()
            .get_heartbeat_status(HeartbeatStatusRequest {
                peer_id: peer_id.to_string(),
                session_id: session_id.to_string(),
            })
            .await?
            .into_inner();
        Ok(convert::report_from_wire(r))
    }
}

fn entries(
    stream: tonic::Streaming<crate::wire::proto::SystemRegisterEntry>,
) -> LinkStream<SyncedEntry> {
    Box::pin(stream.map(|item| item.map(convert::synced_from_wire).map_err(LinkError::from)))
}

/// Dials hubs over gRPC with one set of [`ClientOptions`] (a peer's timeout, credentials and
/// CA).
#[derive(Debug, Clone)]
pub struct GrpcDialer {
    options: ClientOptions,
}

impl GrpcDialer {
    /// A dialer connecting with `options`.
    pub fn new(options: ClientOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Dialer for GrpcDialer {
    async fn dial(&self, url: &str) -> Result<Arc<dyn HubLink>, LinkError> {
        Ok(Arc::new(HubClient::connect_with(url, &self.options).await?))
    }
}
