//! What a peer shows about its hub connection (`GET /api/v1/connection`).

use serde::Serialize;
use utoipa::ToSchema;

/// The peer's connection state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
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

/// What the peer knows about one configured hub.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubState {
    /// The hub's URL.
    pub url: String,
    /// Priority (0 = first).
    pub priority: usize,
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
}

/// One connect attempt, kept for operators and tests (the last 64).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Hub priority.
    pub hub: usize,
    /// When it started, Unix ms.
    pub at: i64,
    /// The backoff waited before it, ms.
    pub delay_ms: u64,
    /// `connected` or the error.
    pub outcome: String,
}

/// The peer's connection, as `GET /api/v1/connection` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// State.
    pub state: ConnectionState,
    /// URL of the hub in use or being tried.
    pub current_hub: Option<String>,
    /// Session id with the current hub.
    pub session_id: Option<String>,
    /// Every configured hub, in priority order.
    pub hubs: Vec<HubState>,
    /// Consecutive missed heartbeats.
    pub missed_heartbeats: u32,
    /// Last acknowledged heartbeat, Unix ms.
    pub last_heartbeat_at: Option<i64>,
    /// Failovers since start.
    pub failovers: u64,
    /// Since when the peer is isolated, Unix ms.
    pub isolated_since: Option<i64>,
    /// Backoff before the next attempt, ms.
    pub next_backoff_ms: Option<u64>,
    /// The current (or last) hub's clock minus this node's, ms, estimated from the hub's
    /// timestamps; the peer sends its heartbeat times on the hub's clock.
    pub hub_clock_offset_ms: Option<i64>,
    /// Recent connect attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

impl ConnectionView {
    /// The initial view over `hubs`.
    pub fn new(hubs: &[String]) -> Self {
        Self {
            state: ConnectionState::Disconnected,
            current_hub: None,
            session_id: None,
            hubs: hubs
                .iter()
                .enumerate()
                .map(|(priority, url)| HubState {
                    url: url.clone(),
                    priority,
                    ..Default::default()
                })
                .collect(),
            missed_heartbeats: 0,
            last_heartbeat_at: None,
            failovers: 0,
            isolated_since: None,
            next_backoff_ms: None,
            hub_clock_offset_ms: None,
            attempts: Vec::new(),
        }
    }

    /// Records an attempt, keeping the last 64.
    pub fn record_attempt(&mut self, attempt: Attempt) {
        if self.attempts.len() == 64 {
            self.attempts.remove(0);
        }
        self.attempts.push(attempt);
    }
}
