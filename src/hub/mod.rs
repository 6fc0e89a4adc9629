//! The hub role: peer sessions, heartbeat tracking, sync and push streams over the Register.
//! Transport-free: `api/grpc` adapts it to the wire contract. One operation per protocol
//! call, plus the hub's signed checkpoints; sessions, limits and the sync stream have files of
//! their own.

mod balance;
pub mod fleet;
mod fleet_watch;
pub mod limits;
pub mod link;
mod relayed;
pub mod sessions;
mod sync_stream;
mod voucher;

use crate::clock::SharedClock;
use crate::config::HubConfig;
use crate::error_code::{Classified, Disclosure, ErrorCode};
use crate::keys::SigningKey;
use crate::metrics::{Metrics, SyncKind, SyncLabels, Transport};
use crate::protocol::{
    ConnectRequest, ConnectionGrant, DisconnectReason, Filters, Goodbye, Heartbeat, HeartbeatAck,
    HeartbeatReport, HubLoad, HubSummary, Notification, PeerId, PeerSyncState, PeerSyncView,
    SessionId, SessionView, SyncedEntry,
};
use crate::register::recent::{Derived, Form};
use crate::register::subscription::Followed;
use crate::register::{Register, RegisterError};
use crate::store::StoreError;
use crate::store::fleet::{Condition, FleetRecord};
use fleet::{FleetBook, FleetTimings};
use futures::future::{Either, FutureExt};
use futures::{Stream, StreamExt};
use limits::{Limited, PeerLimits};
use sessions::SessionRegistry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_stream::SyncStream;
use tokio_util::sync::CancellationToken;
pub use voucher::{CHECKPOINT_REUSE, Upstream, Voucher};

/// Why a hub operation failed; each maps to one gRPC status code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    /// Bad input (ids, sizes, clock skew).
    #[error("{0}")]
    Invalid(String),
    /// The hub does not know the session (or the peer).
    #[error("{0}")]
    UnknownSession(String),
    /// Not in this state: a hub connecting as a peer, a heartbeat before connecting.
    #[error("{0}")]
    WrongState(String),
    /// Too many sessions or concurrent syncs.
    #[error("{0}")]
    Busy(String),
    /// The hub holds its fair share of the fleet's peers: connect to another hub.
    #[error("{message}")]
    Full {
        /// Why, for the caller.
        message: String,
        /// The hub's sessions and cap.
        load: HubLoad,
    },
    /// The hub is draining: connect to another hub.
    #[error("{0}")]
    Draining(String),
    /// A per-peer rate limit, with the time a retry will be let through.
    #[error("{message}")]
    RateLimited {
        /// What was limited, for the caller.
        message: String,
        /// When a retry will be let through.
        retry_after: Duration,
    },
    /// Not ready or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The register failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl Classified for HubError {
    fn code(&self) -> ErrorCode {
        match self {
            HubError::Invalid(_) => ErrorCode::Invalid,
            HubError::UnknownSession(_) => ErrorCode::UnknownSession,
            HubError::WrongState(_) => ErrorCode::WrongState,
            HubError::Busy(_) => ErrorCode::Busy,
            HubError::Full { .. } => ErrorCode::HubFull,
            HubError::Draining(_) => ErrorCode::Draining,
            HubError::RateLimited { .. } => ErrorCode::RateLimited,
            HubError::Unavailable(_) => ErrorCode::Unavailable,
            HubError::Register(e) => e.code(),
        }
    }

    fn disclosure(&self) -> Disclosure {
        match self {
            HubError::Register(e) => e.disclosure(),
            _ => Disclosure::Shown,
        }
    }
}

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> Self {
        HubError::Register(RegisterError::Store(e))
    }
}

/// The hub: Register + sessions.
pub struct Hub {
    register: Arc<Register>,
    metrics: Arc<Metrics>,
    sessions: SessionRegistry,
    limits: PeerLimits,
    config: HubConfig,
    node_id: String,
    clock: SharedClock,
    started: Instant,
    shutdown: CancellationToken,
    /// Who vouches for what it serves: its own key, or (a relay) its hubs' checkpoints.
    voucher: Voucher,
    /// The last checkpoint signed: head version, when (hub ms), the note.
    signed_head: std::sync::Mutex<Option<(i64, i64, String)>>,
    /// The fleet record: departed peers, what was written, other hubs' peers.
    fleet: FleetBook,
    /// Commit times of versions (version → Unix ms), for SC-011's settled version.
    commits: std::sync::Mutex<std::collections::BTreeMap<i64, i64>>,
    /// Woken when a peer reports a new version or the fleet record is read: propagation
    /// waits.
    fleet_changed: tokio::sync::Notify,
    /// Full syncs running, all peers together (`hub.maxConcurrentFullSyncs`).
    full_syncs: Arc<tokio::sync::Semaphore>,
    /// What the fair-share cap needs, as the last fleet read showed.
    fair_share: std::sync::Mutex<balance::FairShare>,
    /// Asks the fleet loop for a flush now (a drain starts).
    flush_now: tokio::sync::Notify,
    /// True once a drain has ended; `drain_ended` wakes those waiting for it.
    drained: std::sync::atomic::AtomicBool,
    drain_ended: tokio::sync::Notify,
    /// What relays in session report of their downstream peers.
    relayed: relayed::Relayed,
}

/// The most pending peers a propagation answer names.
pub const MAX_PENDING_NAMED: usize = 20;

/// How far one publication has reached the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Propagation {
    /// The version.
    pub version: i64,
    /// When it was committed, Unix ms.
    pub published_at: i64,
    /// Who has it.
    pub reach: fleet::Reach,
}

/// The most entries one report of a peer adds to `sorcha_peer_propagation_seconds`.
const PROPAGATION_SAMPLES: i64 = 1024;

/// The middle of the retry hint a full sync refused for the hub's full-sync cap gets.
const FULL_SYNC_RETRY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Hub {
    /// A hub over `register`, counting in `metrics`, signing its checkpoints with `signer`;
    /// streams end when `shutdown` is cancelled.
    pub fn new(
        register: Arc<Register>,
        metrics: Arc<Metrics>,
        config: HubConfig,
        node_id: String,
        clock: SharedClock,
        shutdown: CancellationToken,
        signer: Arc<SigningKey>,
    ) -> Arc<Self> {
        Self::vouched_by(
            register,
            metrics,
            config,
            node_id,
            clock,
            shutdown,
            Voucher::Signs(signer),
        )
    }

    /// A hub whose checkpoints come from `voucher`: [`Hub::new`] for a hub, a relay's
    /// replica with [`Voucher::Forwards`].
    pub fn vouched_by(
        register: Arc<Register>,
        metrics: Arc<Metrics>,
        config: HubConfig,
        node_id: String,
        clock: SharedClock,
        shutdown: CancellationToken,
        voucher: Voucher,
    ) -> Arc<Self> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let timings = FleetTimings {
            flush_ms: ms(config.fleet_flush_interval).max(1),
            retention_ms: ms(config.fleet_retention),
            expiry_ms: ms(config.session_timeout).saturating_add(ms(config.session_grace)),
            refresh_ms: ms(config.heartbeat_interval).saturating_mul(10),
            max_departed: config.max_sessions,
        };
        Arc::new(Self {
            fleet: FleetBook::new(node_id.clone(), timings),
            commits: std::sync::Mutex::default(),
            fleet_changed: tokio::sync::Notify::new(),
            full_syncs: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_full_syncs,
            )),
            fair_share: std::sync::Mutex::default(),
            flush_now: tokio::sync::Notify::new(),
            drained: std::sync::atomic::AtomicBool::new(false),
            drain_ended: tokio::sync::Notify::new(),
            relayed: relayed::Relayed::default(),
            sessions: SessionRegistry::new(config.clone(), Arc::clone(&clock)),
            limits: PeerLimits::new(&config.rate_limits),
            register,
            metrics,
            config,
            node_id,
            clock,
            started: Instant::now(),
            shutdown,
            voucher,
            signed_head: std::sync::Mutex::new(None),
        })
    }

    /// The hub's signed checkpoint of its current head (a C2SP signed note; see
    /// [`crate::register::checkpoint_note`]); `None` on an empty register.
    pub async fn checkpoint_note(&self) -> Result<Option<String>, RegisterError> {
        let Some(head) = self.register.announced_head().await? else {
            return Ok(None);
        };
        Ok(self.vouch(head.version, &head.chain_hash))
    }

    /// The signed checkpoint of the head the hub has announced, with its version; `None` on
    /// an empty register. From memory when the recent window holds the head, else one store
    /// read (event streams ask once a second).
    pub async fn current_checkpoint(&self) -> Result<Option<(i64, String)>, RegisterError> {
        let Some(head) = self.register.announced_head().await? else {
            return Ok(None);
        };
        Ok(self
            .vouch(head.version, &head.chain_hash)
            .map(|note| (head.version, note)))
    }

    /// The hub's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn sync_counter(&self, full: bool) -> prometheus_client::metrics::counter::Counter {
        let kind = if full {
            SyncKind::Full
        } else {
            SyncKind::Incremental
        };
        self.metrics
            .sync_streams_served
            .get_or_create(&SyncLabels { kind })
            .clone()
    }

    /// Sync streams served so far: (full, incremental).
    pub fn sync_counts(&self) -> (u64, u64) {
        (
            self.sync_counter(true).get(),
            self.sync_counter(false).get(),
        )
    }

    /// Counts a sync stream of the given kind (once, when [`Hub::sync`] opens it).
    fn count_sync(&self, full: bool) {
        self.sync_counter(full).inc();
    }

    /// The Register.
    pub fn register(&self) -> &Arc<Register> {
        &self.register
    }

    fn ensure_ready(&self) -> Result<(), HubError> {
        if self.shutdown.is_cancelled() {
            return Err(HubError::Unavailable("the hub is shutting down".into()));
        }
        if let Some(failure) = self.register.integrity() {
            return Err(HubError::Unavailable(format!(
                "the hub's register failed its integrity check: {failure}"
            )));
        }
        Ok(())
    }

    /// The head as announced: a connect or a heartbeat of a peer near the head costs no store
    /// round trip.
    async fn head(&self) -> Result<(i64, String), HubError> {
        let head = self.register.announced_head().await?;
        Ok(head.map_or((0, String::new()), |h| (h.version, h.chain_hash)))
    }

    /// Opens a session (replacing an earlier one of the same peer).
    #[tracing::instrument(name = "connect", skip_all, fields(peer_id = %request.peer_id, last_known_version = request.last_known_version))]
    pub async fn connect(&self, request: ConnectRequest) -> Result<ConnectionGrant, HubError> {
        self.ensure_ready()?;
        self.limits
            .check(Limited::Connect, request.peer_id.as_str())?;
        self.refuse_loop(request.peer_id.as_str())?;
        self.admit(&request)?;
        let (current_version, head_hash) = self.head().await?;
        let checkpoint = self.vouch_head(current_version, &head_hash);
        let first_seen = self.fleet.first_seen(request.peer_id.as_str());
        let opened = match self.sessions.open(&request, current_version, first_seen) {
            Ok(opened) => opened,
            Err(e) => {
                if matches!(e, HubError::Invalid(_) | HubError::WrongState(_)) {
                    self.refused(
                        &request.peer_id,
                        &format!("refused by hub {}: {e}", self.node_id),
                    );
                }
                return Err(e);
            }
        };
        self.fleet.returning(request.peer_id.as_str());
        tracing::info!(
            peer_id = %request.peer_id,
            session_id = %opened.session_id,
            last_known_version = request.last_known_version,
            hub_version = current_version,
            "peer connected"
        );
        Ok(ConnectionGrant {
            session_id: opened.session_id,
            hub_id: self.node_id.clone(),
            current_version,
            head_hash,
            checkpoint,
            checkpoint_key: self.checkpoint_key(),
            relay_path: self.relay_path(),
            connected_at: opened.connected_at,
            heartbeat_interval: self.config.heartbeat_interval,
            heartbeat_timeout: self.config.heartbeat_timeout,
            sync_interval: self.config.sync_interval,
            push_enabled: true,
            max_concurrent_syncs: self.config.max_concurrent_syncs,
        })
    }

    /// Ends a session and its push streams; returns the time it ended. The fleet keeps the
    /// peer as `disconnected`, or as `refused` when it says it refuses this hub's data (an
    /// error with a detail).
    #[tracing::instrument(name = "disconnect", skip(self))]
    pub fn disconnect(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: &Goodbye,
    ) -> Result<i64, HubError> {
        let mut record = self.sessions.close(peer_id, session_id, &self.node_id)?;
        let now = self.clock.now_ms();
        tracing::info!(%peer_id, %session_id, reason = ?goodbye.reason, detail = %goodbye.detail, "peer disconnected");
        record.changed_at = now;
        if goodbye.reason == DisconnectReason::Error && !goodbye.detail.is_empty() {
            record.condition = Condition::Refused;
            record.refusal = Some(format!("refuses hub {}: {}", self.node_id, goodbye.detail));
        } else {
            record.condition = Condition::Disconnected;
        }
        self.fleet.depart(record);
        Ok(now)
    }

    /// Lists `peer_id` as refused by this hub, for `why`.
    pub fn refused(&self, peer_id: &PeerId, why: &str) {
        let now = self.clock.now_ms();
        let first_seen = self.fleet.first_seen(peer_id.as_str()).unwrap_or(now);
        self.fleet.depart(FleetRecord {
            peer_id: peer_id.to_string(),
            hub_id: self.node_id.clone(),
            condition: Condition::Refused,
            applied_version: 0,
            trusted_version: 0,
            behind_since: None,
            last_heartbeat_at: 0,
            connected_since: 0,
            first_seen,
            clock_offset_ms: 0,
            software_version: String::new(),
            refusal: Some(
                why.chars()
                    .take(crate::protocol::MAX_REFUSAL_CHARS)
                    .collect(),
            ),
            changed_at: now,
            via: Vec::new(),
        });
    }

    /// Streams entries with `version > after` (all of them for a full sync, `after = 0`) in
    /// version order, page by page from the store (pages bounded by entries and bytes, read
    /// through the node's read budget), at most `max` entries (`None`: all).
    /// Full syncs are rate limited per peer; at most `maxConcurrentSyncs` run per session.
    #[tracing::instrument(name = "sync_stream", skip(self))]
    pub fn sync(
        self: &Arc<Self>,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
        full: bool,
    ) -> Result<impl Stream<Item = Result<SyncedEntry, HubError>> + Send + use<>, HubError> {
        self.ensure_ready()?;
        let admitted = if full {
            let permit = self.admit_full_sync(peer_id)?;
            self.limits.check(Limited::FullSync, peer_id.as_str())?;
            Some(permit)
        } else {
            None
        };
        if after < 0 {
            return Err(HubError::Invalid(format!(
                "last_known_version {after} is negative"
            )));
        }
        let guard = self.sessions.start_sync(peer_id, session_id)?;
        self.count_sync(full);

        let limit = max.map_or(usize::MAX, |max| max as usize);
        Ok(
            SyncStream::new(Arc::clone(self), after, limit, guard, admitted)
                .into_stream()
                .take_until(self.shutdown.clone().cancelled_owned()),
        )
    }

    /// One of the hub's `hub.maxConcurrentFullSyncs` full-sync slots, held by the stream;
    /// when none is free, a rate-limit refusal whose retry hint is jittered per peer and moment
    /// (0.5–1.5 s), so refused peers come back spread out.
    fn admit_full_sync(
        &self,
        peer_id: &PeerId,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HubError> {
        Arc::clone(&self.full_syncs)
            .try_acquire_owned()
            .map_err(|_| {
                use std::hash::{Hash, Hasher};
                // Deterministic for a peer and a moment (a seeded simulation replays it).
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (peer_id.as_str(), self.clock.now_ms()).hash(&mut h);
                let share = (h.finish() % 1000) as f64 / 1000.0;
                let retry_after = FULL_SYNC_RETRY.mul_f64(0.5 + share);
                HubError::RateLimited {
                    message: format!(
                        "the hub runs its maximum of {} full syncs at once \
                         (hub.maxConcurrentFullSyncs); retry in {} ms",
                        self.config.max_concurrent_full_syncs,
                        retry_after.as_millis()
                    ),
                    retry_after,
                }
            })
    }

    /// A push stream: every entry after `resume_from` (0 = from now on) that passes `filters`,
    /// as notifications with a gap-free per-stream sequence number. A cursor over the store:
    /// a slow reader is caught up from the store, never skipped, never blocking others. Ends
    /// when the session ends or the hub shuts down.
    #[tracing::instrument(name = "push_subscribe", skip(self, filters))]
    pub fn subscribe(
        self: &Arc<Self>,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: Filters,
        resume_from: i64,
    ) -> Result<impl Stream<Item = Result<Notification, HubError>> + Send + use<>, HubError> {
        self.ensure_ready()?;
        if resume_from < 0 {
            return Err(HubError::Invalid(format!(
                "resume_from_version {resume_from} is negative"
            )));
        }
        let (away, guard) = self.sessions.start_push(peer_id, session_id)?;
        let start = if resume_from > 0 {
            resume_from
        } else {
            self.register.head_version()
        };
        let mut sequence = 0i64;
        let register = Arc::clone(&self.register);
        let stream = self
            .register
            .subscribe(start, filters, Transport::Grpc)
            .filter_map(move |item| {
                let _keep_counted = &guard;
                std::future::ready(match item {
                    Ok(Followed::Wanted(shared)) => {
                        sequence += 1;
                        Some(Ok((shared, sequence)))
                    }
                    Ok(Followed::Skipped(_)) => None,
                    Err(e) => Some(Err(HubError::from(e))),
                })
            })
            .then(move |wanted| match wanted {
                // The summary parses the document: once per entry, not per subscriber.
                Ok((shared, sequence)) => Either::Left(
                    register
                        .derived_soon(&shared, Form::Summary, |entry| {
                            let summary = crate::protocol::summary(entry);
                            Derived {
                                own_bytes: summary.len(),
                                parts: vec![summary].into(),
                            }
                        })
                        .map(move |parts| {
                            let summary = parts.first().cloned().unwrap_or_default();
                            Ok(Notification::with_summary(&shared.entry, summary, sequence))
                        }),
                ),
                Err(e) => Either::Right(std::future::ready(Err(e))),
            })
            // Ends with the session, or when the peer is sent away.
            .take_until(away.sent())
            .take_until(self.shutdown.clone().cancelled_owned())
            // A peer sent to another hub is told why, as the stream's last item.
            .chain(futures::stream::iter(
                std::iter::once_with(move || away.why().map(|why| Err(why.error()))).flatten(),
            ));
        Ok(stream)
    }

    /// Records a heartbeat and advises the peer.
    #[tracing::instrument(name = "heartbeat", skip_all, fields(peer_id = %heartbeat.peer_id, session_id = %heartbeat.session_id, sequence = heartbeat.sequence_number, peer_version = heartbeat.last_sync_version))]
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatAck, HubError> {
        // A hub on its way down has already dropped its sessions; "unknown session" would send
        // the peer back to it instead of on to the next hub.
        self.ensure_ready()?;
        self.limits
            .check(Limited::Heartbeat, heartbeat.peer_id.as_str())?;
        let (current_version, head_hash) = self.head().await?;
        let checkpoint = self.vouch_head(current_version, &head_hash);
        let now = self.clock.now_ms();
        let outcome = self.sessions.heartbeat(&heartbeat, current_version)?;
        self.relayed.heard(&heartbeat);
        self.metrics.heartbeats_received.inc();
        if let Some(applied) = outcome.newly_applied {
            self.observe_propagation(applied, now);
            self.fleet_changed.notify_waiters();
        }
        Ok(HeartbeatAck {
            success: outcome.known,
            timestamp: now,
            hub_id: self.node_id.clone(),
            current_version,
            head_hash,
            checkpoint,
            message: outcome.message,
            action: outcome.action,
            server_latency_ms: outcome.latency_ms,
            relay_state: self.relay_state(),
        })
    }

    /// For each entry a peer reports holding for the first time that was committed while it
    /// was connected to this hub, the time from the commit to the report (`now`, hub clock):
    /// what SC-016 ("a push within 30 s") is read from. Entries are looked up in the recent
    /// window (memory only); at most [`PROPAGATION_SAMPLES`] a report.
    fn observe_propagation(&self, applied: sessions::NewlyApplied, now: i64) {
        let first = applied.after.max(applied.up_to - PROPAGATION_SAMPLES) + 1;
        for version in first..=applied.up_to {
            let Some(shared) = self.register.recent().get(version) else {
                continue;
            };
            let committed = shared.entry.published_at;
            if committed >= applied.connected_since {
                let ms = (now - committed).max(0);
                self.metrics.propagation.observe(ms as f64 / 1000.0);
            }
        }
    }

    /// The hub's heartbeat view of a peer's session.
    pub fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, HubError> {
        self.sessions
            .heartbeat_report(peer_id, session_id, self.register.head_version())
    }

    /// The hub's view of a peer's sync progress.
    pub async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, HubError> {
        let stats = self.register.stats().await?;
        let head = self.register.head_version();
        let view = self.sessions.view(peer_id, session_id, head)?;
        let last_sync = self.sessions.last_sync_time(peer_id).unwrap_or(0);
        let interval = i64::try_from(self.config.sync_interval.as_millis()).unwrap_or(i64::MAX);
        let status = if view.active_syncs > 0 {
            PeerSyncState::Syncing
        } else if view.last_sync_version >= head {
            PeerSyncState::UpToDate
        } else {
            PeerSyncState::Behind
        };
        Ok(PeerSyncView {
            peer_id: peer_id.to_string(),
            current_version: view.last_sync_version,
            last_sync_time: last_sync,
            total_blueprints: stats.blueprints,
            hub_id: self.node_id.clone(),
            next_sync_due: last_sync.max(view.connected_at).saturating_add(interval),
            status,
        })
    }

    /// The hub's summary (what `GetCentralNodeStatus` answers), with the session list when
    /// asked.
    pub async fn summary(&self, include_peers: bool) -> Result<HubSummary, HubError> {
        let (current_version, head_hash) = self.head().await?;
        let stats = self.register.stats().await?;
        let peers = self.sessions.views(current_version);
        Ok(HubSummary {
            node_id: self.node_id.clone(),
            healthy: self.register.integrity().is_none(),
            current_version,
            head_hash,
            total_blueprints: stats.blueprints,
            active_peer_count: peers
                .iter()
                .filter(|p| p.status != crate::protocol::SessionStatus::HeartbeatTimeout)
                .count(),
            last_published_at: stats.last_published_at.unwrap_or(0),
            uptime_seconds: self.started.elapsed().as_secs(),
            peers: if include_peers { peers } else { Vec::new() },
        })
    }

    /// Every session, for operators.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions.views(self.register.head_version())
    }

    /// One peer's session, for operators.
    pub fn session(&self, peer_id: &str) -> Option<SessionView> {
        self.sessions
            .views(self.register.head_version())
            .into_iter()
            .find(|s| s.peer_id == peer_id)
    }

    /// Runs housekeeping until shutdown: sessions without heartbeats time out (their push
    /// streams end) and are removed after the grace period; the fleet record is written and
    /// read once per `hub.fleetFlushInterval` (on a task of its own); idempotency keys older than
    /// `idempotency.retention` are deleted (they already read as absent), so the records
    /// stay bounded by one retention period of writes plus one purge period.
    pub async fn run_housekeeping(self: Arc<Self>) {
        // The fleet record's store calls run apart, so a slow store never delays a sweep.
        let fleet = tokio::spawn(Arc::clone(&self).run_fleet());
        let period = (self.config.session_timeout.min(self.config.session_grace) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(5));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge = tokio::time::interval(self.register.key_purge_period());
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    for mut gone in self.sessions.sweep(&self.node_id) {
                        gone.changed_at = gone.last_heartbeat_at.max(gone.connected_since);
                        gone.condition = Condition::Stale;
                        self.fleet.depart(gone);
                    }
                    self.limits.forget_idle();
                }
                _ = purge.tick() => match self.register.forget_expired_keys().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(forgotten = n, "forgot expired idempotency keys"),
                    Err(e) => tracing::warn!(error = %e, "cannot forget expired idempotency keys"),
                },
            }
        }
        self.sessions.close_all();
        let _ = fleet.await;
    }
}
