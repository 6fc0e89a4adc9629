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
