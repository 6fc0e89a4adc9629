//! The fleet as a hub sees it: every peer of every hub sharing its store, each in one state
//! (`synced`, `behind`, `stale`, `refused`, `disconnected`), merged so a peer that moved between
//! hubs is listed once, on the hub that knew it last.
//!
//! A hub's own peers come from its sessions (live) and from [`FleetBook`]'s departed records
//! (left, refused, or silent past the session grace; kept for `hub.fleetRetention`). Other
//! hubs' peers come from the shared record in the store ([`crate::store::fleet`]), which each
//! hub writes in batches and reads back incrementally once per `hub.fleetFlushInterval`.

use crate::store::fleet::{Condition, FleetBatch, FleetRecord, HubPresence, Progress, SharedFleet};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// A peer's state in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FleetState {
    /// Holds the head.
    Synced,
    /// Lacks the head (since `behind_since`).
    Behind,
    /// No report within two heartbeat intervals.
    Stale,
    /// Refused by its hub, or refusing its hub's data.
    Refused,
    /// Left politely; kept for the retention period.
    Disconnected,
}

impl FleetState {
    /// Every state, in the order summaries list them.
    pub const ALL: [FleetState; 5] = [
        FleetState::Synced,
        FleetState::Behind,
        FleetState::Stale,
        FleetState::Refused,
        FleetState::Disconnected,
    ];

    /// The state's name, as the API, the CLI and metrics write it.
    pub fn name(self) -> &'static str {
        match self {
            FleetState::Synced => "synced",
            FleetState::Behind => "behind",
            FleetState::Stale => "stale",
            FleetState::Refused => "refused",
            FleetState::Disconnected => "disconnected",
        }
    }

    /// The state a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a peer in this state belongs to the fleet the criteria count (all but those
    /// that left).
    pub fn counted(self) -> bool {
        self != FleetState::Disconnected
    }
}

/// One peer of the fleet, as merged.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPeer {
    /// What its hub knows of it.
    pub record: FleetRecord,
    /// Its state against this hub's head.
    pub state: FleetState,
    /// Head − applied version (≥ 0).
    pub version_lag: i64,
    /// Seconds since it fell behind (0 unless `behind`).
    pub lag_seconds: f64,
}

/// The fleet at one moment, as one hub sees it.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// The hub answering.
    pub hub_id: String,
    /// Its head version (states are measured against it).
    pub head_version: i64,
    /// When, Unix ms on its clock.
    pub now: i64,
    /// Every hub whose records are included (this one first), with when it last wrote.
    pub hubs: Vec<HubPresence>,
    /// Every peer, once, ordered by peer id.
    pub peers: Vec<FleetPeer>,
}

/// Counts over a [`FleetView`].
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSummary {
    /// Peers listed (every state).
    pub peers: usize,
    /// Peers per state, in [`FleetState::ALL`] order.
    pub by_state: Vec<(FleetState, usize)>,
    /// The newest version published at least [`SC011_WINDOW`] ago (0 = none).
    pub settled_version: i64,
    /// Peers counted by SC-011 (all but `disconnected`).
    pub counted: usize,
    /// Of those, peers holding `settled_version`.
    pub holding_settled: usize,
    /// `holding_settled / counted` (1 when no peer is counted): SC-011 asks ≥ 0.95.
    pub current_ratio: f64,
}

/// SC-011's window: peers should hold every version published this long ago.
pub const SC011_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

impl FleetView {
    /// Counts per state and the SC-011 ratio against `settled_version`.
    pub fn summary(&self, settled_version: i64) -> FleetSummary {
        let count = |state| self.peers.iter().filter(|p| p.state == state).count();
        let counted: Vec<_> = self.peers.iter().filter(|p| p.state.counted()).collect();
        let holding = counted
            .iter()
            .filter(|p| p.record.applied_version >= settled_version)
            .count();
        FleetSummary {
            peers: self.peers.len(),
            by_state: FleetState::ALL.into_iter().map(|s| (s, count(s))).collect(),
            settled_version,
            counted: counted.len(),
            holding_settled: holding,
            current_ratio: if counted.is_empty() {
                1.0
            } else {
                holding as f64 / counted.len() as f64
            },
        }
    }

    /// How far a publication has reached: of the peers known when it was committed at
    /// `published_at` (first seen by then, and not `disconnected`), those holding `version`,
    /// and the first `max_pending` that do not, by peer id.
    pub fn propagation(&self, version: i64, published_at: i64, max_pending: usize) -> Reach {
        let cohort: Vec<_> = self
            .peers
            .iter()
            .filter(|p| p.state.counted() && p.record.first_seen <= published_at)
            .collect();
        let applied = cohort
            .iter()
            .filter(|p| p.record.applied_version >= version)
            .count();
        let pending: Vec<_> = cohort
            .iter()
            .filter(|p| p.record.applied_version < version)
            .collect();
        Reach {
            peers: cohort.len(),
            applied,
            pending: pending
                .iter()
                .take(max_pending)
                .map(|p| p.record.peer_id.clone())
                .collect(),
        }
    }
}

/// How far one publication has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Peers counted.
    pub peers: usize,
    /// Of those, peers holding it.
    pub applied: usize,
    /// The first peers (by id) that do not hold it yet.
    pub pending: Vec<String>,
}

impl Reach {
    /// `applied / peers` (1 when no peer is counted).
    pub fn ratio(&self) -> f64 {
        if self.peers == 0 {
            1.0
        } else {
            self.applied as f64 / self.peers as f64
        }
    }

    /// Every counted peer holds it.
    pub fn complete(&self) -> bool {
        self.applied == self.peers
    }
}

/// Timings of the fleet record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetTimings {
    /// How often the hub writes its batch and reads others' (ms).
    pub flush_ms: i64,
    /// How long departed peers are kept (ms).
    pub retention_ms: i64,
    /// A hub silent this long is gone: its records are deleted (ms).
    pub expiry_ms: i64,
    /// The progress list is rewritten at least this often while heartbeats arrive (ms), so
    /// other hubs see a recent last heartbeat.
    pub refresh_ms: i64,
    /// The most departed records kept (the oldest go first).
    pub max_departed: usize,
}

/// The most records one batch writes: a batch must finish within the store's call deadline
/// however many peers changed at once (a reconnect storm), or it would be retried whole for
/// ever; the rest follow in the next flushes.
pub const MAX_RECORDS_PER_BATCH: usize = 1000;

/// Reads of the whole shared record, to forget records deleted by others.
const FULL_READ_EVERY_MS: i64 = 60_000;
/// Incremental reads look this far back before the last read, for writers' clocks that lag.
const READ_OVERLAP_MS: i64 = 5_000;

#[derive(Default)]
struct Remote {
    hubs: BTreeMap<String, i64>,
    records: HashMap<(String, String), FleetRecord>,
    /// Each hub's progress list, by peer.
    progress: HashMap<String, HashMap<String, Progress>>,
    /// When the last read started (this hub's clock), and the last full one.
    read_at: Option<i64>,
    full_read_at: i64,
    /// Hubs whose presence says they drain.
    draining: std::collections::HashSet<String>,
}

/// A hub's fleet record: its departed peers, what it last wrote, and other hubs' records.
pub struct FleetBook {
    hub_id: String,
    timings: FleetTimings,
    departed: Mutex<BTreeMap<String, FleetRecord>>,
    written: Mutex<HashMap<String, FleetRecord>>,
    /// The progress list last written, and when.
    progress_written: Mutex<(Vec<Progress>, i64)>,
    remote: Mutex<Remote>,
    /// This hub is draining (told to the others with its presence).
    draining: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock: keep serving after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What decides whether a record must be written again: everything but its progress (which
/// travels in the progress list) and its clock reading (which rides along).
fn substance(r: &FleetRecord) -> FleetRecord {
    FleetRecord {
        applied_version: 0,
        trusted_version: 0,
        behind_since: None,
        last_heartbeat_at: 0,
        clock_offset_ms: 0,
        ..r.clone()
    }
}

impl FleetBook {
    /// An empty book of hub `hub_id`.
    pub fn new(hub_id: String, timings: FleetTimings) -> Self {
        Self {
            hub_id,
            timings,
            departed: Mutex::default(),
            written: Mutex::default(),
            progress_written: Mutex::default(),
            remote: Mutex::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This hub drains from now on (its next batch says so); false when it already did.
    pub fn set_draining(&self) -> bool {
        !self
            .draining
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this hub drains.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A peer connects again: its departed record goes; returns when the hub first knew it.
    pub fn returning(&self, peer_id: &str) -> Option<i64> {
        lock(&self.departed).remove(peer_id).map(|r| r.first_seen)
    }

    /// When the hub first knew `peer_id`, if it keeps a departed record of it.
    pub fn first_seen(&self, peer_id: &str) -> Option<i64> {
        lock(&self.departed).get(peer_id).map(|r| r.first_seen)
    }

    /// Keeps the record of a peer that left, was refused, or went silent for good.
    pub fn depart(&self, record: FleetRecord) {
        let mut departed = lock(&self.departed);
        departed.insert(record.peer_id.clone(), record);
        while departed.len() > self.timings.max_departed {
            let oldest = departed
                .values()
                .min_by_key(|r| r.changed_at)
                .map(|r| r.peer_id.clone());
            match oldest {
                Some(id) => departed.remove(&id),
                None => break,
            };
        }
    }

    /// The hub's own records now, by peer id: `live` (its sessions' records, by peer id) and
    /// the departed ones still within the retention (older ones are dropped) of peers not in
    /// session.
    pub fn own(&self, mut live: Vec<FleetRecord>, now: i64) -> Vec<FleetRecord> {
        let mut departed = lock(&self.departed);
        departed.retain(|_, r| now - r.changed_at <= self.timings.retention_ms);
        let in_session = live.len();
        for (id, r) in departed.iter() {
            let listed = live[..in_session]
                .binary_search_by(|l| l.peer_id.as_str().cmp(id))
                .is_ok();
            if !listed {
                live.push(r.clone());
            }
        }
        drop(departed);
        if live.len() > in_session {
            live.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        }
        live
    }

    /// The batch that brings the shared record up to `own`: records new or changed since
    /// the last batch, at most [`MAX_RECORDS_PER_BATCH`] (the rest go in the next ones), peers
    /// no longer kept, and the progress list when a version moved (or heartbeats did, a
    /// refresh period after it was last written).
    pub fn batch(&self, own: &[FleetRecord], now: i64) -> FleetBatch {
        let mut written = lock(&self.written);
        let mut upserts = Vec::new();
        for r in own {
            if upserts.len() == MAX_RECORDS_PER_BATCH {
                break;
            }
            let due = written
                .get(&r.peer_id)
                .is_none_or(|w| substance(w) != substance(r));
            if due {
                written.insert(r.peer_id.clone(), r.clone());
                upserts.push(r.clone());
            }
        }
        let progress: Vec<Progress> = own.iter().map(Progress::of).collect();
        let mut last = lock(&self.progress_written);
        let moved = |a: &[Progress], b: &[Progress]| {
            a.len() != b.len()
                || a.iter().zip(b).any(|(x, y)| {
                    (
                        &x.peer_id,
                        x.applied_version,
                        x.trusted_version,
                        x.behind_since,
                    ) != (
                        &y.peer_id,
                        y.applied_version,
                        y.trusted_version,
                        y.behind_since,
                    )
                })
        };
        let progress = (moved(&last.0, &progress)
            || (last.0 != progress && now - last.1 >= self.timings.refresh_ms))
            .then(|| {
                *last = (progress.clone(), now);
                progress
            });
        drop(last);
        let kept: std::collections::HashSet<&str> =
            own.iter().map(|r| r.peer_id.as_str()).collect();
        let removed: Vec<String> = written
            .keys()
            .filter(|id| !kept.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &removed {
            written.remove(id);
        }
        FleetBatch {
            hub_id: self.hub_id.clone(),
            now,
            draining: self.is_draining(),
            upserts,
            removed,
            progress,
            expire_before: now - self.timings.expiry_ms,
            gone_hubs: lock(&self.remote)
                .hubs
                .iter()
                .filter(|(_, seen_at)| now - **seen_at > self.timings.expiry_ms)
                .map(|(hub, _)| hub.clone())
                .collect(),
        }
    }

    /// Forgets what was written (a batch failed): the next batch writes everything again.
    pub fn unwritten(&self) {
        lock(&self.written).clear();
        *lock(&self.progress_written) = (Vec::new(), 0);
    }

    /// Where the next read of the shared record starts (0 = a full read), read at `now`.
    pub fn read_since(&self, now: i64) -> i64 {
        let remote = lock(&self.remote);
        match remote.read_at {
            Some(at) if now - remote.full_read_at < FULL_READ_EVERY_MS => at - READ_OVERLAP_MS,
            _ => 0,
        }
    }

    /// Takes in a read of the shared record that started at `now` with `since`.
    pub fn absorb(&self, read: SharedFleet, since: i64, now: i64) {
        let mut remote = lock(&self.remote);
        if since == 0 {
            remote.records.clear();
            remote.full_read_at = now;
        }
        remote.read_at = Some(now);
        remote.draining = read
            .hubs
            .iter()
            .filter(|h| h.draining && h.hub_id != self.hub_id)
            .map(|h| h.hub_id.clone())
            .collect();
        remote.hubs = read
            .hubs
            .into_iter()
            .filter(|h| h.hub_id != self.hub_id)
            .map(|h| (h.hub_id, h.seen_at))
            .collect();
        for (hub, list) in read.progress {
            if hub != self.hub_id {
                let by_peer = list.into_iter().map(|p| (p.peer_id.clone(), p)).collect();
                remote.progress.insert(hub, by_peer);
            }
        }
        for r in read.records {
            if r.hub_id != self.hub_id {
                remote
                    .records
                    .insert((r.hub_id.clone(), r.peer_id.clone()), r);
            }
        }
        let hubs = remote.hubs.clone();
        remote.records.retain(|(hub, _), _| hubs.contains_key(hub));
        remote.progress.retain(|hub, _| hubs.contains_key(hub));
    }

    /// The fleet now: `own` records and the other hubs' (those not gone), merged per peer,
    /// with states measured against `head_version`; `commit_of` gives a version's commit time
    /// when known (for how long a peer has been behind).
    pub fn view(
        &self,
        own: Vec<FleetRecord>,
        head_version: i64,
        now: i64,
        commit_of: impl Fn(i64) -> Option<i64>,
    ) -> FleetView {
        let remote = lock(&self.remote);
        // A hub that missed its last writes no longer vouches for its peers being live.
        let vouching = 3 * self.timings.flush_ms;
        let mut hubs = vec![HubPresence {
            hub_id: self.hub_id.clone(),
            seen_at: now,
            draining: self.is_draining(),
        }];
        // One vector, sorted by peer and grouped: no allocation per peer (this runs once a
        // flush over the whole fleet).
        let mut records = own;
        for (hub, seen_at) in &remote.hubs {
            if now - seen_at > self.timings.expiry_ms {
                continue;
            }
            hubs.push(HubPresence {
                hub_id: hub.clone(),
                seen_at: *seen_at,
                draining: remote.draining.contains(hub),
            });
        }
        for ((hub, _), r) in &remote.records {
            let Some(seen_at) = remote.hubs.get(hub) else {
                continue;
            };
            if now - seen_at > self.timings.expiry_ms {
                continue;
            }
            let mut r = r.clone();
            if let Some(p) = remote.progress.get(hub).and_then(|p| p.get(&r.peer_id)) {
                p.apply_to(&mut r);
            }
            if r.condition == Condition::Live && now - seen_at > vouching {
                r.condition = Condition::Stale;
            }
            records.push(r);
        }
        drop(remote);
        records.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let peers = records
            .chunk_by_mut(|a, b| a.peer_id == b.peer_id)
            .filter_map(|group| merge(group, head_version, now, &commit_of))
            .collect();
        FleetView {
            hub_id: self.hub_id.clone(),
            head_version,
            now,
            hubs,
            peers,
        }
    }
}

/// One peer from the records hubs keep of it: the newest (a live one wins a tie), with the
/// earliest first-seen time of them all.
fn merge(
    records: &mut [FleetRecord],
    head_version: i64,
    now: i64,
    commit_of: &impl Fn(i64) -> Option<i64>,
) -> Option<FleetPeer> {
    let first_seen = records
        .iter()
        .map(|r| r.first_seen)
        .filter(|t| *t > 0)
        .min();
    let mut record = std::mem::take(
        records
            .iter_mut()
            .max_by_key(|r| (r.changed_at, r.condition == Condition::Live))?,
    );
    if let Some(t) = first_seen {
        record.first_seen = t;
    }
    let state = match record.condition {
        Condition::Live if record.applied_version >= head_version => FleetState::Synced,
        Condition::Live => FleetState::Behind,
        Condition::Stale => FleetState::Stale,
        Condition::Refused => FleetState::Refused,
        Condition::Disconnected => FleetState::Disconnected,
    };
    let version_lag = (head_version - record.applied_version).max(0);
    if version_lag == 0 {
        record.behind_since = None;
    } else {
        // Behind since the commit of the first version it lacks, when that is known.
        let missing = commit_of(record.applied_version + 1);
        record.behind_since = match (missing, record.behind_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let lag_seconds = match (state, record.behind_since) {
        (FleetState::Behind, Some(since)) => (now - since).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    Some(FleetPeer {
        record,
        state,
        version_lag,
        lag_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        peer: &str,
        hub: &str,
        condition: Condition,
        applied: i64,
        changed: i64,
    ) -> FleetRecord {
        FleetRecord {
            peer_id: peer.into(),
            hub_id: hub.into(),
            condition,
            applied_version: applied,
            trusted_version: 0,
            behind_since: None,
            last_heartbeat_at: changed,
            connected_since: changed,
            first_seen: changed,
            clock_offset_ms: 0,
            software_version: String::new(),
            refusal: None,
            changed_at: changed,
            via: Vec::new(),
        }
    }

    /// `book` reads hub n1 (seen at 1 000) with its live peer p1 at version 5, and `progress`.
    fn hub_n1_with_p1(book: &FleetBook, progress: Vec<Progress>) {
        book.absorb(
            SharedFleet {
                hubs: vec![HubPresence {
                    hub_id: "n1".into(),
                    seen_at: 1_000,
                    draining: false,
                }],
                progress: vec![("n1".into(), progress)],
                records: vec![record("p1", "n1", Condition::Live, 5, 500)],
            },
            0,
            1_000,
        );
    }

    fn timings() -> FleetTimings {
        FleetTimings {
            flush_ms: 100,
            retention_ms: 10_000,
            expiry_ms: 5_000,
            refresh_ms: 1_000,
            max_departed: 3,
        }
    }

    #[test]
    fn a_peer_that_moved_is_listed_once_on_its_newest_hub() {
        let book = FleetBook::new("n0".into(), timings());
        hub_n1_with_p1(&book, Vec::new());
        let own = vec![record("p1", "n0", Condition::Disconnected, 4, 400)];
        let view = book.view(own, 5, 1_050, |_| None);
        assert_eq!(view.peers.len(), 1);
        assert_eq!(view.peers[0].record.hub_id, "n1");
        assert_eq!(view.peers[0].state, FleetState::Synced);
        assert_eq!(
            view.peers[0].record.first_seen, 400,
            "the earliest hub's first sight"
        );
    }

    #[test]
    fn another_hubs_progress_overrides_its_records_version() {
        let book = FleetBook::new("n0".into(), timings());
        let mut progress = Progress::of(&record("p1", "n1", Condition::Live, 9, 500));
        progress.last_heartbeat_at = 990;
        hub_n1_with_p1(&book, vec![progress]);
        let view = book.view(Vec::new(), 9, 1_050, |_| None);
        assert_eq!(view.peers[0].record.applied_version, 9);
        assert_eq!(view.peers[0].record.last_heartbeat_at, 990);
        assert_eq!(view.peers[0].state, FleetState::Synced);
    }

    #[test]
    fn a_silent_hub_stops_vouching_then_is_forgotten() {
        let book = FleetBook::new("n0".into(), timings());
        hub_n1_with_p1(&book, Vec::new());
        assert_eq!(
            book.view(Vec::new(), 5, 1_200, |_| None).peers[0].state,
            FleetState::Synced
        );
        assert_eq!(
            book.view(Vec::new(), 5, 1_400, |_| None).peers[0].state,
            FleetState::Stale
        );
        assert!(book.view(Vec::new(), 5, 7_000, |_| None).peers.is_empty());
    }

    #[test]
    fn batches_carry_changes_not_heartbeats() {
        let book = FleetBook::new("n0".into(), timings());
        let mut r = record("p1", "n0", Condition::Live, 5, 100);
        let first = book.batch(std::slice::from_ref(&r), 100);
        assert_eq!(first.upserts.len(), 1);
        assert_eq!(first.progress.unwrap()[0].applied_version, 5);
        r.last_heartbeat_at = 200;
        let beat = book.batch(std::slice::from_ref(&r), 200);
        assert!(
            beat.upserts.is_empty() && beat.progress.is_none(),
            "a heartbeat alone"
        );
        r.last_heartbeat_at = 1_200;
        let refresh = book.batch(std::slice::from_ref(&r), 1_200);
        assert!(refresh.upserts.is_empty(), "{refresh:?}");
        assert_eq!(
            refresh.progress.unwrap()[0].last_heartbeat_at,
            1_200,
            "the refresh"
        );
        r.applied_version = 6;
        let moved = book.batch(std::slice::from_ref(&r), 1_300);
        assert!(
            moved.upserts.is_empty(),
            "a new version is progress, not a record"
        );
        assert_eq!(moved.progress.unwrap()[0].applied_version, 6);
        r.condition = Condition::Stale;
        assert_eq!(book.batch(std::slice::from_ref(&r), 1_310).upserts.len(), 1);
        let many: Vec<FleetRecord> = (0..MAX_RECORDS_PER_BATCH + 5)
            .map(|i| record(&format!("q{i:05}"), "n0", Condition::Live, 5, 100))
            .collect();
        let first = book.batch(&many, 1_350);
        assert_eq!(first.upserts.len(), MAX_RECORDS_PER_BATCH);
        assert_eq!(first.removed, vec!["p1".to_owned()], "p1 is no longer kept");
        assert_eq!(book.batch(&many, 1_360).upserts.len(), 5, "the rest, next");
        let gone = book.batch(&[], 1_400);
        assert_eq!(gone.removed.len(), MAX_RECORDS_PER_BATCH + 5);
        assert_eq!(gone.expire_before, 1_400 - 5_000);
    }

    #[test]
    fn departed_records_are_bounded_and_expire() {
        let book = FleetBook::new("n0".into(), timings());
        for (i, p) in ["a", "b", "c", "d"].iter().enumerate() {
            book.depart(record(p, "n0", Condition::Disconnected, 1, i as i64));
        }
        let own = book.own(Vec::new(), 10);
        assert_eq!(
            own.iter().map(|r| r.peer_id.as_str()).collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
        assert!(book.own(Vec::new(), 20_000).is_empty());
    }

    #[test]
    fn propagation_counts_peers_known_at_publication() {
        let book = FleetBook::new("n0".into(), timings());
        let own = vec![
            record("early", "n0", Condition::Live, 7, 100),
            record("late", "n0", Condition::Live, 6, 900),
            record("lagging", "n0", Condition::Live, 6, 100),
            record("left", "n0", Condition::Disconnected, 1, 100),
        ];
        let view = book.view(own, 7, 1_000, |_| None);
        let reach = view.propagation(7, 500, 10);
        assert_eq!((reach.peers, reach.applied), (2, 1));
        assert_eq!(reach.pending, vec!["lagging".to_owned()]);
        assert!(!reach.complete());
        let summary = view.summary(6);
        assert_eq!(summary.counted, 3);
        assert_eq!(summary.holding_settled, 3);
        assert_eq!(summary.by_state[0], (FleetState::Synced, 1));
    }
}
