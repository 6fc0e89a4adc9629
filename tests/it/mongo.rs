//! The MongoDB backend: conformance, several hubs on one database, cross-hub push, and a
//! database that goes away and comes back.

use crate::support::{
    TestHub, WAIT, fresh_database, get_json, mongo_hub_config, mongodb_uri, pid, sse, take_events,
    wait_for,
};
use futures::StreamExt;
use serde_json::json;
use sorcha_peer::link::HubLink;
use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::conformance;
use sorcha_peer::store::mongo::MongoStore;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_conformance() {
    let uri = mongodb_uri();
    conformance::run(|| {
        let uri = uri.clone();
        async move {
            let store: Arc<dyn RegisterStore> = Arc::new(
                MongoStore::connect(
                    &uri,
                    &sorcha_peer::config::MongoConfig {
                        database: fresh_database("conformance"),
                        poll_interval: Duration::from_millis(100),
                        ..Default::default()
                    },
                    10,
                )
                .await
                .unwrap(),
            );
            store
        }
    })
    .await;
}

async fn mongo_hub(database: &str) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let cfg = mongo_hub_config(dir.path(), database);
    TestHub::start_with(dir, cfg).await
}

/// One publishing client as a real one behaves: `count` sequential publishes of ids
/// `{prefix}-{i}`, each with an `Idempotency-Key`, retried with the same key after a 503 with
/// `Retry-After` (a store that is slow under the test run's load answers so within its
/// deadline); resolves to the acknowledged versions.
fn retrying_publisher(
    addr: std::net::SocketAddr,
    prefix: String,
    count: usize,
) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let http = crate::support::http_client();
        let mut versions = Vec::with_capacity(count);
        for i in 0..count {
            let key = uuid::Uuid::new_v4().to_string();
            let mut attempts = 0;
            let entry = loop {
                attempts += 1;
                let r = http
                    .post(format!("http://{addr}/api/v1/system-register/blueprints"))
                    .bearer_auth(crate::support::PUBLISHER)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"blueprintId": format!("{prefix}-{i}"), "document": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                match status {
                    201 | 200 => break body,
                    503 if retry_after && attempts < 10 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => panic!("publish {prefix}-{i}: {status} {body}"),
                }
            };
            versions.push(entry["version"].as_i64().unwrap());
        }
        versions
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_on_one_database_publish_concurrently() {
    let db = fresh_database("cluster");
    // All three start at once on an empty database: exactly one genesis.
    let (n0, n1, n2) = tokio::join!(mongo_hub(&db), mongo_hub(&db), mongo_hub(&db));
    let hubs = [n0, n1, n2];
    // Three clients per hub race for every version: enough to contend on each one, few
    // enough that the outcome does not hang on how fast the shared test server is.
    const CLIENTS: usize = 3;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for (h, hub) in hubs.iter().enumerate() {
        for client in 0..CLIENTS {
            tasks.push(retrying_publisher(
                hub.addr(),
                format!("h{h}-c{client}"),
                EACH,
            ));
        }
    }
    let all = tokio::time::timeout(4 * WAIT, futures::future::join_all(tasks))
        .await
        .expect("every publisher finished");
    let mut versions: Vec<i64> = all.into_iter().flat_map(Result::unwrap).collect();
    versions.sort_unstable();
    let last = 1 + (3 * CLIENTS * EACH) as i64;
    assert_eq!(
        versions,
        (2..=last).collect::<Vec<_>>(),
        "contiguous and unique across hubs, each publish once"
    );
    for hub in &hubs {
        let verify = get_json(hub.addr(), "/api/v1/system-register/verify").await;
        assert_eq!(verify["ok"], true, "{verify}");
        assert_eq!(verify["checked"], last);
    }
    for hub in hubs {
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_through_one_hub_reaches_subscribers_of_the_others() {
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::protocol::{ConnectRequest, Filters, PeerDescription};
    let db = fresh_database("crosshub");
    let n0 = mongo_hub(&db).await;
    let n1 = mongo_hub(&db).await;
    let n2 = mongo_hub(&db).await;
    let mut browser = sse(n0.addr(), "", None).await;
    let client = HubClient::connect(&n2.url(""), WAIT).await.unwrap();
    let grant = client
        .open_session(&ConnectRequest {
            peer: PeerDescription {
                node_type: "Peer".into(),
                ..Default::default()
            },
            ..ConnectRequest::new(pid("watcher"))
        })
        .await
        .unwrap();
    let mut push = client
        .subscribe(&pid("watcher"), &grant.session_id, &Filters::default(), 0)
        .await
        .unwrap();
    let (status, entry) = n1.publish("cross-hub", json!({"title": "via n1"})).await;
    assert_eq!(status, 201);
    let event = take_events(&mut browser, 1).await;
    assert_eq!(event[0].id, entry["version"].to_string());
    let n = tokio::time::timeout(WAIT, push.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (n.blueprint_id.as_str(), n.version),
        ("cross-hub", entry["version"].as_i64().unwrap())
    );
    // Each hub on the one database signs checkpoints of the shared head with its own key.
    let mut keys = Vec::new();
    for hub in [&n0, &n1, &n2] {
        let (_, node) = hub.get("/api/v1/node").await;
        let key =
            sorcha_peer::keys::VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();
        let note = reqwest::get(hub.url("/api/v1/system-register/checkpoint"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let opened =
            sorcha_peer::register::checkpoint_note::open(&note, std::slice::from_ref(&key))
                .unwrap();
        assert_eq!(
            opened.checkpoint.version,
            entry["version"].as_i64().unwrap()
        );
        assert!(!keys.contains(&key), "every hub has its own key");
        keys.push(key);
    }
    for hub in [n0, n1, n2] {
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_survives_its_database_going_away_and_coming_back() {
    // This test runs its own server so it can stop and restart it (data kept in a folder).
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start_server = || {
        tokio::process::Command::new("secantusd-py")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
            ])
            .arg(data.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("secantusd-py must be installed (scripts/test.sh installs it)")
    };
    let uri = format!("mongodb://127.0.0.1:{port}");
    let mut server = start_server();
    wait_for("mongo server up", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::support::config(dir.path());
    cfg.store = uri;
    cfg.mongo.database = "outage".into();
    cfg.mongo.server_timeout = Duration::from_millis(800);
    let hub = TestHub::start_with(dir, cfg).await;
    assert_eq!(hub.publish("before", json!({})).await.0, 201);

    server.kill().await.unwrap();
    let _ = server.wait().await;
    let (status, problem) = hub.publish("during", json!({})).await;
    assert_eq!(status, 503, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("unavailable"),
        "{problem}"
    );
    assert_eq!(
        hub.get("/health").await.0,
        200,
        "liveness does not depend on the database"
    );
    let (ready, body) = hub.get("/ready").await;
    assert_eq!(ready, 503, "{body}");
    let (status, _) = hub.get("/api/v1/system-register/blueprints/before").await;
    assert_eq!(
        status, 503,
        "reads go to the database and say it is unavailable"
    );

    // The server returns on the same port: the hub recovers without a restart.
    let mut server = start_server();
    let (status, _) = wait_for("publish works again", || async {
        let r = hub.publish("after", json!({})).await;
        (r.0 == 201).then_some(r)
    })
    .await;
    assert_eq!(status, 201);
    assert_eq!(hub.get("/ready").await.0, 200);
    assert_eq!(
        get_json(hub.addr(), "/api/v1/system-register/verify").await["checked"],
        3
    );
    hub.stop().await;
    server.kill().await.unwrap();
}

/// The network-wide document limit is one that MongoDB holds: a document of exactly the
/// maximum is published through one hub, reaches the subscribers of another hub through its
/// tail, and replicates to a peer whose replica is on MongoDB; one byte more is 413 on every
/// backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_of_the_maximum_size_is_stored_tailed_and_replicated_on_mongodb() {
    use sorcha_peer::register::validation::MAX_DOCUMENT_BYTES;
    let db = fresh_database("maxdoc");
    // Hub b polls the head once an hour: only the change stream can tell it in time.
    let b_dir = tempfile::tempdir().unwrap();
    let mut b_cfg = mongo_hub_config(b_dir.path(), &db);
    b_cfg.mongo.poll_interval = Duration::from_secs(3600);
    let (a, b) = tokio::join!(mongo_hub(&db), TestHub::start_with(b_dir, b_cfg));
    let mut tail = sse(b.addr(), "?include=document", None).await;
    // Canonical `{"x":"…"}` is 8 bytes plus the string.
    let at_max = json!({ "x": "m".repeat(MAX_DOCUMENT_BYTES - 8) });
    let (status, entry) = a.publish("at-max", at_max.clone()).await;
    assert_eq!(status, 201, "{entry}");
    let over = json!({ "x": "m".repeat(MAX_DOCUMENT_BYTES - 7) });
    let (status, problem) = a.publish("over-max", over.clone()).await;
    assert_eq!(status, 413, "{problem}");
    let embedded = TestHub::start().await;
    let (status, problem) = embedded.publish("over-max", over).await;
    assert_eq!(status, 413, "{problem}");
    embedded.stop().await;

    // Hub b learned of it from the change stream (which carries keys, not the entry).
    let event = take_events(&mut tail, 1).await.remove(0);
    assert_eq!(event.id, entry["version"].to_string());
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["entry"]["checksum"], entry["checksum"]);
    assert_eq!(data["entry"]["document"], at_max);

    let peer_db = fresh_database("maxdoc_peer");
    let peer = TestHub::peer_of(vec![a.url("")], |c| {
        c.store = mongodb_uri();
        c.mongo.database = peer_db.clone();
    })
    .await;
    let version = entry["version"].as_i64().unwrap();
    wait_for("the peer to replicate the largest document", || async {
        let node = get_json(peer.addr(), "/api/v1/node").await;
        (node["register"]["headVersion"] == version).then_some(())
    })
    .await;
    let (status, replicated) = peer.get("/api/v1/system-register/blueprints/at-max").await;
    assert_eq!(status, 200);
    assert_eq!(replicated["checksum"], entry["checksum"]);
    let verify = get_json(peer.addr(), "/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    peer.stop().await;
    a.stop().await;
    b.stop().await;
}

/// An entry over MongoDB's limit (as an embedded hub of the previous release, whose limit was
/// 16 MiB of document, could hold): MongoDB refuses it as too large — a permanent error, not
/// "unavailable" — and a peer whose replica is on MongoDB reports that it cannot store it, by
/// name, instead of failing over or retrying as if the hub were down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_too_large_for_mongodb_is_a_permanent_named_error() {
    use sorcha_peer::register::entry::{EntryType, Expectation, NewEntry};
    use sorcha_peer::register::{chain, genesis};
    use sorcha_peer::store::StoreError;
    use sorcha_peer::store::embedded::EmbeddedStore;
    let document = format!("{{\"x\":\"{}\"}}", "o".repeat(16 * 1024 * 1024));
    let oversized = || NewEntry {
        blueprint_id: "oversized".into(),
        checksum: chain::checksum(document.as_bytes()),
        document: document.clone().into(),
        published_at: 1_700_000_000_000,
        published_by: "old-release".into(),
        is_active: true,
        publication_transaction_id: None,
        metadata: Default::default(),
        entry_type: EntryType::Published,
        signature: None,
    };

    let mongo = MongoStore::connect(
        &mongodb_uri(),
        &sorcha_peer::config::MongoConfig {
            database: fresh_database("toolarge"),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    mongo
        .append_entries(0, vec![genesis::genesis_entry()], None)
        .await
        .unwrap();
    let refused = mongo.append(oversized(), Expectation::Absent, None).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "{refused:?}"
    );

    // A hub whose embedded register already holds such an entry.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .append_entries(0, vec![genesis::genesis_entry()], None)
            .await
            .unwrap();
        store
            .append(oversized(), Expectation::Absent, None)
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let hub = TestHub::start_in(dir).await;
    let peer_db = fresh_database("toolarge_peer");
    let peer = TestHub::peer_of(vec![hub.url("")], |c| {
        c.store = mongodb_uri();
        c.mongo.database = peer_db.clone();
    })
    .await;
    let error = wait_for("the peer to report what it cannot store", || async {
        let connection = get_json(peer.addr(), "/api/v1/connection").await;
        connection["hubs"][0]["lastError"]
            .as_str()
            .filter(|e| e.contains("cannot store"))
            .map(str::to_owned)
    })
    .await;
    assert!(error.contains("permanent"), "{error}");
    let connection = get_json(peer.addr(), "/api/v1/connection").await;
    assert_eq!(connection["state"], "Connected", "{connection}");
    let node = get_json(peer.addr(), "/api/v1/node").await;
    assert_eq!(
        node["register"]["headVersion"], 1,
        "nothing of the batch applied"
    );
    // Its heartbeats tell the hub, whose fleet lists it as refusing its data.
    let refusal = wait_for("the hub to list the peer as refused", || async {
        let fleet = get_json(hub.addr(), "/api/v1/fleet?state=refused").await;
        fleet["peers"][0]["refusal"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        refusal.starts_with("refuses hub test-host's data: replica cannot store"),
        "{refusal}"
    );
    peer.stop().await;
    hub.stop().await;
}
