//! Peers spread over hubs (issue 33): with `peer.hubOrder = "spread"` each peer starts at its
//! own rendezvous choice, and losing a hub moves only that hub's peers, each to its next
//! choice.

use crate::fleet::{HUB_BEAT, fleet, listed, mongo_hub_with};
use crate::support::{TestHub, fresh_database, wait_for};
use sorcha_peer::config::HubOrder;
use sorcha_peer::peer::hub_order::hub_order;
use std::collections::BTreeMap;
use std::time::Duration;

const PEERS: usize = 30;

/// Peer id → hub id, once every peer is listed `synced` on `hub`'s view.
async fn placement(hub: &TestHub, what: &str) -> BTreeMap<String, String> {
    wait_for(what, || async {
        let page = fleet(hub, "?limit=1000&state=synced").await;
        let peers = listed(&page);
        (peers.len() == PEERS).then(|| peers.into_iter().map(|(p, h, _)| (p, h)).collect())
    })
    .await
}

/// Three hubs (n0..n2) on a fresh MongoDB database with a fair share of `percent` (0: no cap),
/// and `PEERS` peers of all three (in that order, by `order`), started once the hubs know each
/// other.
async fn three_hubs_and_their_peers(
    prefix: &str,
    percent: u32,
    order: HubOrder,
) -> (Vec<TestHub>, Vec<String>, Vec<TestHub>) {
    let database = fresh_database(prefix);
    let mut hubs = Vec::new();
    for i in 0..3 {
        hubs.push(
            mongo_hub_with(&database, &format!("n{i}"), |c| {
                c.hub.fair_share_percent = percent;
            })
            .await,
        );
    }
    wait_for("the hubs see each other", || async {
        let page = fleet(&hubs[0], "").await;
        (page["hubs"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    let urls: Vec<String> = hubs.iter().map(|h| h.url("")).collect();
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let urls = urls.clone();
        peers.push(
            TestHub::peer_of(urls, |c| {
                c.node_id = Some(format!("peer-{i:02}"));
                c.peer.hub_order = order;
                c.peer.heartbeat_interval = HUB_BEAT;
                c.peer.heartbeat_timeout = Duration::from_millis(800);
            })
            .await,
        );
    }
    (hubs, urls, peers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_peers_sit_on_their_rendezvous_hub_and_only_a_lost_hubs_peers_move() {
    // The order alone: no fair-share cap (the default) sends a peer past its first choice.
    let (mut hubs, urls, _peers) = three_hubs_and_their_peers("spread", 0, HubOrder::Spread).await;
    // Each peer's choices, as the rule makes them from its id and the hubs' URLs.
    let choice =
        |peer: &str, rank: usize| format!("n{}", hub_order(HubOrder::Spread, peer, &urls)[rank]);

    let placed = placement(&hubs[1], "every peer synced").await;
    for (peer, hub) in &placed {
        assert_eq!(
            *hub,
            choice(peer, 0),
            "{peer} is not on its first choice: {placed:?}"
        );
    }
    let mut per_hub = BTreeMap::<&str, usize>::new();
    for hub in placed.values() {
        *per_hub.entry(hub).or_default() += 1;
    }
    println!("sessions per hub with spread: {per_hub:?}");
    assert_eq!(per_hub.len(), 3, "every hub has peers: {per_hub:?}");

    // n0 goes: its peers move to their second choice, nobody else moves.
    hubs.remove(0).stop().await;
    let moved: BTreeMap<String, String> =
        wait_for("n0's peers synced on their next hubs", || async {
            let page = fleet(&hubs[0], "?limit=1000&state=synced").await;
            let peers = listed(&page);
            (peers.len() == PEERS && peers.iter().all(|(_, h, _)| h != "n0"))
                .then(|| peers.into_iter().map(|(p, h, _)| (p, h)).collect())
        })
        .await;
    for (peer, hub) in &moved {
        let expected = if placed[peer] == "n0" {
            choice(peer, 1)
        } else {
            placed[peer].clone()
        };
        assert_eq!(*hub, expected, "{peer}: {moved:?}");
    }
}

/// At most `hub.maxConcurrentFullSyncs` full syncs run at once; one more is refused as rate
/// limited with a jittered retry hint, and admitted once a running one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_syncs_beyond_the_hubs_cap_are_told_to_come_back_soon() {
    use sorcha_peer::hub::HubError;
    use sorcha_peer::protocol::{ConnectRequest, PeerDescription};
    let node = TestHub::configured(|c| {
        c.hub.max_concurrent_full_syncs = 1;
    })
    .await;
    let hub = node.node.state.hub.clone().unwrap();
    let mut sessions = Vec::new();
    for id in ["full-a", "full-b"] {
        let peer = crate::support::pid(id);
        let grant = hub
            .connect(ConnectRequest {
                peer_id: peer.clone(),
                peer: PeerDescription {
                    node_type: "Peer".into(),
                    ..Default::default()
                },
                last_known_version: 0,
                connection_time: 0,
            })
            .await
            .unwrap();
        sessions.push((peer, grant.session_id));
    }
    let running = hub
        .sync(&sessions[0].0, &sessions[0].1, 0, None, true)
        .unwrap();
    match hub.sync(&sessions[1].0, &sessions[1].1, 0, None, true) {
        Err(HubError::RateLimited {
            message,
            retry_after,
        }) => {
            assert!(message.contains("hub.maxConcurrentFullSyncs"), "{message}");
            assert!(
                (Duration::from_millis(500)..Duration::from_millis(1500)).contains(&retry_after),
                "{retry_after:?}"
            );
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a second full sync ran beside the first"),
    }
    // Incremental syncs are not capped.
    assert!(
        hub.sync(&sessions[1].0, &sessions[1].1, 0, None, false)
            .is_ok()
    );
    drop(running);
    assert!(
        hub.sync(&sessions[1].0, &sessions[1].1, 0, None, true)
            .is_ok(),
        "admitted once the first ended"
    );
}

/// Sessions per hub, from `hub`'s fleet view of peers in session.
async fn per_hub(hub: &TestHub) -> BTreeMap<String, usize> {
    let page = fleet(hub, "?limit=1000&state=synced").await;
    let mut counts = BTreeMap::new();
    for (_, hub, _) in listed(&page) {
        *counts.entry(hub).or_default() += 1;
    }
    counts
}

/// Every peer lists the hubs in the same priority order, yet no hub takes more than its fair
/// share (110 % of peers ÷ live hubs): the others are told to try another hub, without
/// penalty. When a hub goes, its peers fill the others up to the new share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_sharing_a_store_take_no_more_than_their_fair_share() {
    let (mut hubs, _, _peers) =
        three_hubs_and_their_peers("fair_share", 110, HubOrder::Priority).await;
    let cap = |hubs: usize| (PEERS * 110).div_ceil(100 * hubs);
    let counts = wait_for("all peers synced", || async {
        let counts = per_hub(&hubs[1]).await;
        (counts.values().sum::<usize>() == PEERS).then_some(counts)
    })
    .await;
    println!("priority order with fair shares: {counts:?}");
    assert_eq!(counts.len(), 3, "every hub took peers: {counts:?}");
    assert!(
        counts.values().all(|n| *n <= cap(3)),
        "cap {}: {counts:?}",
        cap(3)
    );

    hubs.remove(0).stop().await;
    let counts = wait_for("n0's peers on the others", || async {
        let counts = per_hub(&hubs[0]).await;
        (counts.values().sum::<usize>() == PEERS && !counts.contains_key("n0")).then_some(counts)
    })
    .await;
    println!("after n0 went: {counts:?}");
    assert!(
        counts.values().all(|n| *n <= cap(2)),
        "cap {}: {counts:?}",
        cap(2)
    );
    assert_eq!(counts.len(), 2, "{counts:?}");
}
