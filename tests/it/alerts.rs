//! The shipped Prometheus rules (`deploy/prometheus/`): they load, their unit tests pass under
//! `promtool`, and every series they read is one the nodes export, in the form they export it
//! (a histogram's `le` as the node writes it).

use crate::support::{TestHub, WAIT};
use std::collections::BTreeSet;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules.yml");
const RULES_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/rules_test.yml"
);

async fn promtool(args: &[&str]) -> String {
    let run = tokio::process::Command::new("promtool").args(args).output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("promtool finishes")
        .expect("promtool must be installed (scripts/test.sh installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[tokio::test]
async fn the_rules_load_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", RULES]).await;
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", RULES_TEST]).await;
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_rules_read_is_exported() {
    let rules = std::fs::read_to_string(RULES).unwrap();
    let read: BTreeSet<String> = regex::Regex::new(r"sorcha_peer_[a-z_]+")
        .unwrap()
        .find_iter(&rules)
        .map(|m| m.as_str().to_owned())
        .collect();
    assert!(read.len() >= 6, "{read:?}");
    // A hub exports every metric family (a peer's too: one registry for both roles).
    let hub = TestHub::start().await;
    let exported = hub.metrics().await;
    for series in &read {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|suffix| series.strip_suffix(suffix))
            .unwrap_or(series);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "the rules read {series}, which no node exports"
        );
    }
    // The buckets the criteria read, as the nodes write them.
    for bucket in [
        "sorcha_peer_propagation_seconds_bucket{le=\"30.0\"}",
        "sorcha_peer_connect_seconds_bucket{le=\"30.0\"}",
    ] {
        assert!(exported.contains(bucket), "no {bucket} in:\n{exported}");
    }
    hub.stop().await;
}

/// A real Prometheus (Debian's package) with the shipped rules, scraping a live hub and a peer
/// process every second: a killed peer makes `SorchaPeerStale` fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fires_the_stale_alert_in_a_real_prometheus() {
    use crate::support::{spawn_node_env, wait_for};
    use std::time::Duration;
    let hub = TestHub::configured(|c| {
        c.role = sorcha_peer::config::Role::Hub;
        c.node_id = Some("n0".into());
        c.hub.heartbeat_interval = Duration::from_millis(300);
        c.hub.fleet_flush_interval = Duration::from_millis(100);
    })
    .await;
    let peer_dir = tempfile::tempdir().unwrap();
    let hub_url = hub.url("");
    let mut peer = spawn_node_env(
        peer_dir.path(),
        &[
            "--role",
            "peer",
            "--node-id",
            "peer-watched",
            "--hub",
            &hub_url,
        ],
        &[("SORCHA_PEER__HEARTBEAT_INTERVAL", "300ms")],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {RULES}\n\
             scrape_configs:\n  - job_name: sorcha-hub\n    static_configs:\n      - targets: ['{}']\n\
             \x20 - job_name: sorcha-peer\n    static_configs:\n      - targets: ['{}']\n",
            hub.addr(),
            peer.addr
        ),
    )
    .unwrap();
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus must be installed (scripts/test.sh installs Debian's prometheus)");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let api = |path: &'static str| {
        let http = http.clone();
        async move {
            let answer = http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()?;
            answer.json::<serde_json::Value>().await.ok()
        }
    };
    // Both targets scraped, and the hub's view counts the peer as synced.
    wait_for("Prometheus scraping the hub and the peer", || async {
        let up = api("/api/v1/query?query=up").await?;
        let results = up["data"]["result"].as_array()?;
        (results.len() == 2 && results.iter().all(|r| r["value"][1] == "1")).then_some(())
    })
    .await;
    wait_for("the peer synced in Prometheus", || async {
        let q =
            api("/api/v1/query?query=sorcha_peer_fleet_peers%7Bstate%3D%22synced%22%7D").await?;
        (q["data"]["result"][0]["value"][1] == "1").then_some(())
    })
    .await;
    let firing = |alerts: &serde_json::Value| {
        alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["labels"]["alertname"] == "SorchaPeerStale" && x["state"] == "firing")
        })
    };
    assert!(
        !firing(&api("/api/v1/alerts").await.unwrap()),
        "quiet while the peer reports"
    );

    peer.child.start_kill().unwrap();
    let alert = wait_for("SorchaPeerStale firing", || async {
        let alerts = api("/api/v1/alerts").await?;
        firing(&alerts).then_some(alerts)
    })
    .await;
    assert!(alert.to_string().contains("stopped reporting"), "{alert}");
}
