//! Every register store call with a deadline, a bounded wait for a slot, and a run to
//! completion: [`GuardedStore`] wraps the node's store at the composition root.
//!
//! - A call first takes one of `slots` of its kind — a read waiting at most
//!   `limits.storeCallWait`, a write within its deadline, since writes queue behind one
//!   another by design: reads and writes have slots of their own, so appends queued behind one another (MongoDB
//!   serialises a hub's own appends) never starve the reads that syncs and REST need, and
//!   the driver's pool (both kinds plus the tail's connections) never queues. Then the whole
//!   call must answer within `limits.storeCallTimeout`. Either way a slow store makes callers fail fast
//!   with [`StoreError::Slow`] (503 with `Retry-After`, gRPC `UNAVAILABLE`) instead of hanging.
//! - A backend whose futures must not be dropped mid-flight
//!   ([`RegisterStore::cancel_safe`] is false: MongoDB, whose driver documents it as leaving
//!   its connection pool inconsistent) has each call run on a task of its own, holding its
//!   slot until it finishes, so a caller that gives up (a deadline, a cancelled gRPC call, a
//!   client gone) never cuts it short. A store that stalls therefore holds every slot until it
//!   answers, and further calls fail at the slot wait rather than piling up. The embedded
//!   store's calls finish on its writer thread or the blocking pool whoever waits for them,
//!   so they run in place (a task each would cost two trips through a busy scheduler).
//! - Each answered call is timed per operation (`sorcha_peer_store_call_duration_seconds`,
//!   whose count is the number of store round trips); calls that ran out of time are counted
//!   (`sorcha_peer_store_call_timeouts_total`).

use super::fleet::{FleetBatch, SharedFleet};
use super::{
    EntrySize, KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError, SyncProgress,
};
use crate::metrics::{Metrics, StoreOp, StoreOpLabels, StoreStage, StoreTimeoutLabels};
use crate::register::entry::{Entry, Expectation, Head, NewEntry};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long store calls may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// The most a call may take, its wait for a slot included (`limits.storeCallTimeout`).
    pub deadline: Duration,
    /// The most a call waits for a free slot (`limits.storeCallWait`).
    pub slot_wait: Duration,
    /// Reads in flight at once.
    pub slots: usize,
    /// Writes in flight at once.
    pub write_slots: usize,
}

/// A store whose every call has a deadline and runs to completion.
pub struct GuardedStore {
    inner: Arc<dyn RegisterStore>,
    limits: CallLimits,
    /// Slots of reads and of writes.
    read_slots: Arc<Semaphore>,
    write_slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for GuardedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStore")
            .field("limits", &self.limits)
            .finish()
    }
}

impl GuardedStore {
    /// Wraps `inner`, counting in `metrics`.
    pub fn new(inner: Arc<dyn RegisterStore>, limits: CallLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            read_slots: Arc::new(Semaphore::new(limits.slots.max(1))),
            write_slots: Arc::new(Semaphore::new(limits.write_slots.max(1))),
            limits,
            metrics,
        }
    }

    /// Runs `call` on the inner store as [`GuardedStore`] describes.
    async fn call<T, F>(
        &self,
        op: StoreOp,
        call: impl FnOnce(Arc<dyn RegisterStore>) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let deadline = self.limits.deadline;
        // Writes queue behind one another by design (a hub's appends to MongoDB are serial),
        // so a burst of publishes waits its turn within the deadline; a read that cannot get
        // a slot soon fails fast, as the peer or client it serves will retry.
        let wait = if op.writes() {
            deadline
        } else {
            self.limits.slot_wait.min(deadline)
        };
        let slots = if op.writes() {
            &self.write_slots
        } else {
            &self.read_slots
        };
        // A free slot is taken at once, without arming a timer (the common case).
        let waited = match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => Ok(Ok(slot)),
            Err(_) => tokio::time::timeout(wait, Arc::clone(slots).acquire_owned()).await,
        };
        let slot = match waited {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(StoreError::Unavailable("the store is closed".into())),
            Err(_) => {
                self.timed_out(op, StoreStage::Wait);
                return Err(StoreError::Slow(format!(
                    "the register store is busy: none of its {} {} in flight finished within \
                     {} ({})",
                    if op.writes() {
                        self.limits.write_slots
                    } else {
                        self.limits.slots
                    },
                    if op.writes() { "writes" } else { "reads" },
                    humantime::format_duration(wait),
                    op.name(),
                )));
            }
        };
        let future = call(Arc::clone(&self.inner));
        let left = deadline.saturating_sub(started.elapsed());
        let answered = if self.inner.cancel_safe() {
            // Its own task would cost two trips through a busy scheduler per call (a
            // publish behind thousands of streaming tasks); giving up on it is harmless.
            let _slot = slot;
            tokio::time::timeout(left, future).await
        } else {
            let task = tokio::spawn(async move {
                let _slot = slot;
                future.await
            });
            match tokio::time::timeout(left, task).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Ok(Err(_)) => Ok(Err(StoreError::Unavailable(
                    "the store call was cancelled: the node is shutting down".into(),
                ))),
                Err(elapsed) => Err(elapsed),
            }
        };
        match answered {
            Ok(result) => {
                self.metrics
                    .store_call_duration
                    .get_or_create(&StoreOpLabels { operation: op })
                    .observe(started.elapsed().as_secs_f64());
                result
            }
            Err(_) => {
                self.timed_out(op, StoreStage::Call);
                Err(StoreError::Slow(format!(
                    "the register store did not answer within {} ({})",
                    humantime::format_duration(deadline),
                    op.name(),
                )))
            }
        }
    }

    fn timed_out(&self, operation: StoreOp, stage: StoreStage) {
        self.metrics
            .store_call_timeouts
            .get_or_create(&StoreTimeoutLabels { operation, stage })
            .inc();
    }
}

#[async_trait]
impl RegisterStore for GuardedStore {
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.call(StoreOp::Head, |s| async move { s.head().await })
            .await
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, StoreError> {
        let key = key.cloned();
        self.call(StoreOp::Append, |s| async move {
            s.append(new, expect, key.as_ref()).await
        })
        .await
    }

    async fn prior(
        &self,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
    ) -> Result<Option<Prior>, StoreError> {
        let (key, transaction_id) = (key.cloned(), transaction_id.map(str::to_owned));
        self.call(StoreOp::Prior, |s| async move {
            s.prior(key.as_ref(), transaction_id.as_deref()).await
        })
        .await
    }

    async fn forget_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.call(StoreOp::ForgetKeys, |s| async move {
            s.forget_keys(before).await
        })
        .await
    }

    async fn append_entries(
        &self,
        after_version: i64,
        entries: Vec<Entry>,
        progress: Option<SyncProgress>,
    ) -> Result<(), StoreError> {
        self.call(StoreOp::AppendEntries, |s| async move {
            s.append_entries(after_version, entries, progress).await
        })
        .await
    }

    async fn sync_progress(&self) -> Result<Option<SyncProgress>, StoreError> {
        self.call(
            StoreOp::SyncProgress,
            |s| async move { s.sync_progress().await },
        )
        .await
    }

    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.call(StoreOp::EntriesAfter, |s| async move {
            s.entries_after(after, limit).await
        })
        .await
    }

    async fn entry(&self, version: i64) -> Result<Option<Entry>, StoreError> {
        self.call(StoreOp::Entry, |s| async move { s.entry(version).await })
            .await
    }

    async fn latest(&self, blueprint_id: &str) -> Result<Option<Entry>, StoreError> {
        let id = blueprint_id.to_owned();
        self.call(StoreOp::Latest, |s| async move { s.latest(&id).await })
            .await
    }

    async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let id = blueprint_id.to_owned();
        self.call(StoreOp::History, |s| async move {
            s.history(&id, after, limit).await
        })
        .await
    }

    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError> {
        let blueprint = scope.owned_blueprint();
        self.call(StoreOp::SizesAfter, |s| async move {
            let scope = blueprint.as_deref().map_or(Scope::Log, Scope::Blueprint);
            s.sizes_after(scope, after, limit).await
        })
        .await
    }

    async fn read_ahead(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
        load_bytes: usize,
    ) -> Result<(Vec<Entry>, Vec<EntrySize>), StoreError> {
        let blueprint = scope.owned_blueprint();
        self.call(StoreOp::ReadAhead, |s| async move {
            let scope = blueprint.as_deref().map_or(Scope::Log, Scope::Blueprint);
            s.read_ahead(scope, after, limit, load_bytes).await
        })
        .await
    }

    async fn latest_size(&self, blueprint_id: &str) -> Result<Option<EntrySize>, StoreError> {
        let id = blueprint_id.to_owned();
        self.call(
            StoreOp::LatestSize,
            |s| async move { s.latest_size(&id).await },
        )
        .await
    }

    async fn list_current(&self, query: ListQuery) -> Result<Vec<Entry>, StoreError> {
        self.call(StoreOp::ListCurrent, |s| async move {
            s.list_current(query).await
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.call(StoreOp::Stats, |s| async move { s.stats().await })
            .await
    }

    fn shares_fleet(&self) -> bool {
        self.inner.shares_fleet()
    }

    async fn write_fleet(&self, batch: FleetBatch) -> Result<(), StoreError> {
        self.call(StoreOp::WriteFleet, |s| async move {
            s.write_fleet(batch).await
        })
        .await
    }

    async fn read_fleet(&self, since: i64) -> Result<SharedFleet, StoreError> {
        self.call(
            StoreOp::ReadFleet,
            |s| async move { s.read_fleet(since).await },
        )
        .await
    }

    async fn keep_checkpoints(&self, notes: Vec<(i64, String)>) -> Result<u64, StoreError> {
        self.call(StoreOp::KeepCheckpoints, |s| async move {
            s.keep_checkpoints(notes).await
        })
        .await
    }

    async fn checkpoints_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.call(StoreOp::CheckpointsBetween, |s| async move {
            s.checkpoints_between(after, upto).await
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Shutdown has its own grace period; closing waits for the writer to finish.
        self.inner.close().await
    }

    fn cancel_safe(&self) -> bool {
        // Every call runs to completion or is harmless to drop, as the backend needs.
        true
    }

    async fn follow_external_appends(
        &self,
        announce: &(dyn Fn(i64) + Send + Sync),
        cancel: CancellationToken,
    ) {
        self.inner.follow_external_appends(announce, cancel).await;
    }
}
