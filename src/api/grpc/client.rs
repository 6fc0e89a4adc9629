//! A typed client of a hub's `sorcha.peer.v1` services: speaks the wire contract, hands out
//! domain types. Used by the peer role and by tests; generated types stay behind it.

use super::convert;
use super::proto::central_node_connection_client::CentralNodeConnectionClient;
use super::proto::heartbeat_client::HeartbeatClient;
use super::proto::system_register_sync_client::SystemRegisterSyncClient;
use super::proto::{
    CheckpointRequest, DisconnectRequest, HeartbeatStatusRequest, StatusRequest,
    SubscriptionRequest, SyncRequest,
};
use crate::config::Secret;
use crate::protocol::{
    CheckpointView, ConnectRequest, ConnectionGrant, DisconnectReason, Filters, Heartbeat,
    HeartbeatAck, HeartbeatReport, Notification,
};
use crate::register::entry::Entry;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// What kind of failure a hub call had (the gRPC code, in domain terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// Bad input.
    InvalidArgument,
    /// Missing or unknown credentials.
    Unauthenticated,
    /// Known but not allowed.
    PermissionDenied,
    /// Unknown session.
    NotFound,
    /// Hub-to-hub connection, heartbeat before connect.
    FailedPrecondition,
    /// Rate limit or capacity.
    ResourceExhausted,
    /// Hub down, unreachable, not ready or shutting down.
    Unavailable,
    /// The call took too long.
    Timeout,
    /// Anything else.
    Other,
}

/// A failed hub call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ClientError {
    /// The kind of failure.
    pub kind: ClientErrorKind,
    /// The hub's (or transport's) message.
    pub message: String,
    /// How long the hub asked us to wait before retrying (rate limits).
    pub retry_after: Option<Duration>,
}

impl ClientError {
    /// True when the hub refused the caller itself (its id or credentials), which retrying
    /// cannot change.
    pub fn is_permanent_refusal(&self) -> bool {
        matches!(
            self.kind,
            ClientErrorKind::InvalidArgument
                | ClientErrorKind::Unauthenticated
                | ClientErrorKind::PermissionDenied
        )
    }

    /// An error of `kind` without a retry hint.
    pub fn new(kind: ClientErrorKind, message: String) -> Self {
        Self {
            kind,
            message,
            retry_after: None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        use tonic_types::StatusExt;
        let kind = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => ClientErrorKind::InvalidArgument,
            Code::Unauthenticated => ClientErrorKind::Unauthenticated,
            Code::PermissionDenied => ClientErrorKind::PermissionDenied,
            Code::NotFound => ClientErrorKind::NotFound,
            Code::FailedPrecondition => ClientErrorKind::FailedPrecondition,
            Code::ResourceExhausted => ClientErrorKind::ResourceExhausted,
            Code::Unavailable | Code::Cancelled | Code::Aborted => ClientErrorKind::Unavailable,
            Code::DeadlineExceeded => ClientErrorKind::Timeout,
            _ => ClientErrorKind::Other,
        };
        let retry_after = s.get_details_retry_info().and_then(|r| r.retry_delay);
        // A transport failure (e.g. a TLS handshake) hides its cause in the source chain.
        let mut message = s.message().to_owned();
        let mut source = std::error::Error::source(&s);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        ClientError {
            kind,
            message,
            retry_after,
        }
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(e: tonic::transport::Error) -> Self {
        let mut message = format!("cannot connect: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        ClientError::new(ClientErrorKind::Unavailable, message)
    }
}

/// A stream of domain items from the hub.
pub type ClientStream<T> = Pin<Box<dyn Stream<Item = Result<T, ClientError>> + Send>>;

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

/// Client of one hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    url: String,
    connection: CentralNodeConnectionClient<Intercepted>,
    sync: SystemRegisterSyncClient<Intercepted>,
    heartbeat: HeartbeatClient<Intercepted>,
}

impl HubClient {
    /// Opens an HTTP/2 channel to `url` (e.g. `http://127.0.0.1:5000`) within `timeout`,
    /// without credentials or a custom CA.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, ClientError> {
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
    pub async fn connect_with(url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let invalid = |m: String| ClientError::new(ClientErrorKind::InvalidArgument, m);
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| invalid(format!("hub URL {url:?} is invalid: {e}")))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
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
        let channel = endpoint.connect().await?;
        // Entries may be up to 16 MiB of document plus envelope.
        let limit = 32 * 1024 * 1024;
        let metadata = CallMetadata { credentials };
        Ok(Self {
            url: url.to_owned(),
            connection: CentralNodeConnectionClient::with_interceptor(
                channel.clone(),
                metadata.clone(),
            ),
            sync: SystemRegisterSyncClient::with_interceptor(channel.clone(), metadata.clone())
                .max_decoding_message_size(limit),
            heartbeat: HeartbeatClient::with_interceptor(channel, metadata),
        })
    }

    /// The hub's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens a session.
    pub async fn open_session(
        &mut self,
        request: &ConnectRequest,
    ) -> Result<ConnectionGrant, ClientError> {
        let response = self
            .connection
            .connect_to_central_node(convert::connect_to_wire(request))
            .await?
            .into_inner();
        Ok(convert::grant_from_wire(response))
    }

    /// Ends a session.
    pub async fn close_session(
        &mut self,
        peer_id: &str,
        session_id: &str,
        reason: DisconnectReason,
        now_ms: i64,
    ) -> Result<(), ClientError> {
        self.connection
            .disconnect_from_central_node(DisconnectRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
                reason: convert::reason_to_wire(reason) as i32,
                disconnect_time: now_ms,
            })
            .await?;
        Ok(())
    }

    /// The hub's head version and hash, node id and peer count.
    pub async fn status(
        &mut self,
        peer_id: &str,
    ) -> Result<(String, i64, String, i32), ClientError> {
        let s = self
            .connection
            .get_central_node_status(StatusRequest {
                peer_id: peer_id.to_owned(),
                include_peer_list: false,
            })
            .await?
            .into_inner();
        Ok((
            s.node_id,
            s.current_system_register_version,
            s.head_hash,
            s.active_peer_count,
        ))
    }

    fn entries(stream: tonic::Streaming<super::proto::SystemRegisterEntry>) -> ClientStream<Entry> {
        Box::pin(stream.map(|item| {
            item.map(convert::entry_from_wire)
                .map_err(ClientError::from)
        }))
    }

    /// Streams the whole register (at most `max` entries; 0 = all).
    pub async fn full_sync(
        &mut self,
        peer_id: &str,
        session_id: &str,
        max: i32,
    ) -> Result<ClientStream<Entry>, ClientError> {
        let stream = self
            .sync
            .full_sync(SyncRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
                full_sync: true,
                max_blueprints: max,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(Self::entries(stream))
    }

    /// Streams entries with `version > after` (at most `max`; 0 = all).
    pub async fn incremental_sync(
        &mut self,
        peer_id: &str,
        session_id: &str,
        after: i64,
        max: i32,
    ) -> Result<ClientStream<Entry>, ClientError> {
        let stream = self
            .sync
            .incremental_sync(SyncRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
                last_known_version: after,
                max_blueprints: max,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(Self::entries(stream))
    }

    /// Subscribes to push notifications after `resume_from` (0 = from now on).
    pub async fn subscribe(
        &mut self,
        peer_id: &str,
        session_id: &str,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<ClientStream<Notification>, ClientError> {
        let stream = self
            .sync
            .subscribe_to_push_notifications(SubscriptionRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
                subscribe_time: 0,
                filters: Some(convert::filters_to_wire(filters)),
                resume_from_version: resume_from,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|item| async move {
            match item {
                Ok(n) => convert::notification_from_wire(n).map(Ok),
                Err(s) => Some(Err(ClientError::from(s))),
            }
        })))
    }

    /// The hub's view of this peer's sync progress.
    pub async fn checkpoint(
        &mut self,
        peer_id: &str,
        session_id: &str,
    ) -> Result<CheckpointView, ClientError> {
        let c = self
            .sync
            .get_sync_checkpoint(CheckpointRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
            })
            .await?
            .into_inner();
        Ok(convert::checkpoint_from_wire(c))
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&mut self, hb: &Heartbeat) -> Result<HeartbeatAck, ClientError> {
        let ack = self
            .heartbeat
            .send_heartbeat(convert::heartbeat_to_wire(hb))
            .await?
            .into_inner();
        Ok(convert::ack_from_wire(ack))
    }

    /// The hub's heartbeat view of this peer.
    pub async fn heartbeat_status(
        &mut self,
        peer_id: &str,
        session_id: &str,
    ) -> Result<HeartbeatReport, ClientError> {
        let r = self
            .heartbeat
            .get_heartbeat_status(HeartbeatStatusRequest {
                peer_id: peer_id.to_owned(),
                session_id: session_id.to_owned(),
            })
            .await?
            .into_inner();
        Ok(convert::report_from_wire(r))
    }
}
