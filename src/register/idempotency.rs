//! Safe retries: what makes two write requests "the same request", for idempotency keys and
//! publication transaction ids.
//!
//! A request's fingerprint covers its method and path, the caller's identity and its body in
//! canonical form. Each write operation has one method and path shape, so the entry type and
//! blueprint id stand for them (`POST …/blueprints` = published, `PUT …/blueprints/{id}` =
//! updated, `POST …/blueprints/{id}/deprecate` = deprecated); the body is the document's
//! canonical checksum (RFC 8785, so whitespace and key order do not matter), the metadata and
//! the transaction id. Every one of these is also recorded in the entry the request wrote, so
//! the fingerprint of an entry ([`of_entry`]) equals that of the request that wrote it
//! ([`of_new`]): an entry written before keys were recorded can still be compared.

use super::entry::{Entry, EntryType, NewEntry};
use super::signature::PublisherSignature;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Fingerprint of the request that would write `new`.
pub fn of_new(new: &NewEntry) -> String {
    fingerprint(
        new.entry_type,
        &new.blueprint_id,
        &new.published_by,
        &new.checksum,
        &new.metadata,
        new.publication_transaction_id.as_deref(),
        new.signature.as_deref(),
    )
}

/// Fingerprint of the request that wrote `entry`.
pub fn of_entry(entry: &Entry) -> String {
    fingerprint(
        entry.entry_type,
        &entry.blueprint_id,
        &entry.published_by,
        &entry.checksum,
        &entry.metadata,
        entry.publication_transaction_id.as_deref(),
        entry.signature.as_deref(),
    )
}

fn fingerprint(
    entry_type: EntryType,
    blueprint_id: &str,
    identity: &str,
    checksum: &str,
    metadata: &BTreeMap<String, String>,
    transaction_id: Option<&str>,
    signature: Option<&PublisherSignature>,
) -> String {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update(u64::try_from(s.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(s.as_bytes());
    };
    // A signed request is marked in the first field and its signature comes second, so the
    // fingerprints of unsigned requests (some stored by earlier releases) stay what they
    // were and no metadata can spell a signature.
    match signature {
        None => put(entry_type.as_str()),
        Some(signature) => {
            put(&format!("{}+signed", entry_type.as_str()));
            put(&signature.to_text());
        }
    }
    put(blueprint_id);
    put(identity);
    // A deprecation's document is the blueprint's current one, not part of the request.
    put(if entry_type == EntryType::Deprecated {
        ""
    } else {
        checksum
    });
    put(transaction_id.unwrap_or(""));
    for (key, value) in metadata {
        put(key);
        put(value);
    }
    let digest: [u8; 32] = h.finalize().into();
    super::chain::format_hash(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_entry() -> NewEntry {
        NewEntry {
            blueprint_id: "loan".into(),
            document: bytes::Bytes::from_static(b"{}"),
            checksum: super::super::chain::checksum(b"{}"),
            published_at: 1,
            published_by: "alice".into(),
            is_active: true,
            publication_transaction_id: Some("tx-1".into()),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            entry_type: EntryType::Published,
            signature: None,
        }
    }

    #[test]
    fn an_entry_has_the_fingerprint_of_the_request_that_wrote_it() {
        let new = new_entry();
        let expected = of_new(&new);
        // Time and position are not part of the request.
        let entry = new.into_entry(7, None);
        assert_eq!(of_entry(&entry), expected);
    }

    #[test]
    fn every_part_of_the_request_changes_the_fingerprint() {
        let base = of_new(&new_entry());
        let changes: [fn(&mut NewEntry); 6] = [
            |n| n.entry_type = EntryType::Updated,
            |n| n.blueprint_id = "loan2".into(),
            |n| n.published_by = "bob".into(),
            |n| n.checksum = super::super::chain::checksum(b"{\"a\":1}"),
            |n| n.publication_transaction_id = None,
            |n| {
                n.metadata.insert("k2".into(), String::new());
            },
        ];
        for change in changes {
            let mut n = new_entry();
            change(&mut n);
            assert_ne!(of_new(&n), base);
        }
        // Length prefixes keep field boundaries: moving a character across them changes it.
        let mut a = new_entry();
        a.metadata = BTreeMap::from([("ab".into(), "c".into())]);
        let mut b = new_entry();
        b.metadata = BTreeMap::from([("a".into(), "bc".into())]);
        assert_ne!(of_new(&a), of_new(&b));
    }
}
