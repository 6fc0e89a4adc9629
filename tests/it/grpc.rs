//! The hub side of the Sorcha gRPC contract, driven by the typed client over real sockets.

use crate::support::{ADMIN, PUBLISHER, TestHub, WAIT, config, pid};
use futures::StreamExt;
use serde_json::json;
use sorcha_peer::error_code::ErrorCode;
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::HubLink;
use sorcha_peer::protocol::{
    ConnectRequest, DisconnectReason, Filters, Heartbeat, HeartbeatHealth, PeerDescription,
    RecommendedAction,
};
use sorcha_peer::register::chain_check::ChainVerifier;
use sorcha_peer::register::entry::EntryType;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn peer(id: &str) -> ConnectRequest {
    ConnectRequest {
        peer_id: pid(id),
        peer: PeerDescription {
            address: "127.0.0.1".into(),
            port: 5001,
            node_type: "Peer".into(),
            supported_protocols: vec!["grpc".into()],
            supports_push_notifications: true,
            supports_incremental_sync: true,
            ..Default::default()
        },
        last_known_version: 0,
        connection_time: now_ms(),
        insist: false,
        lost_hub: String::new(),
        relay_path: Vec::new(),
    }
}

async fn client(hub: &TestHub) -> HubClient {
    HubClient::connect(&hub.url(""), WAIT).await.unwrap()
}

fn heartbeat(peer_id: &str, session: &str, seq: i64, version: i64) -> Heartbeat {
    Heartbeat {
        peer_id: pid(peer_id),
        session_id: session.into(),
        timestamp: now_ms(),
        sequence_number: seq,
        last_sync_version: version,
        head_hash: String::new(),
        refusal: String::new(),
        trusted_version: 0,
        downstream: Vec::new(),
    }
}

#[tokio::test]
async fn connect_sync_subscribe_publish_disconnect() {
    let hub = TestHub::start().await;
    for i in 0..20 {
        hub.publish(
            &format!("bp-{i:02}"),
            json!({"title": format!("Blueprint {i}"), "i": i}),
        )
        .await;
    }
    let c = client(&hub).await;
    let grant = c.open_session(&peer("peer-a")).await.unwrap();
    assert_eq!(grant.current_version, 21);
    assert_eq!(grant.hub_id, "test-host");
    assert!(grant.head_hash.starts_with("sha256:"));
    assert_eq!(grant.heartbeat_interval, Duration::from_secs(30));
    assert!(grant.push_enabled);

    // Full sync: every entry, every field as the REST log shows it, chain verifying.
    let entries: Vec<_> = c
        .full_sync(&pid("peer-a"), &grant.session_id, None)
        .await
        .unwrap()
        .map(|e| e.unwrap().entry)
        .collect()
        .await;
    assert_eq!(entries.len(), 21);
    let mut verifier = ChainVerifier::new();
    for e in &entries {
        verifier.check(e).unwrap();
    }
    assert_eq!(entries.last().unwrap().chain_hash, grant.head_hash);
    let (_, log) = hub
        .get("/api/v1/system-register/entries?since=0&limit=1000")
        .await;
    for (wire, rest) in entries.iter().zip(log["items"].as_array().unwrap()) {
        assert_eq!(wire.version, rest["version"].as_i64().unwrap());
        assert_eq!(wire.blueprint_id, rest["blueprintId"].as_str().unwrap());
        assert_eq!(wire.checksum, rest["checksum"].as_str().unwrap());
        assert_eq!(wire.chain_hash, rest["chainHash"].as_str().unwrap());
        assert_eq!(wire.published_by, rest["publishedBy"].as_str().unwrap());
        assert_eq!(wire.published_at, rest["publishedAt"].as_i64().unwrap());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&wire.document).unwrap(),
            rest["document"]
        );
    }
    // max_blueprints is honoured.
    let first5: Vec<_> = c
        .full_sync(&pid("peer-a"), &grant.session_id, Some(5))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(first5.len(), 5);

    // Incremental from k = 13 returns exactly 14..=21.
    let inc: Vec<_> = c
        .incremental_sync(&pid("peer-a"), &grant.session_id, 13, None)
        .await
        .unwrap()
        .map(|e| e.unwrap().entry.version)
        .collect()
        .await;
    assert_eq!(inc, (14..=21).collect::<Vec<_>>());
    let mut after = ChainVerifier::after(13, &entries[12].chain_hash).unwrap();
    let inc_entries: Vec<_> = c
        .incremental_sync(&pid("peer-a"), &grant.session_id, 13, None)
        .await
        .unwrap()
        .map(|e| e.unwrap().entry)
        .collect()
        .await;
    for e in &inc_entries {
        after.check(e).unwrap();
    }
    // Beyond the head: nothing.
    let none: Vec<_> = c
        .incremental_sync(&pid("peer-a"), &grant.session_id, 500, None)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());

    // Subscribe, publish over REST, receive the notification.
    let mut push = c
        .subscribe(&pid("peer-a"), &grant.session_id, &Filters::default(), 0)
        .await
        .unwrap();
    let (status, published) = hub.publish("fresh", json!({"title": "Fresh one"})).await;
    assert_eq!(status, 201);
    let n = tokio::time::timeout(WAIT, push.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.version, 22);
    assert_eq!(n.blueprint_id, "fresh");
    assert_eq!(n.checksum, published["checksum"].as_str().unwrap());
    assert_eq!(n.chain_hash, published["chainHash"].as_str().unwrap());
    assert_eq!(n.sequence_number, 1);
    assert_eq!(n.entry_type, EntryType::Published);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&n.summary).unwrap()["title"],
        "Fresh one"
    );

    // The hub's views of the session.
    let checkpoint = c
        .peer_sync_view(&pid("peer-a"), &grant.session_id)
        .await
        .unwrap();
    assert_eq!(checkpoint.hub_id, "test-host");
    assert_eq!(
        checkpoint.current_version, 21,
        "the last sync stream ended at 21"
    );
    let (_, peers) = hub.get("/api/v1/peers").await;
    assert_eq!(peers["peers"][0]["peerId"], "peer-a");
    assert_eq!(peers["peers"][0]["pushStreams"], 1);
    let (status, one) = hub.get("/api/v1/peers/peer-a").await;
    assert_eq!(status, 200);
    assert_eq!(one["sessionId"], grant.session_id.as_str());
    assert_eq!(hub.get("/api/v1/peers/nobody").await.0, 404);
    let active = c.status(&pid("peer-a")).await.unwrap().active_peers;
    assert_eq!(active, 1);

    // Disconnect ends the push stream.
    c.close_session(
        &pid("peer-a"),
        &grant.session_id,
        DisconnectReason::ClientRequest.into(),
        now_ms(),
    )
    .await
    .unwrap();
    let end = tokio::time::timeout(WAIT, push.next()).await.unwrap();
    assert!(end.is_none(), "stream ended after disconnect");
    let gone = c
        .incremental_sync(&pid("peer-a"), &grant.session_id, 0, None)
        .await
        .err()
        .unwrap();
    assert_eq!(gone.code, ErrorCode::UnknownSession);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_200_subscribers_in_order_despite_one_that_never_reads() {
    const SUBSCRIBERS: usize = 200;
    let hub = TestHub::start().await;
    let mut streams = Vec::new();
    // Each subscriber is its own peer with its own connection, as in a real network.
    for i in 0..SUBSCRIBERS + 1 {
        let c = client(&hub).await;
        let id = format!("sub-{i}");
        let grant = c.open_session(&peer(&id)).await.unwrap();
        streams.push(
            c.subscribe(&pid(&id), &grant.session_id, &Filters::default(), 0)
                .await
                .unwrap(),
        );
    }
    // The last stream is never read.
    let _stalled = streams.pop().unwrap();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 50 {
                    let n = s.next().await.unwrap().unwrap();
                    got.push((n.version, n.sequence_number));
                }
                got
            })
        })
        .collect();
    let http = reqwest::Client::new();
    for i in 0..50 {
        let (status, _) = crate::support::publish(
            &http,
            hub.addr(),
            PUBLISHER,
            &format!("p-{i}"),
            json!({"i": i, "pad": "x".repeat(1024)}),
        )
        .await;
        assert_eq!(status, 201);
    }
    for r in readers {
        let got = tokio::time::timeout(WAIT, r)
            .await
            .expect("every subscriber got all 50")
            .unwrap();
        let expected: Vec<_> = (0..50).map(|i| (2 + i, 1 + i)).collect();
        assert_eq!(got, expected, "in order, gap-free sequence numbers");
    }
    hub.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_and_filters_select() {
    let hub = TestHub::start().await;
    let c = client(&hub).await;
    let grant = c.open_session(&peer("peer-r")).await.unwrap();
    for i in 0..6 {
        hub.publish(&format!("r-{i}"), json!({"i": i})).await;
    }
    // Versions 2..=7 exist; resume from 4 → 5, 6, 7 then live.
    let mut push = c
        .subscribe(&pid("peer-r"), &grant.session_id, &Filters::default(), 4)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = tokio::time::timeout(WAIT, push.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push((n.version, n.sequence_number));
    }
    assert_eq!(got, [(5, 1), (6, 2), (7, 3)]);
    hub.publish("r-live", json!({})).await;
    let n = tokio::time::timeout(WAIT, push.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((n.version, n.sequence_number), (8, 4));

    // Filters by id, publisher and type (with replay from 0).
    let by_id = Filters {
        blueprint_ids: vec!["r-3".into()],
        ..Default::default()
    };
    let mut s = c
        .subscribe(&pid("peer-r"), &grant.session_id, &by_id, 1)
        .await
        .unwrap();
    let n = tokio::time::timeout(WAIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.blueprint_id.as_str(), n.version, n.sequence_number),
        ("r-3", 5, 1)
    );
    let by_publisher = Filters {
        publisher_ids: vec!["admin".into()],
        ..Default::default()
    };
    let mut s = c
        .subscribe(&pid("peer-r"), &grant.session_id, &by_publisher, 0)
        .await
        .unwrap();
    // Alice's entry is filtered out: the admin's, published after it, is the first
    // notification.
    assert_eq!(hub.publish("not-admin", json!({})).await.0, 201);
    let (status, _) =
        crate::support::publish(&hub.http, hub.addr(), ADMIN, "by-admin", json!({})).await;
    assert_eq!(status, 201);
    let n = tokio::time::timeout(WAIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            n.blueprint_id.as_str(),
            n.published_by.as_str(),
            n.sequence_number
        ),
        ("by-admin", "admin", 1),
        "alice's entries filtered out"
    );
    let by_type = Filters {
        types: vec![EntryType::Deprecated],
        ..Default::default()
    };
    let mut s = c
        .subscribe(&pid("peer-r"), &grant.session_id, &by_type, 1)
        .await
        .unwrap();
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/r-1/deprecate"))
        .bearer_auth(PUBLISHER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n = tokio::time::timeout(WAIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.entry_type, n.blueprint_id.as_str(), n.sequence_number),
        (EntryType::Deprecated, "r-1", 1)
    );
    hub.stop().await;
}

#[tokio::test]
async fn heartbeats_skew_reconnect_sync_and_timeouts() {
    let hub = TestHub::configured(|cfg| {
        cfg.hub.heartbeat_interval = Duration::from_millis(100);
        cfg.hub.session_timeout = Duration::from_millis(400);
        cfg.hub.session_grace = Duration::from_millis(400);
    })
    .await;
    hub.publish("hb-1", json!({})).await;
    let c = client(&hub).await;
    let grant = c.open_session(&peer("peer-h")).await.unwrap();
    let sid = grant.session_id.clone();

    // In step: no action.
    let ack = c
        .heartbeat(&heartbeat("peer-h", sid.as_str(), 1, 2))
        .await
        .unwrap();
    assert!(ack.success);
    assert_eq!(ack.action, RecommendedAction::None);
    assert_eq!(ack.current_version, 2);
    // Behind: SYNC.
    let ack = c
        .heartbeat(&heartbeat("peer-h", sid.as_str(), 2, 1))
        .await
        .unwrap();
    assert_eq!(ack.action, RecommendedAction::Sync);
    // Duplicate sequence: reported, not fatal.
    let ack = c
        .heartbeat(&heartbeat("peer-h", sid.as_str(), 2, 2))
        .await
        .unwrap();
    assert!(
        ack.success && ack.message.contains("out of order"),
        "{}",
        ack.message
    );
    // Skewed clock: INVALID_ARGUMENT.
    let mut skewed = heartbeat("peer-h", sid.as_str(), 3, 2);
    skewed.timestamp -= 120_000;
    let err = c.heartbeat(&skewed).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.contains("±60000 ms"), "{}", err.message);
    // Unknown session: RECONNECT.
    let ack = c
        .heartbeat(&heartbeat("peer-h", "no-such-session", 1, 2))
        .await
        .unwrap();
    assert!(!ack.success);
    assert_eq!(ack.action, RecommendedAction::Reconnect);
    // No session at all: FAILED_PRECONDITION.
    let err = c
        .heartbeat(&heartbeat("peer-h", "", 1, 2))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::WrongState);

    let report = c.heartbeat_status(&pid("peer-h"), &sid).await.unwrap();
    assert_eq!(report.total_heartbeats_received, 3);
    assert_eq!(report.last_known_sync_version, 2);
    assert_eq!(report.version_lag, 0);

    // Silence: the session times out (push stream ends), then is removed.
    let mut push = c
        .subscribe(&pid("peer-h"), &sid, &Filters::default(), 0)
        .await
        .unwrap();
    let end = tokio::time::timeout(WAIT, push.next())
        .await
        .expect("push stream closed on timeout");
    assert!(end.is_none());
    let report = c.heartbeat_status(&pid("peer-h"), &sid).await.unwrap();
    assert_eq!(report.health, HeartbeatHealth::Timeout);
    assert!(report.missed_heartbeats >= 4, "{report:?}");
    let (_, peers) = hub.get("/api/v1/peers").await;
    assert_eq!(peers["peers"][0]["status"], "HeartbeatTimeout");
    let ack = c
        .heartbeat(&heartbeat("peer-h", sid.as_str(), 10, 2))
        .await
        .unwrap();
    assert_eq!(
        ack.action,
        RecommendedAction::Reconnect,
        "a timed-out session must reconnect"
    );
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, peers) = hub.get("/api/v1/peers").await;
            if peers["peers"].as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("timed-out session removed after the grace period");
    hub.stop().await;
}

#[tokio::test]
async fn bad_calls_get_the_contract_status_codes() {
    use sorcha_peer::wire::proto::central_node_connection_client::CentralNodeConnectionClient;
    use sorcha_peer::wire::proto::system_register_sync_client::SystemRegisterSyncClient;
    use sorcha_peer::wire::proto::{ConnectRequest as WireConnect, SyncRequest as WireSync};
    let hub = TestHub::configured(|cfg| {
        cfg.hub.max_sessions = 2;
    })
    .await;
    let c = client(&hub).await;

    let mut as_hub = peer("n1");
    as_hub.peer.node_type = "Hub".into();
    let err = c.open_session(&as_hub).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::WrongState);
    assert!(
        err.message.contains("hubs do not connect to hubs"),
        "{}",
        err.message
    );
    as_hub.peer.node_type = "Central".into();
    assert_eq!(
        c.open_session(&as_hub).await.unwrap_err().code,
        ErrorCode::WrongState
    );

    // Ids a peer of ours cannot even name (`PeerId` keeps to the rule), sent as raw wire
    // messages: the hub refuses each, naming the field.
    let mut raw = CentralNodeConnectionClient::connect(hub.url(""))
        .await
        .unwrap();
    for bad_id in ["", "has space", &"x".repeat(65), "semi;colon"] {
        let err = raw
            .connect_to_central_node(WireConnect {
                peer_id: bad_id.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad_id:?}");
        assert!(err.message().contains("peer_id"), "{}", err.message());
    }
    let mut big = peer("big");
    big.peer.address = "a".repeat(300);
    assert_eq!(
        c.open_session(&big).await.unwrap_err().code,
        ErrorCode::Invalid
    );
    let mut weird = peer("weird");
    weird.peer.node_type = "Toaster".into();
    assert_eq!(
        c.open_session(&weird).await.unwrap_err().code,
        ErrorCode::Invalid
    );
    let mut negative = peer("neg");
    negative.last_known_version = -1;
    assert_eq!(
        c.open_session(&negative).await.unwrap_err().code,
        ErrorCode::Invalid
    );

    // Unknown sessions.
    assert_eq!(
        c.full_sync(&pid("ghost"), &"nope".into(), None)
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::UnknownSession
    );
    assert_eq!(
        c.subscribe(&pid("ghost"), &"nope".into(), &Filters::default(), 0)
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::UnknownSession
    );
    assert_eq!(
        c.peer_sync_view(&pid("ghost"), &"nope".into())
            .await
            .unwrap_err()
            .code,
        ErrorCode::UnknownSession
    );
    assert_eq!(
        c.heartbeat_status(&pid("ghost"), &"nope".into())
            .await
            .unwrap_err()
            .code,
        ErrorCode::UnknownSession
    );
    assert_eq!(
        c.close_session(
            &pid("ghost"),
            &"nope".into(),
            DisconnectReason::Shutdown.into(),
            0
        )
        .await
        .unwrap_err()
        .code,
        ErrorCode::UnknownSession
    );

    // Negative versions and limits.
    let grant = c.open_session(&peer("ok-1")).await.unwrap();
    // A negative limit, which only the wire can carry.
    let err = SystemRegisterSyncClient::connect(hub.url(""))
        .await
        .unwrap()
        .full_sync(WireSync {
            peer_id: "ok-1".into(),
            session_id: grant.session_id.to_string(),
            full_sync: true,
            max_blueprints: -1,
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("max_blueprints"),
        "{}",
        err.message()
    );
    assert_eq!(
        c.incremental_sync(&pid("ok-1"), &grant.session_id, -5, None)
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::Invalid
    );
    assert_eq!(
        c.subscribe(&pid("ok-1"), &grant.session_id, &Filters::default(), -2)
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::Invalid
    );

    // Reconnecting replaces the session; a third peer exceeds max_sessions = 2.
    let again = c.open_session(&peer("ok-1")).await.unwrap();
    assert_ne!(again.session_id, grant.session_id);
    assert_eq!(
        c.full_sync(&pid("ok-1"), &grant.session_id, None)
            .await
            .err()
            .unwrap()
            .code,
        ErrorCode::UnknownSession
    );
    c.open_session(&peer("ok-2")).await.unwrap();
    let full = c.open_session(&peer("ok-3")).await.unwrap_err();
    assert_eq!(full.code, ErrorCode::Busy);
    assert!(
        full.message.contains("maximum of 2 sessions"),
        "{}",
        full.message
    );
    hub.stop().await;
}

#[tokio::test]
async fn validate_hostname_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.hub.enabled = true;
    cfg.hub.validate_hostname = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = sorcha_peer::app::start_with_hostname(cfg.clone(), listener, "laptop.local")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("laptop.local") && err.contains(r"^n[0-2]\.sorcha\.dev$"),
        "{err}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = sorcha_peer::app::start_with_hostname(cfg, listener, "n2.sorcha.dev")
        .await
        .unwrap();
    assert_eq!(node.state.node.role, "hub");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn monitor_heartbeat_streams_acks_and_status_lists_peers() {
    use sorcha_peer::wire::proto::central_node_connection_client::CentralNodeConnectionClient;
    use sorcha_peer::wire::proto::heartbeat_client::HeartbeatClient;
    use sorcha_peer::wire::proto::{
        HeartbeatMessage, RecommendedAction as WireAction, StatusRequest,
    };
    let hub = TestHub::start().await;
    let c = client(&hub).await;
    let grant = c.open_session(&peer("mon-1")).await.unwrap();
    let channel = tonic::transport::Channel::from_shared(hub.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut hb = HeartbeatClient::new(channel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = hb
        .monitor_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let message = |seq: i64, version: i64| HeartbeatMessage {
        peer_id: "mon-1".into(),
        session_id: grant.session_id.to_string(),
        timestamp: now_ms(),
        sequence_number: seq,
        last_sync_version: version,
        ..Default::default()
    };
    tx.send(message(1, 1)).await.unwrap();
    let ack = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.success);
    assert_eq!(ack.recommended_action, WireAction::None as i32);
    hub.publish("mon-bp", json!({})).await;
    tx.send(message(2, 1)).await.unwrap();
    let ack = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ack.recommended_action, WireAction::Sync as i32);
    assert_eq!(ack.current_system_register_version, 2);
    // A skewed heartbeat ends the stream with INVALID_ARGUMENT.
    let mut skewed = message(3, 2);
    skewed.timestamp += 3_600_000;
    tx.send(skewed).await.unwrap();
    let status = tokio::time::timeout(WAIT, acks.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let mut conn = CentralNodeConnectionClient::new(channel);
    let status = conn
        .get_central_node_status(StatusRequest {
            peer_id: "mon-1".into(),
            include_peer_list: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node_id, "test-host");
    assert_eq!(status.current_system_register_version, 2);
    assert_eq!(status.total_blueprints, 2);
    assert_eq!(status.active_peer_count, 1);
    assert_eq!(status.connected_peers.len(), 1);
    assert_eq!(status.connected_peers[0].peer_id, "mon-1");
    assert_eq!(status.connected_peers[0].last_sync_version, 1);
    hub.stop().await;
}
