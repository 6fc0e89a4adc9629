//! Idempotency keys and transaction ids of client writes: the claim a write makes with its
//! append, the answer to a retry from what its key (or transaction id) holds, and forgetting
//! keys past `idempotency.retention`.

use super::{WriteOptions, Written};
use crate::register::entry::{Expectation, NewEntry};
use crate::register::{Register, RegisterError, idempotency, validation};
use crate::store::{KeyClaim, Prior, StoreError};
use std::time::Duration;

impl Register {
    /// The claim of a write with `options` whose request has `fingerprint`.
    pub(super) fn key_claim(
        &self,
        options: &WriteOptions,
        fingerprint: String,
    ) -> Result<Option<KeyClaim>, RegisterError> {
        let Some(key) = &options.idempotency_key else {
            return Ok(None);
        };
        validation::idempotency_key(key)?;
        Ok(Some(KeyClaim {
            key: key.clone(),
            fingerprint,
            live_after: self.keys_live_after(),
        }))
    }

    /// Keys recorded before this time (Unix ms) are older than `idempotency.retention`.
    fn keys_live_after(&self) -> i64 {
        let retention =
            i64::try_from(self.options.idempotency_retention.as_millis()).unwrap_or(i64::MAX);
        self.clock.now_ms().saturating_sub(retention)
    }

    /// The answer to a request whose key or transaction id `prior` holds: the earlier entry
    /// when the requests are the same, else the reuse error.
    pub(super) async fn replay(
        &self,
        prior: Prior,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
        fingerprint: &str,
    ) -> Result<Written, RegisterError> {
        let version = match &prior {
            Prior::Key { version, .. } | Prior::Transaction { version } => *version,
        };
        let entry = self
            .store
            .entry(version)
            .await?
            .ok_or(RegisterError::NoSuchVersion(version))?;
        let same = match &prior {
            Prior::Key { fingerprint: f, .. } => f == fingerprint,
            Prior::Transaction { .. } => idempotency::of_entry(&entry) == fingerprint,
        };
        if !same {
            return Err(match prior {
                Prior::Key { .. } => RegisterError::KeyReused {
                    key: key.map(|k| k.key.clone()).unwrap_or_default(),
                },
                Prior::Transaction { version } => RegisterError::TransactionExists {
                    transaction_id: transaction_id.unwrap_or_default().to_owned(),
                    version,
                },
            });
        }
        tracing::info!(
            version,
            blueprint_id = %entry.blueprint_id,
            by = if matches!(prior, Prior::Key { .. }) { "idempotency key" } else { "transaction id" },
            "replayed an earlier write"
        );
        self.options.metrics.idempotent_replays.inc();
        Ok(Written {
            entry,
            replayed: true,
        })
    }

    /// Appends `new` claiming `key`; a claim another write won in the meantime answers as
    /// that write's replay.
    pub(super) async fn append_claiming(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
        fingerprint: &str,
    ) -> Result<Written, RegisterError> {
        let transaction_id = new.publication_transaction_id.clone();
        match self.append(new, expect, key).await {
            Ok(entry) => Ok(Written {
                entry,
                replayed: false,
            }),
            Err(RegisterError::Store(StoreError::Claimed(prior))) => {
                self.replay(prior, key, transaction_id.as_deref(), fingerprint)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// How often expired idempotency keys are deleted: an eighth of the retention, between
    /// 100 ms and 1 min.
    pub fn key_purge_period(&self) -> Duration {
        (self.options.idempotency_retention / 8)
            .clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// Forgets idempotency keys older than `idempotency.retention` (they already read as
    /// absent); the hub's housekeeping calls it so the records stay bounded by the writes of
    /// one retention period. Returns how many were deleted.
    pub async fn forget_expired_keys(&self) -> Result<u64, RegisterError> {
        Ok(self.store.forget_keys(self.keys_live_after()).await?)
    }
}
