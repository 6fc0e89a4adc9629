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
