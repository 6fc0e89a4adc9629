//! The system register's entry model: what one immutable, versioned log record holds.

use super::signature::PublisherSignature;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Well-known id of the system register; every entry carries it.
pub const SYSTEM_REGISTER_ID: &str = "00000000-0000-0000-0000-000000000000";

/// What an entry did to its blueprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// First document of a new blueprint id.
    Published,
    /// A new document for an existing blueprint id.
    Updated,
    /// The blueprint was deprecated (`isActive = false`).
    Deprecated,
}

impl EntryType {
    /// Stable numeric code, used in the hash chain, the store and the wire enum.
    pub fn code(self) -> u8 {
        match self {
            EntryType::Published => 1,
            EntryType::Updated => 2,
            EntryType::Deprecated => 3,
        }
    }

    /// Inverse of [`EntryType::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(EntryType::Published),
            2 => Some(EntryType::Updated),
            3 => Some(EntryType::Deprecated),
            _ => None,
        }
    }

    /// Lower-case name as used in REST (`published`, `updated`, `deprecated`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Published => "published",
            EntryType::Updated => "updated",
            EntryType::Deprecated => "deprecated",
        }
    }

    /// SSE event name (`blueprint.published`, …).
    pub fn event_name(self) -> &'static str {
        match self {
            EntryType::Published => "blueprint.published",
            EntryType::Updated => "blueprint.updated",
            EntryType::Deprecated => "blueprint.deprecated",
        }
    }

    /// Parses [`EntryType::as_str`] output.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "published" => Some(EntryType::Published),
            "updated" => Some(EntryType::Updated),
            "deprecated" => Some(EntryType::Deprecated),
            _ => None,
        }
    }
}

/// One immutable record of the system register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log: starts at 1, contiguous, unique.
    pub version: i64,
    /// Blueprint id, 1–255 chars of `[A-Za-z0-9_-]`.
    pub blueprint_id: String,
    /// Always [`SYSTEM_REGISTER_ID`] for a valid entry.
    pub register_id: String,
    /// The blueprint JSON document as canonical UTF-8 bytes.
    pub document: Bytes,
    /// Unix milliseconds UTC.
    pub published_at: i64,
    /// Identity that published the entry.
    pub published_by: String,
    /// False once deprecated.
    pub is_active: bool,
    /// Optional external transaction reference (≤ 255 chars).
    pub publication_transaction_id: Option<String>,
    /// `sha256:` + lowercase hex of [`Entry::document`].
    pub checksum: String,
    /// Free-form string metadata; keys and values together < 4 KiB.
    pub metadata: BTreeMap<String, String>,
    /// Hash-chain link of this entry (see `docs/hash-chain.md`).
    pub chain_hash: String,
    /// What this entry did.
    pub entry_type: EntryType,
    /// The publisher's signature, when the publication was signed (covered by the chain
    /// hash; see [`super::signature`]).
    pub signature: Option<Box<PublisherSignature>>,
}

impl Entry {
    /// Bytes this entry takes in memory, roughly: its document, metadata and strings plus a
    /// fixed allowance for the rest. What the recent window and read pages count.
    pub fn weight(&self) -> usize {
        let metadata: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.document.len()
            + metadata
            + self.blueprint_id.len()
            + self.register_id.len()
            + self.published_by.len()
            + self
                .publication_transaction_id
                .as_ref()
                .map_or(0, String::len)
            + self.checksum.len()
            + self.chain_hash.len()
            + self.signature.as_ref().map_or(0, |s| s.key_name.len() + 68)
            + ENTRY_OVERHEAD_BYTES
    }
}

/// What [`Entry::weight`] allows for an entry beyond its document and metadata (ids, hashes,
/// the struct itself); used also to size entries before they are read.
pub const ENTRY_OVERHEAD_BYTES: usize = 1024;

/// A node's register head: its newest entry's version and chain hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Version of the newest entry.
    pub version: i64,
    /// Chain hash of the newest entry.
    pub chain_hash: String,
}

/// An entry before the store has given it a version and chain link.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Blueprint id (validated).
    pub blueprint_id: String,
    /// Canonical document bytes (validated).
    pub document: Bytes,
    /// Checksum of `document`.
    pub checksum: String,
    /// Unix milliseconds UTC.
    pub published_at: i64,
    /// Publisher identity.
    pub published_by: String,
    /// Active flag.
    pub is_active: bool,
    /// Optional transaction reference.
    pub publication_transaction_id: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Entry type.
    pub entry_type: EntryType,
    /// The publisher's signature (checked by the register before the append).
    pub signature: Option<Box<PublisherSignature>>,
}

impl NewEntry {
    /// Completes the entry at `version`, linking it to `prev_chain_hash`
    /// (`None` for version 1).
    pub fn into_entry(self, version: i64, prev_chain_hash: Option<&str>) -> Entry {
        let mut entry = Entry {
            version,
            blueprint_id: self.blueprint_id,
            register_id: SYSTEM_REGISTER_ID.to_owned(),
            document: self.document,
            published_at: self.published_at,
            published_by: self.published_by,
            is_active: self.is_active,
            publication_transaction_id: self.publication_transaction_id,
            checksum: self.checksum,
            metadata: self.metadata,
            chain_hash: String::new(),
            entry_type: self.entry_type,
            signature: self.signature,
        };
        entry.chain_hash = super::chain::link(prev_chain_hash, &entry);
        entry
    }
}

impl NewEntry {
    /// Completes the entry as the successor of `head` (version 1 on an empty register).
    pub fn into_entry_after(self, head: Option<&Head>) -> Entry {
        match head {
            Some(h) => self.into_entry(h.version + 1, Some(&h.chain_hash)),
            None => self.into_entry(1, None),
        }
    }
}

/// What the newest entry of a blueprint must be for an append to go ahead; the store checks
/// it atomically with the append (optimistic concurrency per blueprint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// The blueprint id must not exist yet.
    Absent,
    /// The blueprint's newest entry must be exactly this version.
    AtVersion(i64),
}
