//! The invariants the simulation checks, each pushing what it finds wrong onto `failures`.

use super::net::Dial;
use super::{BACKOFF_INITIAL, BACKOFF_MAX, HUBS};
use sorcha_peer::peer::Peer;
use sorcha_peer::peer::alerts::Alert;
use sorcha_peer::store::SyncProgress;
use std::collections::BTreeMap;

/// The k-th retry of a hub after a refused dial comes after the k-th delay of the exponential
/// backoff (backoffInitial · 2^(k-1), at most backoffMax, less up to 20 % jitter); the next hub
/// dialled is the same one or the next in priority order, never a skip.
pub fn failover(peer: usize, dials: &[Dial], failures: &mut Vec<String>) {
    let (mut retry, mut checkable) = (0u32, true);
    for pair in dials.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.run != a.run {
            (retry, checkable) = (0, true);
            continue;
        }
        if b.hub != a.hub {
            if b.hub != (a.hub + 1) % HUBS {
                failures.push(format!(
                    "peer {peer}: dialled hub {} after hub {}",
                    b.hub, a.hub
                ));
            }
            (retry, checkable) = (0, true);
            continue;
        }
        retry += 1;
        // A dial that got through restarts the sequence (or ends the streak); stop checking.
        checkable &= a.refused && b.at_ms >= a.at_ms;
        if checkable {
            let gap = b.at_ms - a.at_ms;
            let full = (BACKOFF_INITIAL * 2u32.pow(retry - 1)).min(BACKOFF_MAX);
            let (low, high) = (full.as_millis() as u64 * 8 / 10, full.as_millis() as u64);
            if gap + 5 < low || gap > high + 5 {
                failures.push(format!(
                    "peer {peer}: retry {retry} of hub {} after {gap} ms (backoff {low}-{high} ms)",
                    a.hub
                ));
            }
        }
    }
}

/// One peer's isolation alerts across its runs: `peer.isolated` and `peer.reconnected`
/// alternate, starting with isolated; a crash ends a run (and its isolation).
#[derive(Default)]
pub struct Isolation {
    isolated: bool,
    /// Isolation alerts seen.
    pub entered: u64,
}

impl Isolation {
    /// Takes the alerts a run raised since the last call.
    pub fn observe(
        &mut self,
        peer: usize,
        alerts: &[Alert],
        lost: u64,
        failures: &mut Vec<String>,
    ) {
        if lost > 0 {
            failures.push(format!("peer {peer}: {lost} alerts lost by the watcher"));
        }
        for alert in alerts {
            match alert.event.as_str() {
                "peer.isolated" => {
                    if self.isolated {
                        failures.push(format!("peer {peer}: isolated twice without reconnecting"));
                    }
                    self.isolated = true;
                    self.entered += 1;
                }
                "peer.reconnected" => {
                    if !self.isolated {
                        failures.push(format!("peer {peer}: reconnected without being isolated"));
                    }
                    self.isolated = false;
                }
                _ => {}
            }
        }
    }

    /// The run ended by a crash: a new run starts out of isolation.
    pub fn crashed(&mut self) {
        self.isolated = false;
    }

    /// After healing no peer may still be isolated.
    pub fn finish(&self, peer: usize, failures: &mut Vec<String>) {
        if self.isolated {
            failures.push(format!("peer {peer}: still isolated after healing"));
        }
    }
}

/// A replica's sync progress never claims more than the replica holds: it names the head
/// or an earlier entry, with that entry's hash.
pub fn progress_behind_head(
    peer: usize,
    progress: Option<&SyncProgress>,
    head: i64,
    head_hash: Option<&str>,
    failures: &mut Vec<String>,
) {
    let Some(cp) = progress else { return };
    if cp.current_version > head {
        failures.push(format!(
            "peer {peer}: sync progress at version {} but the replica ends at {head}",
            cp.current_version
        ));
    } else if cp.current_version == head && Some(cp.head_hash.as_str()) != head_hash {
        failures.push(format!(
            "peer {peer}: sync progress hash at version {head} is not the replica's"
        ));
    }
}

/// Every acknowledged write (version → blueprint, chain hash) is on `peer`'s replica, whose
/// chain verifies and ends at the hubs' head.
pub async fn replica(
    index: usize,
    peer: &Peer,
    acknowledged: &BTreeMap<i64, (String, String)>,
    hub_head_hash: &str,
    failures: &mut Vec<String>,
) {
    let report = peer.register().verify().await.unwrap();
    if !report.ok {
        failures.push(format!(
            "peer {index}: chain does not verify: {:?}",
            report.failure
        ));
    }
    if report.head_hash.as_deref() != Some(hub_head_hash) {
        failures.push(format!("peer {index}: head hash differs from the hubs'"));
    }
    for (version, (id, hash)) in acknowledged {
        match peer.register().entry_at(*version, None).await {
            Ok((entry, _)) if entry.blueprint_id == *id && entry.chain_hash == *hash => {}
            Ok((entry, _)) => failures.push(format!(
                "peer {index}: version {version} is {} not the acknowledged {id}",
                entry.blueprint_id
            )),
            Err(e) => failures.push(format!("peer {index}: acknowledged version {version}: {e}")),
        }
    }
}
