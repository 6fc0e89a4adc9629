//! A web app on another origin, in headless Chromium: a page served by the test from a second
//! origin fetches the register, follows the event stream from `?since=0`, keeps following it
//! across a node restart (the browser resumes with `Last-Event-ID`) and publishes with
//! `fetch` and a token; the same page from a third origin, not allowed, is blocked (asserted
//! in the page). With `auth.publicReads = false` the page reads with a header token and
//! subscribes with `?access_token=`, and the token is absent from the node's captured log.

use crate::dashboard::browser;
use crate::support::{PUBLISHER, publish, spawn_node_at, wait_for};
use fantoccini::Client;
use serde_json::{Value, json};
use std::net::SocketAddr;

const READER: &str = "cross-origin-reader-token-0123";

/// The web app: it records what it saw in `window.result` for the test to read.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title></head><body>
<script>
'use strict';
const q = new URLSearchParams(location.search);
const node = q.get('node');
const reader = q.get('reader');
const result = window.result = { fetched: null, fetchError: null, events: [], caughtUp: [],
  opens: 0, errors: 0, state: null, published: null, publishError: null };
const headers = reader ? { authorization: `Bearer ${reader}` } : {};
fetch(`${node}/api/v1/system-register`, { headers })
  .then((r) => r.json()).then((j) => { result.fetched = j; })
  .catch((e) => { result.fetchError = String(e); });
const auth = reader ? `&access_token=${encodeURIComponent(reader)}` : '';
const source = new EventSource(`${node}/api/v1/system-register/events?since=0${auth}`);
source.onopen = () => { result.opens += 1; result.state = source.readyState; };
source.onerror = () => { result.errors += 1; result.state = source.readyState; };
for (const type of ['blueprint.published', 'blueprint.updated', 'blueprint.deprecated']) {
  source.addEventListener(type, (e) => {
    result.events.push({ id: e.lastEventId, blueprintId: JSON.parse(e.data).blueprintId });
  });
}
source.addEventListener('caught-up', (e) => { result.caughtUp.push(JSON.parse(e.data)); });
window.publish = (id, token) => fetch(`${node}/api/v1/system-register/blueprints`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  body: JSON.stringify({ blueprintId: id, document: { from: location.origin } }),
}).then((r) => { result.published = { status: r.status, location: r.headers.get('location') }; })
  .catch((e) => { result.publishError = String(e); });
</script></body></html>"#;

/// Serves [`PAGE`] on a free loopback port: a separate origin.
async fn page_origin() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

async fn result(client: &Client) -> Value {
    client
        .execute("return window.result || null;", vec![])
        .await
        .unwrap()
}

/// Waits (bounded) until the page's result satisfies `done`.
async fn page_until(client: &Client, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || async {
        let r = result(client).await;
        done(&r).then_some(r)
    })
    .await
}

fn event_ids(r: &Value) -> Vec<i64> {
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn start_node(
    dir: &std::path::Path,
    listen: &str,
    allowed: &str,
    closed: bool,
) -> crate::support::ChildNode {
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\ntoken = \"{PUBLISHER}\"\nidentity = \"alice\"\nrole = \"publisher\"\n\
             [[tokens]]\ntoken = \"{READER}\"\nidentity = \"web\"\nrole = \"reader\"\n"
        ),
    )
    .unwrap();
    let public = if closed { "false" } else { "true" };
    spawn_node_at(
        &dir.join("data"),
        listen,
        &[
            "--role",
            "hub",
            "--config",
            file.to_str().unwrap(),
            "--cors-origin",
            allowed,
        ],
        &[
            ("RUST_LOG", "debug"),
            ("SORCHA_SSE__RETRY", "200ms"),
            ("SORCHA_AUTH__PUBLIC_READS", public),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_reads_follows_resumes_and_publishes() {
    let (allowed, _a) = page_origin().await;
    let (blocked, _b) = page_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_node(dir.path(), "127.0.0.1:0", &allowed, false).await;
    let addr: SocketAddr = node.addr;
    let node_url = format!("http://{addr}");
    let http = reqwest::Client::new();
    assert_eq!(
        publish(&http, addr, PUBLISHER, "before-page", json!({}))
            .await
            .0,
        201
    );

    let (client, _driver) = browser().await;
    client
        .goto(&format!("{allowed}/?node={node_url}"))
        .await
        .unwrap();
    let r = page_until(&client, "the page caught up", |r| {
        r["caughtUp"].as_array().is_some_and(|c| !c.is_empty()) && !r["fetched"].is_null()
    })
    .await;
    assert_eq!(r["fetched"]["headVersion"], 2, "{r}");
    assert_eq!(event_ids(&r), vec![1, 2], "the replay from ?since=0");
    assert_eq!(r["caughtUp"][0]["headVersion"], 2);

    // Publish from the page with a token: the 201 and its Location are readable there.
    client
        .execute(
            &format!("window.publish('from-page', '{PUBLISHER}');"),
            vec![],
        )
        .await
        .unwrap();
    let r = page_until(&client, "the page's publish and its event", |r| {
        !r["published"].is_null() && event_ids(r).contains(&3)
    })
    .await;
    assert_eq!(r["published"]["status"], 201, "{r}");
    assert_eq!(
        r["published"]["location"],
        "/api/v1/system-register/blueprints/from-page"
    );

    // The node restarts; meanwhile an entry is published. The browser reconnects by itself
    // with Last-Event-ID and gets exactly the entries it missed.
    node.child.kill().await.unwrap();
    let _ = node.child.wait().await;
    page_until(&client, "the page notices the restart", |r| {
        r["errors"].as_u64() >= Some(1)
    })
    .await;
    node = start_node(dir.path(), &addr.to_string(), &allowed, false).await;
    assert_eq!(
        publish(&http, addr, PUBLISHER, "after-restart", json!({}))
            .await
            .0,
        201
    );
    let r = page_until(&client, "events after the restart", |r| {
        event_ids(r).contains(&4) && r["caughtUp"].as_array().is_some_and(|c| c.len() >= 2)
    })
    .await;
    assert_eq!(event_ids(&r), vec![1, 2, 3, 4], "no gap, no duplicate: {r}");
    assert!(r["opens"].as_u64() >= Some(2), "{r}");

    // The same page from an origin the node does not allow: blocked, in the page.
    client
        .goto(&format!("{blocked}/?node={node_url}"))
        .await
        .unwrap();
    let r = page_until(&client, "the blocked page gives up", |r| {
        !r["fetchError"].is_null() && r["state"] == 2
    })
    .await;
    assert!(r["fetched"].is_null(), "{r}");
    assert!(r["events"].as_array().unwrap().is_empty(), "{r}");
    client
        .execute(
            &format!("window.publish('from-blocked', '{PUBLISHER}');"),
            vec![],
        )
        .await
        .unwrap();
    let r = page_until(&client, "the blocked publish fails", |r| {
        !r["publishError"].is_null()
    })
    .await;
    assert!(r["published"].is_null(), "{r}");
    let missing = http
        .get(format!(
            "{node_url}/api/v1/system-register/blueprints/from-blocked"
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(missing, 404, "the preflight stopped the write");

    // Reads closed: the page reads with its token and subscribes with ?access_token=.
    node.child.kill().await.unwrap();
    let _ = node.child.wait().await;
    let node = start_node(dir.path(), &addr.to_string(), &allowed, true).await;
    assert_eq!(
        http.get(format!("{node_url}/api/v1/system-register"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    client
        .goto(&format!("{allowed}/?node={node_url}&reader={READER}"))
        .await
        .unwrap();
    let r = page_until(&client, "the page reads with its token", |r| {
        !r["fetched"].is_null() && r["caughtUp"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
    assert_eq!(r["fetched"]["headVersion"], 4, "{r}");
    assert_eq!(event_ids(&r), vec![1, 2, 3, 4]);
    crate::dashboard::screenshot(&client, "cross-origin.png").await;
    client.close().await.unwrap();

    let log = node.log();
    assert!(
        log.contains("access_token=<redacted>"),
        "the stream is in the log"
    );
    assert!(!log.contains(READER), "the token is in the log:\n{log}");
}
