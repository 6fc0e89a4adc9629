//! The Register: the system register's store plus its notifier, and the domain rules for
//! publishing, updating, deprecating, reading and verifying. Both roles write through it (a hub
//! from publish calls, a peer from sync); every reader (REST, SSE, gRPC) reads through it.
//!
//! This file holds the Register itself, its errors, options and reads; its other jobs live in
//! their own files: `write` (client writes, the one optimistic-retry loop, idempotency),
//! `replicate` (applying synced entries), `follow` (followers' cursors over the recent window
//! and the store), `subscription` (filters and the one subscriber wiring) and `verification`
//! (whole-register checks).

pub mod budget;
pub mod chain;
pub mod chain_check;
pub mod checkpoint_note;
pub mod entry;
pub mod genesis;
pub mod head_signal;
pub mod idempotency;
pub mod recent;
pub mod schema;
pub mod signature;
pub mod subscription;
pub mod validation;

mod follow;
mod integrity_check;
mod pages;
mod replicate;
mod write;

pub use integrity_check::{VerifyReport, verify_store, verify_store_with_progress};
pub use pages::{Page, PageBound, read_page};
pub use replicate::ApplyError;
pub use write::{Publication, WriteOptions, Written};

use crate::clock::SharedClock;
use crate::error_code::{Classified, Disclosure, ErrorCode};
use crate::metrics::Metrics;
use crate::store::{ListQuery, RegisterStore, Scope, Stats, StoreError};
use budget::{BudgetExhausted, Held, ReadBudget};
use chain_check::IntegrityFailure;
use entry::{ENTRY_OVERHEAD_BYTES, Entry, Head};
use recent::RecentWindow;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use validation::ValidationError;

/// Most entries read from the store per page when streaming or verifying.
pub const PAGE: usize = 1024;
/// Default byte bound of a page ([`RegisterOptions::max_page_bytes`]).
pub const DEFAULT_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Default byte bound of the recent window ([`RegisterOptions::recent_window_bytes`]).
pub const DEFAULT_WINDOW_BYTES: usize = 64 * 1024 * 1024;
/// Default node-wide read budget ([`RegisterOptions::read_budget_bytes`]).
pub const DEFAULT_READ_BUDGET_BYTES: usize = 256 * 1024 * 1024;
/// How long reading other hubs' appends into the recent window waits for room in the read
/// budget; past it, followers read those entries from the store themselves.
const ABSORB_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// How long reading appends made elsewhere waits for an append of this node's own, in
/// flight, that may be the one reported.
const OWN_APPEND_GRACE: Duration = Duration::from_millis(50);
/// Default time an idempotency key is remembered ([`RegisterOptions::idempotency_retention`]).
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a register operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// Input broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The publication's signature was refused (nothing written).
    #[error("publication refused: {0}")]
    Signature(#[from] signature::SignatureError),
    /// Publishing an id that already exists.
    #[error("blueprint {0:?} already exists; update it to publish a new version")]
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

impl Classified for RegisterError {
    fn code(&self) -> ErrorCode {
        match self {
            RegisterError::Invalid(e) => e.code(),
            RegisterError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            RegisterError::Signature(_) => ErrorCode::SignatureRefused,
            RegisterError::NotFound(_) | RegisterError::NoSuchVersion(_) => ErrorCode::NotFound,
            RegisterError::AlreadyDeprecated(_) => ErrorCode::AlreadyDeprecated,
            RegisterError::Stale { .. } => ErrorCode::Stale,
            RegisterError::KeyReused { .. } => ErrorCode::KeyReused,
            RegisterError::TransactionExists { .. } => ErrorCode::TransactionExists,
            RegisterError::Contended(_) => ErrorCode::Contended,
            RegisterError::Corrupt(_) => ErrorCode::Corrupt,
            RegisterError::Busy(_) => ErrorCode::Busy,
            RegisterError::Store(e) => e.code(),
        }
    }

    fn disclosure(&self) -> Disclosure {
        match self {
            RegisterError::Corrupt(_) => Disclosure::ShownFault,
            RegisterError::Store(e) => e.disclosure(),
            _ => Disclosure::Shown,
        }
    }
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
    /// Publisher signatures: who may sign with which keys, what entries are checked
    /// against, whether signatures are required.
    pub signatures: signature::SignaturePolicy,
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
            signatures: signature::SignaturePolicy::default(),
        }
    }
}

/// Work over documents of up to this many bytes (parsing one, hashing a page) runs on the task
/// that asks: it costs less than a hand-off to the blocking pool, and a run on the paused clock
/// stays in step (nothing completes on a real thread behind the scheduler). Bigger work goes
/// to the blocking pool so it never stalls other tasks.
pub const INLINE_WORK_BYTES: usize = 64 * 1024;

/// The system register: store + notifier + rules.
pub struct Register {
    store: Arc<dyn RegisterStore>,
    head: head_signal::HeadSignal,
    recent: RecentWindow,
    budget: ReadBudget,
    integrity: RwLock<Option<IntegrityFailure>>,
    clock: SharedClock,
    options: RegisterOptions,
    /// Signed client writes' signatures, verified in batches.
    signature_batch: signature::write_batcher::SignatureBatcher,
    /// This node's appends between the store call and their announcement.
    local_appends: InFlight,
}

/// A count of operations in progress, each counted while its guard lives.
#[derive(Debug, Default)]
struct InFlight(std::sync::atomic::AtomicUsize);

impl InFlight {
    fn begin(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlightGuard(self)
    }

    fn any(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) > 0
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("head", &self.head.version())
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
            head: head_signal::HeadSignal::new(head_version),
            recent: RecentWindow::new(
                options.recent_window_bytes,
                options.metrics.recent_window_bytes.clone(),
            ),
            budget: ReadBudget::new(
                options.read_budget_bytes,
                options.metrics.read_bytes_in_flight.clone(),
            ),
            integrity: RwLock::new(None),
            signature_batch: Default::default(),
            local_appends: InFlight::default(),
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
            // The newest entries come back into memory, so a restarted node answers
            // heartbeats and near-head syncs without the store.
            register.absorb_appends(head_version).await;
        }
        Ok(register)
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

    /// The publisher keys entries' signatures are checked against.
    pub fn publisher_keys(&self) -> &signature::PublisherKeys {
        &self.options.signatures.known
    }

    /// Brings the recent window up to `version` from the store, then announces it: the
    /// entries another hub appended to a shared store are read once, here, and every
    /// follower, sync and heartbeat of this node is served them from memory. Reads what the
    /// window lacks of the newest [`recent::RECENT_CAPACITY`] entries (older ones would not
    /// stay), so an empty window (a node just opened) is filled too; a read that fails
    /// leaves followers to read the store themselves.
    pub async fn absorb_appends(&self, version: i64) {
        if self.local_appends.any() {
            // The tail may report this node's own append before the append has returned
            // here; give it a moment to land in the window rather than read it back.
            let _ = tokio::time::timeout(OWN_APPEND_GRACE, self.head.past(version - 1)).await;
        }
        let floor = version.saturating_sub(recent::RECENT_CAPACITY as i64);
        let mut after = self.recent.newest().unwrap_or(floor).max(floor);
        while after < version {
            let bound = self.page_bound(usize::try_from(version - after).unwrap_or(PAGE).min(PAGE));
            let page = read_page(
                self.store.as_ref(),
                &self.budget,
                Scope::Log,
                after,
                bound,
                Some(ABSORB_BUDGET_WAIT),
            )
            .await;
            match page {
                Ok(page) if !page.entries.is_empty() => {
                    after = page.entries.back().map_or(version, |e| e.version);
                    self.recent.push(page.entries);
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, version, "cannot read appends made elsewhere; followers read them from the store");
                    break;
                }
            }
        }
        self.announce(version);
    }

    /// Version of the newest durable entry this node has announced.
    pub fn head_version(&self) -> i64 {
        self.head.version()
    }

    /// The integrity failure found by the last check, if any; writes are refused while set.
    pub fn integrity(&self) -> Option<IntegrityFailure> {
        self.integrity.read().ok().and_then(|g| g.clone())
    }

    /// The announced head once it is past `version` (at once if it already is).
    pub async fn head_past(&self, version: i64) -> i64 {
        self.head.past(version).await
    }

    /// Moves the announced head forward (never back); wakes every follower.
    pub fn announce(&self, version: i64) {
        self.options
            .metrics
            .head_version
            .set(version.max(self.head_version()));
        self.head.advance(version);
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

    /// The head (version, chain hash), `None` when empty, as the store holds it.
    pub async fn head(&self) -> Result<Option<Head>, RegisterError> {
        Ok(self.store.head().await?)
    }

    /// The head this node has announced (version, chain hash), `None` when empty: from memory
    /// when the recent window holds it — the common case, with no store round trip — else
    /// from the store (after a restart, an entry larger than the window, an append another
    /// hub made on a shared store).
    pub async fn announced_head(&self) -> Result<Option<Head>, RegisterError> {
        let version = self.head_version();
        if let Some(shared) = self.recent.get(version) {
            return Ok(Some(Head {
                version,
                chain_hash: shared.entry.chain_hash.clone(),
            }));
        }
        self.head().await
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
}
