//! The peers below relays: a relay's heartbeats carry its downstream peers as it knows them
//! (its own fleet record), and its hub lists them in its own — with `via` naming the relays on
//! the way — so the fleet, its counts and propagation cover the whole tree.

use super::Hub;
use crate::protocol::Heartbeat;
use crate::store::fleet::FleetRecord;
use std::collections::BTreeMap;

/// The latest report of each relay in session, by relay id.
#[derive(Debug, Default)]
pub(super) struct Relayed {
    reports: std::sync::Mutex<BTreeMap<String, Vec<FleetRecord>>>,
    /// A relay has reported at some point: until then a heartbeat takes no lock here.
    any: std::sync::atomic::AtomicBool,
}

impl Relayed {
    /// Keeps what `heartbeat` reports of its sender's downstream peers (none: it is no relay,
    /// or serves no one now).
    pub(super) fn heard(&self, heartbeat: &Heartbeat) {
        use std::sync::atomic::Ordering;
        if heartbeat.downstream.is_empty() && !self.any.load(Ordering::Relaxed) {
            return;
        }
        self.any.store(true, Ordering::Relaxed);
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let relay = heartbeat.peer_id.as_str();
        if heartbeat.downstream.is_empty() {
            reports.remove(relay);
        } else {
            reports.insert(relay.to_owned(), heartbeat.downstream.clone());
        }
    }
}

impl Hub {
    /// This hub's own fleet records at `now`: its sessions', then the peers its relays in
    /// session reported (a peer in session here and below a relay is listed as in session
    /// here), then departed ones within the retention; by peer id.
    pub(super) fn own_records(&self, now: i64) -> Vec<FleetRecord> {
        // The sessions' records come ordered by peer id.
        let mut live = self.sessions.fleet_records(&self.node_id);
        let in_session = live.len();
        if self.relayed.any.load(std::sync::atomic::Ordering::Relaxed) {
            let mut reports = self
                .relayed
                .reports
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A relay whose session is gone no longer vouches for its peers.
            reports.retain(|relay, _| {
                live[..in_session]
                    .binary_search_by(|r| r.peer_id.as_str().cmp(relay))
                    .is_ok()
            });
            for (relay, records) in reports.iter() {
                for r in records {
                    let mut via = Vec::with_capacity(r.via.len() + 1);
                    via.push(relay.clone());
                    via.extend(r.via.iter().cloned());
                    live.push(FleetRecord {
                        hub_id: self.node_id.clone(),
                        via,
                        ..r.clone()
                    });
                }
            }
        }
        if live.len() > in_session {
            // Direct first, then the shortest way; one record per peer.
            live.sort_by(|a, b| {
                a.peer_id
                    .cmp(&b.peer_id)
                    .then(a.via.len().cmp(&b.via.len()))
            });
            live.dedup_by(|later, first| later.peer_id == first.peer_id);
        }
        self.fleet.own(live, now)
    }

    /// What this hub knows of its downstream peers, for a relay to report upstream: its own
    /// fleet records, `hub_id` unset.
    pub fn downstream_records(&self) -> Vec<FleetRecord> {
        let now = self.clock.now_ms();
        self.own_records(now)
            .into_iter()
            .map(|r| FleetRecord {
                hub_id: String::new(),
                ..r
            })
            .collect()
    }
}
