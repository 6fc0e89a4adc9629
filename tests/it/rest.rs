//! REST over a real socket: round trip, bad input, concurrency, OpenAPI snapshot.

use crate::support::{ADMIN, PUBLISHER, TestHub, publish_client, sorted_versions};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn publish_get_update_deprecate_history_round_trip() {
    let hub = TestHub::start().await;
    let doc = json!({"title": "Loan approval", "participants": [{"id": "bank"}], "actions": []});
    let (status, created) = hub.publish("loan-approval", doc.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 2);
    assert_eq!(created["type"], "published");
    assert_eq!(created["publishedBy"], "alice");
    assert_eq!(created["document"], doc);
    assert!(created["checksum"].as_str().unwrap().starts_with("sha256:"));

    let (status, got) = hub
        .get("/api/v1/system-register/blueprints/loan-approval")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    let doc2 = json!({"title": "Loan approval v2", "actions": [{"id": 1}]});
    let r = hub
        .http
        .put(hub.url("/api/v1/system-register/blueprints/loan-approval"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": doc2, "metadata": {"change": "add action"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(
        (updated["version"].as_i64(), updated["type"].as_str()),
        (Some(3), Some("updated"))
    );
    assert_eq!(updated["metadata"]["change"], "add action");

    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/loan-approval/deprecate"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deprecated: Value = r.json().await.unwrap();
    assert_eq!(deprecated["type"], "deprecated");
    assert_eq!(deprecated["isActive"], false);
    assert_eq!(deprecated["publishedBy"], "admin");
    assert_eq!(
        deprecated["document"], doc2,
        "deprecation keeps the document"
    );

    // Deprecating twice is a conflict.
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/loan-approval/deprecate"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let (_, history) = hub
        .get("/api/v1/system-register/blueprints/loan-approval/history")
        .await;
    let versions: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3, 4]);
    let types: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["published", "updated", "deprecated"]);

    let (_, active) = hub
        .get("/api/v1/system-register/blueprints?active=true")
        .await;
    let ids: Vec<_> = active["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["blueprintId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["register-creation-v1"]);
    let (_, inactive) = hub
        .get("/api/v1/system-register/blueprints?active=false")
        .await;
    assert_eq!(inactive["items"][0]["blueprintId"], "loan-approval");
    assert!(
        inactive["items"][0].get("document").is_none(),
        "listings omit documents"
    );

    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["checked"], 4);
    hub.stop().await;
}

#[tokio::test]
async fn listing_and_log_page_through_everything() {
    let hub = TestHub::start().await;
    for i in 0..25 {
        assert_eq!(
            hub.publish(&format!("bp-{i:02}"), json!({"i": i})).await.0,
            201
        );
    }
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = hub
            .get(&format!(
                "/api/v1/system-register/blueprints?limit=10{cursor}"
            ))
            .await;
        assert_eq!(status, 200);
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["blueprintId"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 26);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    let mut versions = Vec::new();
    let mut since = 0;
    loop {
        let (_, page) = hub
            .get(&format!(
                "/api/v1/system-register/entries?since={since}&limit=7"
            ))
            .await;
        versions.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["version"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => since = next.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(versions, (1..=26).collect::<Vec<_>>());
    hub.stop().await;
}

async fn expect_problem(response: reqwest::Response, status: u16, detail_contains: &str) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "detail {detail:?} lacks {detail_contains:?}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_problem_and_changes_nothing() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("keep", json!({"a": 1})).await.0, 201);
    let before = hub.get("/api/v1/system-register").await.1;
    let post = || {
        hub.http
            .post(hub.url("/api/v1/system-register/blueprints"))
            .bearer_auth(PUBLISHER)
    };

    // Oversized document: 17 MiB of JSON string.
    let big = json!({"blueprintId": "big", "document": {"x": "a".repeat(17 * 1024 * 1024)}});
    expect_problem(post().json(&big).send().await.unwrap(), 413, "limit").await;
    // A document just over 16 MiB but a body within the limit.
    let over = json!({"blueprintId": "big", "document": {"x": "a".repeat(16 * 1024 * 1024)}});
    expect_problem(post().json(&over).send().await.unwrap(), 413, "limit").await;
    // Non-object document.
    let r = post()
        .json(&json!({"blueprintId": "arr", "document": [1, 2]}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "must be a JSON object").await;
    // Bad blueprint ids.
    for id in ["", "has space", "../../etc/passwd", &"x".repeat(256)] {
        let r = post()
            .json(&json!({"blueprintId": id, "document": {}}))
            .send()
            .await
            .unwrap();
        expect_problem(r, 400, "blueprintId").await;
    }
    // Malformed JSON.
    let r = post()
        .header("content-type", "application/json")
        .body("{\"blueprintId\": ")
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "").await;
    // Not JSON at all.
    let r = post().body("hello").send().await.unwrap();
    expect_problem(r, 415, "application/json").await;
    // Unknown field.
    let r = post()
        .json(&json!({"blueprintId": "u", "document": {}, "colour": 1}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "colour").await;
    // Metadata too large.
    let r = post()
        .json(&json!({"blueprintId": "m", "document": {}, "metadata": {"k": "v".repeat(5000)}}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "metadata").await;
    // Duplicate id.
    let r = post()
        .json(&json!({"blueprintId": "keep", "document": {"a": 2}}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 409, "already exists").await;
    // Missing and wrong tokens.
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .json(&json!({"blueprintId": "t", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    expect_problem(r, 401, "missing").await;
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .bearer_auth("nope")
        .json(&json!({"blueprintId": "t", "document": {}}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "not valid").await;
    // Unknown blueprint on get, update and deprecate.
    expect_problem(
        hub.http
            .get(hub.url("/api/v1/system-register/blueprints/ghost"))
            .send()
            .await
            .unwrap(),
        404,
        "ghost",
    )
    .await;
    let r = hub
        .http
        .put(hub.url("/api/v1/system-register/blueprints/ghost"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": {}}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "ghost").await;
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/ghost/deprecate"))
        .bearer_auth(PUBLISHER)
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "ghost").await;
    // Bad paging.
    expect_problem(
        hub.http
            .get(hub.url("/api/v1/system-register/entries?since=-1"))
            .send()
            .await
            .unwrap(),
        400,
        "negative",
    )
    .await;
    expect_problem(
        hub.http
            .get(hub.url("/api/v1/system-register/entries?limit=0"))
            .send()
            .await
            .unwrap(),
        400,
        "limit",
    )
    .await;
    expect_problem(
        hub.http
            .get(hub.url("/api/v1/system-register/entries?since=abc"))
            .send()
            .await
            .unwrap(),
        400,
        "since",
    )
    .await;
    expect_problem(
        hub.http.get(hub.url("/nowhere")).send().await.unwrap(),
        404,
        "/nowhere",
    )
    .await;

    let after = hub.get("/api/v1/system-register").await.1;
    assert_eq!(before, after, "nothing stored changed");
    let (_, kept) = hub.get("/api/v1/system-register/blueprints/keep").await;
    assert_eq!(kept["document"], json!({"a": 1}));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_publishes_from_sixteen_clients_stay_contiguous() {
    let hub = Arc::new(TestHub::start().await);
    let tasks = (0..16)
        .map(|c| {
            publish_client(
                hub.addr(),
                format!("c{c}"),
                1000 / 16 + usize::from(c < 1000 % 16),
            )
        })
        .collect();
    let versions = sorted_versions(tasks).await;
    assert_eq!(versions, (2..=1001).collect::<Vec<_>>());
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["checked"], 1001);
    Arc::into_inner(hub).unwrap().stop().await;
}

#[tokio::test]
async fn served_openapi_matches_the_committed_document() {
    let hub = TestHub::start().await;
    let (status, served) = hub.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(&served).unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        committed == served,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test served_openapi` and commit it"
    );
    let swagger = hub.http.get(hub.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(swagger.status(), 200);
    hub.stop().await;
}
