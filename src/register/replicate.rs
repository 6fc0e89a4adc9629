//! Replication: entries synced from a hub, verified as a continuation of this replica's head
//! and stored with the sync progress in one transaction.

use super::Register;
use super::chain_check::{ChainVerifier, Defect, IntegrityFailure};
use super::entry::{Entry, Head};
use super::recent;
use super::signature::SignatureCheck;
use crate::store::StoreError;

/// Why entries received from a hub were not applied. Nothing is written in either case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The entries do not verify as a continuation of this node's head (corrupt or forked).
    #[error("received entries do not continue this register: {0}")]
    Rejected(IntegrityFailure),
    /// A publisher signature does not verify (or an entry is unsigned) and the node requires
    /// signatures.
    #[error("received entries are refused: {0}")]
    Unverified(IntegrityFailure),
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
        signatures: Option<&mut SignatureCheck>,
        progress: impl FnOnce(&Head) -> crate::store::SyncProgress,
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
        if let Some(check) = signatures {
            self.check_synced_signatures(check, &entries).await?;
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
        let cp = progress(&new_head);
        // Only the tail can stay in the window anyway.
        let applied = entries[entries.len().saturating_sub(recent::RECENT_CAPACITY)..].to_vec();
        self.store.append_entries(after, entries, Some(cp)).await?;
        self.recent.push(applied);
        self.announce(new_head.version);
        Ok(new_head)
    }

    /// The check a sync from a replica at `head` runs over what it receives, when
    /// `peer.publisherKeys` or `peer.requireSignatures` are set.
    pub fn synced_signature_check(&self, head: i64) -> Option<SignatureCheck> {
        let policy = &self.options.signatures;
        policy.checks_entries().then(|| {
            if head == 0 {
                SignatureCheck::new(policy.known.clone(), policy.require)
            } else {
                SignatureCheck::after_start(policy.known.clone(), policy.require)
            }
        })
    }

    /// The signature check of a synced batch: refuses it when signatures are required,
    /// else logs and counts what does not verify.
    async fn check_synced_signatures(
        &self,
        check: &mut SignatureCheck,
        entries: &[Entry],
    ) -> Result<(), ApplyError> {
        for id in check.unknown_blueprints(entries) {
            let newest = self.store.latest_size(id).await?.map_or(0, |s| s.version);
            check.know(id, newest);
        }
        let pending = check.prepare(entries);
        let checked = if entries.len() > BLOCKING_CHECK_ENTRIES {
            // Verifying hundreds of signatures takes milliseconds: off the runtime threads.
            tokio::task::spawn_blocking(move || pending.verify())
                .await
                .map_err(|e| StoreError::Unavailable(format!("signature check failed: {e}")))?
        } else {
            pending.verify()
        };
        check.count_verified(checked.verified);
        let defects = checked.defects;
        let Some(first) = defects.first() else {
            return Ok(());
        };
        self.options
            .metrics
            .signature_defects
            .inc_by(defects.len() as u64);
        if check.required() {
            return Err(ApplyError::Unverified(first.clone().into()));
        }
        for defect in &defects {
            tracing::warn!(
                version = defect.version,
                error = %defect.error,
                "synced entry's publisher signature does not verify; applied anyway \
                 (peer.requireSignatures is off)"
            );
        }
        Ok(())
    }
}

/// A synced batch of more entries than this has its signatures checked on the blocking pool.
const BLOCKING_CHECK_ENTRIES: usize = 16;
