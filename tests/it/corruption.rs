//! Corruption of the store file is found by verification with the right first bad version, and
//! a hub on a corrupt register refuses writes without re-seeding or repairing anything.

use crate::support::{ADMIN, TestHub, binary, pid};
use r2d2_sqlite::rusqlite::{Connection, params};
use serde_json::json;
use sorcha_peer::store::embedded::DB_FILE;
use tempfile::TempDir;

/// A stopped hub's data dir holding genesis + 5 published entries (versions 1..=6).
async fn register_with_entries() -> TempDir {
    let hub = TestHub::start().await;
    for i in 0..5 {
        assert_eq!(
            hub.publish(&format!("c-{i}"), json!({"i": i, "text": "hello"}))
                .await
                .0,
            201
        );
    }
    hub.stop().await
}

fn tamper(dir: &TempDir, sql: &str) {
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let changed = conn.execute(sql, params![]).unwrap();
    assert_eq!(changed, 1, "tampering touched one row: {sql}");
}

async fn assert_detected(dir: TempDir, first_bad: i64, defect_word: &str) {
    // Offline check with the CLI.
    let out = std::process::Command::new(binary())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify exits 1: {stdout}");
    assert!(stdout.contains(&format!("version {first_bad}")), "{stdout}");

    let hub = TestHub::start_in(dir).await;
    let (status, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(status, 200);
    assert_eq!(verify["ok"], false);
    assert_eq!(verify["firstBadVersion"], first_bad, "{verify}");
    assert!(
        verify["error"].as_str().unwrap().contains(defect_word),
        "{verify}"
    );

    let (ready, _) = hub.get("/ready").await;
    assert_eq!(ready, 503);
    let (status, problem) = hub.publish("new-one", json!({})).await;
    assert_eq!(status, 503, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("version {first_bad}")),
        "{problem}"
    );
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/c-0/deprecate"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Nothing was re-seeded or repaired.
    let (_, genesis) = hub
        .get("/api/v1/system-register/entries?since=0&limit=1")
        .await;
    assert_eq!(genesis["items"][0]["blueprintId"], "register-creation-v1");
    let dir = hub.stop().await;
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let count: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE blueprint_id = 'register-creation-v1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn flipped_document_byte_is_reported() {
    let dir = register_with_entries().await;
    // "hello" → "jello" inside the document of version 3.
    tamper(
        &dir,
        "UPDATE entries SET document = CAST(replace(CAST(document AS TEXT), 'hello', 'jello') AS BLOB) WHERE version = 3",
    );
    assert_detected(dir, 3, "checksum").await;
}

#[tokio::test]
async fn broken_checksum_is_reported() {
    let dir = register_with_entries().await;
    tamper(
        &dir,
        "UPDATE entries SET checksum = 'sha256:' || substr('0000000000000000000000000000000000000000000000000000000000000000', 1, 64) WHERE version = 4",
    );
    assert_detected(dir, 4, "checksum").await;
}

#[tokio::test]
async fn broken_chain_is_reported() {
    let dir = register_with_entries().await;
    // A field covered only by the chain changes: the chain no longer follows.
    tamper(
        &dir,
        "UPDATE entries SET published_by = 'mallory' WHERE version = 5",
    );
    assert_detected(dir, 5, "chain").await;
}

#[tokio::test]
async fn replaced_chain_hash_is_reported() {
    let dir = register_with_entries().await;
    tamper(
        &dir,
        "UPDATE entries SET chain_hash = 'sha256:1111111111111111111111111111111111111111111111111111111111111111' WHERE version = 2",
    );
    assert_detected(dir, 2, "chain").await;
}

#[tokio::test]
async fn deleted_entry_is_reported_as_a_gap() {
    let dir = register_with_entries().await;
    tamper(&dir, "DELETE FROM entries WHERE version = 3");
    assert_detected(dir, 3, "expected version 3").await;
}

/// A stored row that cannot be read back (here: changed under a running hub) is the same
/// failure on both transports: REST 503 `register-corrupt`, gRPC `UNAVAILABLE` naming the
/// version — before the one error table, gRPC answered `INTERNAL`.
#[tokio::test]
async fn an_unreadable_row_is_corrupt_on_rest_and_grpc_alike() {
    use sorcha_peer::error_code::ErrorCode;
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::link::HubLink;
    use sorcha_peer::protocol::ConnectRequest;

    // A tiny recent window, so reads go to the store rather than memory.
    let hub = TestHub::configured(|c| c.limits.recent_window_bytes = 1).await;
    for i in 0..5 {
        assert_eq!(hub.publish(&format!("u-{i}"), json!({"i": i})).await.0, 201);
    }
    tamper(
        &hub.dir,
        "UPDATE entries SET entry_type = 99 WHERE version = 3",
    );

    let (status, problem) = hub
        .get("/api/v1/system-register/entries?since=0&limit=10")
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:sorcha:problem:register-corrupt");
    assert!(
        problem["detail"].as_str().unwrap().contains("version 3"),
        "{problem}"
    );

    let client = HubClient::connect(&hub.url(""), std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let request = ConnectRequest::new(pid("p-corrupt"));
    let grant = client.open_session(&request).await.unwrap();
    let mut stream = client
        .full_sync(&pid("p-corrupt"), &grant.session_id, None)
        .await
        .unwrap();
    let mut failure = None;
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        if let Err(e) = item {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("the sync reached the unreadable row");
    assert_eq!(failure.code, ErrorCode::Unavailable, "{failure}");
    assert!(
        failure.message.contains("integrity") && failure.message.contains("version 3"),
        "{failure}"
    );
}
