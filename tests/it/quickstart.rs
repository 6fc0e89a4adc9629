//! The quickstart scenario with real processes: three hubs on one MongoDB, two peers (one
//! keeping its replica in MongoDB too), push, failover hub by hub, isolation, and recovery.

use crate::support::{
    ADMIN, ChildNode, fresh_database, get_json, mongodb_uri, spawn_node_at, wait_for,
};
use serde_json::json;
use std::net::SocketAddr;

async fn hub(dir: &std::path::Path, listen: &str, db: &str) -> ChildNode {
    let uri = mongodb_uri();
    spawn_node_at(
        dir,
        listen,
        &["--role", "hub", "--store", &uri],
        &[
            ("SORCHA_MONGO__DATABASE", db),
            ("SORCHA_MONGO__POLL_INTERVAL", "100ms"),
        ],
    )
    .await
}

const PEER_FLAGS: [&str; 14] = [
    "--role",
    "peer",
    "--heartbeat-interval",
    "100ms",
    "--heartbeat-timeout",
    "300ms",
    "--backoff-initial",
    "20ms",
    "--backoff-max",
    "100ms",
    "--attempts-per-hub",
    "2",
    "--resubscribe-delay",
    "100ms",
];

async fn state(peer: SocketAddr) -> (String, String) {
    let c = get_json(peer, "/api/v1/connection").await;
    (
        c["state"].as_str().unwrap_or("").to_owned(),
        c["currentHub"].as_str().unwrap_or("").to_owned(),
    )
}

async fn head(addr: SocketAddr) -> i64 {
    get_json(addr, "/api/v1/system-register").await["headVersion"]
        .as_i64()
        .unwrap_or(-1)
}

async fn publish(addr: SocketAddr, id: &str) -> i64 {
    let (status, entry) = crate::support::publish(
        &reqwest::Client::new(),
        addr,
        ADMIN,
        id,
        json!({"title": id}),
    )
    .await;
    assert_eq!(status, 201, "{entry}");
    entry["version"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_three_hubs_two_peers() {
    let db = fresh_database("quickstart");
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut n0 = hub(dirs[0].path(), "127.0.0.1:0", &db).await;
    let mut n1 = hub(dirs[1].path(), "127.0.0.1:0", &db).await;
    let mut n2 = hub(dirs[2].path(), "127.0.0.1:0", &db).await;
    let hubs = [n0.addr, n1.addr, n2.addr].map(|a| format!("http://{a}"));
    for i in 0..10 {
        publish(n0.addr, &format!("qs-{i}")).await;
    }
    let mut peer_args: Vec<&str> = PEER_FLAGS.to_vec();
    for h in &hubs {
        peer_args.extend(["--hub", h.as_str()]);
    }
    let p1 = spawn_node_at(
        dirs[3].path(),
        "127.0.0.1:0",
        &[peer_args.as_slice(), &["--node-id", "p1"]].concat(),
        &[],
    )
    .await;
    let replica_db = fresh_database("replica");
    let uri = mongodb_uri();
    let p2 = spawn_node_at(
        dirs[4].path(),
        "127.0.0.1:0",
        &[peer_args.as_slice(), &["--node-id", "p2", "--store", &uri]].concat(),
        &[("SORCHA_MONGO__DATABASE", &replica_db)],
    )
    .await;
    let peers = [p1.addr, p2.addr];

    let wait_all = |version: i64| async move {
        for p in peers {
            wait_for(&format!("peer {p} at {version}"), || async move {
                (head(p).await == version).then_some(())
            })
            .await;
        }
    };
    let wait_on = |hub: String| async move {
        for p in peers {
            let hub = hub.clone();
            wait_for(&format!("peer {p} on {hub}"), || {
                let hub = hub.clone();
                async move { (state(p).await == ("Connected".to_owned(), hub)).then_some(()) }
            })
            .await;
        }
    };
    // Both peers fully synced; a publish reaches both by push (periodic sync is 5 minutes).
    wait_all(11).await;
    wait_on(hubs[0].clone()).await;
    let v = publish(n1.addr, "via-n1").await;
    wait_all(v).await;

    // Kill n0: both peers move to n1 and keep their replicas (no full resync on n1).
    n0.child.kill().await.unwrap();
    wait_on(hubs[1].clone()).await;
    let v = publish(n1.addr, "after-n0").await;
    wait_all(v).await;
    assert_eq!(
        get_json(n1.addr, "/api/v1/peers").await["fullSyncs"],
        0,
        "failover kept the replicas"
    );

    // Kill n1 → n2; kill n2 → both isolated and still serving.
    n1.child.kill().await.unwrap();
    wait_on(hubs[2].clone()).await;
    n2.child.kill().await.unwrap();
    for p in peers {
        wait_for("isolated", || async move {
            (state(p).await.0 == "Isolated").then_some(())
        })
        .await;
        assert_eq!(get_json(p, "/health").await["status"], "ok");
        assert_eq!(
            get_json(p, "/api/v1/system-register/blueprints/qs-3").await["blueprintId"],
            "qs-3"
        );
    }

    // n1 comes back on its address and publishes: both peers reconnect and receive it.
    let n1_listen = n1.addr.to_string();
    let n1 = wait_for("n1 restarts on its port", || {
        let listen = n1_listen.clone();
        let dir = dirs[1].path().to_owned();
        let db = db.clone();
        async move {
            std::net::TcpListener::bind(&listen).ok()?;
            Some(hub(&dir, &listen, &db).await)
        }
    })
    .await;
    wait_on(hubs[1].clone()).await;
    let v = publish(n1.addr, "after-isolation").await;
    wait_all(v).await;
    for p in peers {
        assert_eq!(
            get_json(p, "/api/v1/system-register/verify").await["ok"],
            true
        );
    }
    drop((n1, n2, p1, p2));
}
