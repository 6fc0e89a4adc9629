//! Crash safety: a hub killed with SIGKILL in the middle of a publish storm keeps every
//! publish it acknowledged, its chain verifies after restart, and a peer that replicated during
//! the storm converges on it.

use crate::support::{
    ADMIN, TestHub, WAIT, get_json, publish, spawn_node, spawn_node_at, wait_for,
};
use serde_json::json;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = spawn_node(dir.path(), &[]).await;
    let hub_addr = node.addr;
    let peer = TestHub::peer_of(vec![format!("http://{hub_addr}")], |_| {}).await;
    // The child has only the admin token, so it publishes.
    let acked: Arc<Mutex<Vec<(String, i64, String)>>> = Arc::default();
    let addr = node.addr;
    let mut publishers = Vec::new();
    for p in 0..8 {
        let acked = Arc::clone(&acked);
        publishers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..10_000 {
                let id = format!("p{p}-{i}");
                let r = http
                    .post(format!("http://{addr}/api/v1/system-register/blueprints"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"blueprintId": id, "document": {"i": i, "pad": "z".repeat(512)}}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(entry) = r.json::<serde_json::Value>().await else {
                    return;
                };
                acked.lock().unwrap().push((
                    id,
                    entry["version"].as_i64().unwrap(),
                    entry["checksum"].as_str().unwrap().to_owned(),
                ));
            }
        }));
    }
    // Kill once a good number of publishes were acknowledged.
    tokio::time::timeout(WAIT, async {
        while acked.lock().unwrap().len() < 300 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("publishes were acknowledged");
    node.child.kill().await.unwrap();
    for p in publishers {
        tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let node = spawn_node_at(dir.path(), &hub_addr.to_string(), &[], &[]).await;
    let http = reqwest::Client::new();
    for (id, version, checksum) in &acked {
        let r = http
            .get(format!(
                "http://{}/api/v1/system-register/blueprints/{id}",
                node.addr
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged {id} lost");
        let entry: serde_json::Value = r.json().await.unwrap();
        assert_eq!(entry["version"].as_i64(), Some(*version));
        assert_eq!(entry["checksum"].as_str(), Some(checksum.as_str()));
    }
    let verify: serde_json::Value = http
        .get(format!(
            "http://{}/api/v1/system-register/verify",
            node.addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["checked"].as_i64().unwrap() > acked.len() as i64);
    // The restarted node still accepts writes, and the peer converges on it.
    let (status, _) = publish(&http, node.addr, ADMIN, "after-crash", json!({})).await;
    assert_eq!(status, 201);
    let head = |addr| async move {
        let r = get_json(addr, "/api/v1/system-register").await;
        (
            r["headVersion"].as_i64(),
            r["headHash"].as_str().map(str::to_owned),
        )
    };
    wait_for("the peer to converge on the restarted hub", || async {
        (head(node.addr).await == head(peer.addr()).await).then_some(())
    })
    .await;
    let report = get_json(peer.addr(), "/api/v1/system-register/verify").await;
    assert_eq!(report["ok"], true, "{report}");
}
