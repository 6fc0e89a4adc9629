//! The shared fleet record on MongoDB ([`crate::store::fleet`]).
//!
//! `sorcha_fleet_peers` holds one document per hub and peer (`_id` = `"<hub> <peer>"`: node
//! ids hold no space, and a string key is what every server looks up fastest), with the
//! batch's time as `writtenAt` (indexed, so a hub reads only what changed since its last
//! read) and `hubId` (indexed, so a gone hub's records go in one delete). `sorcha_fleet_hubs`
//! holds each hub's presence (`_id` = hub id, `seenAt`) and its progress list (`progress`: one
//! `{p, v, b, h}` per peer — id, applied version, behind since, last heartbeat), replaced whole
//! when it changed. A batch is one `update` command of up to [`STATEMENTS_PER_COMMAND`]
//! upserts (records that changed state), a `delete` of the peers dropped, and the presence
//! with the progress: never a write per heartbeat, and one per hub and flush however many
//! peers a publication moved. The fleet record is observation, not data the register
//! depends on: it is written with `w: 1`, not the register's majority and journal.

use super::MongoStore;
use super::documents::unavailable;
use crate::store::StoreError;
use crate::store::fleet::{Condition, FleetBatch, FleetRecord, HubPresence, Progress, SharedFleet};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

/// Collection of fleet records, one per hub and peer.
pub const FLEET_PEERS: &str = "sorcha_fleet_peers";
/// Collection of the hubs' presence in the fleet record.
pub const FLEET_HUBS: &str = "sorcha_fleet_hubs";
/// Upserts sent in one `update` command (well within the server's 100 000 and 48 MB).
const STATEMENTS_PER_COMMAND: usize = 1000;

/// The `_id` of hub `hub`'s record of `peer`.
fn record_id(hub: &str, peer: &str) -> String {
    format!("{hub} {peer}")
}

fn record_doc(r: &FleetRecord, written_at: i64) -> Document {
    doc! {
        "_id": record_id(&r.hub_id, &r.peer_id),
        "hubId": &r.hub_id,
        "peerId": &r.peer_id,
        "condition": r.condition.name(),
        "appliedVersion": r.applied_version,
        "trustedVersion": r.trusted_version,
        "behindSince": r.behind_since.map_or(Bson::Null, Bson::Int64),
        "lastHeartbeatAt": r.last_heartbeat_at,
        "connectedSince": r.connected_since,
        "firstSeen": r.first_seen,
        "clockOffsetMs": r.clock_offset_ms,
        "softwareVersion": &r.software_version,
        "refusal": r.refusal.as_deref().map_or(Bson::Null, |s| Bson::String(s.to_owned())),
        "changedAt": r.changed_at,
        "via": &r.via,
        "writtenAt": written_at,
    }
}

/// An integer field, however the server typed it.
fn int_of(d: &Document, key: &str) -> Option<i64> {
    match d.get(key) {
        Some(Bson::Int64(v)) => Some(*v),
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        _ => None,
    }
}

fn record_from(d: &Document) -> Option<FleetRecord> {
    let int = |k: &str| int_of(d, k);
    Some(FleetRecord {
        peer_id: d.get_str("peerId").ok()?.to_owned(),
        hub_id: d.get_str("hubId").ok()?.to_owned(),
        condition: Condition::parse(d.get_str("condition").ok()?)?,
        applied_version: int("appliedVersion")?,
        trusted_version: int("trustedVersion").unwrap_or(0),
        behind_since: int("behindSince"),
        last_heartbeat_at: int("lastHeartbeatAt").unwrap_or(0),
        connected_since: int("connectedSince").unwrap_or(0),
        first_seen: int("firstSeen").unwrap_or(0),
        clock_offset_ms: int("clockOffsetMs").unwrap_or(0),
        software_version: d.get_str("softwareVersion").unwrap_or("").to_owned(),
        refusal: d.get_str("refusal").ok().map(str::to_owned),
        changed_at: int("changedAt").unwrap_or(0),
        // Written by a release without relays: in session with the hub itself.
        via: d
            .get_array("via")
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn progress_doc(p: &Progress) -> Document {
    doc! {
        "p": &p.peer_id,
        "v": p.applied_version,
        "t": p.trusted_version,
        "b": p.behind_since.map_or(Bson::Null, Bson::Int64),
        "h": p.last_heartbeat_at,
    }
}

fn progress_from(d: &Document) -> Option<Progress> {
    let int = |k: &str| int_of(d, k);
    Some(Progress {
        peer_id: d.get_str("p").ok()?.to_owned(),
        applied_version: int("v")?,
        trusted_version: int("t").unwrap_or(0),
        behind_since: int("b"),
        last_heartbeat_at: int("h").unwrap_or(0),
    })
}

impl MongoStore {
    /// Runs one write command, with `w: 1` (see the module's doc), checking its write errors.
    async fn fleet_command(&self, mut command: Document) -> Result<(), StoreError> {
        command.insert("writeConcern", doc! { "w": 1 });
        let answer = self
            .fleet_db
            .run_command(command)
            .await
            .map_err(unavailable)?;
        match answer.get_array("writeErrors") {
            Ok(errors) if !errors.is_empty() => Err(unavailable(format!(
                "fleet record write failed: {:?}",
                errors.first()
            ))),
            _ => Ok(()),
        }
    }

    /// See [`crate::store::RegisterStore::write_fleet`].
    pub(super) async fn write_fleet_batch(&self, batch: FleetBatch) -> Result<(), StoreError> {
        for chunk in batch.upserts.chunks(STATEMENTS_PER_COMMAND) {
            let updates: Vec<Document> = chunk
                .iter()
                .map(|r| {
                    let d = record_doc(r, batch.now);
                    doc! { "q": { "_id": d.get("_id").cloned().unwrap_or(Bson::Null) }, "u": d, "upsert": true }
                })
                .collect();
            self.fleet_command(
                doc! { "update": FLEET_PEERS, "updates": updates, "ordered": false },
            )
            .await?;
        }
        for chunk in batch.removed.chunks(STATEMENTS_PER_COMMAND) {
            let ids: Vec<String> = chunk.iter().map(|p| record_id(&batch.hub_id, p)).collect();
            self.fleet_command(doc! {
                "delete": FLEET_PEERS,
                "deletes": [ { "q": { "_id": { "$in": ids } }, "limit": 0 } ],
            })
            .await?;
        }
        let mut presence = doc! { "seenAt": batch.now, "draining": batch.draining };
        if let Some(progress) = &batch.progress {
            let list: Vec<Document> = progress.iter().map(progress_doc).collect();
            presence.insert("progress", list);
        }
        self.fleet_command(doc! {
            "update": FLEET_HUBS,
            "updates": [ {
                "q": { "_id": &batch.hub_id },
                "u": { "$set": presence },
                "upsert": true,
            } ],
        })
        .await?;
        // Gone hubs (as the writer's last read saw them): their peers have moved on, or are
        // gone too. A hub's presence goes only if it is still silent, and its records with it.
        for hub in &batch.gone_hubs {
            let answer = self
                .fleet_db
                .run_command(doc! {
                    "delete": FLEET_HUBS,
                    "deletes": [ {
                        "q": { "_id": hub, "seenAt": { "$lt": batch.expire_before } },
                        "limit": 1,
                    } ],
                    "writeConcern": { "w": 1 },
                })
                .await
                .map_err(unavailable)?;
            if answer.get_i32("n").unwrap_or(0) > 0 {
                tracing::info!(%hub, "forgetting the fleet records of a hub gone silent");
                self.fleet_command(doc! {
                    "delete": FLEET_PEERS,
                    "deletes": [ { "q": { "hubId": hub }, "limit": 0 } ],
                })
                .await?;
            }
        }
        Ok(())
    }

    /// See [`crate::store::RegisterStore::read_fleet`].
    pub(super) async fn read_fleet_records(&self, since: i64) -> Result<SharedFleet, StoreError> {
        let hubs: Vec<Document> = self
            .fleet_hubs
            .find(doc! {})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let records: Vec<Document> = self
            .fleet_peers
            .find(doc! { "writtenAt": { "$gte": since } })
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let progress = hubs
            .iter()
            .filter_map(|d| {
                let hub = d.get_str("_id").ok()?.to_owned();
                let list = d.get_array("progress").ok()?;
                Some((
                    hub,
                    list.iter()
                        .filter_map(|p| p.as_document().and_then(progress_from))
                        .collect(),
                ))
            })
            .collect();
        Ok(SharedFleet {
            progress,
            hubs: hubs
                .iter()
                .filter_map(|d| {
                    Some(HubPresence {
                        hub_id: d.get_str("_id").ok()?.to_owned(),
                        seen_at: d.get_i64("seenAt").ok()?,
                        // Written by a release without draining: it never drains.
                        draining: d.get_bool("draining").unwrap_or(false),
                    })
                })
                .collect(),
            // A document this release cannot read (a later one's) is skipped, not fatal:
            // the fleet record is observation.
            records: records.iter().filter_map(record_from).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_its_document() {
        let record = FleetRecord {
            peer_id: "p1".into(),
            hub_id: "n0".into(),
            condition: Condition::Refused,
            applied_version: 42,
            trusted_version: 40,
            behind_since: Some(7),
            last_heartbeat_at: 9,
            connected_since: 3,
            first_seen: 2,
            clock_offset_ms: -12,
            software_version: "0.9.0".into(),
            refusal: Some("the peer refuses the hub's data: fork".into()),
            changed_at: 11,
            via: vec!["relay-1".into(), "relay-2".into()],
        };
        assert_eq!(record_from(&record_doc(&record, 5)), Some(record.clone()));
        // A record of a release without relays: in session with the hub itself.
        let mut old = record_doc(&record, 5);
        old.remove("via");
        assert_eq!(
            record_from(&old).map(|r| r.via),
            Some(Vec::new()),
            "no via, no relays"
        );
        let live = FleetRecord {
            condition: Condition::Live,
            behind_since: None,
            refusal: None,
            ..record
        };
        assert_eq!(record_from(&record_doc(&live, 5)), Some(live.clone()));
        let progress = Progress::of(&live);
        assert_eq!(progress_from(&progress_doc(&progress)), Some(progress));
    }
}
