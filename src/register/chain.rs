//! The hash chain that links every entry to the one before it.
//!
//! `chainHash(v) = "sha256:" + hex(SHA-256(prev ‖ fields(v)))`, where `prev` is the raw 32-byte
//! digest of `chainHash(v-1)` (32 zero bytes for version 1) and `fields(v)` is, in this order:
//!
//! | field | encoding |
//! |---|---|
//! | version | i64, 8 bytes big-endian |
//! | registerId | str |
//! | blueprintId | str |
//! | type | u8: 1 published, 2 updated, 3 deprecated |
//! | isActive | u8: 0 or 1 |
//! | publishedAt | i64, 8 bytes big-endian (Unix ms) |
//! | publishedBy | str |
//! | publicationTransactionId | u8 0 (absent) or u8 1 followed by str |
//! | checksum | str (the `sha256:…` text of the document digest) |
//! | metadata | u32 big-endian pair count, then per pair in ascending byte order of the key: str key, str value |
//! | signature | only when the entry is signed: u8 1, i64 previous version, str key name, the 4-byte key id, the 64-byte Ed25519 signature |
//!
//! An unsigned entry encodes exactly as before signatures existed, so its hash (genesis's
//! included) is unchanged; a signed one has bytes after its metadata, which no unsigned
//! encoding has, so the two can never be confused.
//! `str` is a u32 big-endian byte length followed by the UTF-8 bytes. Length prefixes make the
//! encoding unambiguous. The document itself is covered through its checksum. The same layout is
//! described for operators in `docs/hash-chain.md`.

use super::entry::Entry;
use sha2::{Digest, Sha256};

/// Prefix of every checksum and chain hash.
pub const HASH_PREFIX: &str = "sha256:";

/// Formats a raw digest as `sha256:<lowercase hex>`.
pub fn format_hash(digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    out.push_str(&hex::encode(digest));
    out
}

/// Parses `sha256:<64 lowercase hex>` into the raw digest; `None` if malformed.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix(HASH_PREFIX)?;
    if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest).ok()?;
    Some(digest)
}

/// The `sha256:` checksum of a document's bytes.
pub fn checksum(document: &[u8]) -> String {
    format_hash(&Sha256::digest(document).into())
}

/// Raw chain digest of `entry` after a predecessor whose raw digest is `prev`.
pub fn link_raw(prev: &[u8; 32], entry: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(entry.version.to_be_bytes());
    put_str(&mut h, &entry.register_id);
    put_str(&mut h, &entry.blueprint_id);
    h.update([entry.entry_type.code(), u8::from(entry.is_active)]);
    h.update(entry.published_at.to_be_bytes());
    put_str(&mut h, &entry.published_by);
    match &entry.publication_transaction_id {
        None => h.update([0u8]),
        Some(tx) => {
            h.update([1u8]);
            put_str(&mut h, tx);
        }
    }
    put_str(&mut h, &entry.checksum);
    h.update(len_u32(entry.metadata.len()).to_be_bytes());
    // BTreeMap iterates in ascending key order, which for String is byte order.
    for (key, value) in &entry.metadata {
        put_str(&mut h, key);
        put_str(&mut h, value);
    }
    if let Some(signature) = &entry.signature {
        h.update([1u8]);
        h.update(signature.previous_version.to_be_bytes());
        put_str(&mut h, &signature.key_name);
        h.update(signature.key_id.to_be_bytes());
        h.update(signature.signature);
    }
    h.finalize().into()
}

/// Chain hash of `entry` after the entry whose chain hash is `prev` (`None` for version 1).
///
/// A malformed `prev` is hashed as zero bytes; verification reports that entry before its
/// successor is ever considered, so this never hides corruption.
pub fn link(prev: Option<&str>, entry: &Entry) -> String {
    let prev_raw = prev.and_then(parse_hash).unwrap_or([0u8; 32]);
    format_hash(&link_raw(&prev_raw, entry))
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update(len_u32(s.len()).to_be_bytes());
    h.update(s.as_bytes());
}

fn len_u32(len: usize) -> u32 {
    // Every field is validated far below 4 GiB; saturate rather than wrap if that ever breaks.
    u32::try_from(len).unwrap_or(u32::MAX)
}
