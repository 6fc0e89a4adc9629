//! The integrity check of a whole register: the chain rules (`chain_check`) and publisher
//! signatures over every entry, page by page through the read budget.

use super::budget::ReadBudget;
use super::chain_check::{ChainVerifier, Defect, IntegrityFailure};
use super::signature::{PendingSignatures, PublisherKeys, SignatureCheck, VerifiedSignatures};
use super::{
    DEFAULT_PAGE_BYTES, INLINE_WORK_BYTES, PAGE, PageBound, Register, RegisterError, read_page,
};
use crate::store::{RegisterStore, Scope, StoreError};
use serde::Serialize;
use std::time::Instant;

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
    /// Entries whose publisher signature verified (0 when no publisher keys were given).
    pub signed: u64,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

impl Register {
    /// Runs the full integrity check and records its outcome (a failure refuses writes; a later
    /// clean check does not lift that: corruption needs an operator).
    #[tracing::instrument(name = "verify", skip(self))]
    pub async fn verify(&self) -> Result<VerifyReport, RegisterError> {
        let report = verify_pages(
            self.store.as_ref(),
            &|_, _| {},
            &self.budget,
            self.options.max_page_bytes,
            self.stored_signature_check(),
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
}

impl Register {
    /// The check of stored entries' signatures: against every known publisher key, when
    /// there are any. Unsigned entries are not defects here: `require` refuses new unsigned
    /// writes (hub) or synced ones (peer), and the register may hold entries from before.
    pub(super) fn stored_signature_check(&self) -> Option<SignatureCheck> {
        let policy = &self.options.signatures;
        (!policy.known.is_empty()).then(|| SignatureCheck::new(policy.known.clone(), false))
    }
}

/// Checks a whole store: every checksum, the chain, contiguous versions and the register id,
/// and with `keys` every publisher signature. Reads the next page while hashing the current
/// one, hashing off the async threads, and verifies each page's signatures in one batch on a
/// blocking thread of its own, a page per core at once; pages are bounded by
/// [`DEFAULT_PAGE_BYTES`].
pub async fn verify_store(
    store: &dyn RegisterStore,
    keys: Option<PublisherKeys>,
) -> Result<VerifyReport, StoreError> {
    verify_store_with_progress(store, keys, &|_, _| {}).await
}

/// [`verify_store`], calling `progress(checked, head_version)` after every page.
pub async fn verify_store_with_progress(
    store: &dyn RegisterStore,
    keys: Option<PublisherKeys>,
    progress: &(dyn Fn(u64, i64) + Sync),
) -> Result<VerifyReport, StoreError> {
    // Two pages at most are in memory: the one being hashed and the next.
    let budget = ReadBudget::new(2 * DEFAULT_PAGE_BYTES, Default::default());
    let signatures = keys.map(|k| SignatureCheck::new(k, false));
    verify_pages(store, progress, &budget, DEFAULT_PAGE_BYTES, signatures).await
}

/// The integrity check over pages of at most `page_bytes`, read through `budget`.
async fn verify_pages(
    store: &dyn RegisterStore,
    progress: &(dyn Fn(u64, i64) + Sync),
    budget: &ReadBudget,
    page_bytes: usize,
    mut signatures: Option<SignatureCheck>,
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
    let mut in_flight = InFlight::default();
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
        let inline =
            page.entries.iter().map(|e| e.document.len()).sum::<usize>() <= INLINE_WORK_BYTES;
        let hash = move || {
            // The whole page, budget included, moves here and is freed once hashed; what
            // its signatures need is kept apart (hashed, a few hundred bytes each).
            let mut page = page;
            let result = page.entries.iter().try_for_each(|e| verifier.check(e));
            let pending = match (&result, signatures.as_mut()) {
                (Ok(()), Some(check)) => Some(check.prepare(page.entries.make_contiguous())),
                _ => None,
            };
            (verifier, signatures, result, pending)
        };
        let (checked, next) = if inline {
            let checked = hash();
            let next = if last < head_version {
                Some(read(last).await)
            } else {
                None
            };
            (Ok(checked), next)
        } else {
            let checked = tokio::task::spawn_blocking(hash);
            // The next page is read while this one is hashed.
            if last < head_version {
                let (checked, next) = tokio::join!(checked, read(last));
                (checked, Some(next))
            } else {
                (checked.await, None)
            }
        };
        let (v, s, result, pending) =
            checked.map_err(|e| StoreError::Unavailable(format!("verify task failed: {e}")))?;
        verifier = v;
        signatures = s;
        progress(verifier.checked(), head_version);
        if let Some(pending) = pending {
            in_flight.push(verifier.checked(), pending);
        }
        if let Err(f) = result {
            // A bad signature in an earlier page comes first.
            failure = Some(in_flight.settle_all().await?.unwrap_or(f));
            break;
        }
        if let Some(f) = in_flight.settle_over(SIGNATURE_TASKS.get()).await? {
            failure = Some(f);
            break;
        }
        match next {
            Some(next) => fetched = next,
            None => break,
        }
    }
    if failure.is_none() {
        failure = in_flight.settle_all().await?;
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
        checked: in_flight.failed_after.unwrap_or(verifier.checked()),
        head_version,
        head_hash: head.map(|h| h.chain_hash),
        failure,
        signed: in_flight.verified,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Pages whose signatures are verified at once, each on its own blocking thread, while the
/// next pages are read and hashed: one per core.
static SIGNATURE_TASKS: std::sync::LazyLock<std::num::NonZeroUsize> =
    std::sync::LazyLock::new(|| {
        std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
    });

/// The pages' signature checks under way, oldest first, each with the count of entries
/// checked up to its page's end.
#[derive(Default)]
struct InFlight {
    tasks: std::collections::VecDeque<(u64, tokio::task::JoinHandle<VerifiedSignatures>)>,
    /// Signatures that verified.
    verified: u64,
    /// Entries checked up to the end of the page with the first bad signature.
    failed_after: Option<u64>,
}

impl InFlight {
    fn push(&mut self, checked: u64, pending: PendingSignatures) {
        if pending.is_empty() {
            return;
        }
        let task = tokio::task::spawn_blocking(move || pending.verify());
        self.tasks.push_back((checked, task));
    }

    /// Waits for the oldest checks until at most `limit` are under way; the first bad
    /// signature, if any.
    async fn settle_over(&mut self, limit: usize) -> Result<Option<IntegrityFailure>, StoreError> {
        while self.tasks.len() > limit {
            let (checked, task) = self.tasks.pop_front().expect("more than limit tasks");
            let done = task
                .await
                .map_err(|e| StoreError::Unavailable(format!("signature check failed: {e}")))?;
            self.verified += done.verified;
            if let Some(first) = done.defects.into_iter().next() {
                self.failed_after = Some(checked);
                // The later pages' checks finish unheard: their results no longer matter.
                return Ok(Some(first.into()));
            }
        }
        Ok(None)
    }

    /// Waits for every check; the first bad signature, if any.
    async fn settle_all(&mut self) -> Result<Option<IntegrityFailure>, StoreError> {
        self.settle_over(0).await
    }
}
