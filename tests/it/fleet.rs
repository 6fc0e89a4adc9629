//! The fleet at a glance (issue 32): three hubs on one MongoDB list every peer of every hub
//! once, in its state; a publication's propagation can be watched and awaited.

use crate::support::{
    ChildNode, TestHub, WAIT, fresh_database, mongo_hub_config, spawn_node_env, wait_for,
};
use serde_json::{Value, json};
use sorcha_peer::keys::SigningKey;
use std::time::{Duration, Instant};

pub const HUB_BEAT: Duration = Duration::from_millis(400);
const PEERS: usize = 9;

pub async fn mongo_hub(database: &str, id: &str) -> TestHub {
    mongo_hub_with(database, id, |_| {}).await
}

/// [`mongo_hub`] with its configuration changed by `adjust`.
pub async fn mongo_hub_with(
    database: &str,
    id: &str,
    adjust: impl FnOnce(&mut sorcha_peer::config::Config),
) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mongo_hub_config(dir.path(), database);
    cfg.role = sorcha_peer::config::Role::Hub;
    cfg.node_id = Some(id.into());
    cfg.hub.heartbeat_interval = HUB_BEAT;
    cfg.hub.session_timeout = Duration::from_secs(3);
    // A hub silent for the session timeout and grace (5 s) is gone from the others' views.
    cfg.hub.session_grace = Duration::from_secs(2);
    cfg.hub.fleet_flush_interval = Duration::from_millis(100);
    adjust(&mut cfg);
    TestHub::start_with(dir, cfg).await
}

/// A peer process of `hubs` (in this order), heartbeating at the hubs' pace.
async fn peer_process(dir: &std::path::Path, id: &str, hubs: &[String]) -> ChildNode {
    let mut args = vec!["--role", "peer", "--node-id", id];
    for hub in hubs {
        args.extend(["--hub", hub.as_str()]);
    }
    let beat = humantime::format_duration(HUB_BEAT).to_string();
    spawn_node_env(
        dir,
        &args,
        &[
            ("SORCHA_PEER__HEARTBEAT_INTERVAL", &beat),
            ("SORCHA_PEER__HEARTBEAT_TIMEOUT", "1s"),
            ("SORCHA_PEER__BACKOFF_INITIAL", "50ms"),
            ("SORCHA_PEER__BACKOFF_MAX", "200ms"),
        ],
    )
    .await
}

/// The events of `GET …/entries/{version}/propagation` as a stream, until it ends (bounded).
async fn followed(hub: &TestHub, version: i64) -> Vec<(String, Value)> {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let response = hub
        .http
        .get(hub.url(&format!(
            "/api/v1/system-register/entries/{version}/propagation?waitFor=1&timeout=20s"
        )))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = response.bytes_stream().eventsource();
    tokio::time::timeout(WAIT, events.collect::<Vec<_>>())
        .await
        .expect("the stream ends within its timeout")
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.event, serde_json::from_str(&e.data).unwrap())
        })
        .collect()
}

pub async fn fleet(hub: &TestHub, query: &str) -> Value {
    let (status, body) = hub.get(&format!("/api/v1/fleet{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `peer id → (hub id, state)` of a fleet page.
pub fn listed(page: &Value) -> Vec<(String, String, String)> {
    page["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["peerId"].as_str().unwrap().to_owned(),
                p["hubId"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until every hub's view satisfies `check`.
async fn on_every_hub(hubs: &[TestHub], what: &str, check: impl Fn(&Value) -> bool) {
    wait_for(what, || async {
        for hub in hubs {
            if !check(&fleet(hub, "?limit=1000").await) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_list_every_peer_once_in_its_state() {
    let database = fresh_database("fleet");
    let mut hubs = Vec::new();
    for i in 0..3 {
        hubs.push(mongo_hub(&database, &format!("n{i}")).await);
    }
    let urls: Vec<String> = hubs.iter().map(|h| h.url("")).collect();
    let dirs: Vec<_> = (0..PEERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut peers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // Spread over the hubs: peer i starts at hub i mod 3.
        let order: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
        peers.push(peer_process(dir.path(), &format!("peer-{i}"), &order).await);
    }
    let expected_hub = |peer: &str| {
        let i: usize = peer.trim_start_matches("peer-").parse().unwrap();
        format!("n{}", i % 3)
    };

    // Every hub lists all nine, each on its own hub, synced.
    on_every_hub(&hubs, "all nine synced on their hubs", |page| {
        let peers = listed(page);
        peers.len() == PEERS
            && peers
                .iter()
                .all(|(p, h, s)| *h == expected_hub(p) && s == "synced")
    })
    .await;
    // The fleet record costs a write per flush, never one per heartbeat.
    let count =
        |text: &str, series: &str| crate::observability::sample(text, series).unwrap_or(0.0);
    let writes = "sorcha_peer_store_call_duration_seconds_count{operation=\"write_fleet\"}";
    let beats = "sorcha_peer_heartbeats_received_total";
    let before = hubs[0].metrics().await;
    let started = Instant::now();
    wait_for("thirty heartbeats on n0", || async {
        let now = hubs[0].metrics().await;
        (count(&now, beats) >= count(&before, beats) + 30.0).then_some(())
    })
    .await;
    let after = hubs[0].metrics().await;
    let flushes = started.elapsed().as_millis() as f64 / 100.0;
    let written = count(&after, writes) - count(&before, writes);
    assert!(
        written <= flushes + 2.0,
        "{written} fleet writes in {flushes} flush intervals and 30 heartbeats"
    );
    let page = fleet(&hubs[1], "").await;
    assert_eq!(page["summary"]["peers"], 9, "{page}");
    assert_eq!(page["summary"]["synced"], 9, "{page}");
    assert_eq!(page["hubs"].as_array().unwrap().len(), 3, "{page}");
    let first = &page["peers"][0];
    assert!(
        first["softwareVersion"]
            .as_str()
            .unwrap()
            .starts_with("sorcha-peer "),
        "{first}"
    );
    // Filters and pages.
    let n2 = fleet(&hubs[0], "?hub=n2&state=synced").await;
    assert_eq!(
        listed(&n2).iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["peer-2", "peer-5", "peer-8"]
    );
    let mut seen = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let page = fleet(&hubs[2], &query).await;
        seen.extend(listed(&page).into_iter().map(|p| p.0));
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=4&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), PEERS, "{seen:?}");
    let (status, body) = hubs[0].get("/api/v1/fleet?state=lost").await;
    assert_eq!(status, 400, "{body}");

    // A publication through one hub, awaited on another: complete once all nine hold it.
    let (status, published) = hubs[0]
        .publish("fleet-bp", json!({"title": "fleet", "steps": [1]}))
        .await;
    assert_eq!(status, 201, "{published}");
    let version = published["version"].as_i64().unwrap();
    let (status, reach) = hubs[1]
        .get(&format!(
            "/api/v1/system-register/entries/{version}/propagation?waitFor=1&timeout=20s"
        ))
        .await;
    assert_eq!(status, 200, "{reach}");
    assert_eq!(reach["complete"], true, "{reach}");
    assert_eq!(
        (reach["peers"].as_u64(), reach["applied"].as_u64()),
        (Some(9), Some(9))
    );
    assert_eq!(reach["ratio"], 1.0);
    // Peers check the hubs' checkpoints (keys pinned on first use) and report what the last
    // one they verified covers.
    on_every_hub(
        &hubs,
        "every peer's trusted checkpoint at the new version",
        |page| {
            page["peers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["trustedVersion"].as_i64() == Some(version))
        },
    )
    .await;

    // Followed as a stream on a third hub: progress events, then done once all nine hold it.
    let (status, second) = hubs[1]
        .publish("fleet-bp-2", json!({"title": "fleet", "steps": [2]}))
        .await;
    assert_eq!(status, 201, "{second}");
    let second = second["version"].as_i64().unwrap();
    let events = followed(&hubs[2], second).await;
    let (last_event, last) = events.last().unwrap();
    assert_eq!(last_event, "done", "{events:?}");
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["applied"], 9, "{last}");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|(e, _)| e == "progress"),
        "{events:?}"
    );

    // A killed peer turns stale on every hub's view.
    let killed_at = Instant::now();
    peers[4].child.start_kill().unwrap();
    on_every_hub(&hubs, "peer-4 stale everywhere", |page| {
        listed(page)
            .iter()
            .any(|(p, h, s)| p == "peer-4" && h == "n1" && s == "stale")
    })
    .await;
    let took = killed_at.elapsed();
    println!("peer-4 stale on every hub after {took:?} (heartbeat interval {HUB_BEAT:?})");
    assert!(
        took < 2 * HUB_BEAT + Duration::from_millis(1500),
        "two heartbeat intervals, plus flushes and scheduling (the session timeout, 3 s, is \
         not what made it stale): {took:?}"
    );

    // A hub that goes: its peers fail over and are listed once, on their new hub.
    let gone = hubs.pop().unwrap();
    gone.stop().await;
    let moved = |p: &str| ["peer-2", "peer-5", "peer-8"].contains(&p);
    // Each goes to its next hub, n0, unless n0 holds its fair share; then on to n1.
    on_every_hub(&hubs, "peers of n2 listed once, on a living hub", |page| {
        let peers = listed(page);
        peers.len() == PEERS
            && peers
                .iter()
                .filter(|(p, _, _)| moved(p))
                .all(|(_, h, s)| h != "n2" && s == "synced")
    })
    .await;

    // The hub that went is forgotten once silent for its expiry: the others delete it.
    on_every_hub(&hubs, "n2 gone from the fleet", |page| {
        page["hubs"].as_array().unwrap().len() == 2
    })
    .await;
    let db = mongodb::Client::with_uri_str(crate::support::mongodb_uri())
        .await
        .unwrap()
        .database(&database);
    use mongodb::bson::{Document, doc};
    use sorcha_peer::store::mongo::{FLEET_HUBS, FLEET_PEERS};
    wait_for(
        "n2's presence and records deleted from the store",
        || async {
            let presence = db
                .collection::<Document>(FLEET_HUBS)
                .count_documents(doc! { "_id": "n2" })
                .await
                .ok()?;
            let records = db
                .collection::<Document>(FLEET_PEERS)
                .count_documents(doc! { "hubId": "n2" })
                .await
                .ok()?;
            (presence == 0 && records == 0).then_some(())
        },
    )
    .await;
    let kept = db
        .collection::<Document>(FLEET_PEERS)
        .count_documents(doc! { "hubId": { "$in": ["n0", "n1"] } })
        .await
        .unwrap();
    assert!(kept >= 9, "the living hubs' records stay: {kept}");

    // A peer that refuses every hub's data (it trusts another key) is refused.
    let stranger = SigningKey::generate("n0").unwrap();
    let refusing = TestHub::peer_of(vec![urls[0].clone()], |c| {
        c.node_id = Some("peer-refusing".into());
        c.peer.trusted_hub_keys = vec![stranger.verifier().clone()];
    })
    .await;
    on_every_hub(&hubs, "peer-refusing refused", |page| {
        page["peers"].as_array().unwrap().iter().any(|p| {
            p["peerId"] == "peer-refusing"
                && p["state"] == "refused"
                && p["refusal"]
                    .as_str()
                    .is_some_and(|r| r.contains("refuses hub n0"))
        })
    })
    .await;
    drop(refusing);
    let page = fleet(&hubs[0], "").await;
    assert_eq!(page["summary"]["refused"], 1, "{page}");
    assert_eq!(page["summary"]["stale"], 1, "{page}");

    // The gauges say the same.
    let metrics = hubs[0].metrics().await;
    assert!(
        metrics.contains("sorcha_peer_fleet_peers{hub=\"n0\",state=\"stale\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sorcha_peer_fleet_current_ratio{hub=\"n0\"}"),
        "{metrics}"
    );
    let _ = WAIT;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_hub_keeps_its_own_fleet_and_a_peer_that_leaves_is_disconnected() {
    let hub = TestHub::configured(|c| {
        c.role = sorcha_peer::config::Role::Hub;
        c.hub.fleet_flush_interval = Duration::from_millis(50);
    })
    .await;
    let peer = TestHub::peer_of(vec![hub.url("")], |_| {}).await;
    wait_for("the peer synced", || async {
        let page = fleet(&hub, "").await;
        (listed(&page) == [("peer-1".into(), "test-host".into(), "synced".into())]).then_some(())
    })
    .await;
    peer.stop().await;
    wait_for("the peer disconnected", || async {
        let page = fleet(&hub, "").await;
        (listed(&page) == [("peer-1".into(), "test-host".into(), "disconnected".into())])
            .then_some(())
    })
    .await;
    let page = fleet(&hub, "").await;
    assert_eq!(
        page["summary"]["currentRatio"], 1.0,
        "those that left are not counted"
    );
    // Not a hub: 404.
    let lone = TestHub::peer_of(vec![hub.url("")], |c| c.node_id = Some("peer-2".into())).await;
    assert_eq!(lone.get("/api/v1/fleet").await.0, 404);
    assert_eq!(
        lone.get("/api/v1/system-register/entries/1/propagation")
            .await
            .0,
        404
    );
    // A version the store does not hold: 404 at once, waiting or not; a bad wait: 400.
    let started = Instant::now();
    assert_eq!(
        hub.get("/api/v1/system-register/entries/99/propagation?waitFor=1&timeout=20s")
            .await
            .0,
        404
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not waited for"
    );
    let streamed = hub
        .http
        .get(hub.url("/api/v1/system-register/entries/99/propagation"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        streamed.status(),
        404,
        "no stream for a version the store lacks"
    );
    assert_eq!(
        hub.get("/api/v1/system-register/entries/99/propagation")
            .await
            .0,
        404
    );
    assert_eq!(
        hub.get("/api/v1/system-register/entries/1/propagation?waitFor=2")
            .await
            .0,
        400
    );
    assert_eq!(
        hub.get("/api/v1/system-register/entries/1/propagation?waitFor=1&timeout=10")
            .await
            .0,
        400,
        "a timeout needs its unit"
    );
    // A timeout alone waits for every peer; past 5 minutes it is cut to 5.
    let (status, reach) = hub
        .get("/api/v1/system-register/entries/1/propagation?timeout=999999m")
        .await;
    assert_eq!(status, 200, "{reach}");
}

async fn cli(hub: &TestHub, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(crate::support::binary())
        .args(args)
        .env("SORCHA_SERVER", hub.url(""))
        .env("SORCHA_TOKEN", crate::support::ADMIN)
        .output()
        .await
        .unwrap()
}

pub fn signal(child: &ChildNode, signal: &str) {
    let pid = child.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_waits_for_the_fleet_and_names_a_frozen_peer() {
    let hub = TestHub::configured(|c| {
        c.role = sorcha_peer::config::Role::Hub;
        c.node_id = Some("n0".into());
        c.hub.heartbeat_interval = HUB_BEAT;
        c.hub.fleet_flush_interval = Duration::from_millis(50);
    })
    .await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut peers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        peers.push(peer_process(dir.path(), &format!("peer-{i}"), &[hub.url("")]).await);
    }
    wait_for("both peers synced", || async {
        let page = fleet(&hub, "").await;
        (page["summary"]["synced"] == 2).then_some(())
    })
    .await;
    let doc = hub.dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"title": "Fleet", "steps": [1]}"#).unwrap();
    let doc = doc.to_str().unwrap().to_owned();

    // Every peer applies it: the command returns and says so.
    let out = cli(
        &hub,
        &["publish", &doc, "--id", "fleet-wait", "--wait", "100%"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("published fleet-wait at version 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("v2 held by 2/2 peers (100.0 %)"),
        "{stdout}"
    );

    // The listing.
    let out = cli(&hub, &["fleet"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("2 peers on 1 hub(s), head v2: 2 synced"),
        "{stdout}"
    );
    assert!(
        stdout.contains("peer-1") && stdout.contains("n0"),
        "{stdout}"
    );
    let out = cli(&hub, &["fleet", "--output", "json", "--state", "synced"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["peers"].as_array().unwrap().len(), 2, "{listed}");

    // One peer frozen: the wait times out, exits 3 and names it.
    signal(&peers[1], "-STOP");
    let started = Instant::now();
    let out = cli(
        &hub,
        &[
            "deprecate",
            "fleet-wait",
            "--wait",
            "100%",
            "--wait-timeout",
            "2s",
        ],
    )
    .await;
    signal(&peers[1], "-CONT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("held by 1/2 peers") && stderr.contains("pending: peer-1"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by --wait-timeout"
    );
    // Bad shares are refused before anything is written.
    let out = cli(&hub, &["deprecate", "fleet-wait", "--wait", "120%"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a share of the fleet"));
    let _ = WAIT;
}
