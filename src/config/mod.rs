//! Typed configuration: defaults < TOML file (`--config`) < environment (`SORCHA_…`) < flags.
//!
//! TOML keys are camelCase (`hub.validateHostname`, `alerts.webhookUrl`). Environment variables
//! use `SORCHA_` plus the path in upper snake case with `__` between sections, e.g.
//! `SORCHA_LISTEN`, `SORCHA_ADMIN_TOKEN`, `SORCHA_HUB__VALIDATE_HOSTNAME`. Durations are
//! written like `250ms`, `30s`, `5m`. Secrets are redacted in `Debug`.
//!
//! This file holds the whole configuration and its top-level values; the sections are in
//! `sections`, loading (layers, environment names, unknown keys) in `load` and the rules
//! checked at start-up in `validate`.

mod load;
mod sections;
mod validate;

pub use sections::*;
pub use validate::{Settings, StoreKind};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Publisher identities and the keys they sign with (`[[publishers]]`, hubs).
    pub publishers: Vec<PublisherConfig>,
    /// Publisher signatures (hubs).
    pub signatures: SignaturesConfig,
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
            publishers: Vec::new(),
            signatures: SignaturesConfig::default(),
            tls: TlsConfig::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The node's id: `nodeId`, else `hostname` made into a valid id.
    pub fn node_id_or_hostname(&self, hostname: &str) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| crate::protocol::PeerId::from_hostname(hostname).to_string())
    }
}

/// A configuration that cannot be used; the message says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

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
