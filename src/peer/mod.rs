//! The peer role: replicate a hub's register into a local replica, keep it current (push +
//! periodic pull), watch the hub with heartbeats, fail over between hubs in priority order,
//! and keep serving the replica when every hub is gone (isolated mode).

pub mod alerts;
mod events;
mod heartbeats;
pub mod hub_clock;
pub mod hub_order;
pub mod session;
pub mod state;
pub mod sync;
pub mod trust;

use crate::clock::SharedClock;
use crate::config::{Config, PeerConfig};
use crate::error_code::{Classified, ErrorCode};
use crate::link::Dialer;
use crate::metrics::Metrics;
use crate::protocol::PeerId;
use crate::register::Register;
use crate::store::SyncProgress;
use backon::{BackoffBuilder, ExponentialBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use session::SessionEnd;
use state::{ConnectionState, PeerState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use sync::SyncOutcome;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A request to the running peer.
#[derive(Debug)]
pub enum Command {
    /// Sync now (full or incremental) and report.
    Sync {
        /// FullSync instead of incremental.
        full: bool,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<SyncOutcome, PeerError>>,
    },
    /// Drop the session and reconnect.
    Reconnect,
}

/// Why a peer request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No hub session right now.
    #[error("not connected to any hub (state {0:?})")]
    NotConnected(ConnectionState),
    /// The sync failed.
    #[error("sync failed: {0}")]
    SyncFailed(String),
    /// The hub refused the sync for now (rate limit or concurrent-sync limit).
    #[error("the hub refused the sync for now: {message}")]
    Refused {
        /// The hub's message.
        message: String,
        /// When the hub will let it through, if it said.
        retry_after: Option<Duration>,
    },
}

impl Classified for PeerError {
    fn code(&self) -> ErrorCode {
        match self {
            PeerError::NotConnected(_) => ErrorCode::Unavailable,
            PeerError::Refused { .. } => ErrorCode::RateLimited,
            PeerError::SyncFailed(_) => ErrorCode::SyncFailed,
        }
    }
}

/// What a peer runs by, taken from the node's configuration.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The hubs, in priority order (`hubs`).
    pub hubs: Vec<String>,
    /// `peer.*`.
    pub peer: PeerConfig,
    /// Where the peer keeps its pinned hub keys and last trusted checkpoint (`dataDir`).
    pub data_dir: std::path::PathBuf,
    /// `alerts.webhookUrl`.
    pub alert_webhook: Option<String>,
    /// The address this node serves on, told to hubs when connecting (`listen`).
    pub listen: std::net::SocketAddr,
    /// The largest document this node takes, told to hubs (`limits.maxDocumentBytes`).
    pub max_document_bytes: usize,
}

impl From<&Config> for PeerSettings {
    fn from(config: &Config) -> Self {
        Self {
            hubs: config.hubs.clone(),
            peer: config.peer.clone(),
            data_dir: config.data_dir.clone(),
            alert_webhook: config.alerts.webhook_url.clone(),
            listen: config.listen,
            max_document_bytes: config.limits.max_document_bytes,
        }
    }
}

/// What a peer runs on, handed over by the composition root.
pub struct PeerParts {
    /// The replica.
    pub register: Arc<Register>,
    /// Its settings.
    pub settings: PeerSettings,
    /// This peer's id (sent as `peer_id`).
    pub node_id: PeerId,
    /// The clock.
    pub clock: SharedClock,
    /// How the peer reaches hubs.
    pub dialer: Arc<dyn Dialer>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
}

/// A running peer.
pub struct Peer {
    register: Arc<Register>,
    metrics: Arc<Metrics>,
    settings: PeerSettings,
    node_id: PeerId,
    clock: SharedClock,
    dialer: Arc<dyn Dialer>,
    state: Mutex<PeerState>,
    commands: mpsc::Sender<Command>,
    heartbeat_sequence: AtomicI64,
    /// Per hub: the last connect attempt's permanent refusal (bad id, unknown or forbidden
    /// credentials), if it was one; when every hub refuses so, retrying cannot help.
    refusals: Mutex<Vec<Option<String>>>,
    /// Where alerts go, and which standing conditions were alerted.
    alerts: alerts::Alerter,
    /// Draws the backoff jitter; seeded when the caller asks for reproducible runs.
    jitter: Mutex<StdRng>,
    /// Which hub keys are trusted, and what they vouched for.
    trust: trust::HubTrust,
    /// The path to a hub its current (or last) upstream answered with (see
    /// [`Peer::relay_path`]).
    upstream_path: Mutex<Vec<String>>,
    /// The newest timestamp (its signer's clock, Unix ms) of a trusted checkpoint the
    /// current session's hub handed out; 0 = none yet.
    newest_vouched: AtomicI64,
    /// On a relay: what its hub knows of its downstream peers, reported upstream with every
    /// heartbeat. Weak: the relay's hub holds this peer (for its checkpoints and path), and a
    /// cycle would keep both, and the replica's store, alive after shutdown.
    downstream: std::sync::OnceLock<std::sync::Weak<dyn Downstream>>,
}

/// What a relay's hub knows of the peers below it.
pub trait Downstream: Send + Sync {
    /// Its fleet records: the peers in session with it, those its own relays reported, and
    /// departed ones within the retention (`hub_id` unset).
    fn downstream_records(&self) -> Vec<crate::store::fleet::FleetRecord>;
}

impl Downstream for crate::hub::Hub {
    fn downstream_records(&self) -> Vec<crate::store::fleet::FleetRecord> {
        crate::hub::Hub::downstream_records(self)
    }
}

/// A hub clock this far from the peer's raises `peer.clock_offset` (heartbeats are sent on the
/// hub's clock whatever the offset, so the session holds; the alert is for the operator).
pub const CLOCK_OFFSET_ALERT_MS: i64 = 1_000;

/// Exchanges with a hub (its connect answer, heartbeat acknowledgements) needed before its
/// clock offset may raise an alert.
pub const CLOCK_SAMPLES_TO_ALERT: usize = 3;

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Peer {
    /// Starts the peer's connection manager, reaching hubs through `dialer`; it runs until
    /// `shutdown`. `jitter_seed` makes the backoff jitter reproducible (`None`: from the OS).
    pub fn start(
        parts: PeerParts,
        shutdown: CancellationToken,
        jitter_seed: Option<u64>,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let PeerParts {
            register,
            settings,
            node_id,
            clock,
            dialer,
            metrics,
        } = parts;
        let (commands, receiver) = mpsc::channel(16);
        let jitter = match jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let peer = Arc::new(Self {
            alerts: alerts::Alerter::new(settings.alert_webhook.clone()),
            jitter: Mutex::new(jitter),
            trust: trust::HubTrust::open(
                settings.peer.trusted_hub_keys.clone(),
                &settings.data_dir,
            ),
            state: Mutex::new(PeerState::new(&settings.hubs)),
            upstream_path: Mutex::default(),
            newest_vouched: AtomicI64::new(0),
            downstream: std::sync::OnceLock::new(),
            refusals: Mutex::new(vec![None; settings.hubs.len()]),
            register,
            metrics,
            settings,
            node_id,
            clock,
            dialer,
            commands,
            heartbeat_sequence: AtomicI64::new(0),
        });
        let task = tokio::spawn(run(Arc::clone(&peer), receiver, shutdown));
        (peer, task)
    }

    /// The replica.
    pub fn register(&self) -> &Arc<Register> {
        &self.register
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What the peer runs by.
    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// Which hub keys are trusted, and what they vouched for.
    pub fn trust(&self) -> &trust::HubTrust {
        &self.trust
    }

    /// Makes this peer a relay's: its heartbeats report `downstream`'s peers upstream. Set
    /// once, when the node builds the relay's hub.
    pub fn report_downstream(&self, downstream: &Arc<dyn Downstream>) {
        let _ = self.downstream.set(Arc::downgrade(downstream));
    }

    /// The downstream peers a heartbeat reports (at most
    /// [`crate::protocol::MAX_DOWNSTREAM_REPORTED`]); none on a plain peer.
    pub(crate) fn downstream_report(&self) -> Vec<crate::store::fleet::FleetRecord> {
        let Some(downstream) = self.downstream.get().and_then(std::sync::Weak::upgrade) else {
            return Vec::new();
        };
        let mut records = downstream.downstream_records();
        if records.len() > crate::protocol::MAX_DOWNSTREAM_REPORTED {
            tracing::warn!(
                peers = records.len(),
                reported = crate::protocol::MAX_DOWNSTREAM_REPORTED,
                "more downstream peers than a heartbeat reports; the rest are not in the hubs' fleet"
            );
            records.truncate(crate::protocol::MAX_DOWNSTREAM_REPORTED);
        }
        records
    }

    /// This peer's path to a hub: its own node id, then the relays above it (as its upstream
    /// answered when it connected), nearest first; only its own id while not in session.
    pub fn relay_path(&self) -> Vec<String> {
        let mut path = vec![self.node_id.to_string()];
        if self.state().state.in_session() {
            path.extend(
                self.upstream_path
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
        }
        path
    }

    /// On a relay (`peer.serveDownstream`), keeps `v` in the store to hand on with the entry
    /// it covers — before that entry is applied, so a downstream peer never reads the entry
    /// without it. A note that cannot be kept is logged: the relay's downstream peers then
    /// wait for the next one, nothing is lost.
    pub async fn keep_checkpoint(&self, v: &trust::Vouched) {
        if !self.settings.peer.serve_downstream {
            return;
        }
        let kept = self
            .register
            .store()
            .keep_checkpoints(vec![(v.version, v.note.clone())])
            .await;
        if let Err(e) = kept {
            tracing::warn!(error = %e, version = v.version, "could not keep a hub checkpoint to hand on downstream");
        }
    }

    /// The replica now holds what `v` covers (kept first, see [`Peer::keep_checkpoint`]): it
    /// becomes the checkpoint the peer shows and a relay hands on with its head.
    pub fn checkpoint_applied(&self, v: trust::Vouched) {
        self.vouched_now(&v);
        self.trust.applied(v);
    }

    /// How the peer reaches hubs.
    pub fn dialer(&self) -> &Arc<dyn Dialer> {
        &self.dialer
    }

    /// This peer's id (sent as `peer_id`).
    pub fn node_id(&self) -> &PeerId {
        &self.node_id
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn state_mut(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the connection state machine.
    pub fn state(&self) -> PeerState {
        self.state_mut().clone()
    }

    /// Why the replica refuses what hub `index` sends while connected to it, if it does.
    pub fn refusal_of(&self, index: usize) -> Option<String> {
        self.state_mut()
            .hubs
            .get(index)
            .and_then(|h| h.unstorable.clone())
    }

    /// The head version of the hub in use, as last seen.
    pub fn hub_version_hint(&self) -> Option<i64> {
        self.state_mut().current_hub_version()
    }

    /// The node id hub `index` gave when the peer last connected to it.
    fn hub_id_of(&self, index: usize) -> Option<String> {
        self.state_mut()
            .hubs
            .get(index)
            .and_then(|h| h.hub_id.clone())
    }

    /// URL of the hub in use, if connected.
    pub fn current_hub(&self) -> Option<String> {
        self.state_mut().session_hub().map(str::to_owned)
    }

    /// The replica's stored sync progress.
    pub async fn sync_progress(&self) -> Result<Option<SyncProgress>, crate::store::StoreError> {
        self.register.store().sync_progress().await
    }

    /// Syncs now through the current session.
    pub async fn sync_now(&self, full: bool) -> Result<SyncOutcome, PeerError> {
        let state = self.state_mut().state;
        if !state.in_session() {
            return Err(PeerError::NotConnected(state));
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Sync { full, reply })
            .await
            .map_err(|_| PeerError::NotConnected(ConnectionState::Disconnected))?;
        answer.await.map_err(|_| PeerError::NotConnected(state))?
    }

    /// Every alert this peer raises from now on.
    pub fn alerts(&self) -> tokio::sync::broadcast::Receiver<alerts::Alert> {
        self.alerts.subscribe()
    }

    /// Drops the session (if any) and reconnects, restarting the backoff.
    pub async fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect).await;
    }

    fn next_heartbeat_sequence(&self) -> i64 {
        self.heartbeat_sequence.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Delays between connect attempts to one hub: exponential from `backoffInitial` to
/// `backoffMax` (backon computes the sequence), each shortened by up to 20 % at random so
/// peers that lost the same hub do not retry in lockstep; `None` after `attemptsPerHub`.
fn backoff(peer: &Arc<Peer>) -> impl Iterator<Item = Duration> + use<> {
    let attempts = peer.settings.peer.attempts_per_hub.max(1) as usize;
    delays(peer, Some(attempts - 1))
}

/// The backoff sequence (`times` delays, or endless), jittered.
fn delays(peer: &Arc<Peer>, times: Option<usize>) -> impl Iterator<Item = Duration> + use<> {
    let config = &peer.settings;
    let mut builder = ExponentialBuilder::new()
        .with_min_delay(config.peer.backoff_initial)
        .with_max_delay(config.peer.backoff_max)
        .with_factor(2.0);
    builder = match times {
        Some(times) => builder.with_max_times(times),
        None => builder.without_max_times(),
    };
    let peer = Arc::clone(peer);
    builder
        .build()
        .map(move |d| d.mul_f64(1.0 - peer.draw() * 0.2))
}

impl Peer {
    /// A uniform draw in [0, 1) from the peer's jitter source.
    fn draw(&self) -> f64 {
        self.jitter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random()
    }
}

/// What a hub answered in the current round (since the last working session).
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// It sent the peer on at connect: full (with its load, when it said) or draining.
    SentOn(Option<crate::protocol::HubLoad>),
    /// It failed, refused, or broke.
    Failed,
}

/// The hub to insist on when every hub has answered in a round and some refused for their
/// fair share: [`pick_least_loaded`] of those, in the peer's `order`.
fn least_loaded(round: &[Option<Answer>], order: &[usize], draw: f64) -> Option<usize> {
    let full: Vec<(usize, u32)> = order
        .iter()
        .filter_map(|&hub| match round[hub] {
            Some(Answer::SentOn(Some(load))) => Some((hub, load.sessions)),
            _ => None,
        })
        .collect();
    pick_least_loaded(&full, draw)
}

/// Of hubs that refused for their fair share, as `(hub, sessions)`, the one to insist on: any
/// within a tenth (at least one session) of the fewest sessions, picked by `draw` (uniform in
/// [0, 1)). Not by sessions ÷ cap (a hub refuses at its cap, so that ratio is about 1 for them
/// all), and not always the first of a tie: peers refused together saw the same loads, and
/// would all land on one hub.
pub fn pick_least_loaded(full: &[(usize, u32)], draw: f64) -> Option<usize> {
    let fewest = full.iter().map(|(_, sessions)| *sessions).min()?;
    let near: Vec<usize> = full
        .iter()
        .filter(|(_, sessions)| *sessions <= fewest + (fewest / 10).max(1))
        .map(|(hub, _)| *hub)
        .collect();
    let pick = ((draw * near.len() as f64) as usize).min(near.len() - 1);
    near.get(pick).copied()
}

/// The connection manager: tries hubs in `peer.hubOrder` (configured priority, or spread by
/// rendezvous hashing; see [`hub_order`]), each a few times with backoff,
/// declares isolation when every hub has failed or refused in a round, and keeps trying,
/// rounds apart by a growing backoff.
///
/// - A connect that fails is retried on the same hub with backoff (`attemptsPerHub` in all),
///   then the next hub is tried.
/// - A working session that breaks moves to the next hub after a random share of
///   `backoffInitial`, so peers that lost the same hub do not all arrive at the next together;
///   a working session starts a fresh round.
/// - A hub lost before its session was established, and a hub that is refused (a fork,
///   untrusted checkpoints, refused signatures), count as failed attempts: the next hub is
///   tried after the round's backoff, never in a tight loop.
/// - A hub that sends the peer on at connect (it holds its fair share, or drains) is no
///   failure: the next hub is tried at once, and it never counts toward isolation. When every
///   hub has answered in a round and some were full, the least loaded of those is asked to
///   take the peer anyway (`insist`), after a jittered pause of 0.5–1.5 × `backoffInitial`.
/// - A session the hub ends by sending the peer on (draining, rebalancing) starts a fresh
///   round at once, from the first hub of the order that is not that one.
async fn run(peer: Arc<Peer>, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
    let hubs = peer.settings.hubs.len();
    if hubs == 0 {
        tracing::error!("peer has no hubs configured");
        return;
    }
    let first = peer.settings.peer.backoff_initial;
    // The hubs in the order this peer tries them (`peer.hubOrder`); `position` walks it.
    let order = hub_order::hub_order(
        peer.settings.peer.hub_order,
        peer.node_id().as_str(),
        &peer.settings.hubs,
    );
    let mut position = 0usize;
    let mut index = order[0];
    let mut exhausted = vec![false; hubs];
    let mut round: Vec<Option<Answer>> = vec![None; hubs];
    // What the next connect says: insist on a full hub, the hub whose session broke.
    let mut hints = session::ConnectHints::default();
    // Delays between rounds, and before moving on after a refusal: grows while no session
    // works, starts again when one does.
    let mut rounds = delays(&peer, None);
    let mut round_delay = rounds.next().unwrap_or(first);
    let mut tries = backoff(&peer);
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            peer.state_mut().backing_off(wait);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                command = commands.recv() => match command {
                    Some(Command::Reconnect) => {}
                    Some(Command::Sync { reply, .. }) => {
                        let _ = reply.send(Err(PeerError::NotConnected(ConnectionState::Connecting)));
                        continue;
                    }
                    None => break,
                },
            }
        }
        peer.begin_attempt(index, wait);
        let sent = session::ConnectHints {
            insist: std::mem::take(&mut hints.insist),
            lost_hub: hints.lost_hub.clone(),
        };
        let end = session::run(&peer, index, sent, &mut commands, &shutdown).await;
        let url = &peer.settings.hubs[index];
        // A session opened: the hub lost before is old news, unless this one broke too.
        if !matches!(
            end,
            SessionEnd::ConnectFailed { .. } | SessionEnd::SentOn { .. }
        ) {
            hints.lost_hub.clear();
        }
        if matches!(end, SessionEnd::Failover(_) | SessionEnd::BrokeEarly(_)) {
            hints.lost_hub = peer.hub_id_of(index).unwrap_or_default();
        }
        match end {
            SessionEnd::Shutdown => break,
            SessionEnd::SentOn { why, load } => {
                tracing::info!(hub = %url, %why, "the hub sends this peer on; trying the next");
                peer.attempt_failed(index, &why);
                round[index] = Some(Answer::SentOn(load));
                wait = Duration::ZERO;
            }
            SessionEnd::Moved(why) => {
                peer.attempt_failed(index, &why);
                exhausted.fill(false);
                round.fill(None);
                round[index] = Some(Answer::SentOn(None));
                rounds = delays(&peer, None);
                round_delay = rounds.next().unwrap_or(first);
                tries = backoff(&peer);
                wait = Duration::ZERO;
                position = order.iter().position(|&h| h != index).unwrap_or(0);
                index = order[position];
                continue;
            }
            SessionEnd::Reconnect => {
                exhausted.fill(false);
                round.fill(None);
                tries = backoff(&peer);
                wait = Duration::ZERO;
                continue;
            }
            SessionEnd::ConnectFailed {
                error,
                retry_after,
                permanent,
            } => {
                tracing::warn!(hub = %url, %error, "connect attempt failed");
                peer.attempt_failed(index, &error);
                peer.note_refusal(index, permanent.then_some(error.as_str()));
                if let Some(next) = tries.next() {
                    // A rate-limited peer waits at least as long as the hub asked.
                    wait = next.max(retry_after.unwrap_or_default());
                    continue;
                }
                exhausted[index] = true;
                round[index] = Some(Answer::Failed);
                wait = Duration::ZERO;
            }
            SessionEnd::Failover(why) => {
                peer.attempt_failed(index, &why);
                peer.failed_over(index, &why);
                exhausted.fill(false);
                round.fill(None);
                round[index] = Some(Answer::Failed);
                rounds = delays(&peer, None);
                round_delay = rounds.next().unwrap_or(first);
                wait = first.mul_f64(peer.draw());
            }
            SessionEnd::BrokeEarly(why) => {
                peer.attempt_failed(index, &why);
                peer.failed_over(index, &why);
                exhausted[index] = true;
                round[index] = Some(Answer::Failed);
                wait = first.mul_f64(peer.draw());
            }
            SessionEnd::Diverged(why) => {
                peer.attempt_failed(index, &why);
                peer.failed_over(index, &why);
                exhausted[index] = true;
                round[index] = Some(Answer::Failed);
                wait = round_delay;
            }
        }
        if exhausted.iter().all(|e| *e) {
            peer.enter_isolation();
            exhausted.fill(false);
            wait = wait.max(round_delay);
            round_delay = rounds.next().unwrap_or(round_delay);
        }
        if round.iter().all(Option::is_some) {
            let sent_on = round.iter().any(|a| matches!(a, Some(Answer::SentOn(_))));
            let target = least_loaded(&round, &order, peer.draw());
            round.fill(None);
            if sent_on {
                // Their counts of each other lag a flush, or the fleet outgrew them: not a
                // failure, but not a tight loop either.
                wait = wait.max(first.mul_f64(0.5 + peer.draw()));
            }
            if let Some(target) = target {
                tracing::info!(hub = %peer.settings.hubs[target], "every hub reached holds its fair share; asking the least loaded to take this peer");
                hints.insist = true;
                index = target;
                position = order.iter().position(|&h| h == target).unwrap_or(0);
                tries = backoff(&peer);
                continue;
            }
        }
        position = (position + 1) % hubs;
        index = order[position];
        tries = backoff(&peer);
    }
    peer.state_mut().stopped();
    peer.alerts.drain().await;
}

/// A relay hands on the last checkpoint that covered what its replica applied, and knows its
/// path to a hub from its upstream's connect answer.
impl crate::hub::Upstream for Peer {
    fn head_note(&self) -> Option<trust::Vouched> {
        self.trust.last_checkpoint()
    }

    fn path(&self) -> Vec<String> {
        self.relay_path()
    }

    fn state(&self) -> state::ConnectionState {
        Peer::state(self).state
    }
}

#[cfg(test)]
mod tests {
    use super::{Answer, least_loaded};
    use crate::protocol::HubLoad;

    fn full(sessions: u32, cap: u32) -> Option<Answer> {
        Some(Answer::SentOn(Some(HubLoad { sessions, cap })))
    }

    /// Among the hubs that refused for their fair share, the least filled is insisted on; a
    /// hub that failed or drains never is.
    #[test]
    fn the_least_loaded_full_hub_is_insisted_on() {
        let order = [0, 1, 2];
        // Both refused at their caps: the one with fewer sessions is the less loaded.
        let round = [full(40, 40), Some(Answer::Failed), full(12, 12)];
        assert_eq!(least_loaded(&round, &order, 0.0), Some(2));
        assert_eq!(least_loaded(&round, &order, 0.99), Some(2));
        let draining = [Some(Answer::SentOn(None)), Some(Answer::Failed), None];
        assert_eq!(least_loaded(&draining, &order, 0.5), None);
        // Near-ties (within a tenth, at least one session) are split by the draw, so peers
        // refused together do not all land on one hub.
        let tie = [full(100, 100), full(109, 110), full(4, 4)];
        assert_eq!(least_loaded(&tie, &order, 0.0), Some(2));
        let tie = [full(100, 100), full(109, 110), full(120, 120)];
        assert_eq!(least_loaded(&tie, &order, 0.0), Some(0));
        assert_eq!(least_loaded(&tie, &order, 0.99), Some(1));
        let even = [full(4, 4), full(4, 4), full(5, 4)];
        let picks: std::collections::BTreeSet<_> = (0..10)
            .map(|i| least_loaded(&even, &order, f64::from(i) / 10.0))
            .collect();
        assert_eq!(
            picks.len(),
            3,
            "every near-least hub is picked by some draw: {picks:?}"
        );
    }
}
