//! The Register: the system register's store plus its notifier, and the domain rules for
//! publishing, updating, deprecating, reading and verifying. Both roles write through it (a hub
//! from publish calls, a peer from sync); every reader (REST, SSE, gRPC) reads through it.

pub mod budget;
pub mod chain;
pub mod entry;
pub mod genesis;
pub mod idempotency;
pub mod recent;
pub mod schema;
pub mod validation;
pub mod verify;

use crate::clock::SharedClock;
use crate::metrics::{Metrics, Outcome, OutcomeLabels};
use crate::store::{KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError};
use budget::{BudgetExhausted, Held, ReadBudget};
use entry::{ENTRY_OVERHEAD_BYTES, Entry, EntryType, Expectation, Head, NewEntry};
use futures::Stream;
use recent::{RecentWindow, SharedEntry};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use validation::ValidationError;
use verify::{ChainVerifier, Defect, IntegrityFailure};

/// Most entries read from the store per page when streaming or verifying.
pub const PAGE: usize = 1024;
/// Default byte bound of a page ([`RegisterOptions::max_page_bytes`]).
pub const DEFAULT_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Default byte bound of the recent window ([`RegisterOptions::recent_window_bytes`]).
pub const DEFAULT_WINDOW_BYTES: usize = 64 * 1024 * 1024;
/// Default node-wide read budget ([`RegisterOptions::read_budget_bytes`]).
pub const DEFAULT_READ_BUDGET_BYTES: usize = 256 * 1024 * 1024;
/// How often an append is retried when a concurrent write to the same blueprint wins.
const MAX_CONFLICT_RETRIES: usize = 16;
/// Default time an idempotency key is remembered ([`RegisterOptions::idempotency_retention`]).
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a register operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// Input broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Publishing an id that already exists.
    #[error("blueprint {0:?} already exists; use PUT to publish a new version")]
    AlreadyExists(String),
    /// The blueprint id is unknown.
    #[error("blueprint {0:?} does not exist")]
    NotFound(String),
    /// No entry has this version (yet).
    #[error("the register has no entry at version {0}")]
    NoSuchVersion(i64),
    /// Deprecating a blueprint that is already deprecated.
    #[error("blueprint {0:?} is already deprecated")]
    AlreadyDeprecated(String),
    /// A conditional write found the blueprint at another version than it expected.
    #[error("blueprint {id:?} is at version {current}, not {expected}: read it again and retry")]
    Stale {
        /// The blueprint id.
        id: String,
        /// The version the writer expected to replace.
        expected: i64,
        /// The blueprint's newest version now.
        current: i64,
    },
    /// The idempotency key was used by an earlier request that differs from this one.
    #[error(
        "Idempotency-Key {key:?} was used by an earlier request that differs from this one \
         (in method, path, identity or body): send a new request with a fresh key"
    )]
    KeyReused {
        /// The key.
        key: String,
    },
    /// The publication transaction id names an entry written by a different request.
    #[error(
        "publicationTransactionId {transaction_id:?} already names the entry at version \
         {version}, written by a different request: use a new transaction id"
    )]
    TransactionExists {
        /// The transaction id.
        transaction_id: String,
        /// The entry carrying it.
        version: i64,
    },
    /// Concurrent writers to one blueprint kept winning.
    #[error("blueprint {0:?} is being changed concurrently; try again")]
    Contended(String),
    /// The register failed its integrity check; writes are refused until an operator acts.
    #[error("writes refused: {0}")]
    Corrupt(IntegrityFailure),
    /// Other large reads hold the node's read budget; retry shortly.
    #[error(transparent)]
    Busy(#[from] BudgetExhausted),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

/// A publish or update as asked for by a client.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Blueprint id.
    pub blueprint_id: String,
    /// The document (any JSON; must be an object).
    pub document: serde_json::Value,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Optional external transaction reference.
    pub publication_transaction_id: Option<String>,
}

/// Outcome of an integrity check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True when every entry checked out.
    pub ok: bool,
    /// Entries that passed before the first failure (all of them when `ok`).
    pub checked: u64,
    /// Head version seen by the check.
    pub head_version: i64,
    /// Head chain hash seen by the check.
    pub head_hash: Option<String>,
    /// The first failure, if any.
    pub failure: Option<IntegrityFailure>,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

/// Options for opening a Register.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// Seed the genesis entry into an empty store (hubs do; peers replicate it).
    pub seed_genesis: bool,
    /// Largest accepted document in canonical bytes.
    pub max_document_bytes: usize,
    /// Bytes the recent window may hold (entries and derived values together).
    pub recent_window_bytes: usize,
    /// A page read from the store ends before its entries exceed this many bytes (it always
    /// holds at least one entry).
    pub max_page_bytes: usize,
    /// The node-wide budget of bytes in flight on read paths.
    pub read_budget_bytes: usize,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The schema published and updated documents must satisfy (`validation.blueprintSchema`).
    pub blueprint_schema: Option<Arc<schema::BlueprintSchema>>,
    /// How long an idempotency key is remembered (`idempotency.retention`).
    pub idempotency_retention: Duration,
}

/// How a client asked for a write: its precondition and idempotency key.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `If-Match`: the version the blueprint's newest entry must be, checked atomically with
    /// the append.
    pub expected: Option<i64>,
    /// `Idempotency-Key`: a retry of the same request with the same key gets the first
    /// write's entry back instead of writing again.
    pub idempotency_key: Option<String>,
}

/// A write's outcome.
#[derive(Debug, Clone)]
pub struct Written {
    /// The entry the request wrote (now or, when `replayed`, the first time).
    pub entry: Entry,
    /// True when an earlier identical request (same idempotency key, or same publication
    /// transaction id) wrote the entry and nothing was appended now.
    pub replayed: bool,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            seed_genesis: true,
            max_document_bytes: validation::MAX_DOCUMENT_BYTES,
            recent_window_bytes: DEFAULT_WINDOW_BYTES,
            max_page_bytes: DEFAULT_PAGE_BYTES,
            read_budget_bytes: DEFAULT_READ_BUDGET_BYTES,
            metrics: Arc::default(),
            blueprint_schema: None,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
        }
    }
}

/// How far a page may reach.
#[derive(Debug, Clone, Copy)]
pub struct PageBound {
    /// Most entries.
    pub entries: usize,
    /// Most bytes, counting each entry as its document plus [`ENTRY_OVERHEAD_BYTES`] (what the
    /// store can tell without reading it); the first entry is taken whatever its size.
    pub bytes: usize,
}

/// Entries read from the store, with their bytes held from the read budget until they are
/// released (or the page is dropped).
#[derive(Debug)]
pub struct Page {
    /// The entries, in version order.
    pub entries: VecDeque<Entry>,
    /// True when the scope has entries after this page.
    pub more: bool,
    /// The page's bytes in the read budget.
    pub held: Held,
}

impl Page {
    /// Takes the next entry off the page; the page keeps holding the budget for all its
    /// entries until it is dropped. For streams of many small entries, where a share per
    /// entry would cost a semaphore operation each.
    pub fn next_entry(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    /// Takes the next entry off the page with its share of the page's budget, which the
    /// caller keeps until the entry has left memory (is written out).
    pub fn pop(&mut self) -> Option<(Entry, Held)> {
        let entry = self.entries.pop_front()?;
        let held = self.held.split_off(entry.weight());
        Some((entry, held))
    }
}

/// The system register: store + notifier + rules.
pub struct Register {
    store: Arc<dyn RegisterStore>,
    head: watch::Sender<i64>,
    recent: RecentWindow,
    budget: ReadBudget,
    integrity: RwLock<Option<IntegrityFailure>>,
    clock: SharedClock,
    options: RegisterOptions,
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("head", &*self.head.borrow())
            .finish()
    }
}

impl Register {
    /// Opens the register over `store`: seeds genesis into an empty store when asked (idempotent:
    /// an existing register is never re-seeded), then verifies the whole register. A corrupt
    /// register opens read-only and reports the failure through [`Register::integrity`].
    pub async fn open(
        store: Arc<dyn RegisterStore>,
        clock: SharedClock,
        options: RegisterOptions,
    ) -> Result<Arc<Self>, RegisterError> {
        if options.seed_genesis && store.head().await?.is_none() {
            match store
                .append_entries(0, vec![genesis::genesis_entry()], None)
                .await
            {
                Ok(()) => tracing::info!("seeded genesis entry register-creation-v1 at version 1"),
                // Another node sharing the store seeded first.
                Err(StoreError::HeadMoved { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let head_version = store.head().await?.map_or(0, |h| h.version);
        options.metrics.head_version.set(head_version);
        let register = Arc::new(Self {
            store,
            head: watch::Sender::new(head_version),
            recent: RecentWindow::new(
                options.recent_window_bytes,
                options.metrics.recent_window_bytes.clone(),
            ),
            budget: ReadBudget::new(
                options.read_budget_bytes,
                options.metrics.read_bytes_in_flight.clone(),
            ),
            integrity: RwLock::new(None),
            clock,
            options,
        });
        let report = register.verify().await?;
        if let Some(failure) = &report.failure {
            tracing::error!(
                first_bad_version = failure.version,
                error = %failure,
                "register failed its integrity check; writes are refused"
            );
        } else {
            tracing::info!(
                entries = report.checked,
                duration_ms = report.duration_ms,
                "register verified"
            );
        }
        Ok(register)
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.options.metrics
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn RegisterStore> {
        &self.store
    }

    /// The recent window (entries near the head and what streaming derives from them).
    pub fn recent(&self) -> &RecentWindow {
        &self.recent
    }

    /// The node-wide read budget.
    pub fn read_budget(&self) -> &ReadBudget {
        &self.budget
    }

    /// The largest page of entries a read brings into memory (at least one entry).
    pub fn max_page_bytes(&self) -> usize {
        self.options.max_page_bytes
    }

    /// Reads the page after `after` in `scope`: sizes it first (without loading documents),
    /// takes its bytes from the read budget (waiting at most `wait`; `None` waits as long as
    /// it takes), then reads it. The page ends at `bound` but always holds one entry if any.
    pub async fn read_page(
        &self,
        scope: Scope<'_>,
        after: i64,
        bound: PageBound,
        wait: Option<Duration>,
    ) -> Result<Page, RegisterError> {
        read_page(self.store.as_ref(), &self.budget, scope, after, bound, wait).await
    }

    /// Version of the newest durable entry this node has announced.
    pub fn head_version(&self) -> i64 {
        *self.head.borrow()
    }

    /// A receiver that changes whenever the head moves.
    pub fn watch_head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The integrity failure found by the last check, if any; writes are refused while set.
    pub fn integrity(&self) -> Option<IntegrityFailure> {
        self.integrity.read().ok().and_then(|g| g.clone())
    }

    /// Moves the announced head forward (never back); wakes every follower.
    pub fn announce(&self, version: i64) {
        self.options
            .metrics
            .head_version
            .set(version.max(self.head_version()));
        self.head.send_if_modified(|head| {
            if version > *head {
                *head = version;
                true
            } else {
                false
            }
        });
    }

    fn ensure_writable(&self) -> Result<(), RegisterError> {
        match self.integrity() {
            Some(failure) => Err(RegisterError::Corrupt(failure)),
            None => Ok(()),
        }
    }

    fn prepare(
        &self,
        publication: Publication,
        published_by: &str,
        entry_type: EntryType,
    ) -> Result<NewEntry, RegisterError> {
        validation::blueprint_id(&publication.blueprint_id)?;
        validation::published_by(published_by)?;
        validation::transaction_id(publication.publication_transaction_id.as_deref())?;
        validation::metadata(&publication.metadata)?;
        let document =
            validation::canonical_document(&publication.document, self.options.max_document_bytes)?;
        if let Some(schema) = &self.options.blueprint_schema {
            schema.check(&publication.document)?;
        }
        Ok(NewEntry {
            blueprint_id: publication.blueprint_id,
            checksum: chain::checksum(&document),
            document: document.into(),
            published_at: self.clock.now_ms(),
            published_by: published_by.to_owned(),
            is_active: true,
            // The wire contract (proto3) cannot tell an empty id from none, and the chain
            // hash can: store "" as absent so every replica hashes the same entry.
            publication_transaction_id: publication
                .publication_transaction_id
                .filter(|tx| !tx.is_empty()),
            metadata: publication.metadata,
            entry_type,
        })
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, RegisterError> {
        let started = Instant::now();
        let result = self.store.append(new, expect, key).await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Failed,
        };
        self.options
            .metrics
            .publishes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let entry = result?;
        self.options
            .metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        self.recent.push([entry.clone()]);
        self.announce(entry.version);
        tracing::info!(
            version = entry.version,
            blueprint_id = %entry.blueprint_id,
            entry_type = entry.entry_type.as_str(),
            duration_us = started.elapsed().as_micros() as u64,
            "appended entry"
        );
        Ok(entry)
    }

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

    /// The claim of a write with `options` whose request has `fingerprint`.
    fn key_claim(
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
    async fn replay(
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
    async fn append_claiming(
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

    /// Publishes a new blueprint (type *published*); fails if the id exists. A retry of an
    /// earlier request (same idempotency key or transaction id, same request) returns its
    /// entry without writing.
    #[tracing::instrument(name = "publish", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    pub async fn publish(
        &self,
        publication: Publication,
        published_by: &str,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        self.ensure_writable()?;
        let id = publication.blueprint_id.clone();
        let new = self.prepare(publication, published_by, EntryType::Published)?;
        let fingerprint = claimed_fingerprint(&new, options);
        let key = self.key_claim(options, fingerprint.clone())?;
        // The store checks the key and transaction id before the expectation, in the
        // append's transaction: a retry is answered from there, with no read before.
        match self
            .append_claiming(new, Expectation::Absent, key.as_ref(), &fingerprint)
            .await
        {
            Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                Err(RegisterError::AlreadyExists(id))
            }
            other => other,
        }
    }

    /// Publishes a new document for an existing blueprint (type *updated*). Updating a
    /// deprecated blueprint makes it active again.
    #[tracing::instrument(name = "update", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    ///
    /// With `options.expected` (a conditional write, `If-Match`), the blueprint's newest entry
    /// must be that version, checked atomically by the store's append: exactly one of
    /// concurrent writers expecting the same version succeeds, the others get
    /// [`RegisterError::Stale`]. Retries replay as for [`Register::publish`].
    pub async fn update(
        &self,
        publication: Publication,
        published_by: &str,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        self.ensure_writable()?;
        let id = publication.blueprint_id.clone();
        let new = self.prepare(publication, published_by, EntryType::Updated)?;
        let fingerprint = claimed_fingerprint(&new, options);
        let key = self.key_claim(options, fingerprint.clone())?;
        // As for publish, the store answers a retry before it checks `If-Match`.
        if let Some(expected) = options.expected {
            let mut attempt = new;
            attempt.published_at = self.clock.now_ms();
            return match self
                .append_claiming(
                    attempt,
                    Expectation::AtVersion(expected),
                    key.as_ref(),
                    &fingerprint,
                )
                .await
            {
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                    Err(self.stale(&id, expected).await)
                }
                other => other,
            };
        }
        for _ in 0..MAX_CONFLICT_RETRIES {
            // Only the version is needed: the newest document is not loaded.
            let current = self
                .store
                .latest_size(&id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(id.clone()))?;
            let mut attempt = new.clone();
            attempt.published_at = self.clock.now_ms();
            match self
                .append_claiming(
                    attempt,
                    Expectation::AtVersion(current.version),
                    key.as_ref(),
                    &fingerprint,
                )
                .await
            {
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => continue,
                other => return other,
            }
        }
        Err(RegisterError::Contended(id))
    }

    /// Deprecates a blueprint: appends a *deprecated* entry carrying the current document with
    /// `isActive = false`.
    #[tracing::instrument(name = "deprecate", skip(self, metadata, options))]
    ///
    /// With `options.expected` (`If-Match`), as [`Register::update`]: one attempt, stale →
    /// 412. A retry with the same idempotency key replays the first deprecation.
    pub async fn deprecate(
        &self,
        blueprint_id: &str,
        published_by: &str,
        metadata: BTreeMap<String, String>,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        self.ensure_writable()?;
        validation::blueprint_id(blueprint_id)?;
        validation::published_by(published_by)?;
        validation::metadata(&metadata)?;
        let template = NewEntry {
            blueprint_id: blueprint_id.to_owned(),
            document: bytes::Bytes::new(),
            checksum: String::new(),
            published_at: 0,
            published_by: published_by.to_owned(),
            is_active: false,
            publication_transaction_id: None,
            metadata,
            entry_type: EntryType::Deprecated,
        };
        let fingerprint = claimed_fingerprint(&template, options);
        let key = self.key_claim(options, fingerprint.clone())?;
        // Before the checks below: the blueprint a first attempt deprecated is deprecated now.
        if let Some(k) = &key
            && let Some(prior) = self.store.prior(Some(k), None).await?
        {
            return self.replay(prior, Some(k), None, &fingerprint).await;
        }
        let expected = options.expected;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self
                .store
                .latest(blueprint_id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(blueprint_id.to_owned()))?;
            if let Some(expected) = expected
                && current.version != expected
            {
                return Err(RegisterError::Stale {
                    id: blueprint_id.to_owned(),
                    expected,
                    current: current.version,
                });
            }
            if !current.is_active {
                return Err(RegisterError::AlreadyDeprecated(blueprint_id.to_owned()));
            }
            let new = NewEntry {
                document: current.document.clone(),
                checksum: current.checksum.clone(),
                published_at: self.clock.now_ms(),
                ..template.clone()
            };
            match self
                .append_claiming(
                    new,
                    Expectation::AtVersion(current.version),
                    key.as_ref(),
                    &fingerprint,
                )
                .await
            {
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                    if let Some(expected) = expected {
                        return Err(self.stale(blueprint_id, expected).await);
                    }
                    continue;
                }
                other => return other,
            }
        }
        Err(RegisterError::Contended(blueprint_id.to_owned()))
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

    /// Why a conditional write expecting `expected` failed: the blueprint's current version
    /// (or that it is gone, or the store's error).
    async fn stale(&self, id: &str, expected: i64) -> RegisterError {
        match self.store.latest_size(id).await {
            Ok(Some(current)) => RegisterError::Stale {
                id: id.to_owned(),
                expected,
                current: current.version,
            },
            Ok(None) => RegisterError::NotFound(id.to_owned()),
            Err(e) => e.into(),
        }
    }

    /// The version of a blueprint's newest entry, without loading it.
    pub async fn blueprint_version(&self, blueprint_id: &str) -> Result<i64, RegisterError> {
        validation::blueprint_id(blueprint_id)?;
        self.store
            .latest_size(blueprint_id)
            .await?
            .map(|s| s.version)
            .ok_or_else(|| RegisterError::NotFound(blueprint_id.to_owned()))
    }

    /// The entry at `version`, with its bytes held from the read budget (waiting at most
    /// `wait`) until the returned guard is dropped.
    pub async fn entry_at(
        &self,
        version: i64,
        wait: Option<Duration>,
    ) -> Result<(Entry, Held), RegisterError> {
        let missing = || RegisterError::NoSuchVersion(version);
        if version < 1 {
            return Err(missing());
        }
        let mut page = self
            .read_page(Scope::Log, version - 1, self.page_bound(1), wait)
            .await?;
        match page.pop() {
            Some((entry, held)) if entry.version == version => Ok((entry, held)),
            _ => Err(missing()),
        }
    }

    /// The head (version, chain hash), `None` when empty.
    pub async fn head(&self) -> Result<Option<Head>, RegisterError> {
        Ok(self.store.head().await?)
    }

    /// Counts over the register.
    pub async fn stats(&self) -> Result<Stats, RegisterError> {
        Ok(self.store.stats().await?)
    }

    /// Newest entry of a blueprint, with its bytes held from the read budget (waiting at
    /// most `wait`) until the returned guard is dropped.
    pub async fn blueprint(
        &self,
        blueprint_id: &str,
        wait: Option<Duration>,
    ) -> Result<(Entry, Held), RegisterError> {
        validation::blueprint_id(blueprint_id)?;
        let not_found = || RegisterError::NotFound(blueprint_id.to_owned());
        let size = self
            .store
            .latest_size(blueprint_id)
            .await?
            .ok_or_else(not_found)?;
        let bytes = usize::try_from(size.bytes).unwrap_or(usize::MAX);
        let held = self
            .budget
            .acquire(bytes.saturating_add(ENTRY_OVERHEAD_BYTES), wait)
            .await?;
        let entry = self
            .store
            .entry(size.version)
            .await?
            .ok_or_else(not_found)?;
        Ok((entry, held))
    }

    /// A page of a blueprint's entries after `after`, oldest first (see
    /// [`Register::read_page`]).
    pub async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        bound: PageBound,
        wait: Option<Duration>,
    ) -> Result<Page, RegisterError> {
        validation::blueprint_id(blueprint_id)?;
        let page = self
            .read_page(Scope::Blueprint(blueprint_id), after, bound, wait)
            .await?;
        if page.entries.is_empty() && after == 0 {
            return Err(RegisterError::NotFound(blueprint_id.to_owned()));
        }
        Ok(page)
    }

    /// Current state of blueprints, paged by id.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<Entry>, RegisterError> {
        Ok(self.store.list_current(query).await?)
    }

    /// A page of the log after `after` (see [`Register::read_page`]).
    pub async fn entries_after(
        &self,
        after: i64,
        bound: PageBound,
        wait: Option<Duration>,
    ) -> Result<Page, RegisterError> {
        self.read_page(Scope::Log, after, bound, wait).await
    }

    /// A page bound of at most `entries` entries and the node's page bytes.
    pub fn page_bound(&self, entries: usize) -> PageBound {
        PageBound {
            entries,
            bytes: self.options.max_page_bytes,
        }
    }

    /// Runs the full integrity check and records its outcome (a failure refuses writes; a later
    /// clean check does not lift that: corruption needs an operator).
    #[tracing::instrument(name = "verify", skip(self))]
    pub async fn verify(&self) -> Result<VerifyReport, RegisterError> {
        let report = verify_pages(
            self.store.as_ref(),
            &|_, _| {},
            &self.budget,
            self.options.max_page_bytes,
        )
        .await?;
        let metrics = &self.options.metrics;
        metrics.verify_ok.set(i64::from(report.ok));
        metrics
            .verify_duration
            .observe(report.duration_ms as f64 / 1000.0);
        if let Some(f) = &report.failure
            && let Ok(mut guard) = self.integrity.write()
        {
            guard.get_or_insert_with(|| f.clone());
        }
        Ok(report)
    }

    /// Every entry after `after`, then every new one as it is appended, in version order with
    /// no gaps or duplicates. The follower is a cursor over the store: it never holds up
    /// writers and never misses an entry however slowly it is polled. Entries in the recent
    /// window are shared with every other follower; older ones are read in pages bounded by
    /// bytes, through the read budget (waiting for room). Ends when the register is dropped
    /// or on the first store error (yielded).
    pub fn follow(
        self: &Arc<Self>,
        after: i64,
    ) -> impl Stream<Item = Result<Arc<SharedEntry>, StoreError>> + Send + use<> {
        struct State {
            register: Arc<Register>,
            head: watch::Receiver<i64>,
            cursor: i64,
            page: Option<Page>,
            failed: bool,
        }
        let state = State {
            register: Arc::clone(self),
            head: self.head.subscribe(),
            cursor: after,
            page: None,
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            loop {
                if let Some((entry, held)) = s.page.as_mut().and_then(Page::pop) {
                    s.cursor = entry.version;
                    let shared = SharedEntry::new(entry).holding(held);
                    return Some((Ok(Arc::new(shared)), s));
                }
                s.page = None;
                let head = *s.head.borrow_and_update();
                if head > s.cursor {
                    // Recent entries come from memory: a publish wakes every follower, and
                    // thousands of them must not each read the store.
                    if let Some(shared) = s.register.recent.get(s.cursor + 1) {
                        s.cursor += 1;
                        return Some((Ok(shared), s));
                    }
                    let bound = s.register.page_bound(PAGE);
                    match s
                        .register
                        .read_page(Scope::Log, s.cursor, bound, None)
                        .await
                    {
                        Ok(page) if !page.entries.is_empty() => s.page = Some(page),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(RegisterError::Store(e)) => {
                            s.failed = true;
                            return Some((Err(e), s));
                        }
                        Err(e) => {
                            s.failed = true;
                            return Some((Err(StoreError::Unavailable(e.to_string())), s));
                        }
                    }
                } else if s.head.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

/// Reads the page after `after` in `scope` from `store`: sizes it first (without loading
/// documents), takes its bytes from `budget` (waiting at most `wait`; `None` waits as long as
/// it takes), then reads it. The page ends at `bound` but always holds one entry if any.
pub async fn read_page(
    store: &dyn RegisterStore,
    budget: &ReadBudget,
    scope: Scope<'_>,
    after: i64,
    bound: PageBound,
    wait: Option<Duration>,
) -> Result<Page, RegisterError> {
    let sizes = store
        .sizes_after(scope, after, bound.entries.saturating_add(1))
        .await?;
    let mut count = 0;
    let mut bytes = 0usize;
    for size in sizes.iter().take(bound.entries) {
        let weight = usize::try_from(size.bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(ENTRY_OVERHEAD_BYTES);
        if count > 0 && bytes.saturating_add(weight) > bound.bytes {
            break;
        }
        bytes = bytes.saturating_add(weight);
        count += 1;
    }
    let held = budget.acquire(bytes, wait).await?;
    let entries = match (count, scope) {
        (0, _) => Vec::new(),
        (_, Scope::Log) => store.entries_after(after, count).await?,
        (_, Scope::Blueprint(id)) => store.history(id, after, count).await?,
    };
    Ok(Page {
        more: sizes.len() > entries.len(),
        entries: entries.into(),
        held,
    })
}

/// Checks a whole store: every checksum, the chain, contiguous versions and the register id.
/// Reads the next page while hashing the current one, hashing off the async threads; pages
/// are bounded by [`DEFAULT_PAGE_BYTES`].
pub async fn verify_store(store: &dyn RegisterStore) -> Result<VerifyReport, StoreError> {
    verify_store_with_progress(store, &|_, _| {}).await
}

/// [`verify_store`], calling `progress(checked, head_version)` after every page.
pub async fn verify_store_with_progress(
    store: &dyn RegisterStore,
    progress: &(dyn Fn(u64, i64) + Sync),
) -> Result<VerifyReport, StoreError> {
    // Two pages at most are in memory: the one being hashed and the next.
    let budget = ReadBudget::new(2 * DEFAULT_PAGE_BYTES, Default::default());
    verify_pages(store, progress, &budget, DEFAULT_PAGE_BYTES).await
}

/// The integrity check over pages of at most `page_bytes`, read through `budget`.
async fn verify_pages(
    store: &dyn RegisterStore,
    progress: &(dyn Fn(u64, i64) + Sync),
    budget: &ReadBudget,
    page_bytes: usize,
) -> Result<VerifyReport, StoreError> {
    let started = Instant::now();
    let head = store.head().await?;
    let head_version = head.as_ref().map_or(0, |h| h.version);
    let mut verifier = ChainVerifier::new();
    let mut failure = None;
    let bound = PageBound {
        entries: PAGE,
        bytes: page_bytes,
    };
    let read = |after: i64| async move {
        match read_page(store, budget, Scope::Log, after, bound, None).await {
            Ok(page) => Ok(page),
            Err(RegisterError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    };
    let mut fetched = read(0).await;
    loop {
        let page = match fetched {
            Ok(page) => page,
            Err(StoreError::Corrupt { version, reason }) => {
                failure = Some(IntegrityFailure {
                    version,
                    defect: Defect::Unreadable(reason),
                });
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = page.entries.back().map(|e| e.version) else {
            break;
        };
        let checked = tokio::task::spawn_blocking(move || {
            // The whole page, budget included, moves here and is freed once hashed.
            let page = page;
            let result = page.entries.iter().try_for_each(|e| verifier.check(e));
            (verifier, result)
        });
        // The next page is read while this one is hashed.
        let (checked, next) = if last < head_version {
            let (checked, next) = tokio::join!(checked, read(last));
            (checked, Some(next))
        } else {
            (checked.await, None)
        };
        let (v, result) =
            checked.map_err(|e| StoreError::Unavailable(format!("verify task failed: {e}")))?;
        verifier = v;
        progress(verifier.checked(), head_version);
        if let Err(f) = result {
            failure = Some(f);
            break;
        }
        match next {
            Some(next) => fetched = next,
            None => break,
        }
    }
    if failure.is_none() && verifier.next_version() <= head_version {
        // Entries are missing at the end (or a page read came back short).
        failure = Some(IntegrityFailure {
            version: verifier.next_version(),
            defect: Defect::VersionGap {
                expected: verifier.next_version(),
                found: head_version,
            },
        });
    }
    Ok(VerifyReport {
        ok: failure.is_none(),
        checked: verifier.checked(),
        head_version,
        head_hash: head.map(|h| h.chain_hash),
        failure,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The fingerprint of the request writing `new`, when the write claims anything (an
/// idempotency key or a transaction id) it could be compared against; otherwise nothing is
/// compared, and the publish path skips the hash.
fn claimed_fingerprint(new: &NewEntry, options: &WriteOptions) -> String {
    if options.idempotency_key.is_some() || new.publication_transaction_id.is_some() {
        idempotency::of_new(new)
    } else {
        String::new()
    }
}
