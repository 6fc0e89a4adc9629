//! The order a peer tries its hubs in (`peer.hubOrder`).
//!
//! `priority` is the configured order: every peer sits on the first hub that answers. `spread`
//! ranks the hubs per peer by rendezvous (highest random weight) hashing: each (peer id, hub
//! URL) pair gets a weight from SHA-256, and the peer tries its hubs heaviest first. Peers then
//! spread evenly over the hubs; a lost hub's peers move to their next hub, which differs from
//! peer to peer, so they spread over the survivors; and no other peer moves. The order depends
//! on nothing but the ids, so it is the same on every start and on every node.

use crate::config::HubOrder;
use sha2::{Digest, Sha256};

/// The indexes of `hubs` in the order `order` tries them for `peer_id`.
pub fn hub_order(order: HubOrder, peer_id: &str, hubs: &[String]) -> Vec<usize> {
    let mut indexes: Vec<usize> = (0..hubs.len()).collect();
    if order == HubOrder::Spread {
        // Heaviest first; a tie (practically never) keeps the configured order.
        indexes.sort_by_key(|&i| std::cmp::Reverse(weight(peer_id, &hubs[i])));
    }
    indexes
}

/// The rendezvous weight of `hub` for `peer_id`: the first 8 bytes of SHA-256 over both, with
/// the id's length in front so no two pairs hash the same bytes.
fn weight(peer_id: &str, hub: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update((peer_id.len() as u64).to_be_bytes());
    hash.update(peer_id.as_bytes());
    hash.update(hub.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hubs(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("https://n{i}.sorcha.dev:5000"))
            .collect()
    }

    #[test]
    fn priority_is_the_configured_order() {
        assert_eq!(hub_order(HubOrder::Priority, "p1", &hubs(3)), [0, 1, 2]);
    }

    #[test]
    fn spread_puts_a_third_of_the_peers_on_each_of_three_hubs() {
        let hubs = hubs(3);
        let mut first = [0usize; 3];
        for i in 0..3000 {
            first[hub_order(HubOrder::Spread, &format!("peer-{i}"), &hubs)[0]] += 1;
        }
        for count in first {
            assert!((900..=1100).contains(&count), "{first:?}");
        }
    }

    #[test]
    fn losing_a_hub_moves_only_its_peers_and_spreads_them() {
        let all = hubs(3);
        let survivors: Vec<String> = all[1..].to_vec();
        let (mut moved_to, mut stayed) = ([0usize; 2], 0usize);
        for i in 0..3000 {
            let peer = format!("peer-{i}");
            let before = all[hub_order(HubOrder::Spread, &peer, &all)[0]].clone();
            let after = survivors[hub_order(HubOrder::Spread, &peer, &survivors)[0]].clone();
            if before == all[0] {
                moved_to[usize::from(after == survivors[1])] += 1;
                // Its next hub in the full order is where it goes.
                let next = all[hub_order(HubOrder::Spread, &peer, &all)[1]].clone();
                assert_eq!(after, next, "{peer}");
            } else {
                assert_eq!(after, before, "{peer} moved though its hub stayed");
                stayed += 1;
            }
        }
        assert!(stayed > 1800, "{stayed}");
        for count in moved_to {
            assert!(count > 400, "the lost hub's peers spread: {moved_to:?}");
        }
    }

    #[test]
    fn every_hub_is_tried_once() {
        let mut order = hub_order(HubOrder::Spread, "p9", &hubs(5));
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }
}
