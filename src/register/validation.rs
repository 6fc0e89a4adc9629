//! Input rules for entries: ids, identities, metadata and documents.

use crate::error_code::{Classified, ErrorCode};
use std::collections::BTreeMap;

/// MongoDB's limit on one stored document (BSON), which every entry must fit on every node.
pub const BSON_DOCUMENT_LIMIT: usize = 16 * 1024 * 1024;
/// Room kept beside the document inside [`BSON_DOCUMENT_LIMIT`] for the entry's other fields:
/// ids and identities (≤ 255 characters each, up to 4 UTF-8 bytes per character), metadata
/// (< 4 KiB of keys and values, at worst about 8 BSON bytes per byte of content), hashes,
/// field names and room for a publisher's signature. The worst case of all of these is
/// under 48 KiB (a test in `store::mongo` builds it), so 64 KiB leaves a margin.
pub const ENTRY_MARGIN_BYTES: usize = 64 * 1024;
/// Largest accepted document, in canonical bytes: 16 MiB less [`ENTRY_MARGIN_BYTES`]
/// (16 711 680 bytes). One limit for the whole network, so an entry any hub accepts can be
/// stored by every node on every backend; `limits.maxDocumentBytes` may lower it, never
/// raise it.
pub const MAX_DOCUMENT_BYTES: usize = BSON_DOCUMENT_LIMIT - ENTRY_MARGIN_BYTES;
/// Longest blueprint id, publisher identity or transaction id, in characters.
pub const MAX_ID_CHARS: usize = 255;
/// Longest node id (a peer's `peer_id`, a hub's id), in characters.
pub const MAX_NODE_ID_CHARS: usize = 64;
/// The node-id rule as people read it: `^[A-Za-z0-9._-]{1,64}$`. Dots are allowed because the
/// default node id is the hostname, and hostnames with a domain have dots.
pub const NODE_ID_RULE: &str = "1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'";
/// Metadata keys and values together must stay below this many bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Most characters of an idempotency key (the `Idempotency-Key` header's value).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// [`blueprint_id`] as the regular expression the OpenAPI description states.
pub const BLUEPRINT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,255}$";

/// [`published_by`] as the regular expression the OpenAPI description states.
pub const PUBLISHED_BY_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,255}$";

/// The `Idempotency-Key` header as the OpenAPI description states it: an RFC 8941 string of a
/// key [`idempotency_key`] accepts, or the bare key without quotes, backslashes or spaces.
pub const IDEMPOTENCY_KEY_HEADER_PATTERN: &str =
    "^(?:\"(?:[ !#-\\[\\]-~]|\\\\[\"\\\\]){1,255}\"|[!#-+\\--~]{1,255})$";

/// Why an input was refused; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The blueprint id breaks the id rule.
    #[error("blueprintId {0:?} is invalid: use 1-255 characters of A-Z, a-z, 0-9, '_' or '-'")]
    BlueprintId(String),
    /// A node id or peer id breaks the node-id rule.
    #[error("{field} {value:?} is invalid: use {NODE_ID_RULE}")]
    NodeId {
        /// Which id: `nodeId`, `peer_id`.
        field: &'static str,
        /// The id, cut to 80 characters.
        value: String,
    },
    /// The document breaks the configured blueprint schema (`validation.blueprintSchema`).
    #[error(
        "the document does not satisfy the blueprint schema {schema}: {}",
        summary(violations)
    )]
    Schema {
        /// `sorcha` or the schema file.
        schema: String,
        /// Up to [`super::schema::MAX_VIOLATIONS`] violations.
        violations: Vec<super::schema::Violation>,
    },
    /// `publishedBy` is empty, too long or holds control characters.
    #[error("publishedBy must be 1-255 characters without control characters")]
    PublishedBy,
    /// The transaction id is too long.
    #[error("publicationTransactionId must be at most 255 characters")]
    TransactionId,
    /// The idempotency key is empty, too long or holds characters outside printable ASCII.
    #[error(
        "Idempotency-Key is invalid: use 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII \
         characters (a UUID is a good key), got {0}"
    )]
    IdempotencyKey(String),
    /// Metadata is too large or has an empty key.
    #[error("metadata is invalid: {0}")]
    Metadata(String),
    /// A protocol request field breaks its rule (the message names it).
    #[error("{0}")]
    Field(String),
    /// The document is not valid JSON.
    #[error("document is not valid JSON: {0}")]
    DocumentJson(String),
    /// The document is JSON but not an object.
    #[error("document must be a JSON object, got {0}")]
    DocumentNotObject(&'static str),
    /// The document is larger than the limit.
    #[error("document is {size} bytes, more than the limit of {limit} bytes")]
    DocumentTooLarge {
        /// Canonical size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl Classified for ValidationError {
    fn code(&self) -> ErrorCode {
        match self {
            ValidationError::DocumentTooLarge { .. } => ErrorCode::TooLarge,
            ValidationError::Schema { .. } => ErrorCode::SchemaViolation,
            ValidationError::IdempotencyKey(_) => ErrorCode::InvalidIdempotencyKey,
            _ => ErrorCode::Invalid,
        }
    }
}

fn is_node_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks a node id or peer id (`field` names which in the error) against the one node-id
/// rule, [`NODE_ID_RULE`].
pub fn node_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if (1..=MAX_NODE_ID_CHARS).contains(&id.len()) && id.bytes().all(is_node_id_byte) {
        Ok(())
    } else {
        Err(ValidationError::NodeId {
            field,
            value: truncate(id, 80),
        })
    }
}

/// A valid node id made from a hostname: characters outside the rule become `-`, cut to 64
/// characters (a hostname of none of them gives `node`).
pub fn node_id_from_hostname(hostname: &str) -> String {
    let id: String = hostname
        .bytes()
        .take(MAX_NODE_ID_CHARS)
        .map(|b| {
            if is_node_id_byte(b) {
                char::from(b)
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() { "node".to_owned() } else { id }
}

/// Checks a blueprint id: 1–255 chars of `[A-Za-z0-9_-]`.
pub fn blueprint_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BlueprintId(truncate(id, 80)))
    }
}

/// Checks a publisher identity: 1–255 characters, none of them control characters (an
/// identity ends up in logs, headers and event streams).
pub fn published_by(identity: &str) -> Result<(), ValidationError> {
    let chars = identity.chars().count();
    if (1..=MAX_ID_CHARS).contains(&chars) && !identity.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ValidationError::PublishedBy)
    }
}

/// Checks an optional transaction id: at most 255 characters.
pub fn transaction_id(tx: Option<&str>) -> Result<(), ValidationError> {
    match tx {
        Some(tx) if tx.chars().count() > MAX_ID_CHARS => Err(ValidationError::TransactionId),
        _ => Ok(()),
    }
}

/// Checks an idempotency key: 1–255 printable ASCII characters (what an RFC 8941 string
/// can hold).
pub fn idempotency_key(key: &str) -> Result<(), ValidationError> {
    if let Some(c) = key.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(ValidationError::IdempotencyKey(format!(
            "the character {c:?}"
        )));
    }
    match key.len() {
        0 => Err(ValidationError::IdempotencyKey("an empty key".into())),
        // Printable ASCII: bytes are characters.
        n if n > MAX_IDEMPOTENCY_KEY_CHARS => {
            Err(ValidationError::IdempotencyKey(format!("{n} characters")))
        }
        _ => Ok(()),
    }
}

/// Checks metadata: non-empty keys; keys and values together below 4 KiB.
pub fn metadata(metadata: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if metadata.keys().any(String::is_empty) {
        return Err(ValidationError::Metadata("keys must not be empty".into()));
    }
    let total: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total >= MAX_METADATA_BYTES {
        return Err(ValidationError::Metadata(format!(
            "keys and values together are {total} bytes; they must be below {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// Turns a JSON value into the canonical document bytes (RFC 8785 JSON canonicalization:
/// sorted keys, no insignificant whitespace, normalised numbers) after checking that it is an
/// object within `limit` bytes.
pub fn canonical_document(
    value: &serde_json::Value,
    limit: usize,
) -> Result<Vec<u8>, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::DocumentNotObject(json_kind(value)));
    }
    let bytes = serde_json_canonicalizer::to_vec(value)
        .map_err(|e| ValidationError::DocumentJson(e.to_string()))?;
    if bytes.len() > limit {
        return Err(ValidationError::DocumentTooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Ok(bytes)
}

/// Parses raw bytes as a JSON document and canonicalizes it (see [`canonical_document`]).
pub fn parse_document(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ValidationError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ValidationError::DocumentJson(e.to_string()))?;
    canonical_document(&value, limit)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn summary(violations: &[super::schema::Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "(document)"
            } else {
                &v.pointer
            };
            format!("{at}: {}", v.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_patterns_agree_with_the_checks() {
        let ids = regex::Regex::new(BLUEPRINT_ID_PATTERN).unwrap();
        // `\uXXXX` means the same to Rust's regex crate as to ECMA-262.
        let publishers = regex::Regex::new(PUBLISHED_BY_PATTERN).unwrap();
        let long = "a".repeat(255);
        let too_long = "a".repeat(256);
        for id in [
            "abc-DEF_123",
            "",
            "../etc",
            "a b",
            "é",
            long.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(ids.is_match(id), blueprint_id(id).is_ok(), "{id:?}");
            assert_eq!(publishers.is_match(id), published_by(id).is_ok(), "{id:?}");
        }
        for who in ["alice", "a\tb", "a\u{85}b", "ünï"] {
            assert_eq!(
                publishers.is_match(who),
                published_by(who).is_ok(),
                "{who:?}"
            );
        }
        let header = regex::Regex::new(IDEMPOTENCY_KEY_HEADER_PATTERN).unwrap();
        for key in ["8e03978e-40d5", "a b", "", too_long.as_str(), long.as_str()] {
            assert_eq!(
                header.is_match(key),
                idempotency_key(key).is_ok() && !key.contains(' '),
                "{key:?}"
            );
        }
    }

    #[test]
    fn blueprint_ids() {
        assert!(blueprint_id("abc-DEF_123").is_ok());
        assert!(blueprint_id(&"a".repeat(255)).is_ok());
        assert!(blueprint_id("").is_err());
        assert!(blueprint_id(&"a".repeat(256)).is_err());
        assert!(blueprint_id("../etc").is_err());
        assert!(blueprint_id("a b").is_err());
        assert!(blueprint_id("é").is_err());
    }

    #[test]
    fn documents_are_canonical_objects() {
        let doc = parse_document(br#"{ "b": 1, "a": [true, null] }"#, 100).unwrap();
        assert_eq!(doc, br#"{"a":[true,null],"b":1}"#);
        assert!(matches!(
            parse_document(b"[1]", 100),
            Err(ValidationError::DocumentNotObject("an array"))
        ));
        assert!(matches!(
            parse_document(b"{", 100),
            Err(ValidationError::DocumentJson(_))
        ));
        assert!(matches!(
            parse_document(br#"{"a":"0123456789"}"#, 10),
            Err(ValidationError::DocumentTooLarge { .. })
        ));
    }

    #[test]
    fn metadata_limits() {
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), "v".repeat(4094));
        assert!(metadata(&m).is_ok());
        m.insert("k".to_owned(), "v".repeat(4095));
        assert!(metadata(&m).is_err());
        let mut empty_key = BTreeMap::new();
        empty_key.insert(String::new(), "v".to_owned());
        assert!(metadata(&empty_key).is_err());
    }
}
