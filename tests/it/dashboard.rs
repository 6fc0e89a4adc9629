//! The dashboard in headless Chromium (driven over WebDriver by chromedriver): live rows and
//! feed entries without a reload on a hub, the connection state on a peer. Screenshots are
//! written to `target/test-artifacts/`.

use crate::support::{TestHub, WAIT, get_json, peer_config, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::time::Duration;

/// Headless Chromium under chromedriver on a free port.
pub async fn browser() -> (Client, tokio::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver must be installed (scripts/test.sh installs chromium-driver)");
    wait_for("chromedriver", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1200,1000",
                     format!("--user-data-dir={}", profile.display())]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("start headless chromium");
    (client, driver)
}

/// Waits (bounded) for an element.
pub async fn wait_element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(WAIT)
        .every(Duration::from_millis(50))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Saves a screenshot under `target/test-artifacts/`.
pub async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.len() > 1000, "a real screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_publications_and_peer_state() {
    let hub = TestHub::start().await;
    for i in 0..3 {
        hub.publish(
            &format!("workflow-{i}"),
            json!({"title": format!("Workflow {i}")}),
        )
        .await;
    }
    let peer_dir = tempfile::tempdir().unwrap();
    let cfg = peer_config(peer_dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(peer_dir, cfg).await;
    let (client, _driver) = browser().await;

    client.goto(&hub.url("/")).await.unwrap();
    wait_element(&client, "#blueprints tr[data-id='workflow-2']").await;
    let rows = client
        .find_all(Locator::Css("#blueprints tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "genesis and three blueprints");
    wait_element(&client, "#feed-status.ok").await;
    // A quiet hub's checkpoint of its head, checked in the page with the hub's key (an older
    // one may show first: the hub re-signs its head at most once a second).
    wait_for("the head's checkpoint, verified", || async {
        let badge = client.find(Locator::Css("#checkpoint.ok")).await.ok()?;
        let text = badge.text().await.ok()?;
        text.starts_with("v4 signed by").then_some(())
    })
    .await;

    // Publish through the REST API: the row and the feed entry appear without a reload.
    let (status, _) = hub
        .publish("live-one", json!({"title": "Published while watching"}))
        .await;
    assert_eq!(status, 201);
    wait_element(&client, "#blueprints tr[data-id='live-one']").await;
    let feed = wait_element(&client, "#feed li").await;
    assert!(feed.text().await.unwrap().contains("live-one"));
    assert_eq!(
        client
            .find(Locator::Id("head-version"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "5"
    );

    // The document viewer and the verify button.
    client
        .find(Locator::Css("#blueprints tr[data-id='live-one']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let viewer = wait_element(&client, "#viewer:not([hidden]) #viewer-json").await;
    assert!(
        viewer
            .text()
            .await
            .unwrap()
            .contains("Published while watching")
    );
    client
        .find(Locator::Id("verify"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("verify result", || async {
        let text = client
            .find(Locator::Id("verify-result"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.starts_with("ok: 5 entries").then_some(())
    })
    .await;
    // The hub lists its peer.
    wait_element(&client, "#peers tr").await;
    screenshot(&client, "dashboard-hub.png").await;

    // The same page on a peer (narrow screen) shows its connection state.
    client.set_window_size(420, 900).await.unwrap();
    client.goto(&peer.url("/")).await.unwrap();
    wait_for("peer shows Connected", || async {
        let text = client
            .find(Locator::Id("connection-state"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (text == "Connected").then_some(())
    })
    .await;
    wait_element(&client, "#blueprints tr[data-id='live-one']").await;
    wait_element(&client, "#feed li:nth-child(5)").await;
    assert_eq!(
        get_json(peer.addr(), "/api/v1/connection").await["state"],
        "Connected"
    );
    screenshot(&client, "dashboard-peer-narrow.png").await;

    client.close().await.unwrap();
    peer.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_asks_for_a_token_when_reads_need_one() {
    const READER: &str = "dashboard-reader-token-0123";
    let hub = TestHub::configured(|c| {
        c.auth.public_reads = false;
        crate::support::add_reader(c, READER);
    })
    .await;
    hub.publish("closed-one", json!({"title": "Behind a token"}))
        .await;
    let (client, _driver) = browser().await;
    client.goto(&hub.url("/")).await.unwrap();
    let message = wait_element(&client, "#login:not([hidden]) #login-message").await;
    assert!(message.text().await.unwrap().contains("auth.publicReads"));
    // A wrong token is refused and asked for again.
    let input = client.find(Locator::Id("login-token")).await.unwrap();
    input.send_keys("not-the-reader-token-000").await.unwrap();
    client
        .find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the refusal", || async {
        let text = client
            .find(Locator::Id("login-message"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("refused").then_some(())
    })
    .await;
    let input = client.find(Locator::Id("login-token")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(READER).await.unwrap();
    client
        .find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_element(&client, "#blueprints tr[data-id='closed-one']").await;
    // The feed subscribes with ?access_token= and goes live.
    wait_element(&client, "#feed-status.ok").await;
    hub.publish("closed-two", json!({"title": "Live behind a token"}))
        .await;
    wait_element(&client, "#blueprints tr[data-id='closed-two']").await;
    let feed = wait_element(&client, "#feed li").await;
    assert!(feed.text().await.unwrap().contains("closed-two"));
    screenshot(&client, "dashboard-token.png").await;
    client.close().await.unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_panel_counts_charts_and_follows_each_publication() {
    let hub = TestHub::configured(|c| {
        c.hub.heartbeat_interval = Duration::from_millis(300);
        c.hub.fleet_flush_interval = Duration::from_millis(50);
    })
    .await;
    let mut peers = Vec::new();
    for i in 1..=2 {
        peers.push(
            TestHub::peer_of(vec![hub.url("")], |c| {
                c.node_id = Some(format!("peer-{i}"));
                c.peer.heartbeat_interval = Duration::from_millis(300);
            })
            .await,
        );
    }
    let (client, _driver) = browser().await;
    client.goto(&hub.url("/")).await.unwrap();
    let text = |css: &'static str| {
        let client = client.clone();
        async move { client.find(Locator::Css(css)).await.ok()?.text().await.ok() }
    };
    wait_for("two synced peers on the panel", || async {
        (text("#fleet-counts [data-state='synced']").await? == "2 synced").then_some(())
    })
    .await;
    // The chart: both peers in the "0 versions behind" bar.
    let bar = wait_element(&client, "#lag-chart rect[data-bucket='0']").await;
    assert_eq!(bar.attr("data-count").await.unwrap().as_deref(), Some("2"));
    assert!(
        text("#fleet-ratio")
            .await
            .unwrap()
            .starts_with("SC-011 100.0")
    );

    // A publication: its feed entry shows how far it has reached, complete once both hold it.
    let (status, _) = hub
        .publish("fleet-live", json!({"title": "Watched reach"}))
        .await;
    assert_eq!(status, 201);
    wait_for("the publication reached both peers", || async {
        let badge = text("#feed li[data-version='2'] .badge.propagation.ok").await?;
        (badge == "v2 · 2/2").then_some(())
    })
    .await;

    // A peer leaves: listed as disconnected, among the peers that need a look.
    peers.pop().unwrap().stop().await;
    wait_for("peer-2 disconnected on the panel", || async {
        let row = text("#fleet-attention tr[data-peer='peer-2']").await?;
        row.contains("disconnected").then_some(())
    })
    .await;
    assert_eq!(
        text("#fleet-counts [data-state='disconnected']")
            .await
            .unwrap(),
        "1 disconnected"
    );
    screenshot(&client, "dashboard-fleet.png").await;
    client.close().await.unwrap();
}
