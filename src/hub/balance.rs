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
use crate::protocol::{ConnectRequest, HubLoad};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Flushes of the fleet record in a row a hub must find itself above its cap before it sheds
/// peers, and between two rounds of shedding: a hub that just died is still counted for up to
/// three flushes (see [`super::fleet`]), and the peers shed in one round have moved by the
/// next, so nothing oscillates.
pub(super) const SHED_AFTER_FLUSHES: u32 = 3;

/// The most peers one round of shedding sends away; a round sends the whole excess up to it.
/// (Half the excess, the first rule, left a returned hub's fleet a long tail of one-peer
/// rounds: 9 rounds, ~30 s, in the fleet simulation.)
pub(super) const MAX_SHED_PER_ROUND: usize = 100;

/// What the fair-share cap needs, as the last fleet read showed.
#[derive(Debug, Default, Clone)]
pub(super) struct FairShare {
    /// Whether the last read found the store shared (a cap applies only then).
    shared: bool,
    /// The other hubs that wrote within three flushes and do not drain, with when they last
    /// wrote (Unix ms).
    live: Vec<(String, i64)>,
    /// The other hubs' live peers (synced or behind): how many, and who (a peer of theirs
    /// that connects here is moving, not one more).
    others: usize,
    counted: std::collections::HashSet<String>,
    /// Hubs a connecting peer said it lost, with when it said so: not counted until they write
    /// again.
    lost: std::collections::BTreeMap<String, i64>,
    /// Flushes in a row this hub was above its cap (reset when it sheds).
    above: u32,
}

impl FairShare {
    /// Live hubs, this one included: the others that wrote within three flushes, do not
    /// drain, and have written since a peer last said it lost them.
    fn hubs(&self) -> usize {
        let alive = |(hub, seen_at): &&(String, i64)| {
            self.lost.get(hub).is_none_or(|said| *seen_at > *said)
        };
        1 + self.live.iter().filter(alive).count()
    }
}

/// The fair-share cap of a hub with `own` live sessions (`newcomer`: one more asks), `hubs`
/// live hubs and `others` live peers on the others (as last read): `percent` of the fleet ÷
/// `hubs`, at least `floor`. The others' counts are a read old; a fleet that grows faster
/// than that is refused a little early, and its peers insist on the least loaded hub.
pub(super) fn fair_cap(
    percent: usize,
    floor: usize,
    hubs: usize,
    own: usize,
    newcomer: bool,
    others: usize,
) -> usize {
    let total = own + usize::from(newcomer) + others;
    (total * percent).div_ceil(100 * hubs.max(1)).max(floor)
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

    /// The sessions this hub counts toward its fair share: live, not sent away.
    pub fn staying_sessions(&self) -> usize {
        self.sessions.staying_count()
    }

    /// Keeps what the fair-share cap needs from a fleet view: the hubs that wrote within three
    /// flushes and do not drain, and the other hubs' peers in session (synced or behind).
    pub(super) fn note_fair_share(&self, view: &FleetView) {
        if self.config.fair_share_percent == 0 {
            return;
        }
        let fresh =
            3 * i64::try_from(self.config.fleet_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let live: Vec<(String, i64)> = view
            .hubs
            .iter()
            .filter(|h| h.hub_id != self.node_id)
            .filter(|h| view.now - h.seen_at <= fresh && !h.draining)
            .map(|h| (h.hub_id.clone(), h.seen_at))
            .collect();
        let counted: std::collections::HashSet<String> = view
            .peers
            .iter()
            .filter(|p| p.record.hub_id != self.node_id)
            // Peers below a relay hold no session on any hub.
            .filter(|p| p.record.via.is_empty())
            .filter(|p| matches!(p.state, FleetState::Synced | FleetState::Behind))
            .map(|p| p.record.peer_id.clone())
            .collect();
        let mut share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
        // A report of a lost hub is moot once the hub has written since, or is gone.
        share
            .lost
            .retain(|hub, said| live.iter().any(|(h, seen_at)| h == hub && seen_at <= said));
        share.shared = true;
        share.live = live;
        share.others = counted.len();
        share.counted = counted;
    }

    /// A connecting peer says it lost hub `hub` (its session broke): until that hub writes
    /// again, it does not count toward this hub's fair share, so the peers of a hub that died
    /// are not refused for the three flushes it still looks alive. Only a hub this one knows
    /// is noted.
    fn note_lost(&self, hub: &str) {
        if hub.is_empty() || hub == self.node_id {
            return;
        }
        let now = self.clock.now_ms();
        let mut share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
        if share.live.iter().any(|(h, _)| h == hub) {
            share.lost.insert(hub.to_owned(), now);
        }
    }

    /// Whether the last fleet read found other live hubs to share the fleet with.
    fn fair_share_applies(&self) -> bool {
        let share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
        share.shared && share.hubs() >= 2
    }

    /// This hub's load with `own` live sessions (and `newcomer` asking to be one more; a
    /// peer the others were counted with is moving, not one more): `None` when no cap applies
    /// (caps off, the store not shared, the hub alone).
    fn load(&self, own: usize, newcomer: Option<&str>) -> Option<HubLoad> {
        let percent = self.config.fair_share_percent as usize;
        let (hubs, others) = {
            let share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
            let hubs = if share.shared { share.hubs() } else { 0 };
            let moving = newcomer.is_some_and(|p| share.counted.contains(p));
            (hubs, share.others - usize::from(moving))
        };
        if percent == 0 || hubs < 2 {
            self.metrics.fair_share_cap.set(0);
            return None;
        }
        let cap = fair_cap(
            percent,
            self.config.fair_share_floor,
            hubs,
            own,
            newcomer.is_some(),
            others,
        );
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
    pub(super) fn admit(&self, request: &ConnectRequest) -> Result<(), HubError> {
        let (peer_id, insist) = (&request.peer_id, request.insist);
        self.note_lost(&request.lost_hub);
        if self.is_draining() {
            return Err(HubError::Draining(
                "the hub is draining and takes no new peers; connect to another hub".into(),
            ));
        }
        // Counting the sessions walks them all: not on every connect of a hub without a cap.
        if self.config.fair_share_percent == 0 || !self.fair_share_applies() {
            return Ok(());
        }
        let (own, holds) = self.sessions.live(peer_id);
        if holds {
            return Ok(());
        }
        let Some(load) = self.load(own, Some(peer_id.as_str())) else {
            return Ok(());
        };
        if load.sessions < load.cap || insist {
            if insist && load.sessions >= load.cap {
                tracing::info!(%peer_id, sessions = load.sessions, cap = load.cap, "taking a peer every hub it reached refused for its fair share");
            }
            // Counted here from now on, not as another hub's.
            let mut share = self.fair_share.lock().unwrap_or_else(|p| p.into_inner());
            if share.counted.remove(peer_id.as_str()) {
                share.others -= 1;
            }
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
    /// sends its excess (at most [`MAX_SHED_PER_ROUND`]) to other hubs, each at a random
    /// moment within the next flush, chosen at random among its peers.
    pub(super) fn rebalance(self: &Arc<Self>) {
        if self.is_draining() || self.config.fair_share_percent == 0 {
            return;
        }
        let staying = self.sessions.staying();
        let above = match self.load(staying.len(), None) {
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
        let count = excess.min(MAX_SHED_PER_ROUND);
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
        if self.fleet.set_draining() {
            let hub = Arc::clone(self);
            tokio::spawn(async move {
                hub.run_drain(period).await;
                hub.drained
                    .store(true, std::sync::atomic::Ordering::Release);
                hub.drain_ended.notify_waiters();
            });
        }
        // A Notify, not a watch channel: it wakes in a fixed order (the simulation replays).
        loop {
            let ended = self.drain_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.drained.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            ended.await;
        }
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

#[cfg(test)]
mod tests {
    use super::fair_cap;

    /// 110 % of the fleet over the hubs, at least the floor.
    #[test]
    fn the_cap_is_a_share_of_the_fleet() {
        // 150 peers on 3 hubs: ceil(150 × 1.1 / 3) = 55.
        assert_eq!(fair_cap(110, 4, 3, 50, false, 100), 55);
        // A newcomer counts.
        assert_eq!(fair_cap(110, 4, 3, 50, true, 100), 56);
        // The floor holds for tiny fleets.
        assert_eq!(fair_cap(110, 4, 3, 1, true, 1), 4);
        // Two hubs: ceil(50 × 1.1 / 2) = 28.
        assert_eq!(fair_cap(110, 4, 2, 10, false, 40), 28);
    }
}
