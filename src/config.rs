//! Typed configuration: defaults < TOML file (`--config`) < environment (`SORCHA_…`) < flags.
//!
//! TOML keys are camelCase (`hub.validateHostname`, `alerts.webhookUrl`). Environment variables
//! use `SORCHA_` plus the path in upper snake case with `__` between sections, e.g.
//! `SORCHA_LISTEN`, `SORCHA_ADMIN_TOKEN`, `SORCHA_HUB__VALIDATE_HOSTNAME`. Durations are
//! written like `250ms`, `30s`, `5m`. Secrets are redacted in `Debug`.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret string (token) that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Secret {
    /// The secret's value; use only to compare or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Which role the node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns the authoritative register.
    Hub,
    /// Replicates from hubs.
    Peer,
    /// Decide from hostname and configuration (SPEC §4).
    Auto,
}

/// What a REST token may do. Every role may read (when `auth.publicReads` is false reads
/// need a token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// May read only.
    Reader,
    /// May publish, update and deprecate.
    Publisher,
    /// May do everything, including admin calls.
    Admin,
}

/// A configured REST bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenConfig {
    /// The bearer token.
    pub token: Secret,
    /// Identity recorded as `publishedBy`.
    pub identity: String,
    /// What the token may do.
    pub role: TokenRole,
}

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
    /// Push streams one session may hold open; one more gets RESOURCE_EXHAUSTED.
    pub max_push_streams_per_session: u32,
    /// Peer credentials. When any are configured, every `sorcha.peer.v1` call must carry
    /// `peer-id` and `authorization: Bearer <token>` metadata matching one of them.
    pub peer_tokens: Vec<PeerTokenConfig>,
    /// Per-peer rate limits.
    pub rate_limits: RateLimitsConfig,
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
            heartbeat: Rate::new(Duration::from_secs(5), 10),
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
            sync_interval: Duration::from_secs(300),
            max_clock_skew: Duration::from_secs(60),
            max_sessions: 10_000,
            max_concurrent_syncs: 2,
            max_push_streams_per_session: 4,
            peer_tokens: Vec::new(),
            rate_limits: RateLimitsConfig::default(),
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
    /// Connect attempts per hub before moving to the next.
    pub attempts_per_hub: u32,
    /// Delay before re-subscribing after a push stream failure.
    #[serde(with = "humantime_serde")]
    pub resubscribe_delay: Duration,
    /// Timeout of one connect attempt.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bearer token sent to hubs (with this node's id as `peer-id`) when they require peer
    /// tokens.
    pub token: Option<Secret>,
    /// PEM file of the CA that signs the hubs' certificates, for `https://` hubs; without
    /// it the system's root certificates are trusted.
    pub ca_cert: Option<PathBuf>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            attempts_per_hub: 10,
            resubscribe_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            token: None,
            ca_cert: None,
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

/// Alerting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertsConfig {
    /// Optional URL that receives a JSON POST per alert.
    pub webhook_url: Option<String>,
}

/// The node's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// Address of the single listener.
    pub listen: SocketAddr,
    /// Data directory (embedded store, generated admin token).
    pub data_dir: PathBuf,
    /// Role.
    pub role: Role,
    /// Node id; defaults to the hostname.
    pub node_id: Option<String>,
    /// Hub URLs in priority order (peers).
    pub hubs: Vec<String>,
    /// `embedded` or a `mongodb://` URI.
    pub store: String,
    /// MongoDB settings.
    pub mongo: MongoConfig,
    /// Admin token (identity `admin`).
    pub admin_token: Option<Secret>,
    /// Further REST tokens.
    pub tokens: Vec<TokenConfig>,
    /// Hub settings.
    pub hub: HubConfig,
    /// Peer settings.
    pub peer: PeerConfig,
    /// SSE settings.
    pub sse: SseConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// Alerts.
    pub alerts: AlertsConfig,
    /// Cross-origin access by browsers.
    pub cors: CorsConfig,
    /// Who may read.
    pub auth: AuthConfig,
    /// Checks of published documents.
    pub validation: ValidationConfig,
    /// Safe retries of writes (`Idempotency-Key`).
    pub idempotency: IdempotencyConfig,
    /// TLS.
    pub tls: TlsConfig,
    /// How long shutdown may take before connections are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

/// Default hub list of a peer.
pub fn default_hubs() -> Vec<String> {
    (0..3)
        .map(|i| format!("http://n{i}.sorcha.dev:5000"))
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("./data"),
            role: Role::Auto,
            node_id: None,
            hubs: Vec::new(),
            store: "embedded".to_owned(),
            mongo: MongoConfig::default(),
            admin_token: None,
            tokens: Vec::new(),
            hub: HubConfig::default(),
            peer: PeerConfig::default(),
            sse: SseConfig::default(),
            limits: LimitsConfig::default(),
            alerts: AlertsConfig::default(),
            cors: CorsConfig::default(),
            auth: AuthConfig::default(),
            validation: ValidationConfig::default(),
            idempotency: IdempotencyConfig::default(),
            tls: TlsConfig::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Turns `HUB__VALIDATE_HOSTNAME` into `hub.validateHostname`.
fn env_key_to_path(key: &str) -> String {
    key.split("__")
        .map(|section| {
            let mut out = String::new();
            for (i, word) in section.split('_').filter(|w| !w.is_empty()).enumerate() {
                let word = word.to_ascii_lowercase();
                if i == 0 {
                    out.push_str(&word);
                } else {
                    let mut chars = word.chars();
                    if let Some(c) = chars.next() {
                        out.push(c.to_ascii_uppercase());
                        out.extend(chars);
                    }
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Config {
    /// Loads defaults < `file` < environment < `overrides` (flags, as a serializable value with
    /// absent flags skipped) and validates the result.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            check_known_keys(file)?;
            figment = figment.merge(Toml::file(file));
        }
        // Client-only variables are not node configuration.
        let env = Env::prefixed("SORCHA_")
            .ignore(&["SERVER", "TOKEN", "CA_CERT", "OUTPUT", "LOG_FORMAT"])
            .map(|key| env_key_to_path(key.as_str()).into())
            .lowercase(false);
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The node's id: `nodeId`, else `hostname` made into a valid id.
    pub fn node_id_or_hostname(&self, hostname: &str) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| crate::register::validation::node_id_from_hostname(hostname))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.store != "embedded"
            && !self.store.starts_with("mongodb://")
            && !self.store.starts_with("mongodb+srv://")
        {
            return err(format!(
                "store {:?} is not supported: use \"embedded\" or a mongodb:// URI",
                self.store
            ));
        }
        if let Some(id) = &self.node_id {
            crate::register::validation::node_id("nodeId", id)
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        for (i, hub) in self.hubs.iter().enumerate() {
            check_hub_url(hub).map_err(|why| {
                ConfigError(format!(
                    "hubs[{i}] {hub:?} is not a hub URL ({why}): write http://host:port or \
                     https://host:port"
                ))
            })?;
        }
        if let Some(path) = &self.peer.ca_cert {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "peer.caCert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return err(format!(
                    "peer.caCert {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        if let Err(e) = regex::Regex::new(&self.hub.hostname_pattern) {
            return err(format!("hub.hostnamePattern is not a valid regex: {e}"));
        }
        for token in &self.tokens {
            if let Err(e) = crate::register::validation::published_by(&token.identity) {
                return err(format!("token identity {:?}: {e}", token.identity));
            }
            if token.token.expose().len() < 16 {
                return err(format!(
                    "token of identity {:?} is shorter than 16 characters",
                    token.identity
                ));
            }
        }
        if self.idempotency.retention.is_zero() {
            return err(
                "idempotency.retention must be above zero: a retry must find its key".into(),
            );
        }
        if self.limits.max_header_bytes < 8192 {
            return err("limits.maxHeaderBytes must be at least 8192".into());
        }
        if self.limits.header_read_timeout.is_zero()
            || self.limits.keep_alive_interval.is_zero()
            || self.limits.keep_alive_timeout.is_zero()
            || self.limits.grpc_call_timeout.is_zero()
        {
            return err("limits: timeouts and intervals must be above zero".into());
        }
        if self.limits.idle_timeout <= self.limits.keep_alive_interval
            || self.limits.idle_timeout <= self.sse.keep_alive
        {
            return err(
                "limits.idleTimeout must exceed limits.keepAliveInterval and sse.keepAlive, \
                 or open streams would be cut"
                    .into(),
            );
        }
        if self.limits.max_concurrent_streams == 0
            || self.sse.max_subscribers == 0
            || self.limits.listen_backlog == 0
        {
            return err(
                "limits.maxConcurrentStreams, limits.listenBacklog and sse.maxSubscribers must \
                 be at least 1"
                    .into(),
            );
        }
        let network_max = crate::register::validation::MAX_DOCUMENT_BYTES;
        if self.limits.max_document_bytes == 0 || self.limits.max_document_bytes > network_max {
            return err(format!(
                "limits.maxDocumentBytes {} is out of range: use 1-{network_max} (the network-wide \
                 limit, so every node and store can hold every entry)",
                self.limits.max_document_bytes
            ));
        }
        if self.limits.max_page_bytes < 64 * 1024 || self.limits.recent_window_bytes == 0 {
            return err(
                "limits.maxPageBytes must be at least 65536 and limits.recentWindowBytes above 0"
                    .into(),
            );
        }
        if self.limits.read_budget_bytes < self.limits.max_page_bytes {
            return err("limits.readBudgetBytes must be at least limits.maxPageBytes".into());
        }
        if self.limits.max_body_bytes < self.limits.max_document_bytes {
            return err("limits.maxBodyBytes must be at least limits.maxDocumentBytes".into());
        }
        if self.hub.heartbeat_interval.is_zero() || self.hub.session_timeout.is_zero() {
            return err("hub.heartbeatInterval and hub.sessionTimeout must be above zero".into());
        }
        if self.hub.max_sessions == 0 {
            return err("hub.maxSessions must be at least 1".into());
        }
        for rate in [
            &self.hub.rate_limits.connect,
            &self.hub.rate_limits.full_sync,
            &self.hub.rate_limits.heartbeat,
        ] {
            if rate.every.is_zero() || rate.burst == 0 {
                return err(
                    "hub.rateLimits: every rate needs `every` above zero and `burst` of at least 1"
                        .into(),
                );
            }
        }
        if self.hub.max_concurrent_syncs == 0 || self.hub.max_push_streams_per_session == 0 {
            return err(
                "hub.maxConcurrentSyncs and hub.maxPushStreamsPerSession must be at least 1".into(),
            );
        }
        for peer in &self.hub.peer_tokens {
            if peer.token.expose().len() < 16 {
                return err(format!(
                    "hub.peerTokens: the token of peer {:?} is shorter than 16 characters",
                    peer.peer_id
                ));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return err("tls.certFile and tls.keyFile must be set together".into());
        }
        if self.sse.keep_alive.is_zero() {
            return err("sse.keepAlive must be above zero".into());
        }
        crate::api::cors::CorsPolicy::new(&self.cors).map_err(ConfigError)?;
        Ok(())
    }
}

/// Checks a hub URL: http or https, a host, nothing but `/` after the authority.
fn check_hub_url(url: &str) -> Result<(), &'static str> {
    let uri: axum::http::Uri = url.parse().map_err(|_| "it does not parse")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("the scheme must be http or https");
    }
    let authority = uri.authority().ok_or("the host is missing")?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err("the host is missing");
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("a hub URL has no path");
    }
    Ok(())
}

/// Refuses a TOML file with a key the configuration does not have (a misspelt section or key
/// would otherwise be ignored and its default used), naming the key and the closest known one.
fn check_known_keys(file: &Path) -> Result<(), ConfigError> {
    use figment::Provider;
    let data = Toml::file(file)
        .data()
        .map_err(|e| ConfigError(format!("{}: {e}", file.display())))?;
    let Some(dict) = data.into_values().next() else {
        return Ok(());
    };
    let value = figment::value::Value::from(dict);
    let mut unknown = Vec::new();
    // Values are checked by the real extraction; only the keys matter here.
    let _ = serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()))
        .map(|_: Config| ());
    let Some(key) = unknown.into_iter().next() else {
        return Ok(());
    };
    let hint = closest_known_key(&key)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Err(ConfigError(format!(
        "{}: unknown key `{key}`{hint}; docs/operations.md lists every key",
        file.display()
    )))
}

/// The known key nearest to `path` (same section, small edit distance), if any.
fn closest_known_key(path: &str) -> Option<String> {
    let defaults = serde_json::to_value(Config::default()).ok()?;
    let (section, name) = path.rsplit_once('.').unwrap_or(("", path));
    let mut siblings = &defaults;
    for part in section.split('.').filter(|p| !p.is_empty()) {
        siblings = siblings.get(part)?;
    }
    siblings
        .as_object()?
        .keys()
        .map(|k| (strsim::damerau_levenshtein(k, name), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min()
        .map(|(_, k)| {
            if section.is_empty() {
                k.clone()
            } else {
                format!("{section}.{k}")
            }
        })
}

/// A configuration that cannot be used; the message says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_camel_case_paths() {
        assert_eq!(env_key_to_path("LISTEN"), "listen");
        assert_eq!(env_key_to_path("ADMIN_TOKEN"), "adminToken");
        assert_eq!(
            env_key_to_path("HUB__VALIDATE_HOSTNAME"),
            "hub.validateHostname"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_with_the_closest_known_one() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            (
                "[hbu]\nenabled = true\n",
                "unknown key `hbu` (did you mean `hub`?)",
            ),
            (
                "[hub]\nheartbeatIntervl = \"5s\"\n",
                "unknown key `hub.heartbeatIntervl` (did you mean `hub.heartbeatInterval`?)",
            ),
            (
                "[hub.rateLimits.connect]\nbrust = 3\n",
                "`hub.rateLimits.connect.burst`",
            ),
            ("lissten = \"127.0.0.1:1\"\n", "(did you mean `listen`?)"),
            (
                "[[tokens]]\ntoken = \"0123456789abcdefgh\"\nidentity = \"ci\"\nrole = \"reader\"\nrol = 1\n",
                "unknown key `tokens.0.rol`",
            ),
            (
                "completelyUnrelatedThing = 1\n",
                "unknown key `completelyUnrelatedThing`;",
            ),
        ] {
            let file = dir.path().join("c.toml");
            std::fs::write(&file, text).unwrap();
            let e = Config::load(Some(&file), serde_json::json!({})).unwrap_err();
            assert!(e.0.contains(expected), "{text}: {e}");
        }
        let file = dir.path().join("ok.toml");
        std::fs::write(
            &file,
            "[hub]\nheartbeatInterval = \"5s\"\n[cors]\nallowedOrigins = [\"http://a.example\"]\n",
        )
        .unwrap();
        assert!(Config::load(Some(&file), serde_json::json!({})).is_ok());
    }

    #[test]
    fn hub_urls_are_checked() {
        for bad in [
            "notaurl",
            "ftp://h:1",
            "http://",
            "http://h:1/path",
            "//h:1",
            "http://u@h:1",
        ] {
            let c = Config {
                hubs: vec![bad.into()],
                ..Config::default()
            };
            let e = c.validate().unwrap_err();
            assert!(e.0.contains("hubs[0]"), "{bad}: {e}");
        }
        let c = Config {
            hubs: vec![
                "http://n0.sorcha.dev:5000".into(),
                "https://h.example/".into(),
            ],
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn secrets_are_redacted() {
        let mut config = Config {
            admin_token: Some(Secret("very-secret-token-value".into())),
            ..Config::default()
        };
        config.hub.peer_tokens.push(PeerTokenConfig {
            peer_id: "p1".into(),
            token: Secret("very-secret-peer-token".into()),
        });
        config.peer.token = Some(Secret("very-secret-own-token".into()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("p1"), "peer ids stay visible");
    }
}
