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
    // Give the peer a heartbeat.
    wait_for("a heartbeat", || async {
        let text = scrape(&peer).await;
        (sample(&text, "sorcha_peer_heartbeats_sent_total{outcome=\"ok\"}").unwrap_or(0.0) >= 1.0)
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
