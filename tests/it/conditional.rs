//! Conditional requests through real sockets: `ETag`, `If-None-Match` → 304, `If-Match` → 412
//! (exactly one of N concurrent writers wins, on the embedded store and across hubs on
//! MongoDB), `HEAD`, the immutable `/entries/{version}` and `Cache-Control`.

use crate::support::{PUBLISHER, TestHub, fresh_database, mongo_hub_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

const BP: &str = "/api/v1/system-register/blueprints/cond";

async fn put(hub: &TestHub, if_match: Option<&str>, title: &str) -> reqwest::Response {
    let mut r = hub
        .http
        .put(hub.url(BP))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": {"title": title}}));
    if let Some(tag) = if_match {
        r = r.header("if-match", tag);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn etags_304_and_412_on_a_blueprint() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("cond", json!({"title": "v1"})).await.0, 201);
    let get = |inm: Option<&'static str>| {
        let mut r = hub.http.get(hub.url(BP));
        if let Some(tag) = inm {
            r = r.header("if-none-match", tag);
        }
        r.send()
    };
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "\"2\"");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    for tag in ["\"2\"", "W/\"2\"", "\"1\", \"2\"", "*"] {
        let r = get(Some(tag)).await.unwrap();
        assert_eq!(r.status(), 304, "{tag}");
        assert_eq!(header(&r, "etag"), "\"2\"");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    assert_eq!(get(Some("\"1\"")).await.unwrap().status(), 200);
    assert_eq!(
        get(Some("2")).await.unwrap().status(),
        200,
        "not an entity tag: matches nothing, so the blueprint is sent"
    );

    // If-Match: the version the writer read.
    let r = put(&hub, Some("\"2\""), "v2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "\"3\"");
    let stale = put(&hub, Some("\"2\""), "lost update").await;
    assert_eq!(stale.status(), 412);
    assert_eq!(header(&stale, "etag"), "\"3\"", "the current version");
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["type"], "urn:sorcha:problem:precondition-failed");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at version 3, not 2"),
        "{problem}"
    );
    for tag in ["W/\"3\"", "\"abc\""] {
        assert_eq!(
            put(&hub, Some(tag), "x").await.status(),
            412,
            "{tag} never matches"
        );
    }
    assert_eq!(put(&hub, Some("*"), "any").await.status(), 200);
    let garbage = put(&hub, Some("3, 4"), "x").await;
    assert_eq!(
        garbage.status(),
        412,
        "names no version: the condition is false"
    );
    let problem: Value = garbage.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("names no version"),
        "{problem}"
    );
    let (_, now) = hub.get(BP).await;
    assert_eq!(now["version"], 4);
    assert_eq!(
        now["document"]["title"], "any",
        "the refused writes changed nothing"
    );

    // Deprecate honours If-Match too.
    let deprecate = |tag: &'static str| {
        hub.http
            .post(hub.url(&format!("{BP}/deprecate")))
            .bearer_auth(PUBLISHER)
            .header("if-match", tag)
            .send()
    };
    assert_eq!(deprecate("\"3\"").await.unwrap().status(), 412);
    let r = deprecate("\"4\"").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), "\"5\"");
}

/// N writers read version `v` and race to replace it: exactly one wins.
async fn race(hubs: &[&TestHub], writers: usize, expected: i64) -> (usize, usize) {
    let tag = format!("\"{expected}\"");
    let mut tasks = Vec::new();
    for i in 0..writers {
        let hub = hubs[i % hubs.len()];
        let (http, url, tag) = (hub.http.clone(), hub.url(BP), tag.clone());
        tasks.push(tokio::spawn(async move {
            http.put(url)
                .bearer_auth(PUBLISHER)
                .header("if-match", tag)
                .json(&json!({"document": {"writer": i}}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let stale = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    (ok, stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_n_concurrent_conditional_updates_wins() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("cond", json!({})).await.0, 201);
    for round in 0..3 {
        let expected = 2 + round;
        assert_eq!(race(&[&hub], 16, expected).await, (1, 15), "round {round}");
    }
    let (_, register) = hub.get("/api/v1/system-register").await;
    assert_eq!(
        register["headVersion"], 5,
        "three winners, nothing else appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_n_concurrent_conditional_updates_wins_across_hubs_on_mongodb() {
    let db = fresh_database("ifmatch");
    let start = || async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = mongo_hub_config(dir.path(), &db);
        TestHub::start_with(dir, cfg).await
    };
    let (a, b) = (start().await, start().await);
    assert_eq!(a.publish("cond", json!({})).await.0, 201);
    assert_eq!(race(&[&a, &b], 12, 2).await, (1, 11));
    let (_, on_b) = b.get(BP).await;
    assert_eq!(on_b["version"], 3);
    let (_, verify) = a.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (verify["ok"].as_bool(), verify["checked"].as_i64()),
        (Some(true), Some(3))
    );
}

#[tokio::test]
async fn the_register_the_log_single_entries_and_head() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("one", json!({"n": 1})).await.0, 201);
    for path in [
        "/api/v1/system-register",
        "/api/v1/system-register/entries?since=1",
    ] {
        let r = hub.http.get(hub.url(path)).send().await.unwrap();
        assert_eq!(header(&r, "etag"), "\"2\"", "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        let r = hub
            .http
            .get(hub.url(path))
            .header("if-none-match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{path}");
    }
    assert_eq!(hub.publish("two", json!({"n": 2})).await.0, 201);
    let r = hub
        .http
        .get(hub.url("/api/v1/system-register"))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "etag")),
        (200, "\"3\"".into())
    );

    // One entry: immutable.
    let r = hub
        .http
        .get(hub.url("/api/v1/system-register/entries/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&r, "etag"), "\"2\"");
    let entry: Value = r.json().await.unwrap();
    assert_eq!(
        (
            entry["blueprintId"].as_str(),
            entry["document"]["n"].as_i64()
        ),
        (Some("one"), Some(1))
    );
    let r = hub
        .http
        .get(hub.url("/api/v1/system-register/entries/2"))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    for (path, status) in [("4", 404), ("0", 400), ("abc", 400), ("-1", 400)] {
        let r = hub
            .http
            .get(hub.url(&format!("/api/v1/system-register/entries/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(header(&r, "content-type"), "application/problem+json");
    }

    // HEAD wherever GET: headers, no body.
    for path in [
        "/health",
        "/api/v1/node",
        "/api/v1/system-register",
        "/api/v1/system-register/blueprints",
        "/api/v1/system-register/blueprints/one",
        "/api/v1/system-register/blueprints/one/history",
        "/api/v1/system-register/entries",
        "/api/v1/system-register/entries/2",
        "/api/v1/system-register/verify",
    ] {
        let r = hub
            .http
            .request(Method::HEAD, hub.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(!header(&r, "content-type").is_empty(), "{path}");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    let r = hub
        .http
        .request(
            Method::HEAD,
            hub.url("/api/v1/system-register/blueprints/one"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "etag"), "\"2\"");
}
