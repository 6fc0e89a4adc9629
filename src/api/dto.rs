//! JSON shapes of the REST API and SSE (camelCase), with their OpenAPI schemas.

use crate::register::entry::{Entry, EntryType};
use crate::register::signature::PublisherSignature;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// One register entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    /// Register version of this entry.
    pub version: i64,
    /// Blueprint id.
    pub blueprint_id: String,
    /// Register id (the system register).
    pub register_id: String,
    /// `published`, `updated` or `deprecated`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "published")]
    pub entry_type: EntryType,
    /// Publication time, Unix ms UTC.
    pub published_at: i64,
    /// Publisher identity.
    pub published_by: String,
    /// False once deprecated.
    pub is_active: bool,
    /// External transaction reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publication_transaction_id: Option<String>,
    /// `sha256:` checksum of the document bytes.
    pub checksum: String,
    /// Hash-chain link.
    pub chain_hash: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// The publisher's signature, when the publication was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureView>,
    /// The blueprint document (omitted in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub document: Option<Box<RawValue>>,
}

impl EntryView {
    /// View of `entry`, with its document when `with_document`.
    pub fn new(entry: &Entry, with_document: bool) -> Self {
        let document = with_document
            .then(|| {
                String::from_utf8(entry.document.to_vec())
                    .ok()
                    .and_then(|s| RawValue::from_string(s).ok())
            })
            .flatten();
        Self {
            version: entry.version,
            blueprint_id: entry.blueprint_id.clone(),
            register_id: entry.register_id.clone(),
            entry_type: entry.entry_type,
            published_at: entry.published_at,
            published_by: entry.published_by.clone(),
            is_active: entry.is_active,
            publication_transaction_id: entry.publication_transaction_id.clone(),
            checksum: entry.checksum.clone(),
            chain_hash: entry.chain_hash.clone(),
            metadata: entry.metadata.clone(),
            signature: entry.signature.as_deref().map(SignatureView::new),
            document,
        }
    }
}

/// A publisher's signature of one entry (`docs/hash-chain.md`, "Publisher signatures"): an
/// Ed25519 signature by the key `keyName` over the entry's signed bytes, made for the place
/// after the blueprint's version `previousVersion`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureView {
    /// The blueprint's version this entry follows (0 for a new blueprint); a signature for
    /// another place is refused.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integral")]
    pub previous_version: i64,
    /// Name of the signing key, as in its verifier key `name+keyid+base64`: 1–255
    /// characters, no spaces, no `+`.
    #[schema(pattern = "^[^\\s+\\u0085]{1,255}$", example = "alice")]
    pub key_name: String,
    /// Base64 (standard alphabet, padded) of the 4-byte key id (big-endian) followed by the
    /// 64-byte Ed25519 signature: 92 characters.
    #[schema(pattern = "^[A-Za-z0-9+/]{90}[AEIMQUYcgkosw048]=$")]
    pub value: String,
}

/// An integer as JSON Schema counts them: `7` or `7.0` (a number with no fraction).
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        // Exactly representable, no fraction, within i64 (2^63 is the first float outside).
        Some(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a 64-bit integer"
        ))),
    }
}

impl SignatureView {
    /// The view of a stored signature.
    pub fn new(s: &PublisherSignature) -> Self {
        SignatureView {
            previous_version: s.previous_version,
            key_name: s.key_name.clone(),
            value: s.value(),
        }
    }

    /// The signature a client sent; says what is wrong otherwise.
    pub fn parse(&self) -> Result<PublisherSignature, String> {
        PublisherSignature::from_parts(self.previous_version, &self.key_name, &self.value)
    }
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryPage {
    /// The entries.
    pub items: Vec<EntryView>,
    /// Pass as `cursor` (blueprints) or `since` (entries, history) for the next page; absent on
    /// the last page. A page ends after `limit` entries or, for pages with documents, before
    /// its entries exceed the node's `limits.maxPageBytes` (always at least one entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Body of a publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    /// Blueprint id: 1–255 characters of `[A-Za-z0-9_-]`.
    #[schema(min_length = 1, max_length = 255)]
    pub blueprint_id: String,
    /// The blueprint document; must be a JSON object (≤ 16 MiB canonical) whose objects have
    /// unique keys.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "super::unique_keys::value")]
    pub document: serde_json::Value,
    /// Metadata; keys and values together below 4 KiB.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: BTreeMap<String, String>,
    /// External transaction reference (≤ 255 characters).
    #[serde(default)]
    #[schema(max_length = 255)]
    pub publication_transaction_id: Option<String>,
    /// The publisher's signature of the entry this writes; required when the hub sets
    /// `signatures.require`.
    #[serde(default)]
    pub signature: Option<SignatureView>,
}

/// Body of an update (a new version of an existing blueprint).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRequest {
    /// The new document; must be a JSON object whose objects have unique keys.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "super::unique_keys::value")]
    pub document: serde_json::Value,
    /// Metadata of the new entry; keys and values together below 4 KiB.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: BTreeMap<String, String>,
    /// External transaction reference (≤ 255 characters).
    #[serde(default)]
    #[schema(max_length = 255)]
    pub publication_transaction_id: Option<String>,
    /// The publisher's signature of the entry this writes; required when the hub sets
    /// `signatures.require`.
    #[serde(default)]
    pub signature: Option<SignatureView>,
}

/// Optional body of a deprecation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeprecateRequest {
    /// Metadata of the deprecation entry (e.g. a reason); keys and values together below 4 KiB.
    #[serde(default)]
    #[schema(schema_with = metadata_schema)]
    pub metadata: BTreeMap<String, String>,
    /// The publisher's signature of the deprecation entry (it carries the blueprint's
    /// current document, so its checksum is signed).
    #[serde(default)]
    pub signature: Option<SignatureView>,
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    /// Always `ok` when the process answers.
    pub status: String,
    /// `hub` or `peer`.
    pub role: String,
    /// Node id.
    pub node_id: String,
    /// Software version.
    pub version: String,
    /// Register head version.
    pub head_version: i64,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyView {
    /// True when ready.
    pub ready: bool,
}

/// Summary of the system register.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterView {
    /// The system register id.
    pub register_id: String,
    /// Head version (0 when empty).
    pub head_version: i64,
    /// Head chain hash.
    pub head_hash: Option<String>,
    /// Number of entries.
    pub entries: i64,
    /// Number of blueprints.
    pub blueprints: i64,
    /// Number of active blueprints.
    pub active_blueprints: i64,
    /// `publishedAt` of the newest entry.
    pub last_published_at: Option<i64>,
}

/// The node's view of itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// `hub` or `peer`.
    pub role: String,
    /// Node id.
    pub node_id: String,
    /// Software version.
    pub version: String,
    /// The register.
    pub register: RegisterView,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Start time, Unix ms UTC.
    pub started_at: i64,
    /// True unless the register failed its integrity check.
    pub integrity_ok: bool,
    /// The integrity failure that refuses writes, if any.
    #[schema(value_type = Option<Object>)]
    pub integrity_failure: Option<serde_json::Value>,
    /// Peers: the hub connection state (`Connected`, `Isolated`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<super::rest::connection::ConnectionState>,
    /// Peers: the hub in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_hub: Option<String>,
    /// Hubs: the verifier key (`name+keyid+base64`) of the hub's signed checkpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<String>,
    /// The publisher verifier keys this node checks signatures against (a hub's
    /// `[[publishers]]` keys and retired keys, a peer's `peer.publisherKeys`), sorted: what a
    /// page needs to check an entry's `signature` itself.
    pub publisher_keys: Vec<String>,
}

/// Outcome of an integrity check.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyView {
    /// True when every entry checked out.
    pub ok: bool,
    /// Entries that passed.
    pub checked: u64,
    /// Head version seen.
    pub head_version: i64,
    /// Head chain hash seen.
    pub head_hash: Option<String>,
    /// First bad version, if any.
    pub first_bad_version: Option<i64>,
    /// Which defect it has (`versionGap`, `registerId`, `checksum`, `unreadable`, `chain`,
    /// `signature`; see `docs/hash-chain.md`).
    pub defect: Option<String>,
    /// What was wrong with it.
    pub error: Option<String>,
    /// Entries whose publisher signature verified against the node's publisher keys (0
    /// when it has none).
    pub signed: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// Query of the blueprint list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only active (`true`) or deprecated (`false`) blueprints.
    pub active: Option<bool>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// Query of the log and of histories.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SinceParams {
    /// Only entries with a version above this (default 0); pass the previous page's `next`.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Most entries in the page, 1–1000 (default 100). A page also ends before its entries
    /// exceed the node's `limits.maxPageBytes` (8 MiB by default; at least one entry), so a
    /// page may hold fewer: follow `next` until it is absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Query of the SSE stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Replay every entry after this version first (overridden by `Last-Event-ID`).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only this blueprint.
    pub blueprint_id: Option<String>,
    /// Only this publisher (1–255 characters, no control characters).
    pub published_by: Option<String>,
    /// Only this type: `published`, `updated` or `deprecated`.
    #[serde(rename = "type")]
    #[param(pattern = "^(published|updated|deprecated)$")]
    pub entry_type: Option<String>,
    /// `document` adds the full entry to each event.
    #[param(pattern = "^document$")]
    pub include: Option<String>,
}

/// The `data:` of the `caught-up` event that ends an event stream's replay.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaughtUpView {
    /// The node's head version when the stream opened: every entry up to it has been sent
    /// (those matching the filters).
    pub head_version: i64,
    /// The chain hash at that version (absent on an empty replica).
    pub head_hash: Option<String>,
    /// True when the resume position is beyond this node's head: a lagging peer, or a
    /// position from another register. Entries after the position follow as they arrive.
    pub ahead: bool,
}

/// The `data:` of the `checkpoint` event: a hub's signed checkpoint covering every entry the
/// stream has sent so far (those matching the filters).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointEventView {
    /// The version it covers.
    pub version: i64,
    /// The C2SP signed note (as `GET /api/v1/system-register/checkpoint` serves it).
    pub note: String,
}

/// The `data:` of an SSE event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// Register version.
    pub version: i64,
    /// Blueprint id.
    pub blueprint_id: String,
    /// `published`, `updated` or `deprecated`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub entry_type: EntryType,
    /// Publication time, Unix ms UTC.
    pub published_at: i64,
    /// Publisher.
    pub published_by: String,
    /// Active flag.
    pub is_active: bool,
    /// Document checksum.
    pub checksum: String,
    /// Chain hash.
    pub chain_hash: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// The publication's transaction id, when it has one (signed with the entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publication_transaction_id: Option<String>,
    /// The publisher's signature, when the publication was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureView>,
    /// The full entry, with `?include=document`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryView>,
}

impl NotificationView {
    /// The notification for `entry`.
    pub fn new(entry: &Entry, include_entry: bool) -> Self {
        Self {
            version: entry.version,
            blueprint_id: entry.blueprint_id.clone(),
            entry_type: entry.entry_type,
            published_at: entry.published_at,
            published_by: entry.published_by.clone(),
            is_active: entry.is_active,
            checksum: entry.checksum.clone(),
            chain_hash: entry.chain_hash.clone(),
            metadata: entry.metadata.clone(),
            publication_transaction_id: entry.publication_transaction_id.clone(),
            signature: entry.signature.as_deref().map(SignatureView::new),
            entry: include_entry.then(|| EntryView::new(entry, true)),
        }
    }
}

/// Query of `POST /api/v1/sync`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiQueryFull {
    /// Run a full sync instead of an incremental one.
    pub full: Option<bool>,
}

/// A peer's sync checkpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointDto {
    /// Version of the newest applied entry (stored with the entries, never ahead of them).
    pub current_version: i64,
    /// Its chain hash.
    pub head_hash: String,
    /// The hub the entries came from.
    pub hub_id: String,
    /// When the last sync finished, Unix ms.
    pub last_sync_time: i64,
    /// When the next periodic sync is due, Unix ms.
    pub next_sync_due: i64,
    /// Entries applied by sync in total.
    pub total_entries_synced: i64,
    /// Syncs completed in total.
    pub total_syncs: i64,
    /// The replica's head version right now.
    pub replica_version: i64,
}

/// Schema of entry metadata: string values under non-empty keys. The 4 KiB total is checked
/// on arrival (JSON Schema cannot express it).
fn metadata_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(
            ObjectBuilder::new().schema_type(Type::String).into(),
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        ))
        .build()
}
