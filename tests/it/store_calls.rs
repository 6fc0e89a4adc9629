//! A hub's store round trips: none per heartbeat, connect or near-head sync of a peer, on both
//! stores; and a store that stalls makes calls fail fast while connected peers' heartbeats
//! keep being answered, with everything recovering when it returns.

use crate::observability::sample;
use crate::support::{
    PUBLISHER, PausableProxy, TestHub, fresh_database, get_json, mongo_hub_config, mongodb_uri,
    wait_for,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Every store call the hub has made so far for its peers: the counts of its store-call
/// histogram, summed over operations, and the counts per operation. The fleet record's calls
/// are the hub's own, one write and one read per `hub.fleetFlushInterval` whatever its peers
/// do (`fleet::` tests and the fleet benchmark count them), so they are left out.
async fn store_calls(hub: &TestHub) -> (u64, Vec<String>) {
    let text = hub.metrics().await;
    let per_op: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("sorcha_peer_store_call_duration_seconds_count"))
        .filter(|l| !l.contains("_fleet\""))
        .map(str::to_owned)
        .collect();
    let total = per_op
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    (total as u64, per_op)
}

async fn heartbeats_received(hub: &TestHub) -> u64 {
    sample(
        &hub.metrics().await,
        "sorcha_peer_heartbeats_received_total",
    )
    .unwrap_or(0.0) as u64
}

/// A peer of `hub` with test-speed heartbeats, synced to the hub's head.
async fn synced_peer(hub: &TestHub) -> TestHub {
    let peer = TestHub::peer_of(vec![format!("http://{}", hub.addr())], |_| {}).await;
    wait_until_current(hub, &peer).await;
    peer
}

async fn wait_until_current(hub: &TestHub, peer: &TestHub) {
    let target = hub.node.state.register.head_version();
    let register = &peer.node.state.register;
    wait_for("the peer at the hub's head", || async {
        (register.head_version() >= target).then_some(())
    })
    .await;
}

/// Heartbeats and the push-triggered syncs of a peer one entry behind cost the hub no store
/// call: over a quiet stretch of heartbeats none at all, over a run of publishes only the
/// appends themselves.
async fn a_peer_near_the_head_costs_no_store_call(hub: TestHub) {
    let peer = synced_peer(&hub).await;

    let (before, _) = store_calls(&hub).await;
    let beats = heartbeats_received(&hub).await;
    wait_for("ten heartbeats", || async {
        (heartbeats_received(&hub).await >= beats + 10).then_some(())
    })
    .await;
    let (after, per_op) = store_calls(&hub).await;
    assert_eq!(after, before, "heartbeats read the store: {per_op:#?}");

    const PUBLISHES: u64 = 10;
    let syncs_before = sample(
        &hub.metrics().await,
        "sorcha_peer_sync_streams_served_total{kind=\"incremental\"}",
    )
    .unwrap_or(0.0);
    for i in 0..PUBLISHES {
        assert_eq!(
            hub.publish(&format!("near-{i}"), json!({"i": i})).await.0,
            201
        );
        // One at a time: each publish is pushed and synced before the next.
        wait_until_current(&hub, &peer).await;
    }
    let syncs = sample(
        &hub.metrics().await,
        "sorcha_peer_sync_streams_served_total{kind=\"incremental\"}",
    )
    .unwrap_or(0.0)
        - syncs_before;
    assert!(
        syncs >= PUBLISHES as f64,
        "the peer synced each publish ({syncs} syncs)"
    );
    let (end, per_op) = store_calls(&hub).await;
    assert_eq!(
        end - after,
        PUBLISHES,
        "only the appends reach the store, not the peer's syncs: {per_op:#?}"
    );
    peer.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_near_the_head_costs_the_embedded_hub_no_store_call() {
    a_peer_near_the_head_costs_no_store_call(TestHub::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_near_the_head_costs_the_mongodb_hub_no_store_call() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = mongo_hub_config(dir.path(), &fresh_database("nearhead"));
    a_peer_near_the_head_costs_no_store_call(TestHub::start_with(dir, cfg).await).await;
}

/// POSTs a publish with an `Idempotency-Key`; status, `Retry-After` and body.
async fn publish_keyed(hub: &TestHub, id: &str, key: &str) -> (u16, Option<String>, Value) {
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .bearer_auth(PUBLISHER)
        .header("Idempotency-Key", key)
        .json(&json!({"blueprintId": id, "document": {"id": id}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_calls_fast_while_heartbeats_are_answered_and_all_recovers() {
    let upstream = mongodb_uri()
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .parse()
        .expect("MONGODB_URI names 127.0.0.1:port");
    let proxy = PausableProxy::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mongo_hub_config(dir.path(), &fresh_database("stall"));
    // Direct: the server names itself in its replies, and the driver would go round the proxy.
    cfg.store = format!("mongodb://{}/?directConnection=true", proxy.addr);
    let deadline = Duration::from_secs(1);
    cfg.limits.store_call_timeout = deadline;
    cfg.limits.store_call_wait = Duration::from_millis(300);
    let hub = TestHub::start_with(dir, cfg).await;
    assert_eq!(hub.publish("before", json!({})).await.0, 201);
    let peer = synced_peer(&hub).await;

    proxy.pause();
    // A write and a read fail fast with a clear, retryable error.
    let started = Instant::now();
    let (status, retry_after, problem) = publish_keyed(&hub, "during", "stall-key-1").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("did not answer within 1s") || detail.contains("unavailable"),
        "{problem}"
    );
    // The deadline plus what a debug build on two busy cores adds; a hang would be 30 s.
    assert!(took < deadline * 4, "the publish took {took:?}");
    let (status, body) = hub.get("/api/v1/system-register/blueprints/before").await;
    assert_eq!(status, 503, "{body}");
    // Further calls find every slot held by the stalled ones and fail at the slot wait.
    for i in 0..12 {
        let (status, _, problem) = publish_keyed(&hub, &format!("queued-{i}"), "k").await;
        assert_eq!(status, 503, "{problem}");
    }
    let text = hub.metrics().await;
    let timeouts = |stage: &str| {
        text.lines()
            .filter(|l| l.starts_with("sorcha_peer_store_call_timeouts_total"))
            .filter(|l| l.contains(&format!("stage=\"{stage}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(timeouts("call") >= 1.0, "{text}");
    assert!(timeouts("wait") >= 1.0, "{text}");

    // Meanwhile the connected peer's heartbeats are answered from memory.
    let beats = heartbeats_received(&hub).await;
    wait_for("heartbeats answered while the store stalls", || async {
        (heartbeats_received(&hub).await >= beats + 10).then_some(())
    })
    .await;
    let connection = get_json(peer.addr(), "/api/v1/connection").await;
    assert_eq!(connection["state"], "Connected", "{connection}");

    // The store returns: writes work again, the retried write is answered once, nothing is
    // lost, and the peer has all of it.
    proxy.resume();
    let (status, _, entry) = wait_for("the retried publish answered", || async {
        let r = publish_keyed(&hub, "during", "stall-key-1").await;
        (r.0 != 503).then_some(r)
    })
    .await;
    assert!(status == 201 || status == 200, "{entry}");
    assert_eq!(hub.publish("after", json!({})).await.0, 201);
    let history = get_json(
        hub.addr(),
        "/api/v1/system-register/blueprints/during/history",
    )
    .await;
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    let verify = get_json(hub.addr(), "/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    wait_until_current(&hub, &peer).await;
    let (status, _) = peer.get("/api/v1/system-register/blueprints/after").await;
    assert_eq!(status, 200);
    peer.stop().await;
    hub.stop().await;
}
