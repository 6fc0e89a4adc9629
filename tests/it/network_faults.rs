//! Networks that fail silently: a hub whose link stays open and passes no byte (a dead
//! router, a full conntrack table, a frozen VM), put between a peer and its hubs with the
//! pausable proxy, while the peer is in the middle of a large sync.

use crate::peer::{big_register, copy_dir, hub_on};
use crate::support::{PausableProxy, TestHub, get_json, peer_config, wait_for};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Entries in the register: enough that a sync is still in flight when the link goes silent.
const N: i64 = 30_000;

/// Every blueprint event's version an SSE reader of `url` receives until `last`, in order.
async fn read_versions(url: String, last: i64) -> Vec<i64> {
    let response = reqwest::get(url).await.unwrap();
    let mut events = response.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        match events.next().await {
            Some(Ok(e)) if e.event.starts_with("blueprint.") => seen.push(e.id.parse().unwrap()),
            Some(Ok(_)) => {}
            other => panic!("the event stream ended: {other:?} after {seen:?}"),
        }
    }
    seen
}

/// Waits (bounded) until `check` holds for the peer's connection view; returns the view and
/// how long it took.
async fn until(peer: &TestHub, what: &str, check: impl Fn(&Value) -> bool) -> (Value, Duration) {
    let started = Instant::now();
    let c = wait_for(what, || async {
        let c = get_json(peer.addr(), "/api/v1/connection").await;
        check(&c).then_some(c)
    })
    .await;
    (c, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_hub_mid_sync_is_left_within_the_heartbeat_bound() {
    let seed = tempfile::tempdir().unwrap();
    big_register(seed.path(), N, 1024).await;
    let n0 = hub_on(copy_dir(seed.path()), None).await;
    let n1 = hub_on(copy_dir(seed.path()), None).await;
    let (p0, p1) = (
        PausableProxy::start(n0.addr()).await,
        PausableProxy::start(n1.addr()).await,
    );
    let (via0, via1) = (format!("http://{}", p0.addr), format!("http://{}", p1.addr));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), vec![via0.clone(), via1.clone()]);
    // Only the heartbeats can notice in time: a stalled sync entry would wait a minute.
    cfg.peer.request_timeout = Duration::from_secs(60);
    let peer_cfg = cfg.peer.clone();
    let bound = peer_cfg.heartbeat_interval
        + 2 * peer_cfg.heartbeat_timeout
        + peer_cfg.connect_timeout
        // What a debug build on a busy two-core machine adds to the detection and the
        // reconnect (a sync applying 1 MiB batches keeps both cores busy).
        + Duration::from_millis(1500);
    let peer = TestHub::start_with(dir, cfg).await;
    let reader = tokio::spawn(read_versions(
        peer.url("/api/v1/system-register/events?since=0"),
        N + 1,
    ));

    // Mid-sync through n0's link, it goes silent.
    let register = std::sync::Arc::clone(&peer.node.state.register);
    wait_for("a sync in flight", || async {
        (register.head_version() > 1000).then_some(())
    })
    .await;
    p0.pause();
    let paused_at = register.head_version();
    assert!(paused_at < N + 1, "the sync was in flight ({paused_at})");
    let (c, took) = until(&peer, "the peer on n1", |c| {
        c["state"] == "Connected" && c["currentHub"] == via1.as_str()
    })
    .await;
    assert!(
        took <= bound,
        "left the silent hub after {took:?} (bound {bound:?}): {c}"
    );
    eprintln!("left the silent hub mid-sync (at {paused_at}) after {took:?}; bound {bound:?}");
    let reason = c["hubs"][0]["lastError"].as_str().unwrap_or_default();
    assert!(reason.contains("heartbeats missed"), "{c}");

    // Every hub silent: isolated within the bound plus each hub's connect attempts, still
    // serving its replica.
    p1.pause();
    let attempts = peer_cfg.attempts_per_hub;
    let isolation_bound = bound
        + 2 * attempts * (peer_cfg.connect_timeout + peer_cfg.backoff_max)
        + Duration::from_millis(1000);
    let (c, took) = until(&peer, "isolation", |c| c["state"] == "Isolated").await;
    assert!(
        took <= isolation_bound,
        "isolated after {took:?} (bound {isolation_bound:?}): {c}"
    );
    eprintln!("isolated after {took:?}; bound {isolation_bound:?}");
    let (status, _) = peer.get("/api/v1/system-register/entries?limit=1").await;
    assert_eq!(status, 200, "the replica is still served");

    // Healed: it catches up, and its readers saw every version once, in order.
    p0.resume();
    p1.resume();
    wait_for("the peer at the hubs' head", || async {
        (register.head_version() == N + 1).then_some(())
    })
    .await;
    let seen = tokio::time::timeout(crate::support::WAIT, reader)
        .await
        .expect("the reader got the head")
        .unwrap();
    let first = seen[0];
    assert!(first <= 2, "from the start: {:?}", &seen[..3]);
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "every version once, in order"
    );
    peer.stop().await;
    n0.stop().await;
    n1.stop().await;
}

/// Copies a stopped hub's data dir — register and signing key — so two hubs share one key.
fn copy_hub_dir(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for file in [sorcha_peer::store::embedded::DB_FILE, "hub-signing.key"] {
        std::fs::copy(from.join(file), to.path().join(file)).unwrap();
    }
    to
}

/// A peer that every hub refuses — the first is down, the second signs an older head with
/// the key that signed the newer one (a rollback) — goes `Isolated` within a few backoff
/// periods and keeps serving its head; its moves between hubs follow the backoff instead of
/// looping; the one piece of evidence is alerted and counted once however often it is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_every_hub_refuses_backs_off_into_isolation_and_alerts_once() {
    let seed = TestHub::start().await;
    for i in 0..20 {
        seed.publish(&format!("r-{i}"), serde_json::json!({"i": i}))
            .await;
    }
    let seed_dir = seed.stop().await;
    let second_dir = copy_hub_dir(seed_dir.path());
    let first = TestHub::start_in(seed_dir).await;
    assert_eq!(first.publish("r-last", serde_json::json!({})).await.0, 201);
    let second = TestHub::start_in(second_dir).await;

    let webhook = crate::support::alert_webhook().await;
    let backoff_initial = Duration::from_millis(100);
    let peer = TestHub::peer_of(vec![first.url(""), second.url("")], |c| {
        c.peer.backoff_initial = backoff_initial;
        c.peer.backoff_max = Duration::from_millis(400);
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    let head = 22;
    let register = std::sync::Arc::clone(&peer.node.state.register);
    wait_for("the peer at the first hub's head", || async {
        (register.head_version() == head).then_some(())
    })
    .await;
    first.stop().await;

    let (c, took) = until(&peer, "isolation", |c| c["state"] == "Isolated").await;
    eprintln!("isolated {took:?} after every hub refused");
    assert!(
        took <= 10 * backoff_initial + Duration::from_secs(2),
        "isolated after {took:?}: {c}"
    );
    let second_error = c["hubs"][1]["lastError"].as_str().unwrap_or_default();
    assert!(second_error.contains("equivocation"), "{c}");
    assert!(
        c["hubs"][0]["lastError"].is_string(),
        "each hub's reason: {c}"
    );
    assert_eq!(register.head_version(), head, "the replica keeps its head");
    let (status, _) = peer.get("/api/v1/system-register/blueprints/r-last").await;
    assert_eq!(status, 200, "and serves it");

    // Moves between hubs follow the backoff over a window: no loop.
    let window = Duration::from_secs(3);
    let before = c["failovers"].as_u64().unwrap();
    tokio::time::sleep(window).await;
    let (_, c) = peer.get("/api/v1/connection").await;
    let moves = c["failovers"].as_u64().unwrap() - before;
    eprintln!("{moves} moves between hubs in {window:?}");
    let most = (window.as_millis() / (backoff_initial.as_millis() * 8 / 10)) as u64 + 2;
    assert!(
        moves <= most,
        "{moves} moves in {window:?} (at most {most}): {c}"
    );
    assert!(moves >= 1, "it keeps retrying: {c}");

    let equivocations: Vec<Value> = crate::support::alerts_of(&webhook, "peer.equivocation").await;
    assert_eq!(
        equivocations.len(),
        1,
        "one alert for one piece of evidence"
    );
    assert_eq!(
        c["trust"]["equivocations"].as_array().unwrap().len(),
        1,
        "{c}"
    );
    assert!(
        peer.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("sorcha_peer_equivocations_total") && l.ends_with(" 1")),
        "the metric counts it once"
    );
    peer.stop().await;
    second.stop().await;
}

/// Peers that lose the same hub do not arrive at the next one together: each waits a random
/// share of `peer.backoffInitial` first, and none spends attempts on the dead hub while the
/// other answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_lose_the_same_hub_arrive_at_the_next_spread_out() {
    const PEERS: usize = 8;
    let n0 = TestHub::start().await;
    let n1 = TestHub::start().await;
    let backoff_initial = Duration::from_millis(600);
    let mut peers = Vec::new();
    for i in 0..PEERS {
        peers.push(
            TestHub::peer_of(vec![n0.url(""), n1.url("")], |c| {
                c.node_id = Some(format!("spread-{i}"));
                c.peer.backoff_initial = backoff_initial;
                c.peer.backoff_max = Duration::from_secs(2);
            })
            .await,
        );
    }
    for peer in &peers {
        until(peer, "connected to n0", |c| {
            c["state"] == "Connected" && c["currentHub"] == n0.url("").as_str()
        })
        .await;
    }
    let attempts_before: Vec<usize> = {
        let mut v = Vec::new();
        for peer in &peers {
            let (_, c) = peer.get("/api/v1/connection").await;
            v.push(c["attempts"].as_array().unwrap().len());
        }
        v
    };
    n0.stop().await;
    let mut arrivals = Vec::new();
    for (peer, before) in peers.iter().zip(attempts_before) {
        let (c, _) = until(peer, "connected to n1", |c| {
            c["state"] == "Connected" && c["currentHub"] == n1.url("").as_str()
        })
        .await;
        arrivals.push(c["hubs"][1]["lastConnectedAt"].as_i64().unwrap());
        let on_dead: Vec<&Value> = c["attempts"].as_array().unwrap()[before..]
            .iter()
            .filter(|a| a["hub"] == 0)
            .collect();
        assert!(on_dead.is_empty(), "attempts on the dead hub: {c}");
    }
    arrivals.sort_unstable();
    let spread = arrivals[PEERS - 1] - arrivals[0];
    eprintln!("{PEERS} peers arrived at the next hub over {spread} ms: {arrivals:?}");
    // Eight draws from [0, 600 ms): a spread under 100 ms has a chance of about 1 in 5 000.
    assert!(spread >= 100, "arrivals within {spread} ms: {arrivals:?}");
    for peer in peers {
        peer.stop().await;
    }
    n1.stop().await;
}

/// Nodes that share one clock raise no clock alert when one exchange is slow: the connect
/// answer held up for 2.5 s on its way to the hub looks like a 1.25 s offset, give or take
/// 1.25 s — nothing certain — and the fast heartbeats after it show the clocks agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_exchange_raises_no_clock_alert() {
    let hub = TestHub::start().await;
    let proxy = PausableProxy::start(hub.addr()).await;
    let webhook = crate::support::alert_webhook().await;
    proxy.pause();
    let peer = TestHub::peer_of(vec![format!("http://{}", proxy.addr)], |c| {
        c.peer.connect_timeout = Duration::from_secs(10);
        c.peer.heartbeat_timeout = Duration::from_secs(5);
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.resume();
    let (c, _) = until(&peer, "heartbeats after the slow connect", |c| {
        c["state"] == "Connected" && c["lastHeartbeatAt"].is_i64()
    })
    .await;
    // A few more heartbeats: the estimate now rests on fast exchanges.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, c2) = peer.get("/api/v1/connection").await;
    let offset = c2["hubClockOffsetMs"].as_i64().unwrap();
    assert!(offset.abs() < 100, "one clock: {c2}");
    let clock_alerts = crate::support::alerts_of(&webhook, "peer.clock_offset")
        .await
        .len();
    assert_eq!(clock_alerts, 0, "no clock alert: {c}");
    peer.stop().await;
    hub.stop().await;
}
