//! Command line: `serve` and the client subcommands (`publish`, `deprecate`, `blueprints`,
//! `status`, `watch`, `verify`). Client commands talk to a node's REST API.

pub mod client;
pub mod commands;
pub mod fleet;
pub mod signing;

use crate::config::Role;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// sorcha-peer: hub and peer node of the Sorcha blueprint-distribution network.
#[derive(Debug, Parser)]
#[command(name = "sorcha-peer", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SORCHA_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (hub or peer) on one port.
    Serve(Box<ServeArgs>),
    /// Publish a blueprint document from a JSON file (`-` for stdin).
    Publish(PublishArgs),
    /// Deprecate a blueprint.
    Deprecate(DeprecateArgs),
    /// Read blueprints.
    Blueprints {
        /// Which listing.
        #[command(subcommand)]
        command: BlueprintsCommand,
    },
    /// Show a node's state.
    Status(ClientArgs),
    /// List the fleet: every peer of every hub sharing the hub's store, in its state.
    Fleet(FleetArgs),
    /// Print register events as they happen (tails the SSE feed).
    Watch(WatchArgs),
    /// Check the register's integrity: offline with --data-dir, else through --server.
    Verify(VerifyArgs),
    /// Make an Ed25519 key pair for signing publications (or a hub's checkpoints).
    Keygen(KeygenArgs),
    /// Fetch a hub's signed checkpoint and verify it against trusted hub keys.
    Checkpoint(CheckpointArgs),
}

/// Flags of `checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// A trusted hub verifier key (`name+keyid+base64`), repeatable. Without one the note is
    /// shown, marked unverified.
    #[arg(long = "trust", value_name = "VKEY")]
    pub trust: Vec<crate::keys::VerifierKey>,
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name (no spaces, no `+`), e.g. the publisher's identity.
    #[arg(long)]
    pub name: String,
    /// Where to write the private key (mode 0600; never overwritten); the verifier key goes
    /// to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Flags of `serve`; each overrides the config file and environment.
#[derive(Debug, Args, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:5000).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Data directory (default ./data).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Role: hub, peer or auto.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Node id (default: hostname).
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Hub URL, repeatable, in priority order (peers).
    #[arg(long = "hub", value_name = "URL")]
    #[serde(rename = "hubs", skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<String>,
    /// Store: `embedded` (default) or a mongodb:// URI.
    #[arg(long, value_name = "URI")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Admin token (identity `admin`); also SORCHA_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Peer timings and trust.
    #[command(flatten)]
    pub peer: PeerFlags,
    /// Alerts.
    #[command(flatten)]
    pub alerts: AlertFlags,
    /// Cross-origin access.
    #[command(flatten)]
    pub cors: CorsFlags,
}

/// CORS flags.
#[derive(Debug, Args, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorsFlags {
    /// Origin whose pages may call this node (`scheme://host[:port]`, or `*`), repeatable;
    /// replaces `cors.allowedOrigins`.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    #[serde(rename = "allowedOrigins", skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// Peer flags: timings (durations like 250ms, 30s, 5m) and trusted hub keys.
#[derive(Debug, Args, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PeerFlags {
    /// Heartbeat period.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
    /// Heartbeat answer timeout.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<String>,
    /// Periodic sync period.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<String>,
    /// First reconnect delay.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_initial: Option<String>,
    /// Largest reconnect delay.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<String>,
    /// Connect attempts per hub.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_per_hub: Option<u32>,
    /// Delay before re-subscribing after a push stream failure.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resubscribe_delay: Option<String>,
    /// Timeout of one connect attempt.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Deadline of other hub calls and of each next entry of a sync stream.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// A hub verifier key (`name+keyid+base64`) whose checkpoints this peer trusts,
    /// repeatable; replaces `peer.trustedHubKeys`.
    #[arg(long = "trust-hub-key", value_name = "VKEY")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_hub_keys: Vec<String>,
    /// The order hubs are tried in: `priority` (as given) or `spread` (per peer, rendezvous
    /// hashing; peers spread over the hubs).
    #[arg(long, value_name = "ORDER", value_parser = ["priority", "spread"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_order: Option<String>,
    /// Serve downstream peers from this peer's replica (a relay); sets
    /// `peer.serveDownstream`.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub serve_downstream: bool,
}

/// Alert flags.
#[derive(Debug, Args, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlertFlags {
    /// URL that receives a JSON POST per alert.
    #[arg(long = "alert-webhook", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl ServeArgs {
    /// The flags as a config overlay (absent flags left out).
    pub fn overrides(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        // Nested sections are merged by figment; drop empty ones to keep the overlay minimal.
        if let Some(map) = value.as_object_mut() {
            map.retain(|_, v| !matches!(v, serde_json::Value::Object(o) if o.is_empty()));
        }
        value
    }
}

/// How a client command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// The node's JSON answer, for scripts (one document; `watch`: one per line).
    Json,
}

/// Where a client command connects.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Print text for people or the JSON answer for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text, env = "SORCHA_OUTPUT")]
    pub output: Output,
    /// Node URL.
    #[arg(long, env = "SORCHA_SERVER", default_value = "http://127.0.0.1:5000")]
    pub server: String,
    /// Bearer token for writes.
    #[arg(long, env = "SORCHA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// node (else the system's roots).
    #[arg(long, env = "SORCHA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The longest the node may stay silent before or within an answer ("120s"); connecting
    /// has 10 s.
    #[arg(long, env = "SORCHA_READ_TIMEOUT", value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub read_timeout: std::time::Duration,
}

/// Flags of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// JSON file holding the document (`-` for stdin).
    pub file: PathBuf,
    /// Blueprint id.
    #[arg(long)]
    pub id: String,
    /// Publish a new version of an existing blueprint (PUT) instead of a new blueprint.
    #[arg(long)]
    pub update: bool,
    /// Metadata `key=value`, repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// External transaction reference.
    #[arg(long)]
    pub transaction_id: Option<String>,
    /// Sign the publication with this private key file (from `keygen`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Retries.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Waiting for the fleet.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How a write command waits for the fleet to hold what it wrote.
#[derive(Debug, Args, Clone, Copy)]
pub struct WaitArgs {
    /// After the write, show a progress bar until this share of the fleet's peers holds it
    /// ("95%", "100%" or "0.95"; the hub counts the peers it knew at the commit). Exits 3,
    /// naming the peers still pending, when `--wait-timeout` passes first. Needs a hub.
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    pub wait: Option<f64>,
    /// The longest `--wait` ("30s", "2m"; at most 5m per request, repeated up to this).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
}

/// Flags of `fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Only peers in this state (synced, behind, stale, refused, disconnected).
    #[arg(long)]
    pub state: Option<String>,
    /// Only peers of this hub.
    #[arg(long)]
    pub hub: Option<String>,
    /// Connection (a hub).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A share of the fleet: "95%" or "0.95", from 0 to 1.
pub fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    value
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a share of the fleet: use 0%-100% or 0-1 (\"95%\")"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (\"30s\"): {e}"))
}

/// How a write command retries.
#[derive(Debug, Args, Clone, Copy)]
pub struct RetryArgs {
    /// Retries after a transient failure (connection error, 503), waiting 250 ms doubling to
    /// 5 s (or the node's Retry-After). Every attempt carries the command's one
    /// Idempotency-Key, so a write whose answer was lost is not made twice.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
}

/// Flags of `deprecate`.
#[derive(Debug, Args)]
pub struct DeprecateArgs {
    /// Blueprint id.
    pub id: String,
    /// Metadata `key=value` of the deprecation entry, repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// Sign the deprecation with this private key file (from `keygen`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Retries.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Waiting for the fleet.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `blueprints` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlueprintsCommand {
    /// List current blueprints.
    List {
        /// Only active (true) or deprecated (false) blueprints.
        #[arg(long)]
        active: Option<bool>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a blueprint's newest entry (with its document) as JSON.
    Get {
        /// Blueprint id.
        id: String,
        /// Print every entry of the blueprint instead.
        #[arg(long)]
        history: bool,
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Flags of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Replay entries after this version first.
    #[arg(long)]
    pub since: Option<i64>,
    /// Only this blueprint.
    #[arg(long)]
    pub blueprint_id: Option<String>,
    /// Only this type (published, updated, deprecated).
    #[arg(long = "type")]
    pub entry_type: Option<String>,
    /// Print each event's JSON data instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check this data directory offline (the node using it must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: also check every publisher signature against the verifier keys in
    /// this file (one `name+keyid+base64` per line; `#` starts a comment).
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    pub publisher_keys: Option<PathBuf>,
    /// With --data-dir: also check that the replica holds what this hub checkpoint (a signed
    /// note, as `GET /api/v1/system-register/checkpoint` serves it) vouches for.
    #[arg(long, value_name = "FILE", requires_all = ["data_dir", "trust"])]
    pub checkpoint: Option<PathBuf>,
    /// A hub verifier key the checkpoint must be signed by (repeatable; with --checkpoint).
    #[arg(long = "trust", value_name = "VKEY", requires = "checkpoint")]
    pub trust: Vec<String>,
    /// Connection (when no --data-dir).
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}
