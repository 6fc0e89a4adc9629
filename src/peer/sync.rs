//! The peer's sync client: brings the replica up to the hub's head, verifying every entry,
//! never rolling back, applying entries and checkpoint together in batches.

use super::Peer;
use super::trust::TrustError;
use crate::error_code::ErrorCode;
use crate::link::{HubLink, LinkError, LinkStream};
use crate::metrics::{Outcome, OutcomeLabels, SyncKind, SyncLabels};
use crate::protocol::{SessionId, SyncedEntry};
use crate::register::ApplyError;
use crate::register::entry::Entry;
use crate::register::signature::SignatureCheck;
use crate::store::{StoreError, SyncProgress};
use futures::StreamExt;
use std::time::Instant;

/// Most entries applied per transaction; a batch also ends before its entries exceed
/// `limits.maxPageBytes` (it always holds one).
const BATCH_ENTRIES: usize = 1000;
/// A peer that checks the hub's checkpoints applies up to each one; it holds at most this
/// many batches' worth (entries and bytes) waiting for the next (hubs send one per page).
const STAGED_BATCHES: usize = 4;
/// A long sync logs its progress this often (a server draws no progress bars).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a sync stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The hub's chain does not contain the replica's head (a fork).
    #[error("hub's register diverges from the replica: {0}")]
    Diverged(String),
    /// The hub's register is behind the replica; not followed.
    #[error("hub is behind the replica (hub at version {hub}, replica at {replica})")]
    HubBehind {
        /// The hub's head version.
        hub: i64,
        /// The replica's head version.
        replica: i64,
    },
    /// The stream failed verification (corrupt); nothing of it was applied.
    #[error("hub sent entries that do not verify: {0}")]
    Rejected(String),
    /// A publisher signature did not verify (or an entry was unsigned) and the peer requires
    /// signatures; nothing of the batch was applied.
    #[error("hub sent entries whose publisher signatures do not verify: {0}")]
    Unverified(String),
    /// The hub's checkpoints are not trusted, missing where the peer needs them, or
    /// contradict others (equivocation); nothing after the last trusted checkpoint was applied.
    #[error("hub not trusted: {0}")]
    Untrusted(#[from] TrustError),
    /// The hub call failed.
    #[error("hub call failed: {0}")]
    Transport(#[from] LinkError),
    /// The replica's store cannot hold an entry (too large for it): permanent, retrying
    /// the same hub or another cannot help; nothing of the batch was applied.
    #[error("the replica cannot store the hub's entries: {0}")]
    Unstorable(String),
    /// The replica store failed.
    #[error("replica store failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge(m) => SyncError::Unstorable(m),
            other => SyncError::Store(other),
        }
    }
}

impl From<ApplyError> for SyncError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(f) => SyncError::Rejected(f.to_string()),
            ApplyError::Unverified(f) => SyncError::Unverified(f.to_string()),
            ApplyError::Store(s) => s.into(),
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// Full (FullSync) or incremental.
    pub full: bool,
    /// Replica head before.
    pub from_version: i64,
    /// Replica head after.
    pub to_version: i64,
    /// Entries applied.
    pub applied: u64,
    /// Duration, ms.
    pub duration_ms: u64,
}

/// Brings the replica up to the hub's head. Full sync when the replica is empty (or `full`),
/// else incremental from the entry before the replica's head, whose chain hash must match the
/// replica's (the hub's chain contains our head) before anything is applied.
#[tracing::instrument(name = "sync", skip(peer, client, session_id, hub), fields(peer_id = %peer.node_id(), kind = if full { "full" } else { "incremental" }))]
pub async fn catch_up(
    peer: &Peer,
    client: &dyn HubLink,
    session_id: &SessionId,
    hub: &HubRef<'_>,
    full: bool,
    wait: RateLimitWait,
) -> Result<SyncOutcome, SyncError> {
    let result = run_sync(peer, client, session_id, hub, full, wait).await;
    let metrics = peer.metrics();
    let outcome = match &result {
        Ok(done) => {
            let kind = if done.full {
                SyncKind::Full
            } else {
                SyncKind::Incremental
            };
            metrics
                .sync_duration
                .get_or_create(&SyncLabels { kind })
                .observe(done.duration_ms as f64 / 1000.0);
            metrics.sync_entries.inc_by(done.applied);
            Outcome::Ok
        }
        Err(_) => Outcome::Failed,
    };
    metrics
        .syncs
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    result
}

/// What a sync does when the hub rate-limits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitWait {
    /// Wait as long as the hub asks (bounded) and try again: background syncs.
    Honour,
    /// Fail at once with the hub's retry hint: syncs someone is waiting for.
    Report,
}

/// Tries a rate-limited sync again after the wait the hub asked for.
const RATE_LIMIT_RETRIES: usize = 3;
/// Longest wait for a rate limit honoured inside one sync; longer ones fail the sync.
const LONGEST_HONOURED_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Opens the sync stream, honouring the hub's retry hint when it rate-limits us.
async fn open_stream(
    peer: &Peer,
    client: &dyn HubLink,
    session_id: &SessionId,
    full: bool,
    ours: i64,
    wait: RateLimitWait,
) -> Result<LinkStream<SyncedEntry>, SyncError> {
    let mut tries = 0;
    loop {
        let opened = if full {
            client.full_sync(peer.node_id(), session_id, None).await
        } else {
            client
                .incremental_sync(peer.node_id(), session_id, ours - 1, None)
                .await
        };
        match opened {
            Err(LinkError {
                code: ErrorCode::RateLimited,
                retry_after: Some(delay),
                message,
                ..
            }) if wait == RateLimitWait::Honour
                && tries < RATE_LIMIT_RETRIES
                && delay <= LONGEST_HONOURED_WAIT =>
            {
                tries += 1;
                tracing::warn!(%message, wait_ms = delay.as_millis() as u64, "sync rate limited by the hub; waiting");
                tokio::time::sleep(delay).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The hub a sync runs against: its configured URL (the trust pins keys by it) and its id.
#[derive(Debug, Clone, Copy)]
pub struct HubRef<'a> {
    /// The URL the peer dials.
    pub url: &'a str,
    /// The hub's node id.
    pub id: &'a str,
}

/// Entries received and not yet applied, with their bytes.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, entry: Entry) {
        self.bytes += entry.weight();
        self.entries.push(entry);
    }

    fn take(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

async fn run_sync(
    peer: &Peer,
    client: &dyn HubLink,
    session_id: &SessionId,
    hub: &HubRef<'_>,
    full: bool,
    wait: RateLimitWait,
) -> Result<SyncOutcome, SyncError> {
    let hub_id = hub.id;
    let started = Instant::now();
    let register = peer.register();
    let head = register.store().head().await?;
    let (ours, our_hash) = head.map_or((0, String::new()), |h| (h.version, h.chain_hash));
    let use_full = full || ours == 0;
    let mut stream = open_stream(peer, client, session_id, use_full, ours, wait).await?;
    let previous = register.store().sync_progress().await?.unwrap_or_default();
    let mut next_report = Instant::now() + PROGRESS_EVERY;
    let batch_limit = register.max_page_bytes();
    let trust = peer.trust();
    // With trusted (or pinned) keys, entries are applied only up to a checkpoint.
    let vouching = trust.checks(hub.url);
    let mut matched = ours == 0;
    let mut batch = Batch::default();
    let mut applied = 0u64;
    let mut signatures = register.synced_signature_check(ours);
    let step = |applied_before| Step {
        peer,
        hub_id,
        previous: &previous,
        applied_before,
    };
    while let Some(item) = stream.next().await {
        let SyncedEntry { entry, checkpoint } = item?;
        if Instant::now() >= next_report {
            next_report = Instant::now() + PROGRESS_EVERY;
            tracing::info!(
                hub_id,
                full = use_full,
                at = entry.version,
                hub_version = peer.hub_version_hint(),
                "sync in progress"
            );
        }
        if entry.version <= ours {
            if entry.version == ours {
                if entry.chain_hash != our_hash {
                    return Err(SyncError::Diverged(format!(
                        "at version {ours} the hub has {} but the replica has {our_hash}",
                        entry.chain_hash
                    )));
                }
                matched = true;
                // The hub vouches for the head the replica already has: a fresher checkpoint.
                if vouching && let Some(note) = checkpoint {
                    let v = trust.vouch_entry(hub.url, &note, entry.version, &entry.chain_hash)?;
                    peer.keep_checkpoint(&v).await;
                    peer.checkpoint_applied(v);
                }
            }
            continue;
        }
        if !matched {
            return Err(SyncError::Diverged(format!(
                "the hub's stream skipped the replica's head version {ours}"
            )));
        }
        if vouching {
            let (version, hash) = (entry.version, entry.chain_hash.clone());
            batch.push(entry);
            match checkpoint {
                Some(note) => {
                    let v = trust.vouch_entry(hub.url, &note, version, &hash)?;
                    peer.keep_checkpoint(&v).await;
                    applied += step(applied)
                        .apply(batch.take(), signatures.as_mut(), false)
                        .await?;
                    peer.checkpoint_applied(v);
                }
                None if batch.entries.len() > STAGED_BATCHES * BATCH_ENTRIES
                    || batch.bytes > STAGED_BATCHES * batch_limit =>
                {
                    return Err(TrustError::NoCheckpoint(format!(
                        "within {} entries ({} bytes) after version {}",
                        batch.entries.len(),
                        batch.bytes,
                        version - batch.entries.len() as i64
                    ))
                    .into());
                }
                None => {}
            }
            continue;
        }
        // Apply what is batched first when it is full, or this entry would take it past its
        // byte bound.
        let weight = entry.weight();
        if !batch.entries.is_empty()
            && (batch.entries.len() >= BATCH_ENTRIES || batch.bytes + weight > batch_limit)
        {
            applied += step(applied)
                .apply(batch.take(), signatures.as_mut(), false)
                .await?;
        }
        batch.push(entry);
    }
    if !matched {
        // The stream never reached our head: the hub's register is shorter than ours.
        let hub_version = client
            .status(peer.node_id())
            .await
            .map(|s| s.head_version)
            .unwrap_or(0);
        return Err(SyncError::HubBehind {
            hub: hub_version,
            replica: ours,
        });
    }
    if vouching && let Some(last) = batch.entries.last() {
        return Err(TrustError::NoCheckpoint(format!(
            "at the end of its stream (version {}); {} entries not applied",
            last.version,
            batch.entries.len()
        ))
        .into());
    }
    applied += step(applied)
        .apply(batch.take(), signatures.as_mut(), true)
        .await?;
    let to_version = register.head_version();
    let outcome = SyncOutcome {
        full: use_full,
        from_version: ours,
        to_version,
        applied,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    tracing::info!(
        hub_id,
        full = use_full,
        from = ours,
        to = to_version,
        applied,
        duration_ms = outcome.duration_ms,
        "sync finished"
    );
    Ok(outcome)
}

/// One write of a sync: what it needs to record the sync's checkpoint with its entries.
struct Step<'a> {
    peer: &'a Peer,
    hub_id: &'a str,
    previous: &'a SyncProgress,
    applied_before: u64,
}

impl Step<'_> {
    /// Applies one verified batch with its checkpoint; `last` marks the sync's final write (it
    /// counts the sync and is written even when empty, to record the sync time).
    async fn apply(
        self,
        batch: Vec<Entry>,
        signatures: Option<&mut SignatureCheck>,
        last: bool,
    ) -> Result<u64, SyncError> {
        apply(
            self.peer,
            batch,
            signatures,
            self.hub_id,
            self.previous,
            self.applied_before,
            last,
        )
        .await
    }
}

/// Applies one verified batch with its checkpoint; `last` marks the sync's final write (it
/// counts the sync and is written even when empty, to record the sync time).
async fn apply(
    peer: &Peer,
    batch: Vec<Entry>,
    signatures: Option<&mut SignatureCheck>,
    hub_id: &str,
    previous: &SyncProgress,
    applied_before: u64,
    last: bool,
) -> Result<u64, SyncError> {
    let count = batch.len() as u64;
    if batch.is_empty() && !last {
        return Ok(0);
    }
    let now = peer.clock().now_ms();
    let interval =
        i64::try_from(peer.settings().peer.sync_interval.as_millis()).unwrap_or(i64::MAX);
    let total = previous.total_entries_synced + i64::try_from(applied_before + count).unwrap_or(0);
    let syncs = previous.total_syncs + i64::from(last);
    if !batch.is_empty() {
        let bytes: usize = batch.iter().map(Entry::weight).sum();
        peer.metrics().sync_batch_bytes.observe(bytes as f64);
    }
    peer.register()
        .apply_synced(batch, signatures, |head| SyncProgress {
            current_version: head.version,
            head_hash: head.chain_hash.clone(),
            hub_id: hub_id.to_owned(),
            last_sync_time: now,
            next_sync_due: now.saturating_add(interval),
            total_entries_synced: total,
            total_syncs: syncs,
        })
        .await?;
    Ok(count)
}
