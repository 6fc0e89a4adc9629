//! The genesis entry every hub seeds at version 1. It is fully deterministic, so every hub ever
//! bootstrapped has the same genesis entry and the same genesis chain hash.

use super::chain;
use super::entry::{Entry, EntryType, NewEntry};
use super::validation;
use bytes::Bytes;
use std::collections::BTreeMap;

/// Blueprint id of the genesis entry.
pub const GENESIS_BLUEPRINT_ID: &str = "register-creation-v1";
/// Publisher of the genesis entry.
pub const GENESIS_PUBLISHER: &str = "system";
/// Fixed publication time of the genesis entry: 2025-01-01T00:00:00Z in Unix ms.
pub const GENESIS_PUBLISHED_AT: i64 = 1_735_689_600_000;

/// The genesis blueprint: the register-creation workflow.
fn document() -> serde_json::Value {
    serde_json::json!({
        "id": GENESIS_BLUEPRINT_ID,
        "title": "Register creation",
        "description": "Creates a new register: validates the request and the requester's permissions, allocates storage, writes the genesis record, initialises the control record and confirms creation.",
        "version": 1,
        "participants": [
            {"id": "requester", "name": "Register requester", "description": "The party asking for a new register."},
            {"id": "system", "name": "Register service", "description": "The system that creates and owns registers."}
        ],
        "actions": [
            {"id": 1, "title": "Validate request", "sender": "requester", "description": "Check that the register name, owner and policy are well formed."},
            {"id": 2, "title": "Validate permissions", "sender": "system", "description": "Check that the requester may create a register."},
            {"id": 3, "title": "Allocate storage", "sender": "system", "description": "Reserve storage for the register's transactions."},
            {"id": 4, "title": "Create genesis record", "sender": "system", "description": "Write the register's first, self-describing record."},
            {"id": 5, "title": "Initialise control record", "sender": "system", "description": "Record owners, administrators and the register's policy."},
            {"id": 6, "title": "Confirm creation", "sender": "system", "description": "Tell the requester that the register exists and how to reach it."}
        ]
    })
}

/// The genesis entry as appended by a fresh hub (version 1, chained to 32 zero bytes).
pub fn genesis_entry() -> Entry {
    let doc = validation::canonical_document(&document(), validation::MAX_DOCUMENT_BYTES)
        .unwrap_or_else(|e| unreachable!("the built-in genesis document is valid: {e}"));
    let metadata = BTreeMap::from([
        ("category".to_owned(), "register".to_owned()),
        ("type".to_owned(), "creation".to_owned()),
        ("isDefault".to_owned(), "true".to_owned()),
    ]);
    NewEntry {
        blueprint_id: GENESIS_BLUEPRINT_ID.to_owned(),
        checksum: chain::checksum(&doc),
        document: Bytes::from(doc),
        published_at: GENESIS_PUBLISHED_AT,
        published_by: GENESIS_PUBLISHER.to_owned(),
        is_active: true,
        publication_transaction_id: None,
        metadata,
        entry_type: EntryType::Published,
        signature: None,
    }
    .into_entry(1, None)
}
