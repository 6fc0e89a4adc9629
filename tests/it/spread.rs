//! Peers spread over hubs (issue 33): with `peer.hubOrder = "spread"` each peer starts at its
//! own rendezvous choice, and losing a hub moves only that hub's peers, each to its next
//! choice.

use crate::fleet::{HUB_BEAT, fleet, listed, mongo_hub_with};
use crate::support::{TestHub, fresh_database, wait_for};
use sorcha_peer::config::HubOrder;
use sorcha_peer::peer::hub_order::hub_order;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
                insist: false,
                lost_hub: String::new(),
                relay_path: Vec::new(),
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

/// A hub process on the shared test database: 400 ms heartbeats, fleet flushes every 200 ms,
/// a 3 s drain period, fair shares of 110 %.
async fn hub_process(
    dir: &std::path::Path,
    database: &str,
    id: &str,
    listen: &str,
) -> crate::support::ChildNode {
    let uri = crate::support::mongodb_uri();
    crate::support::spawn_node_at(
        dir,
        listen,
        &["--role", "hub", "--store", &uri, "--node-id", id],
        &[
            ("SORCHA_MONGO__DATABASE", database),
            ("SORCHA_MONGO__POLL_INTERVAL", "100ms"),
            ("SORCHA_HUB__HEARTBEAT_INTERVAL", "400ms"),
            ("SORCHA_HUB__RATE_LIMITS__HEARTBEAT__EVERY", "200ms"),
            ("SORCHA_HUB__SESSION_TIMEOUT", "3s"),
            ("SORCHA_HUB__SESSION_GRACE", "2s"),
            ("SORCHA_HUB__FLEET_FLUSH_INTERVAL", "200ms"),
            ("SORCHA_HUB__DRAIN_PERIOD", "3s"),
            ("SORCHA_HUB__FAIR_SHARE_PERCENT", "110"),
        ],
    )
    .await
}

/// A peer process of `hubs`, spread by rendezvous order.
async fn spread_peer(
    dir: &std::path::Path,
    id: &str,
    hubs: &[String],
) -> crate::support::ChildNode {
    let mut args = vec!["--role", "peer", "--node-id", id, "--hub-order", "spread"];
    for hub in hubs {
        args.extend(["--hub", hub.as_str()]);
    }
    crate::support::spawn_node_env(
        dir,
        &args,
        &[
            ("SORCHA_PEER__HEARTBEAT_INTERVAL", "400ms"),
            ("SORCHA_PEER__HEARTBEAT_TIMEOUT", "1s"),
            ("SORCHA_PEER__BACKOFF_INITIAL", "100ms"),
            ("SORCHA_PEER__BACKOFF_MAX", "400ms"),
        ],
    )
    .await
}

/// Peers in session per hub, as the hub at `addr` lists the fleet (synced or behind).
async fn sessions_per_hub(addr: std::net::SocketAddr) -> BTreeMap<String, usize> {
    let page = crate::support::get_json(addr, "/api/v1/fleet?limit=1000").await;
    let mut counts = BTreeMap::new();
    for (_, hub, state) in listed(&page) {
        if state == "synced" || state == "behind" {
            *counts.entry(hub).or_default() += 1;
        }
    }
    counts
}

/// One Prometheus sample of a node (0 when absent).
async fn sample(addr: std::net::SocketAddr, series: &str) -> f64 {
    crate::support::metric_sample(addr, series)
        .await
        .unwrap_or(0.0)
}

/// Polls `check` every 100 ms for at most `limit`; `None` when it never held.
async fn within<T, Fut: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> Fut,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Issue 33's must-show with real processes: three hubs on MongoDB with fair shares, 30 peers
/// spread by rendezvous order. Nobody above the cap at start; n0 killed: its peers on n1/n2
/// within 10 s, neither above the two-hub cap; n0 back: within a minute every hub within its cap
/// and at ≥ 60 % of its share, no peer moved more than twice; n1 SIGTERMed: its peers leave
/// one by one over the drain period, nobody does a full sync, every acknowledged write
/// reaches every peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_processes_spreads_survives_a_kill_rebalances_and_drains() {
    let database = fresh_database("balance");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hubs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        hubs.push(hub_process(dir.path(), &database, &format!("n{i}"), "127.0.0.1:0").await);
    }
    let hub_addrs: Vec<_> = hubs.iter().map(|h| h.addr).collect();
    let urls: Vec<String> = hub_addrs.iter().map(|a| format!("http://{a}")).collect();
    within(Duration::from_secs(10), || async {
        let page = crate::support::get_json(hub_addrs[2], "/api/v1/fleet").await;
        (page["hubs"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await
    .expect("the hubs see each other");
    let peer_dirs: Vec<_> = (0..PEERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut peers = Vec::new();
    for (i, dir) in peer_dirs.iter().enumerate() {
        peers.push(spread_peer(dir.path(), &format!("peer-{i:02}"), &urls).await);
    }
    let cap = |hubs: usize| (PEERS * 110).div_ceil(100 * hubs);

    // At start: every peer in session. While the fleet grows faster than the hubs read each
    // other (a peer every ~20 ms here, a flush every 200 ms), a hub may take a peer above the
    // share it will have; within a few flushes every hub is at most at its cap.
    let started = Instant::now();
    let counts = within(Duration::from_secs(20), || async {
        let counts = sessions_per_hub(hub_addrs[2]).await;
        (counts.values().sum::<usize>() == PEERS && counts.values().all(|n| *n <= cap(3)))
            .then_some(counts)
    })
    .await;
    let Some(counts) = counts else {
        panic!(
            "not all in session within their caps: {:?}",
            sessions_per_hub(hub_addrs[2]).await
        );
    };
    println!(
        "{:?} after the last peer started: {counts:?}",
        started.elapsed()
    );

    let mut acknowledged = 0;
    let mut publish = async |tag: &str| {
        let (status, body) = crate::support::publish(
            &crate::support::http_client(),
            hub_addrs[2],
            crate::support::ADMIN,
            &format!("bp-{tag}"),
            serde_json::json!({"title": tag, "steps": [1]}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        acknowledged = body["version"].as_i64().unwrap();
    };
    publish("before-kill").await;
    // Sessions each peer has opened so far (moves since then are counted against this).
    let mut opened = Vec::new();
    for peer in &peers {
        opened.push(sample(peer.addr, "sorcha_peer_connect_seconds_count").await);
    }
    println!(
        "peers that moved while the fleet started: {}",
        opened.iter().filter(|n| **n > 1.0).count()
    );

    // n0 killed: its peers on n1 and n2 within 10 s, neither above the cap of two hubs.
    let killed = Instant::now();
    hubs[0].child.start_kill().unwrap();
    let _ = hubs[0].child.wait().await;
    let counts = within(Duration::from_secs(10), || async {
        let counts = sessions_per_hub(hub_addrs[2]).await;
        (counts.values().sum::<usize>() == PEERS && !counts.contains_key("n0")).then_some(counts)
    })
    .await
    .expect("n0's peers on n1 and n2 within 10 s");
    println!("{:?} after n0 was killed: {counts:?}", killed.elapsed());
    assert!(
        counts.values().all(|n| *n <= cap(2)),
        "cap {}: {counts:?}",
        cap(2)
    );

    // n0 back on its address: within a minute, every hub within its cap and at ≥ 60 % of
    // its fair share.
    let back = Instant::now();
    hubs[0] = hub_process(dirs[0].path(), &database, "n0", &hub_addrs[0].to_string()).await;
    let share = PEERS / 3;
    let counts = within(Duration::from_secs(60), || async {
        let counts = sessions_per_hub(hub_addrs[2]).await;
        let balanced = counts.values().sum::<usize>() == PEERS
            && counts.len() == 3
            && counts
                .values()
                .all(|n| *n <= cap(3) && *n * 10 >= share * 6);
        balanced.then_some(counts)
    })
    .await;
    let counts = match counts {
        Some(counts) => counts,
        None => panic!(
            "not rebalanced within a minute: {:?}",
            sessions_per_hub(hub_addrs[2]).await
        ),
    };
    println!("{:?} after n0 came back: {counts:?}", back.elapsed());
    // From the kill to here, no peer moved more than twice.
    let mut moves = BTreeMap::<u64, usize>::new();
    for (i, peer) in peers.iter().enumerate() {
        let sessions = sample(peer.addr, "sorcha_peer_connect_seconds_count").await;
        let moved = sessions - opened[i];
        assert!(moved <= 2.0, "peer-{i:02} moved {moved} times");
        *moves.entry(moved as u64).or_default() += 1;
    }
    println!("peers by moves since the kill: {moves:?}");
    publish("after-return").await;

    // n1 drains on SIGTERM: no new peers, its own leave one by one over the 3 s drain period.
    let full_before = [0, 2].map(|h| hub_addrs[h]);
    let full =
        async |addr| sample(addr, "sorcha_peer_sync_streams_served_total{kind=\"full\"}").await;
    let full_syncs_before = (full(full_before[0]).await, full(full_before[1]).await);
    let on_n1 = sessions_per_hub(hub_addrs[2]).await["n1"];
    let drain = Instant::now();
    crate::fleet::signal(&hubs[1], "-TERM");
    let mut left_over_time = Vec::new();
    let mut publishing = 0;
    loop {
        let answer = reqwest::get(format!("http://{}/api/v1/peers", hub_addrs[1])).await;
        let page: serde_json::Value = match answer {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => break,
        };
        let Some(sessions) = page["peers"].as_array().map(Vec::len) else {
            break;
        };
        left_over_time.push((drain.elapsed(), sessions));
        if publishing < 3 && drain.elapsed() > Duration::from_millis(800 * (publishing + 1)) {
            publishing += 1;
            publish(&format!("during-drain-{publishing}")).await;
        }
        assert!(
            drain.elapsed() < Duration::from_secs(10),
            "n1 still serving: {left_over_time:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = hubs[1].child.wait().await;
    println!("n1 held {on_n1}; sessions while draining: {left_over_time:?}");
    assert!(
        left_over_time
            .iter()
            .any(|(at, n)| *at >= Duration::from_millis(500) && *n > 0 && *n < on_n1),
        "its peers did not leave one by one: {left_over_time:?}"
    );
    publish("after-drain").await;
    let counts = within(Duration::from_secs(10), || async {
        let counts = sessions_per_hub(hub_addrs[2]).await;
        (counts.values().sum::<usize>() == PEERS && !counts.contains_key("n1")).then_some(counts)
    })
    .await
    .expect("n1's peers on n0 and n2");
    println!("after n1 drained: {counts:?}");
    assert!(
        counts.values().all(|n| *n <= cap(2)),
        "cap {}: {counts:?}",
        cap(2)
    );
    assert_eq!(
        (full(full_before[0]).await, full(full_before[1]).await),
        full_syncs_before,
        "a drained peer did a full sync"
    );
    // Every acknowledged write on every peer.
    for (i, peer) in peers.iter().enumerate() {
        within(Duration::from_secs(10), || async {
            let register = crate::support::get_json(peer.addr, "/api/v1/system-register").await;
            (register["headVersion"].as_i64() >= Some(acknowledged)).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("peer-{i:02} lacks v{acknowledged}"));
    }
}

/// `POST /api/v1/hub/drain`: admin only; the hub says it drains (answer and fleet presence),
/// sends its peer away, and refuses new peers with `HUB_DRAINING`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_drains_a_hub_over_rest() {
    use sorcha_peer::error_code::ErrorCode;
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::link::HubLink;
    use sorcha_peer::protocol::{ConnectRequest, PeerDescription};
    let hub = TestHub::configured(|c| c.hub.drain_period = Duration::from_millis(300)).await;
    let _peer = TestHub::peer_of(vec![hub.url("")], |c| {
        c.peer.backoff_initial = Duration::from_millis(50);
        c.peer.backoff_max = Duration::from_millis(200);
    })
    .await;
    wait_for("the peer in session", || async {
        let (_, page) = hub.get("/api/v1/peers").await;
        (page["peers"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    // A raw gRPC session with a push stream, to see how it is told to go.
    let client = HubClient::connect(&hub.url(""), crate::support::WAIT)
        .await
        .unwrap();
    let raw = crate::support::pid("raw-peer");
    let grant = client
        .open_session(&ConnectRequest {
            peer: PeerDescription {
                node_type: "Peer".into(),
                ..Default::default()
            },
            ..ConnectRequest::new(raw.clone())
        })
        .await
        .unwrap();
    let mut push = client
        .subscribe(&raw, &grant.session_id, &Default::default(), 0)
        .await
        .unwrap();
    let http = crate::support::http_client();
    let url = hub.url("/api/v1/hub/drain");
    let anonymous = http.post(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let answer = http
        .post(&url)
        .bearer_auth(crate::support::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(body["peers"], 2, "{body}");
    // At least a second over REST, so the peers never all leave at once.
    assert_eq!(body["drainPeriodMs"], 1000, "{body}");
    // The push stream's last item says why.
    let last = tokio::time::timeout(crate::support::WAIT, futures::StreamExt::next(&mut push))
        .await
        .expect("the push stream ends within the drain");
    match last {
        Some(Err(e)) => assert_eq!(e.code, ErrorCode::Draining, "{e:?}"),
        other => panic!("the push stream ended without the reason: {other:?}"),
    }
    client
        .close_session(
            &raw,
            &grant.session_id,
            sorcha_peer::protocol::DisconnectReason::Failover.into(),
            0,
        )
        .await
        .unwrap();
    // Its peer is sent away and cannot come back.
    wait_for("the peer sent away", || async {
        let (_, page) = hub.get("/api/v1/peers").await;
        (page["peers"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
    let (_, fleet) = hub.get("/api/v1/fleet").await;
    assert_eq!(fleet["hubs"][0]["draining"], true, "{fleet}");
    let refused = client
        .open_session(&ConnectRequest {
            peer: PeerDescription {
                node_type: "Peer".into(),
                ..Default::default()
            },
            ..ConnectRequest::new(crate::support::pid("late-peer"))
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Draining, "{refused:?}");
}

/// A connect naming a lost hub (or a relay path) that breaks the node-id rule is refused,
/// naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hub_that_is_no_node_id_is_refused() {
    use sorcha_peer::error_code::ErrorCode;
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::link::HubLink;
    use sorcha_peer::protocol::{ConnectRequest, PeerDescription};
    let hub = TestHub::start().await;
    let client = HubClient::connect(&hub.url(""), crate::support::WAIT)
        .await
        .unwrap();
    let request = |lost: &str| ConnectRequest {
        peer: PeerDescription {
            node_type: "Peer".into(),
            ..Default::default()
        },
        lost_hub: lost.into(),
        ..ConnectRequest::new(crate::support::pid("says-lost"))
    };
    let refused = client
        .open_session(&request("no such id!"))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Invalid, "{refused:?}");
    assert!(refused.message.contains("lost_hub"), "{refused:?}");
    // A well-formed id the hub does not know is simply not counted.
    client.open_session(&request("hub-9")).await.unwrap();
    // A relay path is node ids too.
    let refused = client
        .open_session(&ConnectRequest {
            relay_path: vec!["relay-1".into(), "not an id!".into()],
            ..request("")
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Invalid, "{refused:?}");
    assert!(refused.message.contains("relay_path"), "{refused:?}");
}
