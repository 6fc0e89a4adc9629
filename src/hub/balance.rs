//! Spreading the fleet over hubs that share a store: the fair-share cap a hub admits new
//! peers by, the peers it sheds when it holds more than its share (a hub came back, peers
//! were drained onto it), and draining (shutting down or told to: no new peers, its own sent
//! elsewhere spread over `hub.drainPeriod`).
//!
//! A hub's fair share is the live sessions of every live hub that is not draining (its own
//! counted now, the others' as last read from the fleet record) ÷ those hubs, times
//! `hub.fairSharePercent`, and at least `hub.fairShareFloor`. Peers sent away go to another
//! hub without a backoff and without counting toward isolation (see `crate::peer`).

use super::fleet::{FleetState, FleetView};
use super::sessions::Away;
use super::{Hub, HubError};
use crate::metrics::AwayLabels;
use crate::protocol::{HubLoad, PeerId};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Flushes of the fleet record in a row a hub must find itself above its cap before it sheds
/// peers, and between two rounds of shedding: a hub that just died is still counted for up to
/// three flushes (see [`super::fleet`]), and the peers shed in one round have moved by the
/// next, so nothing oscillates.
pub(super) const SHED_AFTER_FLUSHES: u32 = 3;

/// The most peers one round of shedding sends away; a round sends half the excess.
pub(super) const MAX_SHED_PER_ROUND: usize = 100;

/// What the fair-share cap needs, as the last fleet read showed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FairShare {
    /// Live hubs sharing the store that are not draining, this one included (0 = not shared).
    hubs: usize,
    /// The other hubs' live peers (synced or behind).
    others: usize,
    /// Flushes in a row this hub was above its cap (reset when it sheds).
    above: u32,
}

/// A number in [0, 1) drawn from `key`: deterministic, so a seeded simulation replays it.
fn share_of(key: impl Hash) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

impl Hub {
    /// True once the hub drains: it refuses new peers and sends its own elsewhere.
    pub fn is_draining(&self) -> bool {
        self.fleet.is_draining()
    }

    /// Keeps what the fair-share cap needs from a fleet view: the hubs that wrote within three
    /// flushes and do not drain, and the other hubs' peers in session (synced or behind).
    pub(super) fn note_fair_share(&self, view: &FleetView) {
        let fresh =
            3 * i64::try_from(self.config.fleet_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let hubs = view
            .hubs
            .iter()
            .filter(|h| view.now - h.seen_at <= fresh && !h.draining)
            .count();
        let others = view
            .peers
            .iter()
            .filter(|p| p.record.hub_id != self.node_id)
            .filter(|p| matches!(p.state, FleetState::Synced | FleetState::Behind))
            .count();
        let mut share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
        share.hubs = hubs;
        share.others = others;
    }

    /// This hub's load with `own` live sessions (one more when `newcomer`): `None` when no cap
    /// applies (caps off, the store not shared, the hub alone).
    fn load(&self, own: usize, newcomer: bool) -> Option<HubLoad> {
        let percent = self.config.fair_share_percent as usize;
        let FairShare { hubs, others, .. } =
            *self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
        if percent == 0 || hubs < 2 {
            self.metrics.fair_share_cap.set(0);
            return None;
        }
        let total = own + usize::from(newcomer) + others;
        let cap = (total * percent)
            .div_ceil(100 * hubs)
            .max(self.config.fair_share_floor);
        self.metrics
            .fair_share_cap
            .set(i64::try_from(cap).unwrap_or(i64::MAX));
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(HubLoad {
            sessions: count(own),
            cap: count(cap),
        })
    }

    /// Refuses a new peer when the hub drains, or holds its fair share and the peer does not
    /// insist (every hub it could reach refused it so). A peer in session here (reconnecting)
    /// is always taken.
    pub(super) fn admit(&self, peer_id: &PeerId, insist: bool) -> Result<(), HubError> {
        if self.is_draining() {
            return Err(HubError::Draining(
                "the hub is draining and takes no new peers; connect to another hub".into(),
            ));
        }
        let (own, holds) = self.sessions.live(peer_id);
        if holds {
            return Ok(());
        }
        let Some(load) = self.load(own, true) else {
            return Ok(());
        };
        if load.sessions < load.cap {
            return Ok(());
        }
        if insist {
            tracing::info!(%peer_id, sessions = load.sessions, cap = load.cap, "taking a peer every hub it reached refused for its fair share");
            return Ok(());
        }
        Err(HubError::Full {
            message: format!(
                "this hub holds its fair share of the fleet ({} sessions, cap {} by \
                 hub.fairSharePercent {}); try another hub",
                load.sessions, load.cap, self.config.fair_share_percent
            ),
            load,
        })
    }

    /// After a fleet read: a hub above its cap for [`SHED_AFTER_FLUSHES`] flushes in a row
    /// sends half its excess (at most [`MAX_SHED_PER_ROUND`]) to other hubs, each at a random
    /// moment within the next flush, chosen at random among its peers.
    pub(super) fn rebalance(self: &Arc<Self>) {
        if self.is_draining() {
            return;
        }
        let staying = self.sessions.staying();
        let above = match self.load(staying.len(), false) {
            Some(load) if load.sessions > load.cap => Some(load),
            _ => None,
        };
        let load = {
            let mut share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
            match above {
                Some(load) => {
                    share.above += 1;
                    if share.above < SHED_AFTER_FLUSHES {
                        return;
                    }
                    share.above = 0;
                    load
                }
                None => {
                    share.above = 0;
                    return;
                }
            }
        };
        let excess = (load.sessions - load.cap) as usize;
        let count = excess.div_ceil(2).min(MAX_SHED_PER_ROUND);
        let now = self.clock.now_ms();
        let mut chosen: Vec<(f64, String)> = staying
            .into_iter()
            .map(|peer| (share_of((&peer, now)), peer))
            .collect();
        chosen.sort_by(|a, b| a.0.total_cmp(&b.0));
        chosen.truncate(count);
        tracing::info!(
            sessions = load.sessions,
            cap = load.cap,
            shedding = count,
            "above the fair share; sending peers to other hubs"
        );
        let flush = self.config.fleet_flush_interval;
        for (_, peer) in chosen {
            let hub = Arc::clone(self);
            let delay = flush.mul_f64(share_of((&peer, now, "at")));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                hub.send_away(&peer, Away::Rebalancing(load));
            });
        }
    }

    /// Sends one peer elsewhere, counted by why.
    fn send_away(&self, peer: &str, why: Away) {
        if self.sessions.send_away(peer, why) {
            let reason = match why {
                Away::Draining => "draining",
                Away::Rebalancing(_) => "rebalancing",
            };
            self.metrics
                .sessions_sent_away
                .get_or_create(&AwayLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Drains the hub: from now on it takes no new peers (connects are refused with
    /// `HUB_DRAINING`) and says so in its fleet presence; its peers are sent to other hubs one
    /// by one, in random order at moments spread over `period`. Returns once every peer has
    /// left, or a fifth of `period` (at least a second) after the last was sent. A second
    /// call while a drain runs waits for the same drain.
    pub async fn drain(self: &Arc<Self>, period: Duration) {
        let mut done = self.drained.subscribe();
        if self.fleet.set_draining() {
            let hub = Arc::clone(self);
            tokio::spawn(async move {
                hub.run_drain(period).await;
                hub.drained.send_replace(true);
            });
        }
        let _ = done.wait_for(|d| *d).await;
    }

    async fn run_drain(self: &Arc<Self>, period: Duration) {
        self.flush_now.notify_one();
        let start = tokio::time::Instant::now();
        let now = self.clock.now_ms();
        let mut peers: Vec<(f64, String)> = self
            .sessions
            .staying()
            .into_iter()
            .map(|peer| (share_of((&peer, now)), peer))
            .collect();
        peers.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = peers.len();
        tracing::info!(
            peers = n,
            period_ms = period.as_millis() as u64,
            "draining: sending every peer to another hub"
        );
        // Evenly spread, each within its own slot at random: no two leave together.
        for (i, (_, peer)) in peers.iter().enumerate() {
            let slot = (i as f64 + share_of((peer, now, "at"))) / n as f64;
            tokio::select! {
                () = tokio::time::sleep_until(start + period.mul_f64(slot)) => {}
                () = self.shutdown.cancelled() => return,
            }
            self.send_away(peer, Away::Draining);
        }
        let linger = (period / 5).max(Duration::from_secs(1));
        let deadline = tokio::time::Instant::now() + linger;
        while self.sessions.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
        tracing::info!(remaining = self.sessions.count(), "drained");
    }
}
