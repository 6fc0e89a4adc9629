//! A replica store that can crash its peer at a write: when armed, the next sync write goes
//! through to the real store, then the call never returns and the driver is told to kill the
//! peer — a crash right after a write landed and before the peer could go on, the moment that
//! finds sync progress written ahead of its entries or a write acknowledged before it is
//! durable.

use async_trait::async_trait;
use sorcha_peer::register::entry::{Entry, Expectation, Head, NewEntry};
use sorcha_peer::store::embedded::EmbeddedStore;
use sorcha_peer::store::{
    EntrySize, KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError, SyncProgress,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// The replica's store and its crash point.
pub struct CrashPoint {
    inner: Arc<EmbeddedStore>,
    armed: AtomicBool,
    /// Cancelled when the armed write has landed: the peer is to be killed now.
    pub hit: CancellationToken,
}

impl CrashPoint {
    /// Wraps `inner`, disarmed.
    pub fn new(inner: EmbeddedStore) -> Self {
        Self {
            inner: Arc::new(inner),
            armed: AtomicBool::new(false),
            hit: CancellationToken::new(),
        }
    }

    /// The next sync write crashes the peer after it lands.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Writes go on as normal.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

#[async_trait]
impl RegisterStore for CrashPoint {
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.inner.head().await
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, StoreError> {
        self.inner.append(new, expect, key).await
    }

    async fn prior(
        &self,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
    ) -> Result<Option<Prior>, StoreError> {
        self.inner.prior(key, transaction_id).await
    }

    async fn forget_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.inner.forget_keys(before).await
    }

    async fn append_entries(
        &self,
        after_version: i64,
        entries: Vec<Entry>,
        progress: Option<SyncProgress>,
    ) -> Result<(), StoreError> {
        let result = self
            .inner
            .append_entries(after_version, entries, progress)
            .await;
        if self.armed.swap(false, Ordering::Relaxed) {
            self.hit.cancel();
            std::future::pending::<()>().await;
        }
        result
    }

    async fn sync_progress(&self) -> Result<Option<SyncProgress>, StoreError> {
        self.inner.sync_progress().await
    }

    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.entries_after(after, limit).await
    }

    async fn entry(&self, version: i64) -> Result<Option<Entry>, StoreError> {
        self.inner.entry(version).await
    }

    async fn latest(&self, blueprint_id: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.latest(blueprint_id).await
    }

    async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.history(blueprint_id, after, limit).await
    }

    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError> {
        self.inner.sizes_after(scope, after, limit).await
    }

    async fn latest_size(&self, blueprint_id: &str) -> Result<Option<EntrySize>, StoreError> {
        self.inner.latest_size(blueprint_id).await
    }

    async fn list_current(&self, query: ListQuery) -> Result<Vec<Entry>, StoreError> {
        self.inner.list_current(query).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.inner.stats().await
    }

    async fn keep_checkpoints(&self, notes: Vec<(i64, String)>) -> Result<u64, StoreError> {
        self.inner.keep_checkpoints(notes).await
    }

    async fn checkpoints_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.inner.checkpoints_between(after, upto).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
