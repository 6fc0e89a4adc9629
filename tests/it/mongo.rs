//! The MongoDB backend: conformance, several hubs on one database, cross-hub push, and a
//! database that goes away and comes back.

use crate::support::{
    TestHub, WAIT, fresh_database, get_json, mongo_hub_config, mongodb_uri, publish_client,
    sorted_versions, sse, take_events, wait_for,
};
use futures::StreamExt;
use serde_json::json;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_on_one_database_publish_concurrently() {
    let db = fresh_database("cluster");
    // All three start at once on an empty database: exactly one genesis.
    let (n0, n1, n2) = tokio::join!(mongo_hub(&db), mongo_hub(&db), mongo_hub(&db));
    let hubs = [n0, n1, n2];
    let mut tasks = Vec::new();
    for (h, hub) in hubs.iter().enumerate() {
        for client in 0..4 {
            tasks.push(publish_client(hub.addr(), format!("h{h}-c{client}"), 25));
        }
    }
    let versions = sorted_versions(tasks).await;
    assert_eq!(
        versions,
        (2..=301).collect::<Vec<_>>(),
        "contiguous and unique across hubs"
    );
    for hub in &hubs {
        let verify = get_json(hub.addr(), "/api/v1/system-register/verify").await;
        assert_eq!(verify["ok"], true, "{verify}");
        assert_eq!(verify["checked"], 301);
    }
    for hub in hubs {
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_through_one_hub_reaches_subscribers_of_the_others() {
    use sorcha_peer::api::grpc::client::HubClient;
    use sorcha_peer::protocol::{ConnectRequest, Filters, PeerDescription};
    let db = fresh_database("crosshub");
    let n0 = mongo_hub(&db).await;
    let n1 = mongo_hub(&db).await;
    let n2 = mongo_hub(&db).await;
    let mut browser = sse(n0.addr(), "", None).await;
    let mut client = HubClient::connect(&n2.url(""), WAIT).await.unwrap();
    let grant = client
        .open_session(&ConnectRequest {
            peer_id: "watcher".into(),
            peer: PeerDescription {
                node_type: "Peer".into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut push = client
        .subscribe("watcher", &grant.session_id, &Filters::default(), 0)
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
