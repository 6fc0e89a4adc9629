//! The peer's connection state machine: which hub it uses or tries, each hub's record, its
//! heartbeats, failovers and isolation. Transitions are methods that say what changed, so the
//! connection manager decides about alerts and metrics; the REST view is derived from a
//! snapshot by the REST adapter (`src/api/rest/connection.rs`).

use std::collections::VecDeque;
use std::time::Duration;

/// Connect attempts kept for operators and tests.
pub const ATTEMPTS_KEPT: usize = 64;

/// Where the peer is with its hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected and not trying (start-up, shutdown).
    Disconnected,
    /// Trying a hub.
    Connecting,
    /// In a session with a hub.
    Connected,
    /// A heartbeat was missed; one more and the peer fails over.
    HeartbeatTimeout,
    /// Every hub failed; serving the replica, retrying in the background.
    Isolated,
}

impl ConnectionState {
    /// Every state, in order.
    pub const ALL: [ConnectionState; 5] = [
        ConnectionState::Disconnected,
        ConnectionState::Connecting,
        ConnectionState::Connected,
        ConnectionState::HeartbeatTimeout,
        ConnectionState::Isolated,
    ];

    /// The state's name, as `GET /api/v1/connection` and a relay's heartbeat answers say it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "Disconnected",
            ConnectionState::Connecting => "Connecting",
            ConnectionState::Connected => "Connected",
            ConnectionState::HeartbeatTimeout => "HeartbeatTimeout",
            ConnectionState::Isolated => "Isolated",
        }
    }

    /// The state a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// True while the peer has a session (a heartbeat may have been missed).
    pub fn in_session(self) -> bool {
        matches!(
            self,
            ConnectionState::Connected | ConnectionState::HeartbeatTimeout
        )
    }
}

/// What the peer knows about one configured hub.
#[derive(Debug, Clone, Default)]
pub struct HubRecord {
    /// The hub's URL.
    pub url: String,
    /// The hub's node id, once connected.
    pub hub_id: Option<String>,
    /// Connect attempts since the last success.
    pub failed_attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was last tried, Unix ms.
    pub last_attempt_at: Option<i64>,
    /// When the peer was last connected to it, Unix ms.
    pub last_connected_at: Option<i64>,
    /// The hub's head version as last seen.
    pub hub_version: Option<i64>,
    /// The hub's register is behind this peer's replica (not followed).
    pub hub_behind: bool,
    /// The hub's chain forks from the replica (not followed).
    pub divergent: bool,
    /// The hub sent entries whose publisher signatures do not verify (not followed, with
    /// `peer.requireSignatures`).
    pub signature_refused: bool,
    /// The hub's checkpoints are not trusted, missing, or contradict others (not followed).
    pub checkpoint_refused: bool,
    /// The replica cannot store what the hub sends (permanent; the session stays): told to
    /// the hub in heartbeats until a sync applies again.
    pub unstorable: Option<String>,
    /// When it is a relay: its own state with its hubs, as its last heartbeat answer said.
    pub relay_state: Option<ConnectionState>,
}

/// How a connect attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Still running.
    Pending,
    /// A session opened.
    Connected,
    /// It failed, for this reason.
    Failed(String),
}

/// One connect attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Hub priority (index into the configured hubs).
    pub hub: usize,
    /// When it started, Unix ms.
    pub at: i64,
    /// The backoff waited before it.
    pub delay: Duration,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// The peer's connection: the state machine and what it remembers.
#[derive(Debug, Clone)]
pub struct PeerState {
    /// State.
    pub state: ConnectionState,
    /// The hub in use or being tried (index into `hubs`).
    pub current: Option<usize>,
    /// Session id with the current hub.
    pub session_id: Option<String>,
    /// Every configured hub, in priority order.
    pub hubs: Vec<HubRecord>,
    /// Consecutive missed heartbeats.
    pub missed_heartbeats: u32,
    /// Last acknowledged heartbeat, Unix ms.
    pub last_heartbeat_at: Option<i64>,
    /// Failovers since start.
    pub failovers: u64,
    /// Since when the peer is isolated, Unix ms.
    pub isolated_since: Option<i64>,
    /// Backoff before the next attempt.
    pub next_backoff: Option<Duration>,
    /// The current (or last) hub's clock minus this node's, ms.
    pub hub_clock_offset_ms: Option<i64>,
    /// Recent connect attempts, oldest first (at most [`ATTEMPTS_KEPT`]).
    pub attempts: VecDeque<AttemptRecord>,
    /// Since when (Unix ms) the peer has been trying to connect without a session: from its
    /// first attempt after start, or after losing a hub, to the next session.
    pub unconnected_since: Option<i64>,
}

impl PeerState {
    /// The state before the first attempt, over the configured `hubs`.
    pub fn new(hubs: &[String]) -> Self {
        Self {
            state: ConnectionState::Disconnected,
            current: None,
            session_id: None,
            hubs: hubs
                .iter()
                .map(|url| HubRecord {
                    url: url.clone(),
                    ..Default::default()
                })
                .collect(),
            missed_heartbeats: 0,
            last_heartbeat_at: None,
            failovers: 0,
            isolated_since: None,
            next_backoff: None,
            hub_clock_offset_ms: None,
            unconnected_since: None,
            attempts: VecDeque::new(),
        }
    }

    /// URL of the hub in use, while in a session.
    pub fn session_hub(&self) -> Option<&str> {
        if !self.state.in_session() {
            return None;
        }
        self.current.map(|i| self.hubs[i].url.as_str())
    }

    /// The head version of the hub in use or being tried, as last seen.
    pub fn current_hub_version(&self) -> Option<i64> {
        self.current.and_then(|i| self.hubs[i].hub_version)
    }

    /// A connect attempt to hub `index` starts after waiting `delay`.
    pub fn begin_attempt(&mut self, index: usize, delay: Duration, now: i64) {
        self.unconnected_since.get_or_insert(now);
        if self.state != ConnectionState::Isolated {
            self.state = ConnectionState::Connecting;
        }
        self.current = Some(index);
        self.session_id = None;
        self.hubs[index].last_attempt_at = Some(now);
        if self.attempts.len() == ATTEMPTS_KEPT {
            self.attempts.pop_front();
        }
        self.attempts.push_back(AttemptRecord {
            hub: index,
            at: now,
            delay,
            outcome: AttemptOutcome::Pending,
        });
    }

    /// A session with hub `index` opened; true when this ends an isolation.
    pub fn connected(
        &mut self,
        index: usize,
        session_id: &str,
        hub_id: &str,
        hub_version: i64,
        now: i64,
    ) -> bool {
        let was_isolated = self.state == ConnectionState::Isolated;
        self.state = ConnectionState::Connected;
        self.current = Some(index);
        self.session_id = Some(session_id.to_owned());
        self.missed_heartbeats = 0;
        self.isolated_since = None;
        self.next_backoff = None;
        let hub = &mut self.hubs[index];
        hub.hub_id = Some(hub_id.to_owned());
        hub.failed_attempts = 0;
        hub.last_error = None;
        hub.last_connected_at = Some(now);
        hub.hub_version = Some(hub_version);
        hub.divergent = false;
        hub.signature_refused = false;
        hub.checkpoint_refused = false;
        hub.hub_behind = false;
        hub.unstorable = None;
        hub.relay_state = None;
        if let Some(last) = self.attempts.back_mut() {
            last.outcome = AttemptOutcome::Connected;
        }
        was_isolated
    }

    /// The attempt on hub `index` (or its session) failed with `error`.
    pub fn attempt_failed(&mut self, index: usize, error: &str) {
        self.hubs[index].failed_attempts += 1;
        self.hubs[index].last_error = Some(error.to_owned());
        if let Some(last) = self.attempts.back_mut() {
            last.outcome = AttemptOutcome::Failed(error.to_owned());
        }
        if self.state != ConnectionState::Isolated {
            self.state = ConnectionState::Connecting;
        }
        self.session_id = None;
    }

    /// The peer moves on to the next hub.
    pub fn failed_over(&mut self) {
        self.failovers += 1;
    }

    /// The next attempt comes after `delay`.
    pub fn backing_off(&mut self, delay: Duration) {
        self.next_backoff = Some(delay);
    }

    /// Every hub failed; true when the peer was not isolated already.
    pub fn enter_isolation(&mut self, now: i64) -> bool {
        if self.state == ConnectionState::Isolated {
            return false;
        }
        self.state = ConnectionState::Isolated;
        self.isolated_since = Some(now);
        self.current = None;
        true
    }

    /// Hub `index` acknowledged a heartbeat; its head is at `hub_version`.
    pub fn heartbeat_acked(
        &mut self,
        index: usize,
        hub_version: i64,
        relay_state: Option<ConnectionState>,
        now: i64,
    ) {
        self.state = ConnectionState::Connected;
        self.missed_heartbeats = 0;
        self.last_heartbeat_at = Some(now);
        self.hubs[index].hub_version = Some(hub_version);
        self.hubs[index].relay_state = relay_state;
    }

    /// `consecutive` heartbeats in a row went unanswered.
    pub fn heartbeat_missed(&mut self, consecutive: u32) {
        self.missed_heartbeats = consecutive;
        self.state = ConnectionState::HeartbeatTimeout;
    }

    /// A new estimate of the hub's clock offset.
    pub fn clock_offset(&mut self, offset_ms: i64) {
        self.hub_clock_offset_ms = Some(offset_ms);
    }

    /// A sync from hub `index` reached `version`.
    pub fn synced(&mut self, index: usize, version: i64) {
        let hub = &mut self.hubs[index];
        hub.hub_behind = false;
        hub.unstorable = None;
        hub.hub_version = Some(hub.hub_version.unwrap_or(0).max(version));
    }

    /// Hub `index` is behind the replica (at `hub_version`); true when first seen.
    pub fn hub_behind(&mut self, index: usize, hub_version: i64) -> bool {
        let hub = &mut self.hubs[index];
        let first = !hub.hub_behind;
        hub.hub_behind = true;
        hub.hub_version = Some(hub_version);
        first
    }

    /// Hub `index` forks from the replica.
    pub fn diverged(&mut self, index: usize, message: &str) {
        self.hubs[index].divergent = true;
        self.hubs[index].last_error = Some(message.to_owned());
    }

    /// Hub `index` sent entries refused for their publisher signatures.
    pub fn unverified(&mut self, index: usize, message: &str) {
        self.hubs[index].signature_refused = true;
        self.hubs[index].last_error = Some(message.to_owned());
    }

    /// Hub `index`'s checkpoints are refused.
    pub fn untrusted(&mut self, index: usize, message: &str) {
        self.hubs[index].checkpoint_refused = true;
        self.hubs[index].last_error = Some(message.to_owned());
    }

    /// The replica cannot store what hub `index` sends; true when this error is new.
    pub fn unstorable(&mut self, index: usize, error: &str) -> bool {
        let hub = &mut self.hubs[index];
        let first = hub.last_error.as_deref() != Some(error);
        hub.last_error = Some(error.to_owned());
        hub.unstorable = Some(error.to_owned());
        first
    }

    /// The connection manager stopped.
    pub fn stopped(&mut self) {
        self.state = ConnectionState::Disconnected;
        self.session_id = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_is_entered_once_and_left_by_a_session() {
        let mut s = PeerState::new(&["a".into(), "b".into()]);
        s.begin_attempt(0, Duration::ZERO, 1);
        s.attempt_failed(0, "refused");
        assert!(s.enter_isolation(2));
        assert!(!s.enter_isolation(3), "already isolated");
        s.begin_attempt(1, Duration::from_secs(1), 4);
        assert_eq!(s.state, ConnectionState::Isolated, "trying keeps isolation");
        assert!(
            s.connected(1, "s", "hub-b", 7, 5),
            "the session ends the isolation"
        );
        assert_eq!(s.session_hub(), Some("b"));
        assert_eq!(
            s.attempts.back().unwrap().outcome,
            AttemptOutcome::Connected
        );
        assert!(!s.connected(1, "s2", "hub-b", 7, 6));
    }
}
