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
