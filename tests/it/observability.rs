//! Metrics after a sync and a publish, scraped from a hub and a peer.

use crate::support::{TestHub, peer_config, sse, take_events, wait_for};
use serde_json::json;

/// The value of the first sample whose name and labels start with `series`.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) async fn scrape(hub: &TestHub) -> String {
    let r = hub.http.get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_publishes_syncs_and_connections() {
    let hub = TestHub::start().await;
    for i in 0..5 {
        hub.publish(&format!("m-{i}"), json!({"i": i})).await;
    }
    let peer_dir = tempfile::tempdir().unwrap();
    let cfg = peer_config(peer_dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(peer_dir, cfg).await;
    let mut feed = sse(hub.addr(), "", None).await;
    wait_for("peer synced", || async {
        (crate::support::get_json(peer.addr(), "/api/v1/system-register").await["headVersion"] == 6)
            .then_some(())
    })
    .await;
    hub.publish("m-last", json!({})).await;
    take_events(&mut feed, 1).await;
    wait_for("peer at 7", || async {
        (crate::support::get_json(peer.addr(), "/api/v1/system-register").await["headVersion"] == 7)
            .then_some(())
    })
    .await;
    // Give the peer a heartbeat, and the sync that moved its head time to count its entries
    // (it counts them when it ends, just after the head moved).
    wait_for("a heartbeat and the sync counted", || async {
        let text = scrape(&peer).await;
        (sample(&text, "sorcha_peer_heartbeats_sent_total{outcome=\"ok\"}").unwrap_or(0.0) >= 1.0
            && sample(&text, "sorcha_peer_sync_entries_total") == Some(7.0))
        .then_some(())
    })
    .await;

    let h = scrape(&hub).await;
    assert_eq!(
        sample(&h, "sorcha_peer_register_head_version"),
        Some(7.0),
        "{h}"
    );
    assert_eq!(
        sample(&h, "sorcha_peer_publishes_total{outcome=\"ok\"}"),
        Some(6.0)
    );
    assert_eq!(
        sample(&h, "sorcha_peer_publish_duration_seconds_count"),
        Some(6.0)
    );
    assert!(sample(&h, "sorcha_peer_publish_duration_seconds_sum").unwrap() > 0.0);
    assert_eq!(
        sample(&h, "sorcha_peer_sync_streams_served_total{kind=\"full\"}"),
        Some(1.0)
    );
    assert!(sample(&h, "sorcha_peer_sync_entries_served_total").unwrap() >= 7.0);
    assert_eq!(sample(&h, "sorcha_peer_hub_sessions"), Some(1.0));
    assert_eq!(
        sample(&h, "sorcha_peer_subscribers{transport=\"sse\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&h, "sorcha_peer_subscribers{transport=\"grpc\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &h,
            "sorcha_peer_notifications_delivered_total{transport=\"grpc\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &h,
            "sorcha_peer_notifications_delivered_total{transport=\"sse\"}"
        ),
        Some(1.0)
    );
    assert!(sample(&h, "sorcha_peer_heartbeats_received_total").unwrap() >= 1.0);
    assert_eq!(sample(&h, "sorcha_peer_verify_ok"), Some(1.0));
    assert!(h.contains("# HELP sorcha_peer_publish_duration_seconds Durable publish latency"));
    assert!(h.contains("# UNIT sorcha_peer_publish_duration_seconds seconds"));

    let p = scrape(&peer).await;
    assert_eq!(
        sample(&p, "sorcha_peer_register_head_version"),
        Some(7.0),
        "{p}"
    );
    assert_eq!(
        sample(&p, "sorcha_peer_connection_state"),
        Some(2.0),
        "Connected"
    );
    assert_eq!(sample(&p, "sorcha_peer_isolated"), Some(0.0));
    assert_eq!(sample(&p, "sorcha_peer_sync_entries_total"), Some(7.0));
    assert_eq!(
        sample(&p, "sorcha_peer_sync_duration_seconds_count{kind=\"full\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &p,
            "sorcha_peer_sync_duration_seconds_count{kind=\"incremental\"}"
        )
        .unwrap()
            >= 1.0
    );
    let latency = sample(&p, "sorcha_peer_heartbeat_latency_seconds_sum").unwrap();
    assert!(
        latency > 0.0 && latency < 5.0,
        "plausible heartbeat latency: {latency}"
    );
    assert_eq!(sample(&p, "sorcha_peer_failovers_total"), Some(0.0));
    peer.stop().await;
    hub.stop().await;
}

/// `sorcha_peer_propagation_seconds` on the hub (commit → a connected peer's report that it
/// applied the entry) agrees with what clients see (acknowledgement → the entry's event on each
/// peer's own stream) to within the report period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_on_the_hub_agrees_with_what_peers_show() {
    use futures::StreamExt;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};
    const PUBLISHES: usize = 5;
    // The hub takes every 100 ms heartbeat of these peers (its default is one a second), so
    // the report period here is the peers' heartbeat interval.
    let hub = TestHub::configured(|c| {
        c.hub.rate_limits.heartbeat = sorcha_peer::config::Rate {
            every: Duration::from_millis(10),
            burst: 100,
        };
    })
    .await;
    let mut peers = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = peer_config(dir.path(), vec![hub.url("")]);
        cfg.node_id = Some(format!("prop-{i}"));
        let peer = TestHub::start_with(dir, cfg).await;
        wait_for("the peer's session", || async {
            let view = crate::support::get_json(peer.addr(), "/api/v1/connection").await;
            (view["state"] == "Connected").then_some(())
        })
        .await;
        // Each peer's own event stream, timed as the events arrive.
        let mut events = sse(peer.addr(), "", None).await;
        watchers.push(tokio::spawn(async move {
            let mut arrived = HashMap::new();
            while arrived.len() < PUBLISHES {
                let Some(event) = events.next().await else {
                    break;
                };
                if event.event.starts_with("blueprint.") {
                    arrived.insert(event.id.parse::<i64>().unwrap(), Instant::now());
                }
            }
            arrived
        }));
        peers.push(peer);
    }
    let mut acks = HashMap::new();
    for i in 0..PUBLISHES {
        let (status, entry) = hub.publish(&format!("prop-{i}"), json!({"i": i})).await;
        assert_eq!(status, 201);
        acks.insert(entry["version"].as_i64().unwrap(), Instant::now());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut seen = Vec::new();
    for watcher in watchers {
        let arrived = tokio::time::timeout(crate::support::WAIT, watcher)
            .await
            .expect("every event on every peer")
            .unwrap();
        for (version, at) in arrived {
            seen.push(at.saturating_duration_since(acks[&version]).as_secs_f64());
        }
    }
    assert_eq!(seen.len(), 2 * PUBLISHES);
    let client_mean = seen.iter().sum::<f64>() / seen.len() as f64;
    let expected = (2 * PUBLISHES) as f64;
    let text = wait_for("every report", || async {
        let text = scrape(&hub).await;
        (sample(&text, "sorcha_peer_propagation_seconds_count") == Some(expected)).then_some(text)
    })
    .await;
    let hub_mean = sample(&text, "sorcha_peer_propagation_seconds_sum").unwrap() / expected;
    // Committed before it is acknowledged, reported after it is applied: not below the
    // clients' figure (but for clock reading), not above it by more than the report period
    // (these peers heartbeat every 100 ms) and the heartbeat's trip, with room for a loaded
    // machine; less than the 500 ms between publications, which a figure measured from
    // anything but each entry's commit would be off by.
    assert!(
        hub_mean >= client_mean - 0.05 && hub_mean <= client_mean + 0.4,
        "hub mean {hub_mean:.3} s, clients' mean {client_mean:.3} s"
    );
    for peer in peers {
        peer.stop().await;
    }
    hub.stop().await;
}

/// `sorcha_peer_connect_seconds` on a peer: one sample per session it opens, from its first
/// attempt (at start, or after its session ended) to the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_times_each_connect() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = peer_config(dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(dir, cfg).await;
    let connects = || async {
        let text = scrape(&peer).await;
        let count = sample(&text, "sorcha_peer_connect_seconds_count");
        (count, sample(&text, "sorcha_peer_connect_seconds_sum"))
    };
    let (_, first) = wait_for("the first session", || async {
        let (count, sum) = connects().await;
        (count == Some(1.0)).then_some((count, sum))
    })
    .await;
    assert!(
        first.unwrap() < crate::support::WAIT.as_secs_f64(),
        "{first:?}"
    );
    let r = peer
        .http
        .post(peer.url("/api/v1/connection/reconnect"))
        .bearer_auth(crate::support::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("the second session", || async {
        (connects().await.0 == Some(2.0)).then_some(())
    })
    .await;
    peer.stop().await;
    hub.stop().await;
}
