//! Browsers as clients, through real sockets: the CORS policy on every REST path, the event
//! stream (both server paths) and gRPC-Web; read access with a header and with
//! `?access_token=`; the `caught-up` marker; `X-Accel-Buffering`; start-up errors of the CORS
//! settings. The headless-Chromium test of the same is in `cross_origin.rs`.

use crate::support::{ADMIN, PUBLISHER, TestHub, WAIT, sse};
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sorcha_peer::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The page origin the test hubs allow.
pub const ALLOWED: &str = "http://127.0.0.1:5101";
/// An origin they do not.
pub const OTHER: &str = "http://127.0.0.1:5102";
/// A reader token configured by [`closed_reads`].
pub const READER: &str = "test-reader-token-0123456789";

fn allow_page(cfg: &mut Config) {
    cfg.cors.allowed_origins = vec![ALLOWED.to_owned(), "https://app.example.com".to_owned()];
}

/// Reads need a token; a reader token exists.
fn closed_reads(cfg: &mut Config) {
    cfg.auth.public_reads = false;
    crate::support::add_reader(cfg, READER);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

/// Each REST path of the OpenAPI document with sample path parameters, and its methods.
fn rest_paths() -> Vec<(String, Vec<Method>)> {
    let doc = serde_json::to_value(sorcha_peer::api::openapi()).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let path = path.replace("{id}", "bp-1").replace("{peerId}", "peer-1");
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter_map(|m| m.to_uppercase().parse::<Method>().ok())
                .filter(|m| *m != Method::OPTIONS)
                .collect();
            (path, methods)
        })
        .collect()
}

async fn preflight(hub: &TestHub, path: &str, origin: &str, method: &str) -> reqwest::Response {
    hub.http
        .request(Method::OPTIONS, hub.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key,if-match,if-none-match,last-event-id",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn preflights_answer_every_rest_path_with_its_methods_and_refuse_other_origins() {
    let hub = TestHub::configured(allow_page).await;
    let paths = rest_paths();
    assert!(paths.len() >= 15, "{paths:?}");
    assert!(
        paths
            .iter()
            .any(|(p, _)| p == sorcha_peer::api::sse::EVENTS_PATH)
    );
    for (path, methods) in &paths {
        for method in methods {
            let r = preflight(&hub, path, ALLOWED, method.as_str()).await;
            assert_eq!(r.status(), 200, "{method} {path}");
            let h = r.headers();
            assert_eq!(header(h, "access-control-allow-origin"), ALLOWED, "{path}");
            let allowed: Vec<&str> = header(h, "access-control-allow-methods")
                .split(',')
                .map(str::trim)
                .collect();
            let mut expected: Vec<&str> = methods.iter().map(Method::as_str).collect();
            expected.sort_unstable();
            let mut got = allowed.clone();
            got.sort_unstable();
            assert_eq!(got, expected, "{path}: exactly the path's methods");
            let allow_headers = header(h, "access-control-allow-headers");
            for name in [
                "authorization",
                "content-type",
                "idempotency-key",
                "if-match",
                "if-none-match",
                "last-event-id",
            ] {
                assert!(allow_headers.contains(name), "{path}: {allow_headers}");
            }
            assert!(header(h, "vary").contains("origin"), "{path}");
            assert_eq!(header(h, "access-control-max-age"), "600");
            assert!(h.get("access-control-allow-credentials").is_none());
        }
        // Another origin: refused, with no CORS header at all.
        let r = preflight(&hub, path, OTHER, methods[0].as_str()).await;
        assert_eq!(r.status(), 403, "{path}");
        assert!(
            cors_headers(r.headers()).is_empty(),
            "{path}: {:?}",
            r.headers()
        );
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("cors.allowedOrigins"),
            "{problem}"
        );
    }
    // Origins are compared as browsers serialize them (case-insensitively).
    let r = preflight(
        &hub,
        "/api/v1/system-register",
        "https://APP.example.com",
        "GET",
    )
    .await;
    assert_eq!(r.status(), 200);
    // An OPTIONS that is not a preflight is still a method the path lacks.
    let plain = hub
        .http
        .request(Method::OPTIONS, hub.url("/api/v1/system-register"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 405);
}

#[tokio::test]
async fn responses_carry_cors_headers_for_allowed_origins_only() {
    let hub = TestHub::configured(allow_page).await;
    let get = |origin: &'static str| {
        hub.http
            .get(hub.url("/api/v1/system-register"))
            .header("origin", origin)
            .send()
    };
    let allowed = get(ALLOWED).await.unwrap();
    assert_eq!(allowed.status(), 200);
    let h = allowed.headers();
    assert_eq!(header(h, "access-control-allow-origin"), ALLOWED);
    let exposed = header(h, "access-control-expose-headers");
    for name in [
        "etag",
        "location",
        "retry-after",
        "idempotent-replayed",
        "grpc-status",
        "grpc-message",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
    let other = get(OTHER).await.unwrap();
    assert_eq!(
        other.status(),
        200,
        "served; the browser keeps it from the page"
    );
    assert!(
        cors_headers(other.headers()).is_empty(),
        "{:?}",
        other.headers()
    );

    // A publish from the page: its 201 and its Location are readable by the page.
    let published = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .header("origin", ALLOWED)
        .bearer_auth(PUBLISHER)
        .json(&json!({"blueprintId": "from-page", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    assert_eq!(
        header(published.headers(), "access-control-allow-origin"),
        ALLOWED
    );

    // gRPC-Web follows the same policy: preflight and call from the page, refused elsewhere.
    let path = "/sorcha.peer.v1.CentralNodeConnection/GetCentralNodeStatus";
    let r = hub
        .http
        .request(Method::OPTIONS, hub.url(path))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), ALLOWED);
    assert!(header(r.headers(), "access-control-allow-headers").contains("x-grpc-web"));
    let r = hub
        .http
        .request(Method::OPTIONS, hub.url(path))
        .header("origin", OTHER)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "gRPC-Web no longer allows any origin");
    let call = hub
        .http
        .post(hub.url(path))
        .header("origin", ALLOWED)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(
        header(call.headers(), "access-control-allow-origin"),
        ALLOWED
    );
    assert!(header(call.headers(), "access-control-expose-headers").contains("grpc-status"));
}

#[tokio::test]
async fn without_allowed_origins_only_same_origin_pages_are_served() {
    let hub = TestHub::start().await;
    let r = preflight(&hub, "/api/v1/system-register", ALLOWED, "GET").await;
    assert_eq!(r.status(), 403);
    assert!(cors_headers(r.headers()).is_empty());
    // The dashboard's own requests (same origin: Origin is the node's) work as before.
    let own = format!("http://{}", hub.addr());
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .header("origin", own)
        .bearer_auth(PUBLISHER)
        .json(&json!({"blueprintId": "same-origin", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(cors_headers(r.headers()).is_empty());
}

#[tokio::test]
async fn any_origin_with_a_star() {
    let hub = TestHub::configured(|c| c.cors.allowed_origins = vec!["*".into()]).await;
    let r = preflight(&hub, "/api/v1/system-register/blueprints", OTHER, "POST").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), "*");
}

/// Sends a raw HTTP/1.1 event-stream request (the lean path) and returns the response head.
async fn raw_events_head(addr: std::net::SocketAddr, query: &str, extra: &str) -> (String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            format!("GET /api/v1/system-register/events{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut read = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        // The head and the first frames (retry, caught-up) arrive at once.
        while !String::from_utf8_lossy(&read).contains("caught-up") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&read));
            read.extend_from_slice(&buf[..n]);
            if read.starts_with(b"HTTP/1.1 4") {
                break;
            }
        }
    })
    .await
    .expect("the stream answers");
    let text = String::from_utf8(read).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn event_streams_carry_cors_and_proxy_headers_on_both_server_paths() {
    let hub = TestHub::configured(allow_page).await;
    // The lean HTTP/1.1 path (it closes the connection after the stream).
    let (head, _) = raw_events_head(hub.addr(), "", &format!("Origin: {ALLOWED}\r\n")).await;
    assert!(
        head.contains("connection: close"),
        "served by the lean path: {head}"
    );
    assert!(
        head.contains(&format!("access-control-allow-origin: {ALLOWED}")),
        "{head}"
    );
    assert!(head.contains("access-control-expose-headers: "), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let (head, _) = raw_events_head(hub.addr(), "", &format!("Origin: {OTHER}\r\n")).await;
    assert!(!head.contains("access-control-"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");

    // hyper's path (HTTP/2).
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(hub.url("/api/v1/system-register/events"))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), ALLOWED);
    assert_eq!(header(r.headers(), "x-accel-buffering"), "no");
    assert!(header(r.headers(), "access-control-expose-headers").contains("etag"));
}

#[tokio::test]
async fn caught_up_follows_the_replay_and_comes_at_once_otherwise() {
    let hub = TestHub::start().await;
    for id in ["a", "b", "c"] {
        assert_eq!(hub.publish(id, json!({"id": id})).await.0, 201);
    }
    let (_, register) = hub.get("/api/v1/system-register").await;
    let head_hash = register["headHash"].as_str().unwrap().to_owned();
    assert_eq!(register["headVersion"], 4);

    // Replay of 1..4, then the marker (no id), then live entries.
    let (_, body) = raw_events_head(hub.addr(), "?since=0", "").await;
    let frames: Vec<&str> = body.split("\n\n").collect();
    let marker = frames
        .iter()
        .find(|f| f.contains("event: caught-up"))
        .unwrap();
    assert!(!marker.contains("id:"), "the marker has no id: {marker}");
    let before: Vec<&&str> = frames
        .iter()
        .take_while(|f| !f.contains("caught-up"))
        .filter(|f| f.contains("id: "))
        .collect();
    assert_eq!(before.len(), 4, "the whole replay comes first: {body}");
    let data: Value = serde_json::from_str(marker.split("data: ").nth(1).unwrap().trim()).unwrap();
    assert_eq!(
        data,
        json!({"headVersion": 4, "headHash": head_hash, "ahead": false})
    );

    let mut all = raw_sse(&hub, "?since=1&blueprintId=b", None).await;
    let first = next_event(&mut all).await;
    assert_eq!(
        (first.id.as_str(), first.event.as_str()),
        ("3", "blueprint.published")
    );
    let marker = next_event(&mut all).await;
    assert_eq!(
        marker.event, "caught-up",
        "filtered replays end at the head too"
    );
    assert!(marker.id.is_empty() || marker.id == "3", "no id of its own");
    assert_eq!(hub.publish("b2", json!({})).await.0, 201);

    // Nothing to replay (no position, or the head itself): at once.
    for (query, last_event_id) in [("", None), ("?since=5", None), ("", Some("5"))] {
        let mut s = raw_sse(&hub, query, last_event_id).await;
        let e = next_event(&mut s).await;
        assert_eq!(e.event, "caught-up", "{query} {last_event_id:?}");
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["headVersion"], 5);
        assert_eq!(data["ahead"], false);
    }
    // A position beyond this node's head: at once, ahead, then entries after the position.
    let mut s = raw_sse(&hub, "?since=6", None).await;
    let e = next_event(&mut s).await;
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (e.event.as_str(), &data["ahead"]),
        ("caught-up", &json!(true))
    );
    assert_eq!(data["headVersion"], 5);
    for id in ["d6", "d7"] {
        assert_eq!(hub.publish(id, json!({})).await.0, 201);
    }
    let e = next_event(&mut s).await;
    assert_eq!(
        (e.id.as_str(), e.event.as_str()),
        ("7", "blueprint.published")
    );
}

/// Every event (the marker included) of a stream.
async fn raw_sse(
    hub: &TestHub,
    query: &str,
    last_event_id: Option<&str>,
) -> impl futures::Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    use eventsource_stream::Eventsource;
    let mut request = hub
        .http
        .get(hub.url(&format!("/api/v1/system-register/events{query}")));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    Box::pin(
        r.bytes_stream()
            .eventsource()
            .filter_map(|e| async move { e.ok().filter(|e| !e.data.is_empty()) }),
    )
}

/// The next event other than a `checkpoint` (those come once a second; `trust` tests them).
async fn next_event(
    s: &mut (impl futures::Stream<Item = eventsource_stream::Event> + Unpin),
) -> eventsource_stream::Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = s.next().await.expect("the stream goes on");
            if e.event != "checkpoint" {
                return e;
            }
        }
    })
    .await
    .expect("an event in time")
}

#[tokio::test]
async fn reads_need_a_token_when_public_reads_is_off() {
    let hub = TestHub::configured(|c| {
        closed_reads(c);
        c.auth.public_metrics = false;
    })
    .await;
    let get = |path: &'static str, token: Option<&'static str>| {
        let mut r = hub.http.get(hub.url(path));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        r.send()
    };
    for path in [
        "/api/v1/system-register",
        "/api/v1/node",
        "/api/v1/system-register/blueprints",
        "/api/v1/system-register/blueprints/register-creation-v1",
        "/api/v1/system-register/entries",
        "/api/v1/system-register/verify",
        "/api/v1/peers",
        "/metrics",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(header(r.headers(), "www-authenticate"), "Bearer");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("token"),
            "{problem}"
        );
        for token in [READER, PUBLISHER, ADMIN] {
            let r = get(path, Some(token)).await.unwrap();
            assert!(
                r.status().is_success(),
                "{path} with a token: {}",
                r.status()
            );
        }
        assert_eq!(
            get(path, Some("not-a-token-at-all-000"))
                .await
                .unwrap()
                .status(),
            401
        );
    }
    for open in ["/health", "/ready", "/", "/openapi.json"] {
        assert_eq!(get(open, None).await.unwrap().status(), 200, "{open}");
    }
    // A reader cannot write.
    let r = hub
        .http
        .post(hub.url("/api/v1/system-register/blueprints"))
        .bearer_auth(READER)
        .json(&json!({"blueprintId": "by-reader", "document": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The event stream: a header or ?access_token=.
    let events = "/api/v1/system-register/events";
    assert_eq!(get(events, None).await.unwrap().status(), 401);
    let mut s = raw_sse(&hub, &format!("?access_token={READER}"), None).await;
    assert_eq!(next_event(&mut s).await.event, "caught-up");
    let (head, _) = raw_events_head(
        hub.addr(),
        "",
        &format!("Authorization: Bearer {READER}\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for bad in [
        "?access_token=wrong-token-0000000000",
        "?access_token=",
        "?since=0&access_token=x",
    ] {
        let r = hub
            .http
            .get(hub.url(&format!("{events}{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        let body = r.text().await.unwrap();
        assert!(body.contains("access_token is not valid"), "{body}");
        assert!(
            !body.contains("wrong-token"),
            "the token is never echoed: {body}"
        );
    }
    // ?access_token= is for the event stream only.
    let r = get(
        "/api/v1/system-register?access_token=test-reader-token-0123456789",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("only on the event stream"));
}

#[tokio::test]
async fn a_peers_views_need_a_token_too_and_metrics_follow_their_own_setting() {
    let hub = TestHub::start().await;
    let peer = TestHub::peer_of(vec![hub.url("")], closed_reads).await;
    for path in [
        "/api/v1/connection",
        "/api/v1/sync/checkpoint",
        "/api/v1/node",
    ] {
        let r = peer.http.get(peer.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = peer
            .http
            .get(peer.url(path))
            .bearer_auth(READER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // auth.publicMetrics stays true: a scraper needs no token.
    let r = peer.http.get(peer.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Entries events still flow with the token (EventSource style).
    let query = format!("?since=0&access_token={READER}");
    let mut s = sse(peer.addr(), &query, None).await;
    let first = next_event(&mut s).await;
    assert_eq!(first.id, "1", "the replica's genesis");
}

#[tokio::test]
async fn the_access_token_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "[auth]\npublicReads = false\n[[tokens]]\ntoken = \"{READER}\"\nidentity = \"reader\"\nrole = \"reader\"\n"
        ),
    )
    .unwrap();
    let node = crate::support::spawn_node_env(
        &dir.path().join("data"),
        &["--role", "hub", "--config", file.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    )
    .await;
    let http = reqwest::Client::new();
    let events = format!("http://{}/api/v1/system-register/events", node.addr);
    let mut ok = http
        .get(format!("{events}?since=0&access_token={READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let _ = tokio::time::timeout(WAIT, ok.chunk()).await.unwrap();
    let bad = http
        .get(format!("{events}?access_token=not-the-token-9999"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let over_h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(format!("{events}?access_token={READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(over_h2.status(), 200);
    crate::support::wait_for("the requests in the log", || async {
        (node.log().matches("answered").count() >= 3).then_some(())
    })
    .await;
    let log = node.log();
    assert!(!log.contains(READER), "the token is in the log:\n{log}");
    assert!(!log.contains("not-the-token-9999"), "{log}");
    assert!(log.contains("since=0&access_token=<redacted>"), "{log}");
}

#[tokio::test]
async fn cors_settings_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (args, envs, expected) in [
        (
            vec!["--cors-origin", "http://127.0.0.1:5101/"],
            vec![],
            "nothing may follow",
        ),
        (
            vec!["--cors-origin", "*", "--cors-origin", "http://a.example"],
            vec![],
            "only entry",
        ),
        (
            vec!["--cors-origin", "*"],
            vec![("SORCHA_CORS__ALLOW_CREDENTIALS", "true")],
            "allowCredentials",
        ),
        (
            vec![],
            vec![(
                "SORCHA_CORS__ALLOWED_ORIGINS",
                "http://a.example, 127.0.0.1:80",
            )],
            "\"127.0.0.1:80\" is not an origin",
        ),
    ] {
        let out = tokio::process::Command::new(crate::support::binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&args)
            .envs(envs.iter().copied())
            .output();
        let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must not start");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // The node refuses the same when configured in code (no silent fallback).
    let mut cfg = crate::support::config(&dir.path().join("in-process"));
    cfg.cors.allowed_origins = vec!["*".into()];
    cfg.cors.allow_credentials = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = sorcha_peer::app::start_with_hostname(cfg, listener, "test-host").await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("allowCredentials")
    );

    // The environment's comma-separated list is a list.
    let node = crate::support::spawn_node_env(
        &dir.path().join("ok"),
        &["--role", "hub"],
        &[(
            "SORCHA_CORS__ALLOWED_ORIGINS",
            "http://a.example, http://b.example:81",
        )],
    )
    .await;
    for (origin, status) in [
        ("http://a.example", 200),
        ("http://b.example:81", 200),
        (OTHER, 403),
    ] {
        let r = reqwest::Client::new()
            .request(Method::OPTIONS, format!("http://{}/api/v1/node", node.addr))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{origin}");
    }
}
