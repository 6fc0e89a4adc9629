//! Relays: peers that serve peers from their replica (`peer.serveDownstream`), handing on the
//! hubs' signed checkpoints so a downstream peer checks a relay exactly as it checks a hub.

use crate::support::{
    TestHub, alert_webhook, alerts_of, checkpoint_refused, config, get_json, peer_config, wait_for,
};
use serde_json::json;
use sorcha_peer::keys::{SigningKey, VerifierKey};
use sorcha_peer::register::checkpoint_note;
use std::time::Duration;

async fn head_of(node: &TestHub) -> i64 {
    get_json(node.addr(), "/api/v1/system-register").await["headVersion"]
        .as_i64()
        .unwrap_or(0)
}

async fn wait_head(node: &TestHub, label: &str, version: i64) {
    wait_for(label, || async {
        (head_of(node).await == version).then_some(())
    })
    .await;
}

/// A hub holding `n` small publications (`{prefix}-0`, …), and its checkpoint key.
async fn hub_with(n: usize, prefix: &str) -> (TestHub, VerifierKey) {
    let hub = TestHub::start().await;
    for i in 0..n {
        let (status, e) = hub.publish(&format!("{prefix}-{i}"), json!({"i": i})).await;
        assert_eq!(status, 201, "{e}");
    }
    let (_, node) = hub.get("/api/v1/node").await;
    let key = VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();
    (hub, key)
}

/// Hub → relay → downstream peer, all trusting only the hub's key: the downstream peer full
/// syncs from the relay in several steps (a checkpoint the relay kept at each of its hub's page
/// ends), follows new publications pushed through the relay, and ends holding the hub's own
/// signed checkpoint of the head. A downstream peer trusting another key applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_downstream_peers_under_the_hubs_checkpoints() {
    // Small pages: the hub's sync of 60 8 KiB documents takes several steps, more than a
    // downstream peer may stage without a checkpoint (4 pages).
    let hub = TestHub::configured(|c| c.limits.max_page_bytes = 64 * 1024).await;
    for i in 0..60 {
        let (status, e) = hub
            .publish(
                &format!("r-{i}"),
                json!({"i": i, "pad": "x".repeat(8 * 1024)}),
            )
            .await;
        assert_eq!(status, 201, "{e}");
    }
    let (_, node) = hub.get("/api/v1/node").await;
    let key = VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();

    let relay = TestHub::peer_of(vec![hub.url("")], |c| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
        c.peer.trusted_hub_keys = vec![key.clone()];
    })
    .await;
    wait_head(&relay, "the relay to replicate", 61).await;
    let downstream = TestHub::peer_of(vec![relay.url("")], |c| {
        c.node_id = Some("down-1".into());
        c.peer.trusted_hub_keys = vec![key.clone()];
        // The relay's pages may be larger than its hub's: what the downstream stages
        // between two checkpoints is still one hub page.
        c.limits.max_page_bytes = 64 * 1024;
    })
    .await;
    wait_head(
        &downstream,
        "the downstream peer to replicate via the relay",
        61,
    )
    .await;
    let (_, connection) = downstream.get("/api/v1/connection").await;
    assert_eq!(connection["state"], "Connected", "{connection}");
    assert_eq!(
        connection["currentHub"],
        relay.url(""),
        "the downstream peer's hub is the relay: {connection}"
    );

    // New publications reach the downstream peer through the relay.
    for i in 60..63 {
        let (status, e) = hub.publish(&format!("r-{i}"), json!({"i": i})).await;
        assert_eq!(status, 201, "{e}");
    }
    wait_head(
        &downstream,
        "the downstream peer to follow pushes via the relay",
        64,
    )
    .await;
    let response = reqwest::get(downstream.url("/api/v1/system-register/checkpoint"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let note = response.text().await.unwrap();
    let vouched = checkpoint_note::open(&note, std::slice::from_ref(&key))
        .expect("the downstream peer's checkpoint is the hub's own, under the hub's key");
    assert_eq!(vouched.checkpoint.version, 64);

    // The hub's fleet lists the downstream peer via the relay, and counts it in how far a
    // publication has reached (what `publish --wait 100%` waits for).
    let fleet = wait_for(
        "the hub's fleet to list the downstream peer at 64",
        || async {
            let (_, fleet) = hub.get("/api/v1/fleet").await;
            let down = fleet["peers"]
                .as_array()?
                .iter()
                .find(|p| p["peerId"] == "down-1")?
                .clone();
            (down["appliedVersion"] == 64).then_some(fleet)
        },
    )
    .await;
    let peers = fleet["peers"].as_array().unwrap();
    let of = |id: &str| peers.iter().find(|p| p["peerId"] == id).unwrap();
    assert_eq!(of("down-1")["via"], json!(["relay-1"]), "{fleet}");
    assert_eq!(of("down-1")["hubId"], node["nodeId"], "{fleet}");
    assert_eq!(of("down-1")["state"], "synced", "{fleet}");
    assert_eq!(of("relay-1")["via"], json!([]), "{fleet}");
    let (_, reach) = hub
        .get("/api/v1/system-register/entries/64/propagation")
        .await;
    assert_eq!(
        reach["peers"], 2,
        "the relay and its downstream peer: {reach}"
    );
    assert_eq!(reach["complete"], true, "{reach}");

    // A downstream peer trusting another key follows nothing the relay hands on.
    let stranger = SigningKey::generate(key.name()).unwrap();
    let wrong = TestHub::peer_of(vec![relay.url("")], |c| {
        c.node_id = Some("down-2".into());
        c.peer.trusted_hub_keys = vec![stranger.verifier().clone()];
    })
    .await;
    checkpoint_refused(&wrong, 0, "not signed by a trusted key").await;
    assert_eq!(head_of(&wrong).await, 0, "nothing applied");
    for node in [wrong, downstream, relay, hub] {
        node.stop().await;
    }
}

/// Relay B serves from relay A; when A's hub goes, A fails over to its second hub, B: B
/// refuses it ("relay loop", A is on B's path to a hub) and A goes isolated rather than
/// replicate from its own downstream, while B stays connected to A and keeps reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_loop_is_refused_at_connect() {
    let hub = TestHub::start().await;
    let (status, e) = hub.publish("loop-1", json!({"n": 1})).await;
    assert_eq!(status, 201, "{e}");
    let relay = |id: &str| {
        let id = id.to_owned();
        move |c: &mut sorcha_peer::config::Config| {
            c.node_id = Some(id);
            c.peer.serve_downstream = true;
        }
    };
    let a = TestHub::peer_of(vec![hub.url("")], relay("relay-a")).await;
    let b = TestHub::peer_of(vec![a.url("")], relay("relay-b")).await;
    wait_head(&b, "relay B to replicate through relay A", 2).await;
    // A learns of B as a second hub.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), vec![hub.url(""), b.url("")]);
    relay("relay-a")(&mut cfg);
    let a = a.restart_with(cfg).await;
    wait_for("relay A back on the hub and B back on A", || async {
        let (_, ca) = a.get("/api/v1/connection").await;
        let (_, cb) = b.get("/api/v1/connection").await;
        (ca["currentHub"] == hub.url("") && cb["state"] == "Connected").then_some(())
    })
    .await;

    hub.stop().await;
    let connection = wait_for("relay A to be refused by B as a loop", || async {
        let (_, c) = a.get("/api/v1/connection").await;
        let error = c["hubs"][1]["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        error.contains("relay loop").then_some(c)
    })
    .await;
    assert!(
        connection["sessionId"].is_null(),
        "no session with B: {connection}"
    );
    wait_for("relay A isolated", || async {
        let (_, c) = a.get("/api/v1/connection").await;
        (c["state"] == "Isolated").then_some(())
    })
    .await;
    let (_, cb) = b.get("/api/v1/connection").await;
    assert_eq!(cb["state"], "Connected", "B still served by A: {cb}");
    assert_eq!(head_of(&b).await, 2);
    b.stop().await;
    a.stop().await;
}

/// Kill the hub: the relay goes `Isolated` and keeps serving; its downstream peer stays
/// `Connected`, keeps reading, and raises `peer.stale_source` once the newest checkpoint the
/// relay hands on is older than `peer.maxCheckpointAge` (while the hub was up the relay handed
/// on fresh ones, re-signed by the hub at least every `hub.checkpointRefresh`). Start the hub
/// again: the relay catches up and so does the downstream peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_relay_keeps_serving_and_its_downstream_sees_it_go_stale() {
    let hub_config = |c: &mut sorcha_peer::config::Config| {
        c.hub.checkpoint_refresh = Duration::from_millis(200);
    };
    let hub = TestHub::configured(hub_config).await;
    let (status, e) = hub.publish("stale-1", json!({"n": 1})).await;
    assert_eq!(status, 201, "{e}");
    let relay = TestHub::peer_of(vec![hub.url("")], |c| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
    })
    .await;
    let webhook = alert_webhook().await;
    let downstream = TestHub::peer_of(vec![relay.url("")], |c| {
        c.node_id = Some("down-1".into());
        c.peer.max_checkpoint_age = Duration::from_secs(2);
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    wait_head(&downstream, "the downstream peer to replicate", 2).await;
    // Healthy: several seconds of fresh checkpoints, no alert; the relay says it is connected.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, c) = downstream.get("/api/v1/connection").await;
    assert_eq!(c["hubs"][0]["relayState"], "Connected", "{c}");
    assert!(
        alerts_of(&webhook, "peer.stale_source").await.is_empty(),
        "a relay handing on fresh checkpoints is not stale"
    );

    let hub_addr = hub.addr();
    let hub_dir = hub.stop().await;
    wait_for("the relay to go isolated", || async {
        let (_, c) = relay.get("/api/v1/connection").await;
        (c["state"] == "Isolated").then_some(())
    })
    .await;
    let alert = wait_for("peer.stale_source from the downstream peer", || async {
        alerts_of(&webhook, "peer.stale_source")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        alert["message"].as_str().unwrap().contains(&relay.url("")),
        "{alert}"
    );
    let c = wait_for("the downstream peer to see its relay isolated", || async {
        let (_, c) = downstream.get("/api/v1/connection").await;
        (c["hubs"][0]["relayState"] == "Isolated").then_some(c)
    })
    .await;
    assert_eq!(c["state"], "Connected", "still served by the relay: {c}");
    let (status, _) = downstream
        .get("/api/v1/system-register/blueprints/stale-1")
        .await;
    assert_eq!(status, 200, "reads go on");

    let mut cfg = config(hub_dir.path());
    hub_config(&mut cfg);
    let hub = TestHub::start_at(hub_dir, cfg, hub_addr).await;
    let (status, e) = hub.publish("stale-2", json!({"n": 2})).await;
    assert_eq!(status, 201, "{e}");
    wait_head(
        &downstream,
        "the downstream peer to catch up after the hub returns",
        3,
    )
    .await;
    wait_for(
        "the relay connected again, as its downstream peer sees it",
        || async {
            let (_, c) = downstream.get("/api/v1/connection").await;
            (c["hubs"][0]["relayState"] == "Connected").then_some(())
        },
    )
    .await;
    assert_eq!(
        alerts_of(&webhook, "peer.stale_source").await.len(),
        1,
        "raised once"
    );
    for node in [downstream, relay, hub] {
        node.stop().await;
    }
}

/// A relay whose SQLite file was edited — a document swapped and every later entry re-chained,
/// as someone with write access to it could — is refused by a downstream peer that trusts the
/// hub's key: the checkpoints the relay hands on are the hub's, and do not cover the forged
/// chain. Nothing forged is applied; the refusal says which checkpoint and which entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_a_forged_history_is_refused() {
    let (hub, key) = hub_with(5, "f").await;
    let relay_config = |c: &mut sorcha_peer::config::Config| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
    };
    let relay = TestHub::peer_of(vec![hub.url("")], relay_config).await;
    wait_head(&relay, "the relay to replicate", 6).await;
    let relay_addr = relay.addr();
    let relay_dir = relay.stop().await;
    hub.stop().await;
    crate::signatures::forge(relay_dir.path(), 4, br#"{"i":"forged"}"#).await;

    // The relay comes back on its edited file, its hub gone: it serves what it holds.
    let mut cfg = peer_config(relay_dir.path(), vec!["http://127.0.0.1:9".into()]);
    relay_config(&mut cfg);
    let relay = TestHub::start_at(relay_dir, cfg, relay_addr).await;
    let downstream = TestHub::peer_of(vec![relay.url("")], |c| {
        c.node_id = Some("down-1".into());
        c.peer.trusted_hub_keys = vec![key.clone()];
    })
    .await;
    let c = checkpoint_refused(&downstream, 0, "checkpoint covers version").await;
    assert!(
        head_of(&downstream).await < 4,
        "nothing forged applied: {c}"
    );
    let (status, _) = downstream
        .get("/api/v1/system-register/blueprints/f-2")
        .await;
    assert_eq!(status, 404, "f-2 (version 4) is not on the downstream peer");
    downstream.stop().await;
    relay.stop().await;
}

/// Environment of the processes below: short heartbeats and flushes, quick retries.
const PROCESS_ENV: [(&str, &str); 7] = [
    ("SORCHA_HUB__HEARTBEAT_INTERVAL", "400ms"),
    ("SORCHA_HUB__RATE_LIMITS__HEARTBEAT__EVERY", "200ms"),
    ("SORCHA_HUB__FLEET_FLUSH_INTERVAL", "200ms"),
    ("SORCHA_PEER__HEARTBEAT_INTERVAL", "400ms"),
    ("SORCHA_PEER__HEARTBEAT_TIMEOUT", "1s"),
    ("SORCHA_PEER__BACKOFF_INITIAL", "50ms"),
    ("SORCHA_PEER__BACKOFF_MAX", "200ms"),
];

async fn register_of(addr: std::net::SocketAddr) -> serde_json::Value {
    get_json(addr, "/api/v1/system-register").await
}

/// Real processes: a hub, a relay, three peers below the relay (one on a MongoDB replica), all
/// trusting only the hub's key. Every peer full syncs through the relay and follows pushes;
/// each ends on the hub's head and chain hash (so holds every acknowledged version as the hub
/// does); a downstream peer's event stream carries every version once, in order; the hub's
/// fleet lists the three via the relay, and `publish --wait 100%` counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_a_relay_and_three_peers_in_processes() {
    use crate::support::{ADMIN, spawn_node_env};
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = spawn_node_env(
        dirs[0].path(),
        &["--role", "hub", "--node-id", "n0"],
        &PROCESS_ENV,
    )
    .await;
    let hub_url = format!("http://{}", hub.addr);
    let http = reqwest::Client::new();
    for i in 0..20 {
        let (status, e) =
            crate::support::publish(&http, hub.addr, ADMIN, &format!("p-{i}"), json!({"i": i}))
                .await;
        assert_eq!(status, 201, "{e}");
    }
    let key = get_json(hub.addr, "/api/v1/node").await["checkpointKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let relay = spawn_node_env(
        dirs[1].path(),
        &[
            "--role",
            "peer",
            "--node-id",
            "relay-1",
            "--hub",
            &hub_url,
            "--serve-downstream",
            "--trust-hub-key",
            &key,
        ],
        &PROCESS_ENV,
    )
    .await;
    let relay_url = format!("http://{}", relay.addr);
    let uri = crate::support::mongodb_uri();
    let database = crate::support::fresh_database("relay_peer");
    let mut env = PROCESS_ENV.to_vec();
    env.push(("SORCHA_MONGO__DATABASE", &database));
    let mut peers = Vec::new();
    for (i, dir) in dirs[2..].iter().enumerate() {
        let id = format!("down-{i}");
        let mut args = vec![
            "--role",
            "peer",
            "--node-id",
            &id,
            "--hub",
            &relay_url,
            "--trust-hub-key",
            &key,
        ];
        if i == 2 {
            args.extend(["--store", &uri]);
        }
        peers.push(spawn_node_env(dir.path(), &args, &env).await);
    }
    let mut feed = crate::support::sse(peers[0].addr, "?since=0", None).await;
    let all_at = |version: i64| {
        let addrs: Vec<_> = peers.iter().map(|p| p.addr).chain([relay.addr]).collect();
        async move {
            for addr in addrs {
                if register_of(addr).await["headVersion"] != version {
                    return None;
                }
            }
            Some(())
        }
    };
    wait_for("every peer at 21 through the relay", || all_at(21)).await;
    for i in 20..30 {
        let (status, e) =
            crate::support::publish(&http, hub.addr, ADMIN, &format!("p-{i}"), json!({"i": i}))
                .await;
        assert_eq!(status, 201, "{e}");
    }
    wait_for("every peer at 31 by pushes through the relay", || {
        all_at(31)
    })
    .await;
    let head = register_of(hub.addr).await["headHash"].clone();
    for peer in &peers {
        assert_eq!(
            register_of(peer.addr).await["headHash"],
            head,
            "the hub's chain, every version"
        );
    }
    let versions: Vec<i64> = crate::support::take_events(&mut feed, 31)
        .await
        .iter()
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert_eq!(versions, (1..=31).collect::<Vec<_>>(), "gap-free, in order");

    let fleet = wait_for(
        "the hub's fleet to list the three via the relay",
        || async {
            let fleet = get_json(hub.addr, "/api/v1/fleet").await;
            let below = fleet["peers"]
                .as_array()?
                .iter()
                .filter(|p| p["via"] == json!(["relay-1"]) && p["appliedVersion"] == 31)
                .count();
            (below == 3).then_some(fleet)
        },
    )
    .await;
    assert_eq!(
        fleet["summary"]["peers"], 4,
        "the relay and its three: {fleet}"
    );

    let doc = dirs[0].path().join("doc.json");
    std::fs::write(&doc, r#"{"title": "Through the relay"}"#).unwrap();
    let out = tokio::process::Command::new(crate::support::binary())
        .args([
            "publish",
            doc.to_str().unwrap(),
            "--id",
            "relayed",
            "--wait",
            "100%",
        ])
        .env("SORCHA_SERVER", &hub_url)
        .env("SORCHA_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("v32 held by 4/4 peers (100.0 %)"),
        "{stdout}"
    );
    drop(peers);
    drop(relay);
    drop(hub);
}

/// A client generated from the contract files (ours: tonic's, from `proto/`) syncs from a
/// relay as from a hub: a session, a full sync of every entry, and the hub's own checkpoint —
/// under the hub's key, with the relay's path in the connect answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_client_syncs_from_a_relay() {
    use futures::StreamExt;
    use sorcha_peer::link::HubLink;
    let (hub, key) = hub_with(5, "c").await;
    let relay = TestHub::peer_of(vec![hub.url("")], |c| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
    })
    .await;
    wait_head(&relay, "the relay to replicate", 6).await;
    let client = sorcha_peer::hub_client::HubClient::connect(&relay.url(""), crate::support::WAIT)
        .await
        .unwrap();
    let me = crate::support::pid("contract-client");
    let grant = client
        .open_session(&sorcha_peer::protocol::ConnectRequest {
            peer: sorcha_peer::protocol::PeerDescription {
                node_type: "Peer".into(),
                ..Default::default()
            },
            ..sorcha_peer::protocol::ConnectRequest::new(me.clone())
        })
        .await
        .unwrap();
    assert_eq!(grant.hub_id, "relay-1");
    assert_eq!(grant.relay_path, vec!["relay-1".to_owned()]);
    assert_eq!(
        grant.checkpoint_key.as_deref(),
        Some(key.to_string().as_str())
    );
    let synced: Vec<_> = client
        .full_sync(&me, &grant.session_id, None)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(synced.len(), 6);
    let last = synced.last().unwrap();
    let note = last.checkpoint.as_deref().expect("the head's checkpoint");
    let opened = checkpoint_note::open(note, std::slice::from_ref(&key)).unwrap();
    assert_eq!(
        (
            opened.checkpoint.version,
            opened.checkpoint.chain_hash.as_str()
        ),
        (6, last.entry.chain_hash.as_str())
    );
    relay.stop().await;
    hub.stop().await;
}

/// A downstream peer lists a relay and then the hub, like any two hubs: when the relay goes,
/// it fails over to the hub and continues from its replica (an incremental
/// sync, never a full one), and the hub's fleet lists it directly from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_fails_over_from_a_relay_to_the_hub() {
    let (hub, _) = hub_with(3, "m").await;
    let relay = TestHub::peer_of(vec![hub.url("")], |c| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
    })
    .await;
    wait_head(&relay, "the relay to replicate", 4).await;
    let downstream = TestHub::peer_of(vec![relay.url(""), hub.url("")], |c| {
        c.node_id = Some("down-1".into());
    })
    .await;
    wait_head(
        &downstream,
        "the downstream peer to replicate via the relay",
        4,
    )
    .await;
    let full_before = crate::support::metric_sample(
        downstream.addr(),
        "sorcha_peer_sync_duration_seconds_count{kind=\"full\"}",
    )
    .await;
    relay.stop().await;
    let (status, e) = hub.publish("m-3", json!({"i": 3})).await;
    assert_eq!(status, 201, "{e}");
    wait_head(
        &downstream,
        "the downstream peer to fail over to the hub",
        5,
    )
    .await;
    let (_, c) = downstream.get("/api/v1/connection").await;
    assert_eq!(c["currentHub"], hub.url(""), "{c}");
    assert_eq!(
        crate::support::metric_sample(
            downstream.addr(),
            "sorcha_peer_sync_duration_seconds_count{kind=\"full\"}",
        )
        .await,
        full_before,
        "no second full sync"
    );
    let down = wait_for("the hub's fleet to list the peer directly", || async {
        let (_, fleet) = hub.get("/api/v1/fleet").await;
        fleet["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peerId"] == "down-1" && p["via"] == json!([]))
            .cloned()
    })
    .await;
    assert_eq!(down["appliedVersion"], 5, "{down}");
    downstream.stop().await;
    hub.stop().await;
}

/// Silent links on both sides of a relay (open, passing no byte): its hub's link goes silent —
/// the relay's heartbeats give the hub up and it goes isolated, its downstream peer staying
/// connected and seeing it so; then the downstream peer's own link to the relay goes silent —
/// its heartbeats give the relay up and it goes on to the hub it lists next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_links_around_a_relay_are_given_up_by_heartbeats() {
    use crate::support::PausableProxy;
    let (hub, _) = hub_with(2, "s").await;
    let to_hub = PausableProxy::start(hub.addr()).await;
    let relay = TestHub::peer_of(vec![format!("http://{}", to_hub.addr)], |c| {
        c.node_id = Some("relay-1".into());
        c.peer.serve_downstream = true;
    })
    .await;
    let to_relay = PausableProxy::start(relay.addr()).await;
    let via_relay = format!("http://{}", to_relay.addr);
    let downstream = TestHub::peer_of(vec![via_relay.clone(), hub.url("")], |c| {
        c.node_id = Some("down-1".into());
    })
    .await;
    wait_head(
        &downstream,
        "the downstream peer to replicate via the relay",
        3,
    )
    .await;

    to_hub.pause();
    let c = wait_for(
        "the relay isolated, as its downstream peer sees it",
        || async {
            let (_, c) = downstream.get("/api/v1/connection").await;
            (c["hubs"][0]["relayState"] == "Isolated").then_some(c)
        },
    )
    .await;
    assert_eq!(
        c["currentHub"],
        via_relay.as_str(),
        "still on the relay: {c}"
    );
    let (_, r) = relay.get("/api/v1/connection").await;
    assert!(gave_up_by_heartbeats(&r), "{r}");

    to_relay.pause();
    let c = wait_for("the downstream peer on the hub", || async {
        let (_, c) = downstream.get("/api/v1/connection").await;
        (c["state"] == "Connected" && c["currentHub"] == hub.url("")).then_some(c)
    })
    .await;
    assert!(gave_up_by_heartbeats(&c), "{c}");
    let (status, e) = hub.publish("s-2", json!({"i": 2})).await;
    assert_eq!(status, 201, "{e}");
    wait_head(&downstream, "the downstream peer to follow the hub", 4).await;
    to_hub.resume();
    to_relay.resume();
    downstream.stop().await;
    relay.stop().await;
    hub.stop().await;
}

/// A connection view whose attempts show a session given up by missed heartbeats (later
/// connect attempts overwrite `lastError`).
fn gave_up_by_heartbeats(c: &serde_json::Value) -> bool {
    c["attempts"].as_array().is_some_and(|attempts| {
        attempts.iter().any(|a| {
            a["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("heartbeats missed"))
        })
    })
}
