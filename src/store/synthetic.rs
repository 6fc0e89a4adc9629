//! Synthetic registers for benchmarks and tests: genesis plus `n` published entries with padded
//! documents, correctly chained (and, given a key, signed by a publisher), written straight
//! into a store in large batches.

use super::{RegisterStore, StoreError};
use crate::keys::SigningKey;
use crate::register::chain;
use crate::register::entry::{EntryType, NewEntry, SYSTEM_REGISTER_ID};
use crate::register::genesis::genesis_entry;
use crate::register::signature::{PublisherSignature, SignedFields};

/// Entries written per transaction.
const BATCH: i64 = 10_000;

/// Fills an empty `store` with genesis and `n` published entries of about `doc_bytes` each
/// (blueprint ids `synthetic-<version>`), each signed by `signer` when one is given.
pub async fn fill(
    store: &dyn RegisterStore,
    n: i64,
    doc_bytes: usize,
    signer: Option<&SigningKey>,
) -> Result<(), StoreError> {
    let genesis = genesis_entry();
    let mut prev = genesis.chain_hash.clone();
    store.append_entries(0, vec![genesis], None).await?;
    let pad = "p".repeat(doc_bytes.saturating_sub(30));
    let mut version = 1;
    while version <= n {
        let mut batch = Vec::new();
        for _ in 0..BATCH.min(n + 1 - version) {
            version += 1;
            let doc = format!(r#"{{"n":{version},"pad":"{pad}"}}"#);
            let blueprint_id = format!("synthetic-{version}");
            let checksum = chain::checksum(doc.as_bytes());
            let metadata = Default::default();
            let signature = signer.map(|key| {
                Box::new(PublisherSignature::sign(
                    key,
                    &SignedFields {
                        register_id: SYSTEM_REGISTER_ID,
                        blueprint_id: &blueprint_id,
                        entry_type: EntryType::Published,
                        is_active: true,
                        previous_version: 0,
                        checksum: &checksum,
                        metadata: &metadata,
                        transaction_id: None,
                    },
                ))
            });
            let entry = NewEntry {
                blueprint_id,
                checksum,
                document: doc.into_bytes().into(),
                published_at: 1_700_000_000_000 + version,
                published_by: "synthetic".into(),
                is_active: true,
                publication_transaction_id: None,
                metadata,
                entry_type: EntryType::Published,
                signature,
            }
            .into_entry(version, Some(&prev));
            prev = entry.chain_hash.clone();
            batch.push(entry);
        }
        let after = batch[0].version - 1;
        store.append_entries(after, batch, None).await?;
    }
    Ok(())
}
