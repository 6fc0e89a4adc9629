//! Peer sessions on a hub: who is connected, their heartbeats, sync progress and streams.

use super::HubError;
use crate::clock::SharedClock;
use crate::config::HubConfig;
use crate::protocol::{
    ConnectRequest, Heartbeat, HeartbeatHealth, HeartbeatReport, HubLoad, NodeKind, PeerId,
    RecommendedAction, SessionId, SessionStatus, SessionView,
};
use crate::store::fleet::{Condition, FleetRecord};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Heartbeat latencies kept for the average.
const LATENCY_WINDOW: usize = 10;
/// Limits on the self-description a peer sends.
const MAX_ADDRESS_CHARS: usize = 255;
const MAX_PROTOCOLS: usize = 32;
const MAX_PROTOCOL_CHARS: usize = 64;

struct Session {
    session_id: SessionId,
    request: ConnectRequest,
    connected_at: i64,
    last_heartbeat_at: i64,
    last_sequence: i64,
    received: i64,
    missed_total: i64,
    latencies: VecDeque<i64>,
    last_sync_version: i64,
    /// The newest version the peer itself reported holding (heartbeats only).
    reported_version: i64,
    last_sync_time: i64,
    /// The hub's clock minus the peer's at its last heartbeat (delay included), ms.
    clock_offset_ms: i64,
    /// When the hub first saw the peer lack its head (cleared when it holds it).
    behind_since: Option<i64>,
    /// When the hub first knew the peer (kept across its sessions while the fleet record is).
    first_seen: i64,
    /// Why the peer, by its last heartbeat, refuses what this hub sends ("" = nothing).
    refusal: String,
    /// The version its last verified checkpoint covers, by its last heartbeat (0 = none).
    trusted_version: i64,
    timed_out_at: Option<i64>,
    ended: CancellationToken,
    /// Set when the hub sends the peer to another hub.
    away: SendAway,
    push_streams: Arc<AtomicUsize>,
    active_syncs: Arc<AtomicUsize>,
}

impl Session {
    /// Live (not timed out) and not sent away: it counts toward the hub's fair share.
    fn staying(&self) -> bool {
        self.timed_out_at.is_none() && self.away.why().is_none()
    }

    /// Last sign of life: the newest heartbeat, or the connect.
    fn last_seen(&self) -> i64 {
        self.last_heartbeat_at.max(self.connected_at)
    }
}

/// Why a hub sends a peer in session to another hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Away {
    /// The hub is draining (shutting down, or told to).
    Draining,
    /// The hub holds more than its fair share of the fleet (`load` when it decided).
    Rebalancing(HubLoad),
}

impl Away {
    /// What the peer is told, as the error its push stream ends with.
    pub fn error(self) -> HubError {
        match self {
            Away::Draining => {
                HubError::Draining("the hub is draining; continue on another hub".into())
            }
            Away::Rebalancing(load) => HubError::Full {
                message: format!(
                    "the hub holds more than its fair share of the fleet ({} sessions, cap {}); \
                     continue on another hub",
                    load.sessions, load.cap
                ),
                load,
            },
        }
    }
}

/// A session's "go elsewhere": fired once, with its reason; its push streams end with it.
/// Its token is a child of the session's, so it also fires when the session ends (one signal
/// for a push stream to watch; [`SendAway::why`] tells the two apart).
#[derive(Clone)]
pub struct SendAway {
    token: CancellationToken,
    why: Arc<std::sync::OnceLock<Away>>,
}

impl SendAway {
    /// The send-away of a session that ends with `ended`.
    fn within(ended: &CancellationToken) -> Self {
        Self {
            token: ended.child_token(),
            why: Arc::default(),
        }
    }

    /// Sends the peer away for `why`; false when it was sent away already.
    fn send(&self, why: Away) -> bool {
        let first = self.why.set(why).is_ok();
        self.token.cancel();
        first
    }

    /// Why the peer was sent away, if it was.
    pub fn why(&self) -> Option<Away> {
        self.why.get().copied()
    }

    /// Completes when the peer is sent away or its session ends.
    pub fn sent(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

/// What [`SessionRegistry::open`] created.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The new session id.
    pub session_id: SessionId,
    /// When it started.
    pub connected_at: i64,
}

/// Outcome of a heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    /// False when the session is unknown (the peer must reconnect).
    pub known: bool,
    /// Notes for the peer.
    pub message: String,
    /// What the peer should do.
    pub action: RecommendedAction,
    /// Observed delay, ms.
    pub latency_ms: i64,
    /// Versions the peer reports for the first time, `(after, up_to]`, with when its session
    /// began (Unix ms, hub clock).
    pub newly_applied: Option<NewlyApplied>,
}

/// Versions a peer reported holding for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewlyApplied {
    /// The newest version it had reported before.
    pub after: i64,
    /// The version it reports now.
    pub up_to: i64,
    /// When its session began (Unix ms, hub clock).
    pub connected_since: i64,
}

/// Counts a running stream of a session while alive.
pub struct StreamGuard {
    counter: Arc<AtomicUsize>,
    on_finish: Option<Box<dyn FnOnce(i64) + Send + Sync>>,
}

impl StreamGuard {
    /// Counts one more stream unless `max` are already running.
    fn try_new(counter: Arc<AtomicUsize>, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            counter,
            on_finish: None,
        })
    }

    /// Records that a sync stream delivered everything up to `version`.
    pub fn finish_sync(&mut self, version: i64) {
        if let Some(f) = self.on_finish.take() {
            f(version);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGuard")
            .field("running", &self.counter.load(Ordering::Relaxed))
            .finish()
    }
}

/// The sessions of one hub, keyed by peer id (one session per peer).
pub struct SessionRegistry {
    /// Ordered, so a sweep ends timed-out sessions in the same order every run (a seeded
    /// simulation replays exactly); a hash map's order is random per process.
    sessions: Arc<Mutex<BTreeMap<String, Session>>>,
    config: HubConfig,
    clock: SharedClock,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new(config: HubConfig, clock: SharedClock) -> Self {
        Self {
            sessions: Arc::default(),
            config,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Session>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interval_ms(&self) -> i64 {
        i64::try_from(self.config.heartbeat_interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Validates a connect request and opens a session, replacing the peer's earlier one;
    /// `first_seen` is when the hub first knew the peer, if before now.
    pub fn open(
        &self,
        request: &ConnectRequest,
        hub_version: i64,
        first_seen: Option<i64>,
    ) -> Result<Opened, HubError> {
        match NodeKind::parse(&request.peer.node_type) {
            None => {
                return Err(HubError::Invalid(format!(
                    "node_type {:?} is unknown: use \"Peer\" or \"Hub\"",
                    request.peer.node_type.chars().take(40).collect::<String>()
                )));
            }
            Some(NodeKind::Hub) => {
                tracing::error!(
                    peer_id = %request.peer_id,
                    "configuration error: a hub tried to connect to this hub as a peer; hubs never dial hubs"
                );
                return Err(HubError::WrongState(format!(
                    "{} says it is a hub; hubs do not connect to hubs (check its --role and --hub settings)",
                    request.peer_id
                )));
            }
            Some(NodeKind::Peer) => {}
        }
        let peer = &request.peer;
        if peer.address.chars().count() > MAX_ADDRESS_CHARS {
            return Err(HubError::Invalid(format!(
                "peer_info.address is longer than {MAX_ADDRESS_CHARS} characters"
            )));
        }
        if peer.supported_protocols.len() > MAX_PROTOCOLS
            || peer
                .supported_protocols
                .iter()
                .any(|p| p.chars().count() > MAX_PROTOCOL_CHARS)
        {
            return Err(HubError::Invalid(format!(
                "peer_info.supported_protocols allows at most {MAX_PROTOCOLS} entries of at most {MAX_PROTOCOL_CHARS} characters"
            )));
        }
        if request.last_known_version < 0 {
            return Err(HubError::Invalid(format!(
                "last_known_version {} is negative",
                request.last_known_version
            )));
        }
        let now = self.clock.now_ms();
        let session_id = SessionId::from(uuid::Uuid::new_v4().to_string());
        let mut sessions = self.lock();
        if !sessions.contains_key(request.peer_id.as_str())
            && sessions.len() >= self.config.max_sessions
        {
            return Err(HubError::Busy(format!(
                "the hub holds its maximum of {} sessions; retry later or use another hub",
                self.config.max_sessions
            )));
        }
        let ended = CancellationToken::new();
        let session = Session {
            session_id: session_id.clone(),
            request: request.clone(),
            connected_at: now,
            last_heartbeat_at: 0,
            last_sequence: 0,
            received: 0,
            missed_total: 0,
            latencies: VecDeque::with_capacity(LATENCY_WINDOW),
            last_sync_version: request.last_known_version,
            reported_version: request.last_known_version,
            last_sync_time: 0,
            clock_offset_ms: 0,
            behind_since: (request.last_known_version < hub_version).then_some(now),
            first_seen: first_seen.unwrap_or(now).min(now),
            refusal: String::new(),
            trusted_version: 0,
            timed_out_at: None,
            ended: ended.clone(),
            away: SendAway::within(&ended),
            push_streams: Arc::default(),
            active_syncs: Arc::default(),
        };
        if let Some(old) = sessions.insert(request.peer_id.as_str().to_owned(), session) {
            old.ended.cancel();
            tracing::info!(peer_id = %request.peer_id, old_session = %old.session_id, "session replaced by a reconnect");
        }
        Ok(Opened {
            session_id,
            connected_at: now,
        })
    }

    /// Runs `f` on a live session matching both ids.
    fn with_session<T>(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, HubError> {
        let mut sessions = self.lock();
        match sessions.get_mut(peer_id.as_str()) {
            Some(s) if s.session_id == *session_id && s.timed_out_at.is_none() => Ok(f(s)),
            Some(s) if s.session_id == *session_id => Err(HubError::UnknownSession(format!(
                "session {session_id} of {peer_id} timed out; connect again"
            ))),
            _ => Err(HubError::UnknownSession(format!(
                "no session {session_id:?} for peer {peer_id}; connect first"
            ))),
        }
    }

    /// Ends a session and its streams; returns its fleet record as it ended.
    pub fn close(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        hub_id: &str,
    ) -> Result<FleetRecord, HubError> {
        let now = self.clock.now_ms();
        let mut sessions = self.lock();
        match sessions.get(peer_id.as_str()) {
            Some(s) if s.session_id == *session_id => {
                let record = self.record_of(peer_id.as_str(), s, hub_id, now);
                if let Some(s) = sessions.remove(peer_id.as_str()) {
                    s.ended.cancel();
                }
                Ok(record)
            }
            _ => Err(HubError::UnknownSession(format!(
                "no session {session_id:?} for peer {peer_id}"
            ))),
        }
    }

    /// Ends every session (shutdown).
    pub fn close_all(&self) {
        for (_, s) in std::mem::take(&mut *self.lock()) {
            s.ended.cancel();
        }
    }

    /// Counts a sync stream; on completion it records the peer's progress.
    pub fn start_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<StreamGuard, HubError> {
        let counter = self.with_session(peer_id, session_id, |s| Arc::clone(&s.active_syncs))?;
        let max = self.config.max_concurrent_syncs as usize;
        let mut guard = StreamGuard::try_new(counter, max).ok_or_else(|| {
            HubError::Busy(format!(
                "peer {peer_id} already runs {max} syncs (hub.maxConcurrentSyncs); wait for one to finish"
            ))
        })?;
        let sessions = Arc::clone(&self.sessions);
        let clock = Arc::clone(&self.clock);
        let (peer, sid) = (peer_id.as_str().to_owned(), session_id.clone());
        guard.on_finish = Some(Box::new(move |version| {
            let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get_mut(&peer).filter(|s| s.session_id == sid) {
                s.last_sync_version = s.last_sync_version.max(version);
                s.last_sync_time = clock.now_ms();
            }
        }));
        Ok(guard)
    }

    /// Counts a push stream; returns the session's send-away, which fires when the peer is
    /// sent away or the session ends (the stream ends with it, and with its reason).
    pub fn start_push(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<(SendAway, StreamGuard), HubError> {
        let (away, counter) = self.with_session(peer_id, session_id, |s| {
            (s.away.clone(), Arc::clone(&s.push_streams))
        })?;
        let max = self.config.max_push_streams_per_session as usize;
        let guard = StreamGuard::try_new(counter, max).ok_or_else(|| {
            HubError::Busy(format!(
                "session {session_id} of {peer_id} already holds {max} push streams (hub.maxPushStreamsPerSession)"
            ))
        })?;
        Ok((away, guard))
    }

    /// Sends `peer_id`'s live session to another hub for `why` (its push streams end with the
    /// reason, its heartbeats are answered FAILOVER); false when it has none or was sent
    /// already.
    pub fn send_away(&self, peer_id: &str, why: Away) -> bool {
        let sessions = self.lock();
        match sessions.get(peer_id) {
            Some(s) if s.timed_out_at.is_none() => s.away.send(why),
            _ => false,
        }
    }

    /// Sessions held (timed out ones included until removed).
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The peers in live sessions not sent away, ordered by id.
    pub fn staying(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.staying())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Records a heartbeat.
    pub fn heartbeat(
        &self,
        hb: &Heartbeat,
        hub_version: i64,
    ) -> Result<HeartbeatOutcome, HubError> {
        // The wire's empty session id: a peer that has not connected.
        if hb.session_id.as_str().is_empty() {
            return Err(HubError::WrongState(
                "heartbeat without a session: connect first".into(),
            ));
        }
        if hb.last_sync_version < 0 {
            return Err(HubError::Invalid(format!(
                "last_sync_version {} is negative",
                hb.last_sync_version
            )));
        }
        let now = self.clock.now_ms();
        let skew = now.saturating_sub(hb.timestamp);
        let max_skew = i64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        if skew.saturating_abs() > max_skew {
            return Err(HubError::Invalid(format!(
                "heartbeat timestamp {} is {} ms from the hub's clock {now}; at most ±{} ms is allowed (check the peer's clock)",
                hb.timestamp,
                skew.saturating_abs(),
                max_skew
            )));
        }
        let interval = self.interval_ms();
        let mut sessions = self.lock();
        let Some(session) = sessions
            .get_mut(hb.peer_id.as_str())
            .filter(|s| s.session_id == hb.session_id && s.timed_out_at.is_none())
        else {
            return Ok(HeartbeatOutcome {
                known: false,
                message: format!("session {} is unknown or expired; reconnect", hb.session_id),
                action: RecommendedAction::Reconnect,
                latency_ms: 0,
                newly_applied: None,
            });
        };
        let mut notes = Vec::new();
        if hb.sequence_number <= session.last_sequence {
            notes.push(format!(
                "sequence number {} is out of order or a duplicate (last was {})",
                hb.sequence_number, session.last_sequence
            ));
        } else {
            session.last_sequence = hb.sequence_number;
        }
        let gap = now - session.last_seen();
        session.missed_total += (gap / interval - 1).max(0);
        session.last_heartbeat_at = now;
        session.received += 1;
        let latency = skew.max(0);
        session.clock_offset_ms = skew;
        session.refusal.clone_from(&hb.refusal);
        session.trusted_version = hb.trusted_version;
        if hb.last_sync_version < hub_version {
            session.behind_since.get_or_insert(now);
        } else {
            session.behind_since = None;
        }
        if session.latencies.len() == LATENCY_WINDOW {
            session.latencies.pop_front();
        }
        session.latencies.push_back(latency);
        session.last_sync_version = hb.last_sync_version;
        let newly_applied = (hb.last_sync_version > session.reported_version).then(|| {
            let after = std::mem::replace(&mut session.reported_version, hb.last_sync_version);
            NewlyApplied {
                after,
                up_to: hb.last_sync_version,
                connected_since: session.connected_at,
            }
        });
        let action = if let Some(why) = session.away.why() {
            // A peer whose push stream is down learns it here (an older peer, too).
            notes.push(why.error().to_string());
            RecommendedAction::Failover
        } else if hb.last_sync_version < hub_version {
            notes.push(format!(
                "the hub is at version {hub_version}, the peer at {}",
                hb.last_sync_version
            ));
            RecommendedAction::Sync
        } else {
            RecommendedAction::None
        };
        Ok(HeartbeatOutcome {
            known: true,
            message: if notes.is_empty() {
                "ok".into()
            } else {
                notes.join("; ")
            },
            action,
            latency_ms: latency,
            newly_applied,
        })
    }

    fn report(&self, s: &Session, peer_id: &str, hub_version: i64, now: i64) -> HeartbeatReport {
        let interval = self.interval_ms();
        let missed = ((now - s.last_seen()) / interval).max(0);
        let health = match (s.timed_out_at, missed) {
            (Some(_), _) => HeartbeatHealth::Timeout,
            (None, 0) => HeartbeatHealth::Healthy,
            (None, 1) => HeartbeatHealth::Warning,
            (None, _) => HeartbeatHealth::Critical,
        };
        let average = if s.latencies.is_empty() {
            0.0
        } else {
            s.latencies.iter().sum::<i64>() as f64 / s.latencies.len() as f64
        };
        HeartbeatReport {
            peer_id: peer_id.to_owned(),
            session_id: s.session_id.to_string(),
            last_heartbeat_time: s.last_heartbeat_at,
            missed_heartbeats: u32::try_from(missed).unwrap_or(u32::MAX),
            is_healthy: matches!(health, HeartbeatHealth::Healthy | HeartbeatHealth::Warning),
            status_message: match health {
                HeartbeatHealth::Healthy => "heartbeats on time".into(),
                HeartbeatHealth::Warning => "one heartbeat missed".into(),
                HeartbeatHealth::Critical => format!("{missed} heartbeats missed"),
                HeartbeatHealth::Timeout => "session timed out".into(),
                _ => String::new(),
            },
            total_heartbeats_received: s.received,
            total_heartbeats_missed: s.missed_total + (missed - 1).max(0),
            average_latency_ms: average,
            last_known_sync_version: s.last_sync_version,
            version_lag: (hub_version - s.last_sync_version).max(0),
            health,
        }
    }

    /// The heartbeat report of a session (timed-out sessions included until removed).
    pub fn heartbeat_report(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        hub_version: i64,
    ) -> Result<HeartbeatReport, HubError> {
        let now = self.clock.now_ms();
        let sessions = self.lock();
        match sessions.get(peer_id.as_str()) {
            Some(s) if s.session_id == *session_id => {
                Ok(self.report(s, peer_id.as_str(), hub_version, now))
            }
            _ => Err(HubError::UnknownSession(format!(
                "no session {session_id:?} for peer {peer_id}"
            ))),
        }
    }

    fn view_of(&self, peer_id: &str, s: &Session, hub_version: i64, now: i64) -> SessionView {
        let syncs = s.active_syncs.load(Ordering::Relaxed);
        SessionView {
            peer_id: peer_id.to_owned(),
            session_id: s.session_id.to_string(),
            peer: s.request.peer.clone(),
            connected_at: s.connected_at,
            last_heartbeat_at: s.last_heartbeat_at,
            last_sync_version: s.last_sync_version,
            status: if s.timed_out_at.is_some() {
                SessionStatus::HeartbeatTimeout
            } else if syncs > 0 {
                SessionStatus::Syncing
            } else {
                SessionStatus::Connected
            },
            push_streams: s.push_streams.load(Ordering::Relaxed),
            active_syncs: syncs,
            heartbeat: self.report(s, peer_id, hub_version, now),
        }
    }

    /// View of one live session.
    pub fn view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        hub_version: i64,
    ) -> Result<SessionView, HubError> {
        let now = self.clock.now_ms();
        self.with_session(peer_id, session_id, |_| ())?;
        let sessions = self.lock();
        sessions
            .get(peer_id.as_str())
            .map(|s| self.view_of(peer_id.as_str(), s, hub_version, now))
            .ok_or_else(|| HubError::UnknownSession(format!("no session for peer {peer_id}")))
    }

    /// When the peer's last sync stream completed.
    pub fn last_sync_time(&self, peer_id: &PeerId) -> Option<i64> {
        self.lock()
            .get(peer_id.as_str())
            .map(|s| s.last_sync_time)
            .filter(|t| *t > 0)
    }

    /// Views of every session, ordered by peer id.
    pub fn views(&self, hub_version: i64) -> Vec<SessionView> {
        let now = self.clock.now_ms();
        let sessions = self.lock();
        let mut views: Vec<_> = sessions
            .iter()
            .map(|(id, s)| self.view_of(id, s, hub_version, now))
            .collect();
        views.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        views
    }

    /// The fleet record of a session: live while heard within two heartbeat intervals (refused
    /// while its heartbeats say it refuses what the hub sends), stale after (or timed out).
    fn record_of(&self, peer_id: &str, s: &Session, hub_id: &str, now: i64) -> FleetRecord {
        let silent = now - s.last_seen() > 2 * self.interval_ms();
        FleetRecord {
            peer_id: peer_id.to_owned(),
            hub_id: hub_id.to_owned(),
            condition: if silent || s.timed_out_at.is_some() {
                Condition::Stale
            } else if !s.refusal.is_empty() {
                Condition::Refused
            } else {
                Condition::Live
            },
            applied_version: s.last_sync_version,
            trusted_version: s.trusted_version,
            behind_since: s.behind_since,
            last_heartbeat_at: s.last_heartbeat_at,
            connected_since: s.connected_at,
            first_seen: s.first_seen,
            clock_offset_ms: s.clock_offset_ms,
            software_version: s.request.peer.software_version.clone(),
            refusal: (!s.refusal.is_empty())
                .then(|| format!("refuses hub {hub_id}'s data: {}", s.refusal)),
            changed_at: s.connected_at,
            via: Vec::new(),
        }
    }

    /// Sessions not timed out nor sent away: what the fair share counts.
    pub fn staying_count(&self) -> usize {
        self.lock().values().filter(|s| s.staying()).count()
    }

    /// Sessions not timed out nor sent away, and whether `peer_id` holds one of them.
    pub fn live(&self, peer_id: &PeerId) -> (usize, bool) {
        let holds = self
            .lock()
            .get(peer_id.as_str())
            .is_some_and(Session::staying);
        (self.staying_count(), holds)
    }

    /// The fleet records of every session, ordered by peer id.
    pub fn fleet_records(&self, hub_id: &str) -> Vec<FleetRecord> {
        let now = self.clock.now_ms();
        self.lock()
            .iter()
            .map(|(id, s)| self.record_of(id, s, hub_id, now))
            .collect()
    }

    /// Times out silent sessions (ending their streams) and removes those past the grace;
    /// returns the fleet records of those removed.
    pub fn sweep(&self, hub_id: &str) -> Vec<FleetRecord> {
        let now = self.clock.now_ms();
        let timeout = i64::try_from(self.config.session_timeout.as_millis()).unwrap_or(i64::MAX);
        let grace = i64::try_from(self.config.session_grace.as_millis()).unwrap_or(i64::MAX);
        let mut removed = Vec::new();
        let mut sessions = self.lock();
        sessions.retain(|peer_id, s| match s.timed_out_at {
            None if now - s.last_seen() > timeout => {
                tracing::warn!(%peer_id, session_id = %s.session_id, "session timed out: no heartbeat");
                s.timed_out_at = Some(now);
                s.ended.cancel();
                true
            }
            Some(at) if now - at > grace => {
                tracing::info!(%peer_id, session_id = %s.session_id, "timed-out session removed");
                removed.push(self.record_of(peer_id, s, hub_id, now));
                false
            }
            _ => true,
        });
        removed
    }
}
