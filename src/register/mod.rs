//! The Register: the system register's store plus its notifier, and the domain rules for
//! publishing, updating, deprecating, reading and verifying. Both roles write through it (a hub
//! from publish calls, a peer from sync); every reader (REST, SSE, gRPC) reads through it.

pub mod chain;
pub mod entry;
pub mod genesis;
pub mod per_entry;
pub mod validation;
pub mod verify;

use crate::clock::SharedClock;
use crate::metrics::{Metrics, Outcome, OutcomeLabels};
use crate::store::{ListQuery, RegisterStore, Stats, StoreError};
use entry::{Entry, EntryType, Expectation, Head, NewEntry};
use futures::Stream;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use validation::ValidationError;
use verify::{ChainVerifier, Defect, IntegrityFailure};

/// Entries read from the store per page when streaming or verifying.
pub const PAGE: usize = 1024;
/// How often an append is retried when a concurrent write to the same blueprint wins.
const MAX_CONFLICT_RETRIES: usize = 16;

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
    /// Deprecating a blueprint that is already deprecated.
    #[error("blueprint {0:?} is already deprecated")]
    AlreadyDeprecated(String),
    /// Concurrent writers to one blueprint kept winning.
    #[error("blueprint {0:?} is being changed concurrently; try again")]
    Contended(String),
    /// The register failed its integrity check; writes are refused until an operator acts.
    #[error("writes refused: {0}")]
    Corrupt(IntegrityFailure),
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
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self {
            seed_genesis: true,
            max_document_bytes: validation::MAX_DOCUMENT_BYTES,
            metrics: Arc::default(),
        }
    }
}

/// The system register: store + notifier + rules.
pub struct Register {
    store: Arc<dyn RegisterStore>,
    head: watch::Sender<i64>,
    recent: RecentEntries,
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
            recent: RecentEntries::default(),
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

    async fn append(&self, new: NewEntry, expect: Expectation) -> Result<Entry, RegisterError> {
        let started = Instant::now();
        let result = self.store.append(new, expect).await;
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
        self.recent.push(std::slice::from_ref(&entry));
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
        let applied = entries[entries.len().saturating_sub(RECENT_CAPACITY)..].to_vec();
        self.store.append_entries(after, entries, Some(cp)).await?;
        self.recent.push(&applied);
        self.announce(new_head.version);
        Ok(new_head)
    }

    /// Publishes a new blueprint (type *published*); fails if the id exists.
    #[tracing::instrument(name = "publish", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    pub async fn publish(
        &self,
        publication: Publication,
        published_by: &str,
    ) -> Result<Entry, RegisterError> {
        self.ensure_writable()?;
        let id = publication.blueprint_id.clone();
        let new = self.prepare(publication, published_by, EntryType::Published)?;
        match self.append(new, Expectation::Absent).await {
            Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                Err(RegisterError::AlreadyExists(id))
            }
            other => other,
        }
    }

    /// Publishes a new document for an existing blueprint (type *updated*). Updating a
    /// deprecated blueprint makes it active again.
    #[tracing::instrument(name = "update", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    pub async fn update(
        &self,
        publication: Publication,
        published_by: &str,
    ) -> Result<Entry, RegisterError> {
        self.ensure_writable()?;
        let id = publication.blueprint_id.clone();
        let new = self.prepare(publication, published_by, EntryType::Updated)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self
                .store
                .latest(&id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(id.clone()))?;
            let mut attempt = new.clone();
            attempt.published_at = self.clock.now_ms();
            match self
                .append(attempt, Expectation::AtVersion(current.version))
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
    #[tracing::instrument(name = "deprecate", skip(self, metadata))]
    pub async fn deprecate(
        &self,
        blueprint_id: &str,
        published_by: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<Entry, RegisterError> {
        self.ensure_writable()?;
        validation::blueprint_id(blueprint_id)?;
        validation::published_by(published_by)?;
        validation::metadata(&metadata)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self
                .store
                .latest(blueprint_id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(blueprint_id.to_owned()))?;
            if !current.is_active {
                return Err(RegisterError::AlreadyDeprecated(blueprint_id.to_owned()));
            }
            let new = NewEntry {
                blueprint_id: blueprint_id.to_owned(),
                document: current.document.clone(),
                checksum: current.checksum.clone(),
                published_at: self.clock.now_ms(),
                published_by: published_by.to_owned(),
                is_active: false,
                publication_transaction_id: None,
                metadata: metadata.clone(),
                entry_type: EntryType::Deprecated,
            };
            match self
                .append(new, Expectation::AtVersion(current.version))
                .await
            {
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => continue,
                other => return other,
            }
        }
        Err(RegisterError::Contended(blueprint_id.to_owned()))
    }

    /// The head (version, chain hash), `None` when empty.
    pub async fn head(&self) -> Result<Option<Head>, RegisterError> {
        Ok(self.store.head().await?)
    }

    /// Counts over the register.
    pub async fn stats(&self) -> Result<Stats, RegisterError> {
        Ok(self.store.stats().await?)
    }

    /// Newest entry of a blueprint.
    pub async fn blueprint(&self, blueprint_id: &str) -> Result<Entry, RegisterError> {
        validation::blueprint_id(blueprint_id)?;
        self.store
            .latest(blueprint_id)
            .await?
            .ok_or_else(|| RegisterError::NotFound(blueprint_id.to_owned()))
    }

    /// Entries of a blueprint after `after`, oldest first.
    pub async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, RegisterError> {
        validation::blueprint_id(blueprint_id)?;
        let entries = self.store.history(blueprint_id, after, limit).await?;
        if entries.is_empty() && after == 0 {
            return Err(RegisterError::NotFound(blueprint_id.to_owned()));
        }
        Ok(entries)
    }

    /// Current state of blueprints, paged by id.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<Entry>, RegisterError> {
        Ok(self.store.list_current(query).await?)
    }

    /// Log entries after `after`.
    pub async fn entries_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, RegisterError> {
        Ok(self.store.entries_after(after, limit).await?)
    }

    /// Runs the full integrity check and records its outcome (a failure refuses writes; a later
    /// clean check does not lift that: corruption needs an operator).
    #[tracing::instrument(name = "verify", skip(self))]
    pub async fn verify(&self) -> Result<VerifyReport, RegisterError> {
        let report = verify_store(self.store.as_ref()).await?;
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
    /// writers and never misses an entry however slowly it is polled. Ends when the register
    /// is dropped or on the first store error (yielded).
    pub fn follow(
        self: &Arc<Self>,
        after: i64,
    ) -> impl Stream<Item = Result<Arc<Entry>, StoreError>> + Send + use<> {
        struct State {
            register: Arc<Register>,
            head: watch::Receiver<i64>,
            cursor: i64,
            buffered: VecDeque<Arc<Entry>>,
            failed: bool,
        }
        let state = State {
            register: Arc::clone(self),
            head: self.head.subscribe(),
            cursor: after,
            buffered: VecDeque::new(),
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            loop {
                if let Some(entry) = s.buffered.pop_front() {
                    s.cursor = entry.version;
                    return Some((Ok(entry), s));
                }
                let head = *s.head.borrow_and_update();
                if head > s.cursor {
                    // Recent entries come from memory: a publish wakes every follower, and
                    // thousands of them must not each read the store.
                    let cached = s.register.recent.after(s.cursor, head);
                    if !cached.is_empty() {
                        s.buffered.extend(cached);
                        continue;
                    }
                    match s.register.store.entries_after(s.cursor, PAGE).await {
                        Ok(page) if !page.is_empty() => {
                            s.buffered.extend(page.into_iter().map(Arc::new));
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(e) => {
                            s.failed = true;
                            return Some((Err(e), s));
                        }
                    }
                } else if s.head.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

/// Checks a whole store: every checksum, the chain, contiguous versions and the register id.
/// Reads the next page while hashing the current one, hashing off the async threads.
pub async fn verify_store(store: &dyn RegisterStore) -> Result<VerifyReport, StoreError> {
    verify_store_with_progress(store, &|_, _| {}).await
}

/// [`verify_store`], calling `progress(checked, head_version)` after every page.
pub async fn verify_store_with_progress(
    store: &dyn RegisterStore,
    progress: &(dyn Fn(u64, i64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let started = Instant::now();
    let head = store.head().await?;
    let head_version = head.as_ref().map_or(0, |h| h.version);
    let mut verifier = ChainVerifier::new();
    let mut failure = None;
    let mut next_page = Some(store.entries_after(0, PAGE));
    while let Some(fetch) = next_page.take() {
        let page = match fetch.await {
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
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        if last < head_version {
            next_page = Some(store.entries_after(last, PAGE));
        }
        let checked = tokio::task::spawn_blocking(move || {
            let result = page.iter().try_for_each(|e| verifier.check(e));
            (verifier, result)
        });
        let (v, result) = checked
            .await
            .map_err(|e| StoreError::Unavailable(format!("verify task failed: {e}")))?;
        verifier = v;
        progress(verifier.checked(), head_version);
        if let Err(f) = result {
            failure = Some(f);
            break;
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

/// The newest entries in memory, so followers near the head need no store reads.
#[derive(Debug, Default)]
struct RecentEntries {
    // Shared, so every follower hands out the same allocation instead of a copy.
    entries: RwLock<VecDeque<Arc<Entry>>>,
}

/// Entries kept by [`RecentEntries`].
const RECENT_CAPACITY: usize = 1024;

impl RecentEntries {
    /// Remembers entries just made durable (contiguous, ascending); a gap resets the window.
    fn push(&self, new: &[Entry]) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        for entry in new {
            if entries
                .back()
                .is_some_and(|last| last.version + 1 != entry.version)
            {
                entries.clear();
            }
            if entries.len() == RECENT_CAPACITY {
                entries.pop_front();
            }
            entries.push_back(Arc::new(entry.clone()));
        }
    }

    /// Entries `after < version <= upto`, if the window holds `after + 1`; else empty.
    fn after(&self, after: i64, upto: i64) -> Vec<Arc<Entry>> {
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        let Some(first) = entries.front().map(|e| e.version) else {
            return Vec::new();
        };
        if after + 1 < first {
            return Vec::new();
        }
        let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        entries
            .iter()
            .skip(start)
            .take_while(|e| e.version <= upto)
            .take(PAGE)
            .cloned()
            .collect()
    }
}
