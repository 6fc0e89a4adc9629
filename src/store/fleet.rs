//! The fleet record as a store keeps it: what each hub last knew of each of its peers, shared
//! by the hubs of one MongoDB database so any of them can list the whole fleet. Hubs write it in
//! batches ([`FleetBatch`], one per `hub.fleetFlushInterval`, never one per heartbeat) and each
//! touches its presence with every batch; records of a hub whose presence is older than the
//! expiry are deleted by whichever hub writes next.
//!
//! What changes with every publication — each peer's applied version, since when it lacks the
//! head, its last heartbeat — travels as the hub's [`Progress`] list, one value with its
//! presence, so a publication costs the store one write per hub and flush, not one per peer;
//! a peer's own record is rewritten only when it connects, changes state, or is refused.

/// How a hub last saw a peer; what the fleet state is derived from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Condition {
    /// In session and heard within two heartbeat intervals: `synced` or `behind`, by version.
    #[default]
    Live,
    /// In session (or timed out) but silent for two heartbeat intervals or more.
    Stale,
    /// Refused: the hub refused the peer, or the peer refused the hub's data.
    Refused,
    /// Left politely (a disconnect call).
    Disconnected,
}

impl Condition {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Live => "live",
            Condition::Stale => "stale",
            Condition::Refused => "refused",
            Condition::Disconnected => "disconnected",
        }
    }

    /// The condition a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Condition::Live,
            Condition::Stale,
            Condition::Refused,
            Condition::Disconnected,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// What one hub knows of one peer. Times are Unix ms on the writing hub's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetRecord {
    /// The peer.
    pub peer_id: String,
    /// The hub that knows it this way.
    pub hub_id: String,
    /// How the hub last saw it.
    pub condition: Condition,
    /// The newest version the peer reported holding (or was sent).
    pub applied_version: i64,
    /// The version its last verified hub checkpoint covers, as it reported (0 = it checks
    /// none, or none yet).
    pub trusted_version: i64,
    /// Since when it lacks the hub's head (the commit of the first version it lacks, when
    /// known; else when the hub first saw it behind); `None` while it holds the head.
    pub behind_since: Option<i64>,
    /// Its last heartbeat (0 = none yet).
    pub last_heartbeat_at: i64,
    /// When its current (or last) session with this hub began.
    pub connected_since: i64,
    /// When this hub first knew it (its earliest session here since the record was kept).
    pub first_seen: i64,
    /// The hub's clock minus the peer's, as its last heartbeat showed (delay included), ms.
    pub clock_offset_ms: i64,
    /// The node software the peer runs, as it said when connecting ("" = not said).
    pub software_version: String,
    /// Why it is refused (`condition` is `Refused`): who refused whom, and the reason.
    pub refusal: Option<String>,
    /// When the hub last learnt something that ranks this record against other hubs' records
    /// of the same peer: a connect, a refusal, a departure. The newest wins.
    pub changed_at: i64,
    /// The relays between the hub and the peer, nearest the hub first (empty: in session
    /// with the hub itself). What a relay reported of its downstream peers.
    pub via: Vec<String>,
}

/// A hub's presence in a shared fleet: when it last wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPresence {
    /// The hub.
    pub hub_id: String,
    /// Its last batch, Unix ms on its clock.
    pub seen_at: i64,
    /// It is draining: it takes no new peers and sends its own to other hubs, so it does not
    /// count toward the others' fair share.
    pub draining: bool,
}

/// What changes about a peer with every publication, as its hub last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The peer.
    pub peer_id: String,
    /// See [`FleetRecord::applied_version`].
    pub applied_version: i64,
    /// See [`FleetRecord::trusted_version`].
    pub trusted_version: i64,
    /// See [`FleetRecord::behind_since`].
    pub behind_since: Option<i64>,
    /// See [`FleetRecord::last_heartbeat_at`].
    pub last_heartbeat_at: i64,
}

impl Progress {
    /// The progress part of `record`.
    pub fn of(record: &FleetRecord) -> Self {
        Self {
            peer_id: record.peer_id.clone(),
            applied_version: record.applied_version,
            trusted_version: record.trusted_version,
            behind_since: record.behind_since,
            last_heartbeat_at: record.last_heartbeat_at,
        }
    }

    /// Sets `record`'s progress part from this.
    pub fn apply_to(&self, record: &mut FleetRecord) {
        record.applied_version = self.applied_version;
        record.trusted_version = self.trusted_version;
        record.behind_since = self.behind_since;
        record.last_heartbeat_at = self.last_heartbeat_at;
    }
}

/// One hub's changes to the shared fleet record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetBatch {
    /// The writing hub.
    pub hub_id: String,
    /// When it writes (its presence), Unix ms.
    pub now: i64,
    /// It is draining (see [`HubPresence::draining`]).
    pub draining: bool,
    /// Records new or changed since its last batch.
    pub upserts: Vec<FleetRecord>,
    /// Peers it no longer keeps (their retention passed).
    pub removed: Vec<String>,
    /// The progress of every peer it keeps, when any changed since its last batch (or the
    /// last was written a refresh period ago); `None` leaves the stored list as it is.
    pub progress: Option<Vec<Progress>>,
    /// Hubs silent since before this time are gone.
    pub expire_before: i64,
    /// Hubs the writer last saw silent since before `expire_before`: their presence is
    /// deleted if they still are, and their records with it.
    pub gone_hubs: Vec<String>,
}

/// The shared fleet record as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedFleet {
    /// Every hub present.
    pub hubs: Vec<HubPresence>,
    /// Each hub's progress list, as it last wrote it.
    pub progress: Vec<(String, Vec<Progress>)>,
    /// Records written at or after the `since` asked for, every hub's.
    pub records: Vec<FleetRecord>,
}

/// The shared fleet record kept in memory, for hubs of one process that share one embedded
/// store (the simulation): what a MongoDB database keeps for hubs sharing it, with the same
/// rules — records stamped with their batch's time, a hub's presence and progress list
/// replaced by each of its batches, a gone hub's presence and records deleted only while it is
/// still silent. Ordered maps, so reads come out in one order on every run.
#[derive(Debug, Default)]
pub struct MemoryFleet {
    state: std::sync::Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// Hub → its presence and its progress list (`None` until it writes one).
    hubs: std::collections::BTreeMap<String, (HubPresence, Option<Vec<Progress>>)>,
    /// (hub, peer) → the record and when it was written.
    records: std::collections::BTreeMap<(String, String), (FleetRecord, i64)>,
}

impl MemoryFleet {
    /// Applies one hub's batch (see [`crate::store::RegisterStore::write_fleet`]).
    pub fn write(&self, batch: FleetBatch) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for record in batch.upserts {
            let key = (record.hub_id.clone(), record.peer_id.clone());
            state.records.insert(key, (record, batch.now));
        }
        for peer in batch.removed {
            state.records.remove(&(batch.hub_id.clone(), peer));
        }
        let presence = HubPresence {
            hub_id: batch.hub_id.clone(),
            seen_at: batch.now,
            draining: batch.draining,
        };
        let entry = state
            .hubs
            .entry(batch.hub_id)
            .or_insert_with(|| (presence.clone(), None));
        entry.0 = presence;
        if batch.progress.is_some() {
            entry.1 = batch.progress;
        }
        for hub in batch.gone_hubs {
            let silent = state
                .hubs
                .get(&hub)
                .is_some_and(|(p, _)| p.seen_at < batch.expire_before);
            if silent {
                state.hubs.remove(&hub);
                state.records.retain(|(h, _), _| *h != hub);
            }
        }
    }

    /// Every hub's presence and progress, and the records written at or after `since` (see
    /// [`crate::store::RegisterStore::read_fleet`]).
    pub fn read(&self, since: i64) -> SharedFleet {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        SharedFleet {
            hubs: state.hubs.values().map(|(p, _)| p.clone()).collect(),
            progress: state
                .hubs
                .iter()
                .filter_map(|(hub, (_, list))| Some((hub.clone(), list.clone()?)))
                .collect(),
            records: state
                .records
                .values()
                .filter(|(_, written_at)| *written_at >= since)
                .map(|(r, _)| r.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hub: &str, peer: &str) -> FleetRecord {
        FleetRecord {
            peer_id: peer.into(),
            hub_id: hub.into(),
            ..FleetRecord::default()
        }
    }

    #[test]
    fn a_memory_fleet_keeps_what_the_hubs_wrote_and_forgets_a_silent_hub() {
        let fleet = MemoryFleet::default();
        fleet.write(FleetBatch {
            hub_id: "n0".into(),
            now: 1_000,
            upserts: vec![record("n0", "p1"), record("n0", "p2")],
            progress: Some(vec![Progress::of(&record("n0", "p1"))]),
            ..FleetBatch::default()
        });
        fleet.write(FleetBatch {
            hub_id: "n1".into(),
            now: 2_000,
            draining: true,
            upserts: vec![record("n1", "p3")],
            ..FleetBatch::default()
        });
        let read = fleet.read(1_500);
        assert_eq!(read.hubs.len(), 2);
        assert!(read.hubs[1].draining);
        assert_eq!(
            read.records,
            vec![record("n1", "p3")],
            "only records since 1 500"
        );
        assert_eq!(read.progress.len(), 1, "n1 wrote no progress list");
        // A batch without a progress list keeps the stored one; `removed` deletes records.
        fleet.write(FleetBatch {
            hub_id: "n0".into(),
            now: 3_000,
            removed: vec!["p2".into()],
            ..FleetBatch::default()
        });
        let read = fleet.read(0);
        assert_eq!(read.progress[0].1.len(), 1);
        assert_eq!(read.records.len(), 2);
        // n1 is gone only while it is still silent since before the expiry.
        let gone = |expire_before| FleetBatch {
            hub_id: "n0".into(),
            now: 9_000,
            expire_before,
            gone_hubs: vec!["n1".into()],
            ..FleetBatch::default()
        };
        fleet.write(gone(2_000));
        assert_eq!(
            fleet.read(0).hubs.len(),
            2,
            "n1 wrote at 2 000: not silent before it"
        );
        fleet.write(gone(2_001));
        let read = fleet.read(0);
        assert_eq!(read.hubs.len(), 1);
        assert_eq!(read.records, vec![record("n0", "p1")]);
    }
}
