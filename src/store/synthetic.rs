//! Synthetic registers for benchmarks and tests: genesis plus `n` published entries with padded
//! documents, correctly chained, written straight into a store in large batches.

use super::{RegisterStore, StoreError};
use crate::register::chain;
use crate::register::entry::{EntryType, NewEntry};
use crate::register::genesis::genesis_entry;

/// Entries written per transaction.
const BATCH: i64 = 10_000;

/// Fills an empty `store` with genesis and `n` published entries of about `doc_bytes` each
/// (blueprint ids `synthetic-<version>`).
pub async fn fill(store: &dyn RegisterStore, n: i64, doc_bytes: usize) -> Result<(), StoreError> {
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
            let entry = NewEntry {
                blueprint_id: format!("synthetic-{version}"),
                checksum: chain::checksum(doc.as_bytes()),
                document: doc.into_bytes().into(),
                published_at: 1_700_000_000_000 + version,
                published_by: "synthetic".into(),
                is_active: true,
                publication_transaction_id: None,
                metadata: Default::default(),
                entry_type: EntryType::Published,
                signature: None,
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
