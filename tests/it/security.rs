//! SPEC §7 over real sockets: peer credentials on the hub's gRPC services, per-peer rate
//! limits (and a real peer honouring the retry hint), the concurrent-sync limit.

use crate::support::{
    ADMIN, PUBLISHER, TestHub, WAIT, config, get_json, peer_config, pid, wait_for,
};
use serde_json::json;
use sorcha_peer::config::{PeerTokenConfig, Rate, Secret};
use sorcha_peer::error_code::ErrorCode;
use sorcha_peer::hub_client::{ClientOptions, HubClient};
use sorcha_peer::link::HubLink;
use sorcha_peer::protocol::{ConnectRequest, PeerDescription};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN_A: &str = "peer-a-token-0123456789abcdef";
const TOKEN_B: &str = "peer-b-token-0123456789abcdef";

fn connect_request(id: &str) -> ConnectRequest {
    ConnectRequest {
        peer_id: pid(id),
        peer: PeerDescription {
            node_type: "Peer".into(),
            ..Default::default()
        },
        last_known_version: 0,
        connection_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        insist: false,
        lost_hub: String::new(),
        relay_path: Vec::new(),
    }
}

async fn client_as(hub: &TestHub, peer_id: Option<&str>, token: Option<&str>) -> HubClient {
    HubClient::connect_with(
        &hub.url(""),
        &ClientOptions {
            connect_timeout: WAIT,
            peer_id: peer_id.map(Into::into),
            token: token.map(|t| Secret(t.into())),
            ca_cert_pem: None,
            keep_alive: None,
        },
    )
    .await
    .unwrap()
}

async fn hub_with_peer_tokens() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.hub.peer_tokens = vec![
        PeerTokenConfig {
            peer_id: "peer-a".into(),
            token: Secret(TOKEN_A.into()),
        },
        PeerTokenConfig {
            peer_id: "peer-b".into(),
            token: Secret(TOKEN_B.into()),
        },
    ];
    TestHub::start_with(dir, cfg).await
}

#[tokio::test]
async fn hub_with_peer_tokens_refuses_missing_wrong_and_borrowed_credentials() {
    let hub = hub_with_peer_tokens().await;

    let anonymous = client_as(&hub, None, None).await;
    let e = anonymous
        .open_session(&connect_request("peer-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated, "{e}");
    assert!(e.message.contains("peer-id"), "{e}");

    let wrong = client_as(&hub, Some("peer-a"), Some("not-the-right-token-at-all")).await;
    let e = wrong
        .open_session(&connect_request("peer-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated, "{e}");
    assert!(!e.message.contains(TOKEN_A), "a token leaked: {e}");

    let unknown = client_as(&hub, Some("peer-z"), Some(TOKEN_A)).await;
    let e = unknown
        .open_session(&connect_request("peer-z"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated, "{e}");

    // peer-b's own credentials cannot act for peer-a.
    let b = client_as(&hub, Some("peer-b"), Some(TOKEN_B)).await;
    let e = b
        .open_session(&connect_request("peer-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert!(e.message.contains("peer-b"), "{e}");

    // The right credentials work for every call of the session.
    let a = client_as(&hub, Some("peer-a"), Some(TOKEN_A)).await;
    let grant = a.open_session(&connect_request("peer-a")).await.unwrap();
    let entries: Vec<_> = futures::StreamExt::collect::<Vec<_>>(
        a.full_sync(&pid("peer-a"), &grant.session_id, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(entries.len(), 1, "the genesis entry");
    // ...but not for another peer's session or checkpoint.
    let e = a
        .peer_sync_view(&pid("peer-b"), &grant.session_id)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");

    // Health and reflection stay open, REST is unaffected.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Endpoint::from_shared(hub.url(""))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, 1, "SERVING");
    let (status, _) = hub.get("/api/v1/system-register/blueprints").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_peer_with_its_token_replicates_and_one_without_is_refused() {
    let hub = hub_with_peer_tokens().await;
    hub.publish("bp-auth", json!({"title": "Guarded"})).await;

    let good = TestHub::peer_of(vec![hub.url("")], |cfg| {
        cfg.node_id = Some("peer-a".into());
        cfg.peer.token = Some(Secret(TOKEN_A.into()));
    })
    .await;
    wait_for("the authenticated peer to replicate", || async {
        let (status, _) = good.get("/api/v1/system-register/blueprints/bp-auth").await;
        (status == 200).then_some(())
    })
    .await;

    let bad = TestHub::peer_of(vec![hub.url("")], |cfg| {
        cfg.node_id = Some("peer-b".into());
        cfg.peer.token = Some(Secret(TOKEN_A.into()));
    })
    .await;
    let error = wait_for("the refused peer to report why", || async {
        let (_, body) = bad.get("/api/v1/connection").await;
        body["hubs"][0]["lastError"]
            .as_str()
            .filter(|e| e.contains("Unauthenticated"))
            .map(str::to_owned)
    })
    .await;
    assert!(error.contains("wrong token"), "{error}");
    let (status, _) = bad.get("/api/v1/system-register/blueprints/bp-auth").await;
    assert_eq!(status, 404, "nothing replicated without credentials");
    // The hub's fleet lists the refused peer as refused, and why; the good one as synced.
    let (_, fleet) = hub.get("/api/v1/fleet?state=refused").await;
    let refused = &fleet["peers"][0];
    assert_eq!(refused["peerId"], "peer-b", "{fleet}");
    assert!(
        refused["refusal"]
            .as_str()
            .unwrap()
            .contains("refused by hub test-host: unknown peer or wrong token"),
        "{fleet}"
    );
    assert!(
        !fleet.to_string().contains(TOKEN_A),
        "no token in the fleet: {fleet}"
    );
    assert_eq!(fleet["summary"]["synced"], 1, "{fleet}");
}

#[tokio::test]
async fn a_publisher_token_cannot_call_admin_endpoints() {
    let hub = TestHub::start().await;
    let peer = TestHub::peer_of(vec![hub.url("")], |_| {}).await;
    let http = crate::support::http_client();
    for path in ["/api/v1/connection/reconnect", "/api/v1/sync"] {
        let response = http
            .post(peer.url(path))
            .bearer_auth(PUBLISHER)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "POST {path} as publisher");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("admin"),
            "{problem}"
        );
        let admin = http
            .post(peer.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert!(
            ![401, 403].contains(&admin.status().as_u16()),
            "POST {path} as admin: {}",
            admin.status()
        );
    }
}

#[tokio::test]
async fn a_peer_hammering_connect_is_limited_and_others_are_not() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.rate_limits.connect = Rate {
            every: Duration::from_secs(60),
            burst: 3,
        };
    })
    .await;
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    let mut limited = 0;
    for _ in 0..20 {
        match client.open_session(&connect_request("noisy")).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
                let wait = e.retry_after.expect("a retry hint");
                assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(60));
                assert!(e.message.contains("connect rate limit"), "{e}");
                limited += 1;
            }
        }
    }
    assert_eq!(limited, 17, "3 of 20 connects pass");
    for quiet in ["quiet-1", "quiet-2"] {
        client.open_session(&connect_request(quiet)).await.unwrap();
    }
}

#[tokio::test]
async fn a_rate_limited_peer_waits_as_long_as_the_hub_asks() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.rate_limits.connect = Rate {
            every: Duration::from_millis(700),
            burst: 1,
        };
    })
    .await;
    hub.publish("bp-late", json!({"title": "Late"})).await;
    // Use up peer-1's connect permit, so its first attempt is refused.
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    client
        .open_session(&connect_request("peer-1"))
        .await
        .unwrap();

    let peer_dir = tempfile::tempdir().unwrap();
    // Its own backoff (20-100 ms) is far shorter than the hub's hint.
    let cfg = peer_config(peer_dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(peer_dir, cfg).await;
    wait_for("the peer to replicate after waiting", || async {
        let (status, _) = peer.get("/api/v1/system-register/blueprints/bp-late").await;
        (status == 200).then_some(())
    })
    .await;
    let (_, view) = peer.get("/api/v1/connection").await;
    let attempts = view["attempts"].as_array().unwrap();
    let refused = attempts
        .iter()
        .position(|a| a["outcome"].as_str().unwrap().contains("RateLimited"))
        .unwrap_or_else(|| panic!("no refused attempt in {attempts:?}"));
    let next = &attempts[refused + 1];
    assert!(
        next["delayMs"].as_u64().unwrap() >= 400,
        "the retry came after {} ms, before the hub's hint: {attempts:?}",
        next["delayMs"]
    );
    assert_eq!(next["outcome"], "connected");
}

/// One heartbeat rule: a peer configured to heartbeat faster than its hub admits slows to the
/// hub's pace instead of being refused beat after beat, and stays connected (a refusal is no
/// miss).
#[tokio::test]
async fn a_peer_heartbeating_faster_than_its_hub_admits_takes_the_hubs_pace() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.rate_limits.heartbeat = Rate {
            every: Duration::from_millis(400),
            burst: 2,
        };
    })
    .await;
    let peer_dir = tempfile::tempdir().unwrap();
    // 100 ms heartbeats: four times what the hub admits.
    let cfg = peer_config(peer_dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(peer_dir, cfg).await;
    let refused = || async {
        peer.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix("sorcha_peer_heartbeats_sent_total{outcome=\"failed\"} ")
                    .map(|v| v.parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    };
    wait_for("a refused heartbeat", || async {
        (refused().await > 0.0).then_some(())
    })
    .await;
    // Settled at the hub's pace: no more refusals over many heartbeat periods, still connected.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = refused().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        refused().await,
        settled,
        "refusals stopped at the hub's pace"
    );
    assert!(
        settled <= 3.0,
        "{settled} refusals before taking the hub's pace"
    );
    let (_, c) = peer.get("/api/v1/connection").await;
    assert_eq!(c["state"], "Connected", "{c}");
    assert_eq!(c["failovers"], 0, "{c}");
    let peers = get_json(hub.addr(), "/api/v1/peers").await;
    let received = peers["peers"][0]["heartbeat"]["totalHeartbeatsReceived"]
        .as_i64()
        .unwrap();
    assert!(
        received >= 6,
        "heartbeats keep coming at the hub's pace: {peers}"
    );
}

#[tokio::test]
async fn concurrent_syncs_per_peer_are_limited_to_max_concurrent_syncs() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.max_concurrent_syncs = 1;
    })
    .await;
    // More than the client's HTTP/2 stream window (2 MiB) of entries, so an unread stream
    // stays open on the hub.
    let filler = "x".repeat(32 * 1024);
    for i in 0..100 {
        hub.publish(
            &format!("bp-{i:03}"),
            json!({"title": "Big", "filler": filler}),
        )
        .await;
    }
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    let grant = client
        .open_session(&connect_request("p-sync"))
        .await
        .unwrap();
    let first = client
        .full_sync(&pid("p-sync"), &grant.session_id, None)
        .await
        .unwrap();
    let e = client
        .incremental_sync(&pid("p-sync"), &grant.session_id, 0, None)
        .await
        .err()
        .expect("a second concurrent sync is refused");
    assert_eq!(e.code, ErrorCode::Busy, "{e}");
    assert!(e.message.contains("maxConcurrentSyncs"), "{e}");
    // Another peer is not affected.
    let other = client
        .open_session(&connect_request("p-other"))
        .await
        .unwrap();
    let other_sync = client
        .full_sync(&pid("p-other"), &other.session_id, None)
        .await
        .unwrap();
    drop(other_sync);
    // When the first finishes, the peer may sync again.
    let received = futures::StreamExt::collect::<Vec<_>>(first).await;
    assert_eq!(received.len(), 101);
    let again = tokio::time::timeout(WAIT, async {
        loop {
            match client
                .incremental_sync(&pid("p-sync"), &grant.session_id, 0, None)
                .await
            {
                Ok(stream) => return stream,
                // The hub notices the finished stream a moment after the client does.
                Err(e) if e.code.is_back_off() => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(futures::StreamExt::count(again).await, 101);
}

#[tokio::test]
async fn a_refused_full_sync_answers_429_with_retry_after_and_the_peer_stays_connected() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.rate_limits.full_sync = Rate {
            every: Duration::from_secs(60),
            burst: 1,
        };
    })
    .await;
    hub.publish("bp-once", json!({"title": "Once"})).await;
    let peer = TestHub::peer_of(vec![hub.url("")], |_| {}).await;
    // The first full sync (empty replica) uses the one permit.
    wait_for("the first full sync", || async {
        let (status, _) = peer.get("/api/v1/system-register/blueprints/bp-once").await;
        (status == 200).then_some(())
    })
    .await;
    let response = peer
        .http
        .post(peer.url("/api/v1/sync?full=true"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("full sync rate limit"),
        "{problem}"
    );
    // An incremental sync is not limited, and the session survived.
    let response = peer
        .http
        .post(peer.url("/api/v1/sync"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, view) = peer.get("/api/v1/connection").await;
    assert_eq!(view["state"], "Connected", "{view}");
    assert_eq!(view["failovers"], 0, "{view}");
}

#[tokio::test]
async fn sse_subscribers_are_capped_and_a_freed_slot_is_reused() {
    let hub = TestHub::configured(|cfg| {
        cfg.sse.max_subscribers = 2;
    })
    .await;
    let url = hub.url("/api/v1/system-register/events");
    let open = || async { hub.http.get(&url).send().await.unwrap() };
    let first = open().await;
    let second = open().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open().await;
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    let problem: serde_json::Value = third.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("sse.maxSubscribers"),
        "{problem}"
    );
    drop(first);
    wait_for("the closed stream's slot to be freed", || async {
        (open().await.status() == 200).then_some(())
    })
    .await;
    drop(second);
}

#[tokio::test]
async fn push_streams_per_session_are_capped() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.max_push_streams_per_session = 1;
    })
    .await;
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    let grant = client
        .open_session(&connect_request("p-push"))
        .await
        .unwrap();
    let filters = sorcha_peer::protocol::Filters::default();
    let held = client
        .subscribe(&pid("p-push"), &grant.session_id, &filters, 0)
        .await
        .unwrap();
    let e = client
        .subscribe(&pid("p-push"), &grant.session_id, &filters, 0)
        .await
        .err()
        .expect("a second push stream is refused");
    assert_eq!(e.code, ErrorCode::Busy, "{e}");
    assert!(e.message.contains("maxPushStreamsPerSession"), "{e}");
    drop(held);
}

#[tokio::test]
async fn a_grpc_call_stuck_on_the_store_ends_with_deadline_exceeded() {
    // The hub's MongoDB connection runs through a proxy that can freeze it.
    let upstream: std::net::SocketAddr = crate::support::mongodb_uri()
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = crate::support::PausableProxy::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        crate::support::mongo_hub_config(dir.path(), &crate::support::fresh_database("deadline"));
    cfg.store = format!("mongodb://{}/?directConnection=true", proxy.addr);
    cfg.mongo.server_timeout = Duration::from_secs(60);
    cfg.limits.grpc_call_timeout = Duration::from_millis(300);
    let hub = TestHub::start_with(dir, cfg).await;
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    client.status(&pid("p-deadline")).await.unwrap();
    proxy.pause();
    let started = std::time::Instant::now();
    let e = client.status(&pid("p-deadline")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    assert!(e.message.contains("limits.grpcCallTimeout"), "{e}");
    assert!(started.elapsed() < WAIT, "bounded by the call timeout");
    proxy.resume();
    client.status(&pid("p-deadline")).await.unwrap();
}

#[tokio::test]
async fn slow_idle_and_oversized_request_heads_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::configured(|cfg| {
        cfg.limits.header_read_timeout = Duration::from_millis(300);
        // Streams stay busy 8× more often than the idle timeout, so a loaded machine does
        // not cut them by accident.
        cfg.limits.keep_alive_interval = Duration::from_millis(50);
        cfg.sse.keep_alive = Duration::from_millis(50);
        cfg.limits.idle_timeout = Duration::from_millis(400);
        cfg.limits.max_header_bytes = 16 * 1024;
    })
    .await;

    // A client that starts a request head and never finishes it is disconnected, on hyper's
    // path and on the lean event-stream path alike.
    for head in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\n"[..],
        b"GET /api/v1/system-register/events HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut slow = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
        slow.write_all(head).await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, slow.read_to_end(&mut rest))
            .await
            .expect("the slow connection is closed")
            .ok();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(rest.is_empty(), "no answer to half a head: {rest:?}");
    }

    // So is one that connects and sends nothing.
    let mut idle = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection kept open"
    );

    // Open streams are not idle: an SSE stream (keep-alive comments) and a gRPC push stream
    // (HTTP/2 pings) outlive the idle timeout and still deliver.
    let mut events = crate::support::sse(hub.addr(), "", None).await;
    let client = HubClient::connect(&hub.url(""), WAIT).await.unwrap();
    let grant = client
        .open_session(&connect_request("p-idle"))
        .await
        .unwrap();
    let mut push = client
        .subscribe(&pid("p-idle"), &grant.session_id, &Default::default(), 0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    hub.publish("after-quiet", json!({"title": "Quiet"})).await;
    let event = crate::support::take_events(&mut events, 1).await;
    assert!(event[0].data.contains("after-quiet"));
    let notification = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut push))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(notification.blueprint_id, "after-quiet");

    // A request head over limits.maxHeaderBytes is refused with 431.
    let http = reqwest::Client::builder()
        .http1_only()
        .timeout(WAIT)
        .build()
        .unwrap();
    let big = "v".repeat(32 * 1024);
    let response = http
        .get(hub.url("/health"))
        .header("x-padding", big.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let response = http
        .get(hub.url("/api/v1/system-register/events"))
        .header("x-padding", big.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        431,
        "the event-stream path has the same limit"
    );
    // A sane request on a fresh connection still works.
    let response = http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_whose_client_stopped_reading_is_closed_when_idle() {
    use crate::observability::{sample, scrape};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::configured(|cfg| {
        cfg.limits.idle_timeout = Duration::from_millis(400);
        cfg.limits.keep_alive_interval = Duration::from_millis(50);
        cfg.sse.keep_alive = Duration::from_millis(50);
    })
    .await;
    // Subscribed with whole entries, then never read: ~20 MiB of events fill both socket
    // buffers, the hub's writes stall and no byte moves any more.
    let mut stalled = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    stalled
        .write_all(
            b"GET /api/v1/system-register/events?include=document HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let subscribers = || async {
        sample(
            &scrape(&hub).await,
            "sorcha_peer_subscribers{transport=\"sse\"}",
        )
    };
    wait_for("the stream to open", || async {
        (subscribers().await == Some(1.0)).then_some(())
    })
    .await;
    let pad = "x".repeat(512 * 1024);
    for i in 0..40 {
        let (status, _) = hub
            .publish(&format!("big-{i}"), json!({ "pad": pad }))
            .await;
        assert_eq!(status, 201);
    }
    wait_for("the stalled stream to be closed", || async {
        (subscribers().await == Some(0.0)).then_some(())
    })
    .await;
    // What was sent before the stall is still readable, then the connection ends early.
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, stalled.read_to_end(&mut received))
        .await
        .expect("closed")
        .ok();
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        received.len() < 40 * 512 * 1024,
        "not every event was delivered"
    );
}
