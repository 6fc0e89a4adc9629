//! The configuration's sections (`hub`, `peer`, `sse`, `limits`, …) and their defaults.

use super::Secret;
use crate::keys::VerifierKey;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Hub-role settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HubConfig {
    /// Force the hub role under `--role auto`.
    pub enabled: bool,
    /// With `enabled`, refuse to start when the hostname does not match `hostnamePattern`.
    pub validate_hostname: bool,
    /// Hostnames of hub nodes.
    pub hostname_pattern: String,
    /// Heartbeat period advertised to peers; also the unit of "missed heartbeats".
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Heartbeat answer timeout advertised to peers.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// A session without heartbeats for this long turns HeartbeatTimeout (its push streams end).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// A timed-out session is removed after this further period.
    #[serde(with = "humantime_serde")]
    pub session_grace: Duration,
    /// How often the hub writes its part of the fleet record (to a shared store) and reads
    /// the other hubs' parts; also how soon a hub that stopped writing stops vouching for
    /// its peers (three of these).
    #[serde(with = "humantime_serde")]
    pub fleet_flush_interval: Duration,
    /// How long the fleet keeps a peer that left, was refused, or went silent for good.
    #[serde(with = "humantime_serde")]
    pub fleet_retention: Duration,
    /// Periodic sync interval advertised to peers.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Largest tolerated difference between a peer's heartbeat timestamp and the hub's clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Most concurrent peer sessions; more get RESOURCE_EXHAUSTED.
    pub max_sessions: usize,
    /// Concurrent syncs a peer may run; advertised in the connection config and enforced
    /// (one more gets RESOURCE_EXHAUSTED).
    pub max_concurrent_syncs: u32,
    /// Full syncs the hub runs at once, all peers together; one more is refused as rate
    /// limited with a jittered retry hint (0.5–1.5 s), so a storm of fresh peers is admitted
    /// a few at a time.
    pub max_concurrent_full_syncs: usize,
    /// Hubs sharing a store: the most sessions a hub holds, in percent of its fair share
    /// (live sessions of every live hub that does not drain ÷ those hubs); a new peer beyond
    /// it is told to try another hub, and a hub above it for three flushes sends peers to
    /// other hubs. 0: no cap and no rebalancing.
    pub fair_share_percent: u32,
    /// The cap is never below this many sessions, so a small fleet connects wherever it asks.
    pub fair_share_floor: usize,
    /// On SIGTERM (or `POST /api/v1/hub/drain`) the hub drains before it stops: it takes no
    /// new peers and sends its own to other hubs one by one, spread over this period. 0: a
    /// SIGTERM stops the hub at once (peers fail over).
    #[serde(with = "humantime_serde")]
    pub drain_period: Duration,
    /// The longest the hub hands out one signature of an unchanged head: every connect
    /// answer, heartbeat acknowledgement and sync stream carries a checkpoint at most this
    /// old, so a peer can tell a source that stopped vouching (`peer.maxCheckpointAge`).
    #[serde(with = "humantime_serde")]
    pub checkpoint_refresh: Duration,
    /// Push streams one session may hold open; one more gets RESOURCE_EXHAUSTED.
    pub max_push_streams_per_session: u32,
    /// Peer credentials. When any are configured, every `sorcha.peer.v1` call must carry
    /// `peer-id` and `authorization: Bearer <token>` metadata matching one of them.
    pub peer_tokens: Vec<PeerTokenConfig>,
    /// Per-peer rate limits.
    pub rate_limits: RateLimitsConfig,
    /// The private key the hub signs its checkpoints with (C2SP signer key format); default
    /// `<dataDir>/hub-signing.key`, generated (mode 0600, named after the node id) on first
    /// start when there is no file.
    pub signing_key_file: Option<PathBuf>,
}

/// A peer's credential on a hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerTokenConfig {
    /// The peer id the token belongs to.
    pub peer_id: String,
    /// The bearer token.
    pub token: Secret,
}

/// A rate: one permit per `every`, with up to `burst` permits at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    /// Time to earn one permit back.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Permits available at once.
    pub burst: u32,
}

impl Rate {
    const fn new(every: Duration, burst: u32) -> Self {
        Self { every, burst }
    }
}

/// Per-peer rate limits on the hub (SPEC §7); over the limit → RESOURCE_EXHAUSTED with a
/// retry delay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitsConfig {
    /// `ConnectToCentralNode` (default one per second, burst 5).
    pub connect: Rate,
    /// `FullSync` (default one per minute, burst 2: a restarted peer may start over once).
    pub full_sync: Rate,
    /// `SendHeartbeat` and `MonitorHeartbeat` messages (default one per 5 s, burst 10).
    pub heartbeat: Rate,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            connect: Rate::new(Duration::from_secs(1), 5),
            full_sync: Rate::new(Duration::from_secs(60), 2),
            heartbeat: Rate::new(Duration::from_secs(1), 10),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            validate_hostname: false,
            hostname_pattern: r"^n[0-2]\.sorcha\.dev$".to_owned(),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(90),
            session_grace: Duration::from_secs(300),
            fleet_flush_interval: Duration::from_secs(1),
            fleet_retention: Duration::from_secs(3600),
            sync_interval: Duration::from_secs(300),
            max_clock_skew: Duration::from_secs(60),
            max_sessions: 10_000,
            max_concurrent_syncs: 2,
            max_concurrent_full_syncs: 16,
            fair_share_percent: 110,
            fair_share_floor: 4,
            drain_period: Duration::from_secs(10),
            checkpoint_refresh: crate::hub::CHECKPOINT_REUSE,
            max_push_streams_per_session: 4,
            peer_tokens: Vec::new(),
            rate_limits: RateLimitsConfig::default(),
            signing_key_file: None,
        }
    }
}

/// Peer-role timings (SPEC §5); all configurable so tests run in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerConfig {
    /// Heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long to wait for a heartbeat answer.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Periodic incremental sync period.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// First reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Connect attempts per hub before moving to the next (a refusal counts as failed at once).
    pub attempts_per_hub: u32,
    /// Delay before re-subscribing after a push stream failure.
    #[serde(with = "humantime_serde")]
    pub resubscribe_delay: Duration,
    /// Timeout of one connect attempt (dialing the hub and its answer to connect).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of every other call to a hub but heartbeats (status, opening a sync or a push
    /// subscription), and of each next entry of a sync stream: a hub that sends nothing for
    /// this long is given up.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bearer token sent to hubs (with this node's id as `peer-id`) when they require peer
    /// tokens.
    pub token: Option<Secret>,
    /// PEM file of the CA that signs the hubs' certificates, for `https://` hubs; without
    /// it the system's root certificates are trusted.
    pub ca_cert: Option<PathBuf>,
    /// Publisher verifier keys (`name+keyid+base64`, a list or one comma-separated string)
    /// that synced entries' signatures are checked against. A signature that does not
    /// verify is logged and counted; with `requireSignatures` it is refused.
    #[serde(deserialize_with = "keys_list")]
    pub publisher_keys: Vec<VerifierKey>,
    /// Refuse to apply synced entries (after genesis) that are not signed by one of
    /// `publisherKeys`: the sync stops, an alert is raised, and the peer moves to the next
    /// hub, as for a fork.
    pub require_signatures: bool,
    /// Hub verifier keys (`name+keyid+base64`, a list or one comma-separated string) whose
    /// checkpoints the peer trusts: a sync applies only entries covered by a checkpoint signed
    /// by one of them, and a hub that sends none, or another key's, is not followed. Empty:
    /// trust on first use, per hub URL.
    #[serde(deserialize_with = "keys_list")]
    pub trusted_hub_keys: Vec<VerifierKey>,
    /// The order the peer tries its hubs in: `priority` (as configured: every peer on the
    /// first hub while it answers) or `spread` (per peer, by rendezvous hashing of its id and
    /// each hub's URL: peers spread evenly, and a lost hub's peers spread over the others).
    pub hub_order: HubOrder,
    /// Also serve the peer protocol to downstream peers from the replica (a relay): connect,
    /// syncs, push, heartbeats, status — handing on the hubs' signed checkpoints, never
    /// signing. Downstream peers list the relay among their `hubs`.
    pub serve_downstream: bool,
    /// A source (hub or relay) whose newest trusted checkpoint is older than this on its own
    /// clock raises `peer.stale_source`: it answers but no longer vouches for new heads (a
    /// relay cut off from its hubs, or one that freezes the view). 0: not checked.
    #[serde(with = "humantime_serde")]
    pub max_checkpoint_age: Duration,
}

/// The order a peer tries its hubs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HubOrder {
    /// As configured (the seed's priority order).
    #[default]
    Priority,
    /// Per peer, by rendezvous (highest random weight) hashing of (peer id, hub URL).
    Spread,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            attempts_per_hub: 3,
            resubscribe_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            token: None,
            ca_cert: None,
            publisher_keys: Vec::new(),
            require_signatures: false,
            trusted_hub_keys: Vec::new(),
            hub_order: HubOrder::Priority,
            serve_downstream: false,
            max_checkpoint_age: Duration::from_secs(300),
        }
    }
}

/// Server-Sent Events settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SseConfig {
    /// Interval of comment keep-alives.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Reconnect delay advertised once with `retry:`.
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// Most concurrent SSE subscribers; more get 503 with `Retry-After`.
    pub max_subscribers: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            max_subscribers: 20_000,
        }
    }
}

/// Size limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LimitsConfig {
    /// Largest blueprint document in canonical bytes; at most (and by default)
    /// [`crate::register::validation::MAX_DOCUMENT_BYTES`], the network-wide limit.
    pub max_document_bytes: usize,
    /// Largest request body in bytes (document plus envelope and JSON escaping).
    pub max_body_bytes: usize,
    /// Largest gRPC request message a hub accepts (peers send small requests); larger ones
    /// get RESOURCE_EXHAUSTED.
    pub max_grpc_request_bytes: usize,
    /// Largest request head: HTTP/1.1 request line and headers, HTTP/2 header list (gRPC
    /// metadata). At least 8192.
    pub max_header_bytes: usize,
    /// An HTTP/1.1 client must deliver a complete request head within this.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// HTTP/2 connections are pinged this often when idle...
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// ...and closed when a ping is not answered within this.
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed. Must exceed
    /// `keepAliveInterval` and `sse.keepAlive`, which keep open streams busy.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection (gRPC calls, SSE streams).
    pub max_concurrent_streams: u32,
    /// Connections the kernel queues for the node before it accepts them (the listen
    /// backlog; the kernel caps it at `net.core.somaxconn`). A hub facing thousands of peers
    /// reconnecting at once needs a deep queue, or the kernel drops and resets connections.
    pub listen_backlog: u32,
    /// A gRPC call must produce its response (for streams: start streaming) within this, or
    /// it ends with DEADLINE_EXCEEDED.
    #[serde(with = "humantime_serde")]
    pub grpc_call_timeout: Duration,
    /// Bytes the recent window of newest entries may hold, entries and their derived
    /// encodings (event frames, push summaries) counted together; followers behind it read
    /// from the store.
    pub recent_window_bytes: usize,
    /// Every read of many entries (REST pages, sync streams and their batches on the peer,
    /// replays, verification) ends a page before its entries exceed this many bytes; a page
    /// always holds at least one entry.
    pub max_page_bytes: usize,
    /// Node-wide budget of bytes in flight on read paths: reads size what they will load and
    /// take it from this budget first, so concurrent large reads queue instead of
    /// multiplying memory.
    pub read_budget_bytes: usize,
    /// How long a REST read waits for room in the read budget before answering 503 with
    /// `Retry-After` (streams and syncs wait as long as it takes).
    #[serde(with = "humantime_serde")]
    pub read_budget_wait: Duration,
    /// Every call to the register store (MongoDB or the embedded file) must answer within
    /// this, its wait for a slot included, or it fails with 503 + `Retry-After` /
    /// `UNAVAILABLE`.
    #[serde(with = "humantime_serde")]
    pub store_call_timeout: Duration,
    /// How long a store read waits for one of `storeCalls` slots before failing the same way
    /// (a write waits for its slot within `storeCallTimeout`: writes queue behind one another).
    #[serde(with = "humantime_serde")]
    pub store_call_wait: Duration,
    /// Store reads in flight at once, and with MongoDB as many writes (the driver's
    /// connection pool holds both, plus two connections for following other hubs' appends);
    /// the embedded store's writer takes every queued write in one group commit.
    pub store_calls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_document_bytes: crate::register::validation::MAX_DOCUMENT_BYTES,
            max_body_bytes: 17 * 1024 * 1024,
            max_grpc_request_bytes: 4 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            max_concurrent_streams: 1024,
            listen_backlog: 4096,
            grpc_call_timeout: Duration::from_secs(30),
            recent_window_bytes: crate::register::DEFAULT_WINDOW_BYTES,
            max_page_bytes: crate::register::DEFAULT_PAGE_BYTES,
            read_budget_bytes: crate::register::DEFAULT_READ_BUDGET_BYTES,
            read_budget_wait: Duration::from_secs(2),
            store_call_timeout: Duration::from_secs(10),
            store_call_wait: Duration::from_secs(2),
            store_calls: 10,
        }
    }
}

/// TLS on the single port (SPEC §7): set both files to serve HTTPS, h2 over TLS and gRPC
/// over TLS; leave both unset for plain HTTP/1.1 + h2c (local use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// A connection that has not finished its TLS handshake by then is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsConfig {
    /// True when the node serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// MongoDB store settings (with `store = "mongodb://…"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MongoConfig {
    /// Database name.
    pub database: String,
    /// How often the head is polled for appends by other hubs (change streams are used too
    /// when the server has them).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a call waits for a reachable server before failing with 503 / UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub server_timeout: Duration,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            database: "sorcha_register".to_owned(),
            poll_interval: Duration::from_millis(500),
            server_timeout: Duration::from_secs(5),
        }
    }
}

/// Cross-origin access by browsers (CORS), one policy for REST, the event stream and
/// gRPC-Web.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CorsConfig {
    /// Origins (`scheme://host[:port]`) whose pages may call this node, or `["*"]` for any.
    /// Empty (the default): same-origin pages only, such as the dashboard. The environment
    /// variable takes a comma-separated list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
    /// Let allowed pages send credentials (cookies, HTTP authentication); never with `*`.
    pub allow_credentials: bool,
}

/// Checks of published documents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ValidationConfig {
    /// `none` (default), `sorcha` (the Sorcha blueprint format) or the path of a JSON Schema
    /// file (draft 2020-12) every published or updated document must satisfy (hubs only).
    pub blueprint_schema: String,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            blueprint_schema: "none".to_owned(),
        }
    }
}

/// Safe retries of writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdempotencyConfig {
    /// How long a hub remembers an `Idempotency-Key` (and so replays a retry of its request);
    /// older keys are forgotten and deleted by the hub's housekeeping.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            retention: crate::register::DEFAULT_IDEMPOTENCY_RETENTION,
        }
    }
}

/// Who may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthConfig {
    /// Reads (REST, the dashboard's, the event stream) need no token. When false they need
    /// a token of any role; `/health` and `/ready` stay open.
    pub public_reads: bool,
    /// `/metrics` needs no token. When false it needs a token of any role.
    pub public_metrics: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_reads: true,
            public_metrics: true,
        }
    }
}

/// A list given as a TOML list or as one comma-separated string (environment variables).
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(list) => list,
        ListOrText::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// A list of verifier keys given as a TOML list or one comma-separated string.
fn keys_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<VerifierKey>, D::Error> {
    list_or_comma_separated(deserializer)?
        .iter()
        .map(|k| VerifierKey::parse(k).map_err(serde::de::Error::custom))
        .collect()
}

/// A publisher identity and the keys it signs with (`[[publishers]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherConfig {
    /// The token identity (`tokens[].identity`, or `admin`) that publishes.
    pub identity: String,
    /// Verifier keys (`name+keyid+base64`) its publications may be signed with.
    #[serde(deserialize_with = "keys_list")]
    pub keys: Vec<VerifierKey>,
    /// Keys it signed with before a rotation: stored entries signed by them still verify,
    /// new publications signed by them are refused.
    #[serde(default, deserialize_with = "keys_list")]
    pub retired_keys: Vec<VerifierKey>,
}

/// Publisher signatures on a hub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SignaturesConfig {
    /// Refuse publications that carry no signature by one of the publishing identity's
    /// `[[publishers]] keys` (422, nothing written).
    pub require: bool,
}

/// Alerting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertsConfig {
    /// Optional URL that receives a JSON POST per alert.
    pub webhook_url: Option<String>,
}
