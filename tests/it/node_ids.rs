//! One node-id rule (`^[A-Za-z0-9._-]{1,64}$`) for node ids and peer ids: dotted ids and dotted
//! hostname defaults connect, an explicit id that breaks the rule stops start-up, and a peer
//! that every hub refuses for good raises one alert naming why.

use crate::support::{TestHub, WAIT, config, peer_config, wait_for};
use serde_json::{Value, json};
use sorcha_peer::config::{PeerTokenConfig, Secret};

async fn wait_connected(peer: &TestHub) -> Value {
    wait_for("the peer connected", || async {
        let c = crate::support::get_json(peer.addr(), "/api/v1/connection").await;
        (c["state"] == "Connected").then_some(c)
    })
    .await
}

#[tokio::test]
async fn dotted_node_ids_and_hostname_defaults_connect() {
    let hub = TestHub::start().await;
    hub.publish("for-dots", json!({})).await;
    let dotted = TestHub::peer_of(vec![hub.url("")], |c| {
        c.node_id = Some("peer.eu-1.example".into());
    })
    .await;
    wait_connected(&dotted).await;
    let session = hub
        .node
        .state
        .hub
        .as_ref()
        .unwrap()
        .session("peer.eu-1.example");
    assert!(session.is_some(), "the hub knows the dotted peer");

    // No node id: the hostname (with its domain) is the id; characters outside the rule
    // become '-'.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), vec![hub.url("")]);
    cfg.node_id = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = sorcha_peer::app::start_with_hostname(cfg, listener, "box_7 of.eu-1.example.com")
        .await
        .unwrap();
    let from_host = TestHub {
        node,
        dir,
        http: crate::support::http_client(),
    };
    let c = wait_connected(&from_host).await;
    assert_eq!(c["hubs"][0]["lastError"], Value::Null);
    let (_, me) = from_host.get("/api/v1/node").await;
    assert_eq!(me["nodeId"], "box_7-of.eu-1.example.com");
    assert!(
        hub.node
            .state
            .hub
            .as_ref()
            .unwrap()
            .session("box_7-of.eu-1.example.com")
            .is_some()
    );
}

#[tokio::test]
async fn an_id_that_breaks_the_rule_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["peer one", "", &"p".repeat(65), "../etc"] {
        let out = tokio::process::Command::new(crate::support::binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--node-id", bad])
            .output();
        let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} must not start");
        assert!(
            stderr.contains("nodeId")
                && stderr.contains("1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"),
            "{bad:?}: {stderr}"
        );
    }
    // Configured in code, the node refuses it too.
    let mut cfg = config(dir.path());
    cfg.node_id = Some("peer one".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = sorcha_peer::app::start_with_hostname(cfg, listener, "h").await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("nodeId \"peer one\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_every_hub_refuses_raises_one_alert_naming_why() {
    let webhook = crate::support::alert_webhook().await;
    let guarded = || {
        TestHub::configured(|c| {
            c.hub.peer_tokens = vec![PeerTokenConfig {
                peer_id: "peer-1".into(),
                token: Secret("the-right-token-0123456789".into()),
            }];
        })
    };
    let (a, b) = (guarded().await, guarded().await);
    let peer = TestHub::peer_of(vec![a.url(""), b.url("")], |c| {
        c.peer.token = Some(Secret("a-wrong-token-0123456789".into()));
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    let refused = |r: &wiremock::Request| {
        serde_json::from_slice::<Value>(&r.body)
            .ok()
            .filter(|b| b["event"] == "peer.refused")
    };
    let alert = wait_for("the refusal alert", || async {
        webhook
            .received_requests()
            .await
            .unwrap()
            .iter()
            .find_map(refused)
    })
    .await;
    let message = alert["message"].as_str().unwrap();
    assert!(message.contains("Unauthenticated"), "{message}");
    assert!(
        message.contains(&a.url("")) && message.contains(&b.url("")),
        "{message}"
    );
    // Attempts go on (backoff), the alert is not repeated.
    wait_for("more attempts", || async {
        let c = crate::support::get_json(peer.addr(), "/api/v1/connection").await;
        (c["hubs"][0]["failedAttempts"].as_u64() >= Some(4)).then_some(())
    })
    .await;
    let count = webhook
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(refused)
        .count();
    assert_eq!(count, 1, "one alert, not one per attempt");
}
