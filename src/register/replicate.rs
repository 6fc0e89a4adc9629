//! Replication: entries synced from a hub, verified as a continuation of this replica's head
//! and stored with the sync checkpoint in one transaction.

use super::Register;
use super::entry::{Entry, Head};
use super::recent;
use super::verify::{ChainVerifier, Defect, IntegrityFailure};
use crate::store::StoreError;

/// Why entries received from a hub were not applied. Nothing is written in either case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The entries do not verify as a continuation of this node's head (corrupt or forked).
    #[error("received entries do not continue this register: {0}")]
    Rejected(IntegrityFailure),
    /// The store failed (or moved underneath).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Register {
    /// Applies entries synced from a hub: verifies every checksum and chain link as a
    /// continuation of the current head, then stores the entries and the checkpoint made by
    /// `checkpoint` (given the new head) in one transaction, and wakes followers.
    #[tracing::instrument(name = "apply", skip_all, fields(entries = entries.len(), first = entries.first().map(|e| e.version), last = entries.last().map(|e| e.version)))]
    pub async fn apply_synced(
        &self,
        entries: Vec<Entry>,
        checkpoint: impl FnOnce(&Head) -> crate::store::Checkpoint,
    ) -> Result<Head, ApplyError> {
        let head = self.store.head().await?;
        let mut verifier = match &head {
            None => ChainVerifier::new(),
            Some(h) => ChainVerifier::after(h.version, &h.chain_hash).ok_or_else(|| {
                ApplyError::Rejected(IntegrityFailure {
                    version: h.version,
                    defect: Defect::Unreadable("local head hash is malformed".into()),
                })
            })?,
        };
        for entry in &entries {
            verifier.check(entry).map_err(ApplyError::Rejected)?;
        }
        let after = head.as_ref().map_or(0, |h| h.version);
        let new_head = entries.last().map_or_else(
            || {
                head.clone().unwrap_or(Head {
                    version: 0,
                    chain_hash: String::new(),
                })
            },
            |e| Head {
                version: e.version,
                chain_hash: e.chain_hash.clone(),
            },
        );
        let cp = checkpoint(&new_head);
        // Only the tail can stay in the window anyway.
        let applied = entries[entries.len().saturating_sub(recent::RECENT_CAPACITY)..].to_vec();
        self.store.append_entries(after, entries, Some(cp)).await?;
        self.recent.push(applied);
        self.announce(new_head.version);
        Ok(new_head)
    }
}
