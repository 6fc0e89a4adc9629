//! SSE: live order, resume without gaps or duplicates, filters, slow readers.

use crate::support::{ADMIN, PUBLISHER, TestHub, WAIT, sse, take_events, wait_for};
use futures::StreamExt;
use serde_json::{Value, json};

fn versions(events: &[eventsource_stream::Event]) -> Vec<i64> {
    events.iter().map(|e| e.id.parse().unwrap()).collect()
}

#[tokio::test]
async fn live_events_arrive_in_order_and_resume_exactly() {
    let hub = TestHub::start().await;
    let mut live = sse(hub.addr(), "", None).await;
    for i in 0..5 {
        assert_eq!(
            hub.publish(&format!("bp-{i}"), json!({"i": i})).await.0,
            201
        );
    }
    let events = take_events(&mut live, 5).await;
    assert_eq!(versions(&events), [2, 3, 4, 5, 6]);
    assert!(events.iter().all(|e| e.event == "blueprint.published"));
    let data: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(data["blueprintId"], "bp-0");
    assert_eq!(data["version"], 2);
    assert!(data["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert!(data.get("entry").is_none());

    // An update and a deprecation get their own event types.
    let r = hub
        .http
        .put(hub.url("/api/v1/system-register/blueprints/bp-0"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": {"i": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints/bp-1/deprecate"))
        .bearer_auth(PUBLISHER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = take_events(&mut live, 2).await;
    assert_eq!(events[0].event, "blueprint.updated");
    assert_eq!(events[1].event, "blueprint.deprecated");

    // Reconnect with Last-Event-ID: 3 → exactly 4..=8, then live.
    let mut resumed = sse(hub.addr(), "?since=0", Some("3")).await;
    let replay = take_events(&mut resumed, 5).await;
    assert_eq!(versions(&replay), [4, 5, 6, 7, 8]);
    hub.publish("bp-late", json!({})).await;
    let next = take_events(&mut resumed, 1).await;
    assert_eq!(versions(&next), [9], "no duplicates, no gaps");

    // ?since= replays from the store with full entries on request.
    let mut from_start = sse(hub.addr(), "?since=0&include=document", None).await;
    let all = take_events(&mut from_start, 9).await;
    assert_eq!(versions(&all), (1..=9).collect::<Vec<_>>());
    let first: Value = serde_json::from_str(&all[0].data).unwrap();
    assert_eq!(first["entry"]["document"]["id"], "register-creation-v1");
    hub.stop().await;
}

#[tokio::test]
async fn filters_select_blueprint_publisher_and_type() {
    let hub = TestHub::start().await;
    for i in 0..4 {
        hub.publish(&format!("f-{i}"), json!({})).await;
    }
    hub.http
        .put(hub.url("/api/v1/system-register/blueprints/f-2"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": {"v": 2}}))
        .send()
        .await
        .unwrap();

    let mut by_id = sse(hub.addr(), "?since=0&blueprintId=f-2", None).await;
    assert_eq!(versions(&take_events(&mut by_id, 2).await), [4, 6]);
    let mut by_type = sse(hub.addr(), "?since=0&type=updated", None).await;
    assert_eq!(versions(&take_events(&mut by_type, 1).await), [6]);
    let mut by_publisher = sse(hub.addr(), "?since=0&publishedBy=system", None).await;
    assert_eq!(versions(&take_events(&mut by_publisher, 1).await), [1]);
    // Filtered-out events never arrive: after alice's publish comes the admin's, and the
    // admin's is the next event a publishedBy=admin subscriber sees.
    let mut by_admin = sse(hub.addr(), "?since=6&publishedBy=admin", None).await;
    assert_eq!(hub.publish("f-9", json!({})).await.0, 201);
    let (status, sentinel) =
        crate::support::publish(&hub.http, hub.addr(), ADMIN, "f-admin", json!({})).await;
    assert_eq!(status, 201);
    let next = take_events(&mut by_admin, 1).await;
    assert_eq!(
        versions(&next),
        [sentinel["version"].as_i64().unwrap()],
        "alice's publish (version 7) must not reach a publishedBy=admin subscriber"
    );

    for bad in [
        "?type=exploded",
        "?blueprintId=a%20b",
        "?since=-4",
        "?include=everything",
    ] {
        let r = hub
            .http
            .get(hub.url(&format!("/api/v1/system-register/events{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = hub
        .http
        .get(hub.url("/api/v1/system-register/events"))
        .header("Last-Event-ID", "x\r\n")
        .send()
        .await;
    // reqwest refuses to send a header with CR/LF; a bad but sendable value gets 400.
    assert!(r.is_err());
    let r = hub
        .http
        .get(hub.url("/api/v1/system-register/events"))
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_do_not_hold_up_publishing_and_miss_nothing() {
    let hub = TestHub::start().await;
    // 100 readers that connect and then read nothing while 200 entries are published.
    let mut readers = Vec::new();
    for _ in 0..100 {
        readers.push(sse(hub.addr(), "", None).await);
    }
    let http = reqwest::Client::new();
    let doc = json!({"payload": "x".repeat(2000)});
    tokio::time::timeout(WAIT, async {
        for i in 0..200 {
            let (status, _) = crate::support::publish(
                &http,
                hub.addr(),
                PUBLISHER,
                &format!("s-{i}"),
                doc.clone(),
            )
            .await;
            assert_eq!(status, 201);
        }
    })
    .await
    .expect("publishing must not wait for readers");
    // Now every reader catches up, in order, with nothing missing.
    for reader in &mut readers {
        let events = take_events(reader, 200).await;
        assert_eq!(versions(&events), (2..=201).collect::<Vec<_>>());
    }
    hub.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_cleanly() {
    let hub = TestHub::start().await;
    let mut stream = sse(hub.addr(), "", None).await;
    let stopping = tokio::spawn(hub.stop());
    let end = tokio::time::timeout(WAIT, async { while stream.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "stream ended on shutdown");
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn stream_sends_retry_once_and_keep_alive_comments() {
    // Configured keep-alive is 200 ms; read raw bytes until two comment lines have arrived.
    let hub = TestHub::start().await;
    let response = hub
        .http
        .get(hub.url("/api/v1/system-register/events"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while text.matches("\n:").count() + usize::from(text.starts_with(':')) < 2 {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("keep-alive comments arrive");
    assert_eq!(text.matches("retry:").count(), 1, "{text:?}");
    assert!(text.starts_with("retry: 2000\n"), "{text:?}");
    hub.stop().await;
}

/// Reads from `stream` until `text` holds `needle` (bounded by [`WAIT`]).
async fn read_until(stream: &mut tokio::net::TcpStream, text: &mut String, needle: &str) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        while !text.contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?} arrived: {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} did not arrive: {text:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_streams_are_served_lean_and_released_when_the_client_leaves() {
    use crate::observability::{sample, scrape};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::start().await;
    let subscribers = || async {
        sample(
            &scrape(&hub).await,
            "sorcha_peer_subscribers{transport=\"sse\"}",
        )
    };

    // The first request of an HTTP/1.1 connection: the lean path (chunked, then closed).
    let mut raw = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    raw.write_all(
        b"GET /api/v1/system-register/events?blueprintId=lean HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut text = String::new();
    read_until(&mut raw, &mut text, "retry: 2000\n\n").await;
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
        "connection: close",
        "date: ",
    ] {
        assert!(head.contains(line), "{line} missing in {head}");
    }
    hub.publish("other", json!({})).await;
    hub.publish("lean", json!({"x": 1})).await;
    let mut events = String::new();
    read_until(&mut raw, &mut events, "\"blueprintId\":\"lean\"").await;
    assert!(
        events.contains("id: 3\nevent: blueprint.published\ndata: {"),
        "{events}"
    );
    assert!(!events.contains("id: 2\n"), "the filter applies: {events}");
    assert_eq!(subscribers().await, Some(1.0));

    // A client leaving a quiet stream releases its subscription.
    drop(raw);
    wait_for("the subscription released", || async {
        (subscribers().await == Some(0.0)).then_some(())
    })
    .await;

    // Errors from the same handler arrive whole, then the connection closes.
    let mut bad = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    bad.write_all(b"GET /api/v1/system-register/events?since=-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, bad.read_to_end(&mut answer))
        .await
        .expect("closed after the answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("content-type: application/problem+json"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        answer.contains(&format!("content-length: {}\r\n", body.len())),
        "{answer}"
    );
    assert!(body.contains("since -1 is negative"), "{body}");

    // HTTP/1.0 (no chunked coding) is left to hyper and still gets its stream.
    let mut old = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    old.write_all(b"GET /api/v1/system-register/events HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    read_until(&mut old, &mut text, "retry: 2000\n\n").await;
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    hub.stop().await;
}
