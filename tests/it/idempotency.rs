//! Safe retries through real sockets: `Idempotency-Key` replays of publish, update and
//! deprecate (also after a restart, and through a second hub on MongoDB), key reuse (422),
//! malformed keys (400), concurrent retries, the retention, and `publicationTransactionId`
//! repeats; and data written by the release before the records existed (fixtures).

use crate::support::{
    PUBLISHER, TestHub, config, fresh_database, mongo_hub_config, mongodb_uri, wait_for,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const BLUEPRINTS: &str = "/api/v1/system-register/blueprints";

/// One write's answer: status, `Idempotent-Replayed`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    replayed: bool,
    body: Value,
}

async fn write(
    hub: &TestHub,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut r = hub
        .http
        .request(method, hub.url(path))
        .bearer_auth(PUBLISHER);
    if let Some(key) = key {
        r = r.header("idempotency-key", key);
    }
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let replayed = match r.headers().get("idempotent-replayed") {
        None => false,
        Some(v) => {
            assert_eq!(v, "true");
            true
        }
    };
    Answer {
        status: r.status().as_u16(),
        replayed,
        body: r.json().await.unwrap_or(Value::Null),
    }
}

async fn publish(hub: &TestHub, key: Option<&str>, body: Value) -> Answer {
    write(hub, Method::POST, BLUEPRINTS, key, Some(body)).await
}

async fn update(hub: &TestHub, id: &str, key: Option<&str>, body: Value) -> Answer {
    write(
        hub,
        Method::PUT,
        &format!("{BLUEPRINTS}/{id}"),
        key,
        Some(body),
    )
    .await
}

async fn deprecate(hub: &TestHub, id: &str, key: Option<&str>) -> Answer {
    let path = format!("{BLUEPRINTS}/{id}/deprecate");
    write(hub, Method::POST, &path, key, Some(json!({}))).await
}

async fn head(hub: &TestHub) -> i64 {
    hub.get("/api/v1/system-register").await.1["headVersion"]
        .as_i64()
        .unwrap()
}

/// The first answer again, marked replayed: same status, same entry.
fn assert_replay(first: &Answer, again: &Answer) {
    assert_eq!(again.status, first.status, "{again:?}");
    assert!(again.replayed, "{again:?}");
    assert!(!first.replayed);
    assert_eq!(again.body, first.body, "the original entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_a_key_replay_publish_update_and_deprecate_also_after_a_restart() {
    let hub = TestHub::start().await;
    let body = json!({"blueprintId": "safe", "document": {"title": "v1"}, "metadata": {"a": "1"}});
    let published = publish(&hub, Some("key-publish"), body.clone()).await;
    assert_eq!(published.status, 201, "{:?}", published.body);
    assert_eq!(published.body["version"], 2);
    // The same body written differently is the same request (canonical JSON); the quoted
    // structured-field form of a key is the same key.
    let reordered =
        json!({"metadata": {"a": "1"}, "document": {"title": "v1"}, "blueprintId": "safe"});
    let again = publish(&hub, Some("\"key-publish\""), reordered).await;
    assert_replay(&published, &again);

    // An update expecting version 2: its retry replays although the blueprint has moved on.
    let put = |key| {
        let hub = &hub;
        async move {
            let r = hub
                .http
                .put(hub.url(&format!("{BLUEPRINTS}/safe")))
                .bearer_auth(PUBLISHER)
                .header("idempotency-key", key)
                .header("if-match", "\"2\"")
                .json(&json!({"document": {"title": "v2"}}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().contains_key("idempotent-replayed"),
                r.headers()["etag"].to_str().unwrap().to_owned(),
                r.json::<Value>().await.unwrap(),
            )
        }
    };
    let updated = put("key-update").await;
    assert_eq!(
        (updated.0, updated.1, updated.2.as_str()),
        (200, false, "\"3\"")
    );
    let retried = put("key-update").await;
    assert_eq!(
        (retried.0, retried.1, retried.2.as_str()),
        (200, true, "\"3\"")
    );
    assert_eq!(retried.3, updated.3);
    assert_eq!(
        put("key-other").await.0,
        412,
        "a new request is still conditional"
    );

    let deprecated = deprecate(&hub, "safe", Some("key-deprecate")).await;
    assert_eq!(deprecated.status, 200);
    let again = deprecate(&hub, "safe", Some("key-deprecate")).await;
    assert_replay(&deprecated, &again);
    assert_eq!(
        deprecate(&hub, "safe", None).await.status,
        409,
        "without the key it is a second deprecation"
    );
    assert_eq!(head(&hub).await, 4, "three writes, no more");

    // After a restart the keys are still there.
    let cfg = config(hub.dir.path());
    let hub = hub.restart_with(cfg).await;
    assert_replay(&published, &publish(&hub, Some("key-publish"), body).await);
    assert_replay(
        &deprecated,
        &deprecate(&hub, "safe", Some("key-deprecate")).await,
    );
    assert_eq!(head(&hub).await, 4);
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("sorcha_peer_idempotent_replays_total 2"),
        "two replays since the restart"
    );
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused_and_malformed_keys_are_400() {
    let hub = TestHub::start().await;
    let first = publish(
        &hub,
        Some("k1"),
        json!({"blueprintId": "one", "document": {}}),
    )
    .await;
    assert_eq!(first.status, 201);
    // Another body, another path, another operation: each is another request.
    let reuses = [
        publish(
            &hub,
            Some("k1"),
            json!({"blueprintId": "one", "document": {"x": 1}}),
        )
        .await,
        publish(
            &hub,
            Some("k1"),
            json!({"blueprintId": "two", "document": {}}),
        )
        .await,
        update(&hub, "one", Some("k1"), json!({"document": {}})).await,
        deprecate(&hub, "one", Some("k1")).await,
    ];
    for reuse in &reuses {
        assert_eq!(reuse.status, 422, "{reuse:?}");
        assert_eq!(
            reuse.body["type"], "urn:sorcha:problem:idempotency-key-reused",
            "{reuse:?}"
        );
        assert!(
            reuse.body["detail"].as_str().unwrap().contains("\"k1\""),
            "{reuse:?}"
        );
    }

    let long = "k".repeat(256);
    for (key, says) in [
        ("\"\"", "an empty key"),
        (long.as_str(), "256 characters"),
        ("two words", "needs the key in quotes"),
        ("\"unterminated", "structured-field string"),
        ("\"tab\there\"", "structured-field string"),
    ] {
        let r = publish(
            &hub,
            Some(key),
            json!({"blueprintId": "bad", "document": {}}),
        )
        .await;
        assert_eq!(r.status, 400, "{key}: {r:?}");
        assert_eq!(r.body["type"], "urn:sorcha:problem:invalid-idempotency-key");
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{key}: {r:?}"
        );
    }
    let ok = "k".repeat(255);
    assert_eq!(
        publish(
            &hub,
            Some(&ok),
            json!({"blueprintId": "at-limit", "document": {}})
        )
        .await
        .status,
        201,
        "255 characters is the limit"
    );
    let two = hub
        .http
        .post(hub.url(BLUEPRINTS))
        .bearer_auth(PUBLISHER)
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&json!({"blueprintId": "bad", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
    let (status, _) = hub.get(&format!("{BLUEPRINTS}/bad")).await;
    assert_eq!(status, 404, "nothing was written");
    assert_eq!(head(&hub).await, 3);
}

/// `n` concurrent retries of one update (same key, same body), spread over `hubs`: whether
/// each was replayed, and the version it answered.
async fn concurrent_retries(
    hubs: &[&TestHub],
    n: usize,
    key: &str,
    body: Value,
) -> Vec<(bool, i64)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let hub = hubs[i % hubs.len()];
        let (http, url) = (
            hub.http.clone(),
            hub.url(&format!("{BLUEPRINTS}/{}", body["id"].as_str().unwrap())),
        );
        let (key, document) = (key.to_owned(), body["request"].clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .put(url)
                .bearer_auth(PUBLISHER)
                .header("idempotency-key", key)
                .json(&document)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let replayed = r.headers().contains_key("idempotent-replayed");
            let body: Value = r.json().await.unwrap();
            (replayed, body["version"].as_i64().unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_request_write_once() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("busy", json!({})).await.0, 201);
    let request = json!({"id": "busy", "request": {"document": {"title": "once"}}});
    let answers = concurrent_retries(&[&hub], 16, "same-retry", request).await;
    assert_eq!(answers.iter().filter(|(replayed, _)| !replayed).count(), 1);
    assert!(answers.iter().all(|(_, v)| *v == 3), "{answers:?}");
    assert_eq!(head(&hub).await, 3);
}

#[tokio::test]
async fn a_publication_transaction_id_names_one_entry() {
    let hub = TestHub::start().await;
    let body =
        json!({"blueprintId": "tx", "document": {"t": 1}, "publicationTransactionId": "tx-1"});
    let first = publish(&hub, None, body.clone()).await;
    assert_eq!(first.status, 201);
    assert_replay(&first, &publish(&hub, None, body).await);
    let other = publish(
        &hub,
        None,
        json!({"blueprintId": "tx-other", "document": {}, "publicationTransactionId": "tx-1"}),
    )
    .await;
    assert_eq!(other.status, 409, "{other:?}");
    assert_eq!(
        other.body["type"],
        "urn:sorcha:problem:transaction-id-exists"
    );
    assert!(
        other.body["detail"].as_str().unwrap().contains("version 2"),
        "{other:?}"
    );

    // The lost answer: a PUT retried with its transaction id appends once.
    let put = json!({"document": {"t": 2}, "publicationTransactionId": "tx-2"});
    let updated = update(&hub, "tx", None, put.clone()).await;
    assert_eq!(updated.status, 200);
    assert_replay(&updated, &update(&hub, "tx", None, put).await);
    let changed = update(
        &hub,
        "tx",
        None,
        json!({"document": {"t": 3}, "publicationTransactionId": "tx-2"}),
    )
    .await;
    assert_eq!(changed.status, 409, "{changed:?}");
    // A fresh key does not make a used transaction id new.
    let keyed = update(
        &hub,
        "tx",
        Some("fresh"),
        json!({"document": {"t": 3}, "publicationTransactionId": "tx-2"}),
    )
    .await;
    assert_eq!(keyed.status, 409);
    assert_eq!(head(&hub).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_forgotten_after_the_retention() {
    let hub = TestHub::configured(|c| c.idempotency.retention = Duration::from_millis(300)).await;
    assert_eq!(hub.publish("kept", json!({})).await.0, 201);
    let put = || {
        update(
            &hub,
            "kept",
            Some("short-lived"),
            json!({"document": {"n": 1}}),
        )
    };
    let first = put().await;
    assert_eq!(
        (first.status, first.body["version"].as_i64()),
        (200, Some(3))
    );
    let db = hub.dir.path().join("register.sqlite");
    let records = || {
        let c = r2d2_sqlite::rusqlite::Connection::open_with_flags(
            &db,
            r2d2_sqlite::rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    assert_eq!(records(), 1, "the key is recorded with its entry");
    // The housekeeping deletes it once it is older than the retention.
    wait_for("the expired key to be deleted", || async {
        (records() == 0).then_some(())
    })
    .await;
    let later = put().await;
    assert_eq!(
        (later.status, later.replayed, later.body["version"].as_i64()),
        (200, false, Some(4)),
        "a forgotten key is a new request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_hub_on_mongodb_replays() {
    let db = fresh_database("idempotency");
    let start = || async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = mongo_hub_config(dir.path(), &db);
        TestHub::start_with(dir, cfg).await
    };
    let (a, b) = (start().await, start().await);
    let body = json!({"blueprintId": "shared", "document": {"n": 1}});
    let first = publish(&a, Some("m-key"), body.clone()).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_replay(&first, &publish(&b, Some("m-key"), body).await);
    let reuse = publish(
        &b,
        Some("m-key"),
        json!({"blueprintId": "shared2", "document": {}}),
    )
    .await;
    assert_eq!(reuse.status, 422);

    // Concurrent retries of one update, spread over both hubs: one append.
    let request = json!({"id": "shared",
        "request": {"document": {"n": 2}, "publicationTransactionId": "m-tx"}});
    let answers = concurrent_retries(&[&a, &b], 12, "m-retry", request).await;
    assert_eq!(answers.iter().filter(|(r, _)| !r).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|(_, v)| *v == 3), "{answers:?}");

    // The transaction id, written through one hub, is known to the other.
    let again = update(
        &b,
        "shared",
        None,
        json!({"document": {"n": 2}, "publicationTransactionId": "m-tx"}),
    )
    .await;
    assert_eq!((again.status, again.replayed), (200, true));
    let other = update(
        &a,
        "shared",
        None,
        json!({"document": {"n": 9}, "publicationTransactionId": "m-tx"}),
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(head(&a).await, 3);
    let (_, verify) = b.get("/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true);
}

/// What both fixtures of release 74a613b must show after the upgrade: the register verifies;
/// a repeat of the PUT that release appended twice answers with the first of the two; another
/// request with a used transaction id is refused; new keyed writes work.
async fn check_upgraded(hub: &TestHub, head_hash: &str) {
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["headVersion"], 6);
    assert_eq!(verify["headHash"], head_hash);
    // The fixture was written with identity `admin`; the test publisher is another identity,
    // so its repeat is another request.
    let repeat =
        json!({"document": {"title": "Loan approval v2"}, "publicationTransactionId": "tx-loan-2"});
    let r = hub
        .http
        .put(hub.url(&format!("{BLUEPRINTS}/loan-approval")))
        .bearer_auth("fixture-admin-token-0123456789")
        .json(&repeat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let entry: Value = r.json().await.unwrap();
    assert_eq!(entry["version"], 3, "the first of the two");
    let other = update(hub, "loan-approval", None, repeat).await;
    assert_eq!(other.status, 409, "{other:?}");
    let keyed = publish(
        hub,
        Some("after-upgrade"),
        json!({"blueprintId": "after-upgrade", "document": {}}),
    )
    .await;
    assert_eq!(
        (keyed.status, keyed.body["version"].as_i64()),
        (201, Some(7))
    );
    let again = publish(
        hub,
        Some("after-upgrade"),
        json!({"blueprintId": "after-upgrade", "document": {}}),
    )
    .await;
    assert_replay(&keyed, &again);
}

fn fixture_admin(cfg: &mut sorcha_peer::config::Config) {
    cfg.admin_token = Some(sorcha_peer::config::Secret(
        "fixture-admin-token-0123456789".into(),
    ));
}

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/release-74a613b"
);

/// A data dir of the release before idempotency records opens, gains the records' table and
/// the transaction-id index, and works; opening it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_release_before_idempotency_records_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{FIXTURES}/register.sqlite"),
        dir.path().join("register.sqlite"),
    )
    .unwrap();
    let mut cfg = config(dir.path());
    fixture_admin(&mut cfg);
    let hub = TestHub::start_with(dir, cfg.clone()).await;
    check_upgraded(
        &hub,
        "sha256:f0c9c0f616e86b17dbefad492bb99ff5f1206b9d83e9e8dee16571d8ecc48005",
    )
    .await;
    let hub = hub.restart_with(cfg).await;
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (verify["ok"].as_bool(), verify["headVersion"].as_i64()),
        (Some(true), Some(7))
    );
    let again = publish(
        &hub,
        Some("after-upgrade"),
        json!({"blueprintId": "after-upgrade", "document": {}}),
    )
    .await;
    assert_eq!((again.status, again.replayed), (201, true), "{again:?}");
    let dir = hub.stop().await;
    let c = r2d2_sqlite::rusqlite::Connection::open(dir.path().join("register.sqlite")).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in ["entries_by_transaction", "idempotency_keys"] {
        assert!(names.contains(&name.to_owned()), "{names:?}");
    }
}

/// A MongoDB database of the release before idempotency records (its entries collection,
/// exported in Extended JSON) opens on a hub and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_database_of_the_release_before_idempotency_records_upgrades() {
    use mongodb::bson::{Bson, Document};
    let exported: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/mongo-entries.json")).unwrap(),
    )
    .unwrap();
    let docs: Vec<Document> = exported
        .as_array()
        .unwrap()
        .iter()
        .map(|d| match Bson::try_from(d.clone()).unwrap() {
            Bson::Document(d) => d,
            other => panic!("not a document: {other:?}"),
        })
        .collect();
    let database = fresh_database("upgrade");
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    client
        .database(&database)
        .collection::<Document>(sorcha_peer::store::mongo::ENTRIES)
        .insert_many(docs)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mongo_hub_config(dir.path(), &database);
    fixture_admin(&mut cfg);
    let hub = TestHub::start_with(dir, cfg).await;
    check_upgraded(
        &hub,
        "sha256:2524b031041b3d7e5254f43c7ed1d2db46e2f700d2d31268e3fb883a437f7825",
    )
    .await;
}
