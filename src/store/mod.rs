//! Storage of the system register behind one interface, [`RegisterStore`], with the embedded
//! single-file backend ([`embedded::EmbeddedStore`]) and a conformance suite
//! ([`conformance`]) that every backend must pass. Hubs sharing a MongoDB store also share
//! their fleet record through it ([`fleet`]).

pub mod conformance;
pub mod embedded;
pub mod fleet;
pub mod guarded;
pub mod mongo;
pub mod synthetic;

use crate::error_code::{Classified, Disclosure, ErrorCode};
use crate::register::entry::{ENTRY_OVERHEAD_BYTES, Entry, Expectation, Head, NewEntry};
use async_trait::async_trait;

/// Failure of a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The blueprint's newest entry is not what the append expected.
    #[error("blueprint expectation failed: expected {expected:?}, newest entry is {actual:?}")]
    ExpectationFailed {
        /// What the caller expected.
        expected: Expectation,
        /// Version of the blueprint's newest entry (`None` if the blueprint does not exist).
        actual: Option<i64>,
    },
    /// Verified entries did not continue the current head.
    #[error(
        "entries do not continue the head: head is at version {head}, entries start at {first}"
    )]
    HeadMoved {
        /// The store's head version (0 when empty).
        head: i64,
        /// Version of the first entry offered.
        first: i64,
    },
    /// A stored row cannot be read back as an entry.
    #[error(
        "the register failed its integrity check: the stored entry at version {version} is \
         unreadable: {reason}"
    )]
    Corrupt {
        /// The unreadable version.
        version: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time: no free slot within `limits.storeCallWait`, or no
    /// answer within `limits.storeCallTimeout`. Retryable. A write that timed out may still
    /// complete; a retry with the same `Idempotency-Key` is answered from it.
    #[error("{0}; try again shortly")]
    Slow(String),
    /// The disk holding the store is full; the write was rolled back and nothing changed.
    #[error(
        "the register's disk is full; nothing was written: {0}; free space on the node's data \
         volume and retry"
    )]
    Full(String),
    /// The backend cannot hold an entry this large; permanent, nothing was written.
    #[error("the entry is too large for this node's store; nothing was written: {0}")]
    TooLarge(String),
    /// An earlier write holds the idempotency key or the publication transaction id this
    /// append claims; nothing was written.
    #[error("an earlier write holds this append's claim: {0:?}")]
    Claimed(Prior),
}

impl Classified for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Corrupt { .. } => ErrorCode::Corrupt,
            StoreError::Unavailable(_) | StoreError::Slow(_) => ErrorCode::Unavailable,
            StoreError::Full(_) => ErrorCode::StoreFull,
            StoreError::TooLarge(_) => ErrorCode::TooLarge,
            StoreError::ExpectationFailed { .. }
            | StoreError::HeadMoved { .. }
            | StoreError::Claimed(_) => ErrorCode::Conflict,
        }
    }

    fn disclosure(&self) -> Disclosure {
        match self {
            StoreError::Corrupt { .. } | StoreError::Full(_) => Disclosure::ShownFault,
            // A driver's message may name hosts, or credentials in a connection string.
            StoreError::Unavailable(_) => {
                Disclosure::Withheld("the register store is unavailable; try again later")
            }
            StoreError::Slow(_) | StoreError::TooLarge(_) => Disclosure::ShownDegraded,
            StoreError::ExpectationFailed { .. }
            | StoreError::HeadMoved { .. }
            | StoreError::Claimed(_) => Disclosure::Shown,
        }
    }
}

/// An idempotency key an append records for itself, in the append's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    /// The client's key.
    pub key: String,
    /// Fingerprint of the request that sent it.
    pub fingerprint: String,
    /// Records made before this time (Unix ms) are forgotten: read as absent, and replaced.
    pub live_after: i64,
}

/// An earlier write that holds a name an append claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// The idempotency key was recorded, with the request's `fingerprint`, by the write of
    /// the entry at `version`.
    Key {
        /// The entry that write appended.
        version: i64,
        /// Fingerprint of that write's request.
        fingerprint: String,
    },
    /// The publication transaction id is carried by the entry at `version` (the oldest one,
    /// should a release before the rule have stored it twice).
    Transaction {
        /// That entry's version.
        version: i64,
    },
}

/// Checks that `entries` continue a head at `head_version` as the caller expects
/// (`after_version`), in contiguous versions; the rule every backend's `append_entries` applies.
pub fn check_continuation(
    head_version: i64,
    after_version: i64,
    entries: &[Entry],
) -> Result<(), StoreError> {
    let first = entries.first().map_or(after_version + 1, |e| e.version);
    let contiguous = entries
        .iter()
        .zip(entries.iter().skip(1))
        .all(|(a, b)| b.version == a.version + 1);
    if head_version != after_version || first != after_version + 1 || !contiguous {
        return Err(StoreError::HeadMoved {
            head: head_version,
            first,
        });
    }
    Ok(())
}

/// Checks an append's expectation against the blueprint's newest version (`None` = the
/// blueprint does not exist); the rule every backend's `append` applies.
pub fn check_expectation(expect: Expectation, actual: Option<i64>) -> Result<(), StoreError> {
    let meets = match expect {
        Expectation::Absent => actual.is_none(),
        Expectation::AtVersion(v) => actual == Some(v),
    };
    if meets {
        Ok(())
    } else {
        Err(StoreError::ExpectationFailed {
            expected: expect,
            actual,
        })
    }
}

/// Which entries a ranged read walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The whole log, in version order.
    Log,
    /// One blueprint's entries, in version order.
    Blueprint(&'a str),
}

impl Scope<'_> {
    /// The blueprint this scope names, owned (for a call that outlives the borrow: a task of
    /// its own, the blocking pool); `None` for the whole log.
    pub fn owned_blueprint(self) -> Option<String> {
        match self {
            Scope::Log => None,
            Scope::Blueprint(id) => Some(id.to_owned()),
        }
    }
}

/// The stored size of one entry, known without reading its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySize {
    /// The entry's version.
    pub version: i64,
    /// Bytes of its document.
    pub bytes: u64,
}

/// What an entry of `document_bytes` weighs when a page is sized before it is read: its
/// document plus [`ENTRY_OVERHEAD_BYTES`] (what the store can tell without reading it).
pub fn page_weight(document_bytes: u64) -> usize {
    usize::try_from(document_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// How many of the leading `sizes` fit together within `bytes` of [`page_weight`].
pub fn leading_within(sizes: &[EntrySize], bytes: usize) -> usize {
    let mut total = 0usize;
    sizes
        .iter()
        .take_while(|s| {
            total = total.saturating_add(page_weight(s.bytes));
            total <= bytes
        })
        .count()
}

/// Paging query over blueprints' current state.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only active (`Some(true)`) or deprecated (`Some(false)`) blueprints.
    pub active: Option<bool>,
    /// Start after this blueprint id (ids ascend).
    pub after_id: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// Counts over the register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Number of entries (the head version, versions being contiguous).
    pub entries: i64,
    /// Number of distinct blueprints.
    pub blueprints: i64,
    /// Number of blueprints whose newest entry is active.
    pub active_blueprints: i64,
    /// `publishedAt` of the head entry.
    pub last_published_at: Option<i64>,
}

/// A peer's sync progress, stored in the same transaction as the entries it describes so it
/// never runs ahead of the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// Version of the newest applied entry.
    pub current_version: i64,
    /// Chain hash of that entry.
    pub head_hash: String,
    /// Hub the entries came from.
    pub hub_id: String,
    /// When the last sync finished, Unix ms.
    pub last_sync_time: i64,
    /// When the next periodic sync is due, Unix ms.
    pub next_sync_due: i64,
    /// Entries applied by sync since the replica was created.
    pub total_entries_synced: i64,
    /// Syncs completed since the replica was created.
    pub total_syncs: i64,
}

/// Durable storage of the system register. Implementations assign versions and chain links
/// under their own concurrency control, and acknowledge a write only once it is durable.
#[async_trait]
pub trait RegisterStore: Send + Sync + 'static {
    /// The newest entry's version and chain hash, `None` when empty.
    async fn head(&self) -> Result<Option<Head>, StoreError>;

    /// Appends `new` at head + 1 with its chain link, provided the blueprint's newest entry
    /// meets `expect` and no earlier write holds `key` (a live record) or `new`'s publication
    /// transaction id ([`StoreError::Claimed`] otherwise, checked before `expect`). The key is
    /// recorded in the same transaction as the entry. Returns the stored entry once durable.
    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, StoreError>;

    /// The earlier write holding `key` (a record made after its `live_after`), else the
    /// oldest entry carrying `transaction_id`; what [`RegisterStore::append`] would refuse.
    async fn prior(
        &self,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
    ) -> Result<Option<Prior>, StoreError>;

    /// Forgets idempotency keys recorded before `before` (Unix ms); returns how many.
    async fn forget_keys(&self, before: i64) -> Result<u64, StoreError>;

    /// Appends complete, already verified entries (genesis, replication) as one atomic write,
    /// provided the head is currently at `after_version` (0 = empty store). Sync progress, when
    /// given, is stored in the same transaction.
    async fn append_entries(
        &self,
        after_version: i64,
        entries: Vec<Entry>,
        progress: Option<SyncProgress>,
    ) -> Result<(), StoreError>;

    /// The stored sync progress (peers), if any.
    async fn sync_progress(&self) -> Result<Option<SyncProgress>, StoreError>;

    /// Up to `limit` entries with `version > after`, in version order.
    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// The entry at `version`.
    async fn entry(&self, version: i64) -> Result<Option<Entry>, StoreError>;

    /// The newest entry of a blueprint.
    async fn latest(&self, blueprint_id: &str) -> Result<Option<Entry>, StoreError>;

    /// Up to `limit` entries of a blueprint with `version > after`, in version order.
    async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Versions and sizes of up to `limit` entries with `version > after` in `scope`, in
    /// version order, read without loading documents (so a reader can size a page before
    /// reading it).
    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError>;

    /// Up to `limit` entries with `version > after` in `scope`, in version order:
    /// documents for the leading entries whose running [`page_weight`] stays within
    /// `load_bytes` (possibly none), then the versions and sizes of the rest, not loaded. A
    /// reader takes `load_bytes` of its read budget first. The embedded store answers in one
    /// call; the default sizes the entries, then loads those that fit (two requests — on
    /// MongoDB one aggregation with a running `$setWindowFields` sum could do it, but the
    /// test command's wire server runs that 20× slower than the two requests).
    async fn read_ahead(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
        load_bytes: usize,
    ) -> Result<(Vec<Entry>, Vec<EntrySize>), StoreError> {
        let sizes = self.sizes_after(scope, after, limit).await?;
        let load = leading_within(&sizes, load_bytes);
        if load == 0 {
            return Ok((Vec::new(), sizes));
        }
        let loaded = match scope {
            Scope::Log => self.entries_after(after, load).await?,
            Scope::Blueprint(id) => self.history(id, after, load).await?,
        };
        let rest = sizes.into_iter().skip(loaded.len()).collect();
        Ok((loaded, rest))
    }

    /// Version and size of a blueprint's newest entry, without loading its document.
    async fn latest_size(&self, blueprint_id: &str) -> Result<Option<EntrySize>, StoreError>;

    /// The newest entry of each blueprint, ordered by blueprint id, **without documents**
    /// (`document` is empty): a listing never loads them.
    async fn list_current(&self, query: ListQuery) -> Result<Vec<Entry>, StoreError>;

    /// Counts over the register.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// Makes everything durable and releases resources; called once at shutdown.
    async fn close(&self) -> Result<(), StoreError>;

    /// Whether a call's future may be dropped before it finishes without harm (the default:
    /// the embedded store hands its work to its writer thread or the blocking pool, which
    /// finish it either way). A backend that answers `false` (MongoDB, whose driver documents
    /// dropping its futures mid-flight as unsafe for its connection pool) gets every call run
    /// to completion on a task of its own by [`guarded::GuardedStore`].
    fn cancel_safe(&self) -> bool {
        true
    }

    /// Whether hubs sharing this store share their fleet record through it (MongoDB). The
    /// embedded store has one hub, which keeps its own record in memory.
    fn shares_fleet(&self) -> bool {
        false
    }

    /// Writes one hub's batch of its fleet record and its presence, and deletes the records
    /// of `batch.gone_hubs` still silent since before `batch.expire_before` (see [`fleet`]).
    /// A store that does not share the fleet has nothing to write.
    async fn write_fleet(&self, batch: fleet::FleetBatch) -> Result<(), StoreError> {
        let _ = batch;
        Ok(())
    }

    /// Every hub's presence, and the fleet records written at or after `since` (Unix ms on
    /// the writers' clocks; 0 = all). Empty for a store that does not share the fleet.
    async fn read_fleet(&self, since: i64) -> Result<fleet::SharedFleet, StoreError> {
        let _ = since;
        Ok(fleet::SharedFleet::default())
    }

    /// Keeps hub checkpoint notes (C2SP signed notes, each with the version it covers) for
    /// versions the replica holds, replacing one kept for the same version: a relay hands
    /// them on to its downstream peers with the entries they cover, as it received them.
    /// Returns how many it kept.
    async fn keep_checkpoints(&self, notes: Vec<(i64, String)>) -> Result<u64, StoreError>;

    /// The checkpoint notes kept for versions in `(after, upto]`, in version order.
    async fn checkpoints_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError>;

    /// For stores shared by several nodes: calls `announce` with the head version whenever
    /// another writer may have appended, until `cancel` fires. A store with a single writer
    /// (this process) has nothing to follow and returns at once.
    async fn follow_external_appends(
        &self,
        announce: &(dyn Fn(i64) + Send + Sync),
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let _ = (announce, cancel);
    }
}
