//! The peer role against real hubs on real sockets: replication, push, restart, failover,
//! isolation, backoff, hub-behind and forks, dropped heartbeats.

use crate::support::{PUBLISHER, TestHub, get_json, peer_config, sse, take_events, wait_for};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

async fn head(addr: SocketAddr) -> i64 {
    get_json(addr, "/api/v1/system-register").await["headVersion"]
        .as_i64()
        .unwrap_or(-1)
}

async fn wait_head(addr: SocketAddr, version: i64) {
    wait_for(&format!("head {version} on {addr}"), || async move {
        (head(addr).await == version).then_some(())
    })
    .await;
}

async fn connection(addr: SocketAddr) -> Value {
    get_json(addr, "/api/v1/connection").await
}

async fn start_peer(dir: tempfile::TempDir, hubs: Vec<String>) -> TestHub {
    let cfg = peer_config(dir.path(), hubs);
    TestHub::start_with(dir, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_replicates_follows_push_and_rebroadcasts() {
    let hub = TestHub::start().await;
    for i in 0..30 {
        hub.publish(&format!("bp-{i}"), json!({"title": format!("t{i}")}))
            .await;
    }
    let peer = start_peer(tempfile::tempdir().unwrap(), vec![hub.url("")]).await;
    wait_head(peer.addr(), 31).await;
    // The replica equals the hub's log, entry for entry.
    let ours = get_json(peer.addr(), "/api/v1/system-register/entries?limit=1000").await;
    let theirs = get_json(hub.addr(), "/api/v1/system-register/entries?limit=1000").await;
    assert_eq!(ours, theirs);
    assert_eq!(
        get_json(peer.addr(), "/api/v1/system-register/verify").await["ok"],
        true
    );
    let checkpoint = get_json(peer.addr(), "/api/v1/sync/checkpoint").await;
    assert_eq!(checkpoint["currentVersion"], 31);
    assert_eq!(checkpoint["hubId"], "test-host");
    let conn = connection(peer.addr()).await;
    assert_eq!(conn["state"], "Connected");
    assert_eq!(conn["currentHub"], hub.url("").as_str());

    // A publish on the hub reaches the peer by push (periodic sync is 10 minutes away) and the
    // peer's SSE clients see it.
    let mut events = sse(peer.addr(), "", None).await;
    let (status, _) = hub.publish("pushed", json!({"title": "pushed"})).await;
    assert_eq!(status, 201);
    let got = take_events(&mut events, 1).await;
    assert_eq!(got[0].id, "32");
    let data: Value = serde_json::from_str(&got[0].data).unwrap();
    assert_eq!(data["blueprintId"], "pushed");

    // Writes on a peer are refused and point at the hub.
    let r = peer
        .http
        .post(peer.url("/api/v1/system-register/blueprints"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"blueprintId": "nope", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.headers()["location"],
        format!("{}/api/v1/system-register/blueprints", hub.url("")).as_str()
    );
    // Admin sync on demand works; a publisher token is not enough.
    let r = peer
        .http
        .post(peer.url("/api/v1/sync?full=true"))
        .bearer_auth(PUBLISHER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = peer
        .http
        .post(peer.url("/api/v1/sync?full=true"))
        .bearer_auth(crate::support::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(
        (outcome["full"].as_bool(), outcome["applied"].as_i64()),
        (Some(true), Some(0))
    );
    // The hub sees the peer's session.
    let sessions = get_json(hub.addr(), "/api/v1/peers").await;
    assert_eq!(sessions["peers"][0]["peerId"], "peer-1");
    peer.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_resumes_incrementally() {
    let hub = TestHub::start().await;
    for i in 0..10 {
        hub.publish(&format!("r-{i}"), json!({})).await;
    }
    let peer = start_peer(tempfile::tempdir().unwrap(), vec![hub.url("")]).await;
    wait_head(peer.addr(), 11).await;
    let dir = peer.stop().await;
    // The hub saw the session end with a goodbye.
    wait_for("session closed", || async {
        get_json(hub.addr(), "/api/v1/peers").await["peers"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    for i in 10..15 {
        hub.publish(&format!("r-{i}"), json!({})).await;
    }
    let before = get_json(hub.addr(), "/api/v1/peers").await;
    let peer = start_peer(dir, vec![hub.url("")]).await;
    wait_head(peer.addr(), 16).await;
    let after = get_json(hub.addr(), "/api/v1/peers").await;
    assert_eq!(before["fullSyncs"], 1, "{before}");
    assert_eq!(after["fullSyncs"], 1, "no second full sync: {after}");
    assert!(
        after["incrementalSyncs"].as_i64().unwrap() > before["incrementalSyncs"].as_i64().unwrap()
    );
    assert_eq!(
        get_json(peer.addr(), "/api/v1/system-register/verify").await["ok"],
        true
    );
    assert_eq!(
        get_json(peer.addr(), "/api/v1/sync/checkpoint").await["currentVersion"],
        16
    );
    peer.stop().await;
    hub.stop().await;
}

/// Copies a stopped node's data dir (the register file; the WAL was folded in at close).
pub(crate) fn copy_dir(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(
        from.join("register.sqlite"),
        to.path().join("register.sqlite"),
    )
    .unwrap();
    to
}

pub(crate) async fn hub_on(dir: tempfile::TempDir, addr: Option<SocketAddr>) -> TestHub {
    let cfg = crate::support::config(dir.path());
    match addr {
        None => TestHub::start_with(dir, cfg).await,
        Some(addr) => {
            let listener = wait_for("port free again", || async move {
                tokio::net::TcpListener::bind(addr).await.ok()
            })
            .await;
            let node = sorcha_peer::app::start_with_hostname(cfg, listener, "test-host")
                .await
                .unwrap();
            TestHub {
                node,
                dir,
                http: reqwest::Client::new(),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_through_three_hubs_into_isolation_and_back() {
    let webhook = crate::support::alert_webhook().await;

    // One register, served by three hubs started from copies of it.
    let seed = TestHub::start().await;
    for i in 0..5 {
        seed.publish(&format!("f-{i}"), json!({})).await;
    }
    let seed_dir = seed.stop().await;
    let n0 = hub_on(copy_dir(seed_dir.path()), None).await;
    let n1 = hub_on(copy_dir(seed_dir.path()), None).await;
    let n2 = hub_on(copy_dir(seed_dir.path()), None).await;
    let urls = vec![n0.url(""), n1.url(""), n2.url("")];
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), urls.clone());
    cfg.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    let peer = TestHub::start_with(dir, cfg).await;
    wait_head(peer.addr(), 6).await;

    let on_hub = |url: String| {
        let addr = peer.addr();
        async move {
            wait_for(&format!("connected to {url}"), || {
                let url = url.clone();
                async move {
                    let c = connection(addr).await;
                    (c["state"] == "Connected" && c["currentHub"] == url.as_str()).then_some(c)
                }
            })
            .await
        }
    };
    on_hub(urls[0].clone()).await;
    let n0_addr = n0.addr();
    let n0_dir = n0.stop().await;
    on_hub(urls[1].clone()).await;
    n1.stop().await;
    let c = on_hub(urls[2].clone()).await;
    assert!(c["failovers"].as_i64().unwrap() >= 2, "{c}");
    n2.stop().await;
    wait_for("isolated", || async {
        (connection(peer.addr()).await["state"] == "Isolated").then_some(())
    })
    .await;
    // Isolated: still serving.
    assert_eq!(peer.get("/health").await.0, 200);
    let (status, bp) = peer.get("/api/v1/system-register/blueprints/f-3").await;
    assert_eq!((status, bp["blueprintId"].as_str()), (200, Some("f-3")));
    let alert = wait_for("isolation alert", || async {
        webhook
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find_map(|r| {
                let body: Value = serde_json::from_slice(&r.body).ok()?;
                (body["event"] == "peer.isolated").then_some(body)
            })
    })
    .await;
    assert_eq!(alert["nodeId"], "peer-1");

    // n0 returns on its address: the peer reconnects, leaves isolation, and follows it again.
    let n0 = hub_on(n0_dir, Some(n0_addr)).await;
    on_hub(urls[0].clone()).await;
    wait_for("reconnect alert", || async {
        webhook
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|r| {
                serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|b| b["event"] == "peer.reconnected")
            })
    })
    .await;
    let isolated_alerts = webhook
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["event"] == "peer.isolated")
        })
        .count();
    assert_eq!(isolated_alerts, 1, "one alert on entering isolation");
    n0.publish("after-isolation", json!({})).await;
    wait_head(peer.addr(), 7).await;
    peer.stop().await;
    n0.stop().await;
}

#[tokio::test]
async fn backoff_grows_per_hub_then_wraps_to_the_next() {
    // Two addresses nobody listens on.
    let dead: Vec<String> = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        vec![
            format!("http://{}", a.local_addr().unwrap()),
            format!("http://{}", b.local_addr().unwrap()),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), dead);
    cfg.peer.attempts_per_hub = 3;
    cfg.peer.backoff_initial = Duration::from_millis(20);
    cfg.peer.backoff_max = Duration::from_millis(50);
    let peer = TestHub::start_with(dir, cfg).await;
    let conn = wait_for("seven attempts", || async {
        let c = connection(peer.addr()).await;
        (c["attempts"].as_array().unwrap().len() >= 7).then_some(c)
    })
    .await;
    let attempts = conn["attempts"].as_array().unwrap();
    let hubs: Vec<i64> = attempts
        .iter()
        .take(7)
        .map(|a| a["hub"].as_i64().unwrap())
        .collect();
    assert_eq!(
        hubs,
        [0, 0, 0, 1, 1, 1, 0],
        "3 attempts per hub, then the next, wrapping"
    );
    let delays: Vec<i64> = attempts
        .iter()
        .take(6)
        .map(|a| a["delayMs"].as_i64().unwrap())
        .collect();
    // Per hub: no wait before the first attempt, then 20 ms and 40 ms, each up to 20 % shorter.
    for (i, (lo, hi)) in [(0, 0), (16, 20), (32, 40), (0, 0), (16, 20), (32, 40)]
        .into_iter()
        .enumerate()
    {
        assert!(
            (lo..=hi).contains(&delays[i]),
            "delay {i} = {} not in {lo}..={hi}: {delays:?}",
            delays[i]
        );
    }
    assert_eq!(conn["state"], "Isolated", "both hubs exhausted");
    assert_eq!(peer.get("/health").await.0, 200);
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_behind_is_not_followed_and_a_fork_is_left_for_the_next_hub() {
    // History: genesis + a0..a4 (versions 2..6) → snapshot "early"; then a5..a8 (7..10).
    let main_hub = TestHub::start().await;
    for i in 0..5 {
        main_hub.publish(&format!("a-{i}"), json!({})).await;
    }
    let main_dir = main_hub.stop().await;
    let early = copy_dir(main_dir.path());
    let fork_seed = copy_dir(main_dir.path());
    let main_hub = hub_on(main_dir, None).await;
    for i in 5..9 {
        main_hub.publish(&format!("a-{i}"), json!({})).await;
    }
    // The peer replicates the full history (head 10).
    let peer = start_peer(tempfile::tempdir().unwrap(), vec![main_hub.url("")]).await;
    wait_head(peer.addr(), 10).await;
    let peer_dir = peer.stop().await;

    // A hub that is behind (head 6): reported, not followed, no rollback.
    let behind = hub_on(early, None).await;
    let peer = start_peer(peer_dir, vec![behind.url("")]).await;
    let c = wait_for("hubBehind reported", || async {
        let c = connection(peer.addr()).await;
        (c["hubs"][0]["hubBehind"] == true).then_some(c)
    })
    .await;
    assert_eq!(c["hubs"][0]["hubVersion"], 6);
    assert_eq!(head(peer.addr()).await, 10, "no rollback");
    let peer_dir = peer.stop().await;
    behind.stop().await;

    // A forked hub (same first 6 entries, different 7..): divergence, then the next hub.
    let fork = hub_on(fork_seed, None).await;
    for i in 0..6 {
        fork.publish(&format!("b-{i}"), json!({"fork": true})).await;
    }
    let peer = start_peer(peer_dir, vec![fork.url(""), main_hub.url("")]).await;
    let c = wait_for("divergence reported and next hub used", || async {
        let c = connection(peer.addr()).await;
        (c["hubs"][0]["divergent"] == true
            && c["state"] == "Connected"
            && c["currentHub"] == main_hub.url("").as_str())
        .then_some(c)
    })
    .await;
    assert!(
        c["hubs"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("version 10"),
        "{c}"
    );
    main_hub.publish("after-fork", json!({})).await;
    wait_head(peer.addr(), 11).await;
    let replica = get_json(peer.addr(), "/api/v1/system-register/blueprints/b-0").await;
    assert_eq!(replica["status"], 404, "nothing of the fork was applied");
    peer.stop().await;
    fork.stop().await;
    main_hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_hub_means_a_warning_at_one_miss_and_failover_at_two() {
    let seed = TestHub::start().await;
    seed.publish("h-1", json!({})).await;
    let seed_dir = seed.stop().await;
    let n0 = hub_on(copy_dir(seed_dir.path()), None).await;
    let n1 = hub_on(copy_dir(seed_dir.path()), None).await;
    let proxy = crate::support::PausableProxy::start(n0.addr()).await;
    let via_proxy = format!("http://{}", proxy.addr);
    let peer = start_peer(
        tempfile::tempdir().unwrap(),
        vec![via_proxy.clone(), n1.url("")],
    )
    .await;
    wait_for("connected through the proxy", || async {
        let c = connection(peer.addr()).await;
        (c["state"] == "Connected"
            && c["currentHub"] == via_proxy.as_str()
            && c["lastHeartbeatAt"].is_i64())
        .then_some(())
    })
    .await;
    // The hub goes silent: no refusal, no reset, just no answers.
    proxy.pause();
    let mut saw_warning = false;
    let n1_url = n1.url("");
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    let c = loop {
        let c = connection(peer.addr()).await;
        if c["state"] == "HeartbeatTimeout" && c["missedHeartbeats"] == 1 {
            saw_warning = true;
        }
        if c["state"] == "Connected" && c["currentHub"] == n1_url.as_str() {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failover to n1: {c}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        saw_warning,
        "the first miss shows as HeartbeatTimeout with one missed heartbeat"
    );
    let reason = c["hubs"][0]["lastError"].as_str().unwrap();
    assert!(reason.contains("2 consecutive heartbeats missed"), "{c}");
    peer.stop().await;
    n0.stop().await;
    n1.stop().await;
}

/// Writes a register of genesis + `n` published entries straight into a store in `dir`.
pub(crate) async fn big_register(dir: &std::path::Path, n: i64, doc_bytes: usize) {
    use sorcha_peer::store::RegisterStore;
    let store = sorcha_peer::store::embedded::EmbeddedStore::open(dir).unwrap();
    sorcha_peer::store::synthetic::fill(&store, n, doc_bytes, None)
        .await
        .unwrap();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_killed_during_a_full_sync_keeps_checkpoint_and_data_together() {
    use sorcha_peer::store::RegisterStore;
    use sorcha_peer::store::embedded::EmbeddedStore;
    const N: i64 = 30_000;
    let hub_dir = tempfile::tempdir().unwrap();
    big_register(hub_dir.path(), N, 1024).await;
    let hub = hub_on(hub_dir, None).await;
    // The peer reaches the hub through a proxy that holds the stream still, so the kill lands
    // mid-sync whatever the machine's speed.
    let proxy = crate::support::PausableProxy::start(hub.addr()).await;
    let hub_url = format!("http://{}", proxy.addr);
    let peer_dir = tempfile::tempdir().unwrap();
    let args = ["--role", "peer", "--hub", &hub_url, "--node-id", "crashy"];
    let mut child = crate::support::spawn_node(peer_dir.path(), &args).await;
    // Kill it once part of the register is applied, with the rest held in the proxy.
    let partial = wait_for("a partial sync", || async {
        let cp = get_json(child.addr, "/api/v1/sync/checkpoint").await;
        cp["currentVersion"].as_i64().filter(|v| *v > 0)
    })
    .await;
    proxy.pause();
    child.child.kill().await.unwrap();
    proxy.resume();
    assert!(
        partial < N + 1,
        "killed mid-sync (at {partial} of {})",
        N + 1
    );

    // Offline: the checkpoint never runs ahead of the data, and what is there verifies.
    {
        let store = EmbeddedStore::open(peer_dir.path()).unwrap();
        let head = store.head().await.unwrap().unwrap();
        let checkpoint = store.sync_progress().await.unwrap().unwrap();
        assert_eq!(
            checkpoint.current_version, head.version,
            "checkpoint == applied data"
        );
        assert_eq!(checkpoint.head_hash, head.chain_hash);
        assert!(head.version < N + 1, "the sync was interrupted");
        let report = sorcha_peer::register::verify_store(&store, None)
            .await
            .unwrap();
        assert!(report.ok, "{report:?}");
        store.close().await.unwrap();
    }
    // Restarted, it completes incrementally.
    let mut child = crate::support::spawn_node(peer_dir.path(), &args).await;
    wait_head(child.addr, N + 1).await;
    assert_eq!(
        get_json(child.addr, "/api/v1/sync/checkpoint").await["currentVersion"],
        N + 1
    );
    assert_eq!(
        get_json(hub.addr(), "/api/v1/peers").await["fullSyncs"],
        1,
        "the restart resumed incrementally"
    );
    child.child.kill().await.unwrap();
    hub.stop().await;
}

/// The system clock moved by a fixed offset: a node whose clock is wrong.
struct SkewedClock(i64);

impl sorcha_peer::clock::Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        sorcha_peer::clock::SystemClock.now_ms() + self.0
    }
}

/// A peer whose clock runs 3 minutes ahead (the hub allows ±60 s) stays connected: it sends
/// heartbeat times on the hub's clock as estimated from the hub's own timestamps, shows the
/// offset, and raises one alert naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_clock_runs_ahead_stays_connected_and_says_so_once() {
    use sorcha_peer::clock::Clock;
    let webhook = crate::support::alert_webhook().await;
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), vec![hub.url("")]);
    cfg.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    let ahead = 180_000;
    let peer = TestHub::start_on_clock(
        dir,
        cfg,
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(SkewedClock(ahead)),
    )
    .await;
    // Ten heartbeat intervals (100 ms) acknowledged, none missed, no failover.
    let first = wait_for("the first acknowledged heartbeat", || async {
        let c = get_json(peer.addr(), "/api/v1/connection").await;
        c["lastHeartbeatAt"].as_i64()
    })
    .await;
    let connection = wait_for("ten more heartbeats", || async {
        let c = get_json(peer.addr(), "/api/v1/connection").await;
        (c["lastHeartbeatAt"].as_i64() >= Some(first + 1_000)).then_some(c)
    })
    .await;
    assert_eq!(connection["state"], "Connected", "{connection}");
    assert_eq!(connection["failovers"], 0, "{connection}");
    assert_eq!(connection["missedHeartbeats"], 0, "{connection}");
    assert_eq!(
        connection["attempts"].as_array().unwrap().len(),
        1,
        "one connect, no reconnects: {connection}"
    );
    let offset = connection["hubClockOffsetMs"].as_i64().unwrap();
    assert!((offset + ahead).abs() < 1_000, "{connection}");
    let peers = get_json(hub.addr(), "/api/v1/peers").await;
    let heartbeats = &peers["peers"][0]["heartbeat"];
    assert_eq!(heartbeats["totalHeartbeatsMissed"], 0, "{peers}");
    assert!(
        heartbeats["totalHeartbeatsReceived"].as_i64() >= Some(10),
        "{peers}"
    );
    // Times on the hub's clock: the latency the hub sees is the network's, not the skew.
    assert!(
        heartbeats["averageLatencyMs"].as_f64() < Some(1_000.0),
        "{peers}"
    );
    let metrics = peer.metrics().await;
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sorcha_peer_hub_clock_offset_seconds "))
        .unwrap_or_else(|| panic!("no offset gauge in {metrics}"));
    assert!(
        (gauge.parse::<f64>().unwrap() + 180.0).abs() < 1.0,
        "{gauge}"
    );
    let alerts: Vec<Value> = crate::support::alerts_of(&webhook, "peer.clock_offset").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let message = alerts[0]["message"].as_str().unwrap();
    assert!(
        message.contains("180.0 s (± 0.") && message.contains(" s) ahead of"),
        "{message}"
    );
    assert!(
        sorcha_peer::clock::SystemClock.now_ms() < first,
        "the peer's times are its own"
    );
}

/// A peer tells its hub what it applied within about a second, not at its next heartbeat (a
/// minute away here), and a burst of publications is told in few reports, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reports_what_it_applied_promptly_and_coalesced() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = peer_config(dir.path(), vec![hub.url("")]);
    cfg.peer.heartbeat_interval = Duration::from_secs(60);
    let peer = TestHub::start_with(dir, cfg).await;
    let session = || async { get_json(hub.addr(), "/api/v1/peers/peer-1").await };
    // Connected and current (genesis), before any heartbeat is due.
    wait_for("the peer's session", || async {
        (session().await["lastSyncVersion"] == 1).then_some(())
    })
    .await;
    let received = |s: &Value| s["heartbeat"]["totalHeartbeatsReceived"].as_u64().unwrap();
    let before = received(&session().await);

    let started = std::time::Instant::now();
    let mut last = 0;
    for i in 0..20 {
        let (status, entry) = hub.publish(&format!("report-{i}"), json!({"i": i})).await;
        assert_eq!(status, 201);
        last = entry["version"].as_i64().unwrap();
    }
    // Reported by heartbeat: the heartbeat view has the version and more heartbeats.
    let reported = wait_for("a report of the last publication", || async {
        let s = session().await;
        (s["heartbeat"]["lastKnownSyncVersion"] == last && received(&s) > before).then_some(s)
    })
    .await;
    let reports = received(&reported) - before;
    let allowed = 1 + started.elapsed().as_secs() + 1;
    assert!(
        reports <= allowed,
        "{reports} reports for 20 publications in {:?}: at most one a second",
        started.elapsed()
    );
    assert_eq!(head(peer.addr()).await, last);
    peer.stop().await;
    hub.stop().await;
}
