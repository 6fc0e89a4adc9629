//! Documentation stays true: every configuration key and every metric is in
//! `docs/operations.md`.

use crate::support::TestHub;
use serde_json::Value;
use sorcha_peer::config::Config;

fn paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        for (key, v) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if v.is_object() {
                paths(&path, v, out);
            } else {
                out.push(path);
            }
        }
    }
}

fn operations_guide() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap()
}

#[test]
fn every_config_key_is_documented() {
    let guide = operations_guide();
    let mut keys = Vec::new();
    paths(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut keys,
    );
    assert!(keys.len() > 30, "{keys:?}");
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !guide.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys missing from docs/operations.md: {missing:?}"
    );
}

#[tokio::test]
async fn every_metric_is_documented() {
    let hub = TestHub::start().await;
    let text = hub.metrics().await;
    let guide = operations_guide();
    let names: Vec<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !guide.contains(&format!("`{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from docs/operations.md: {missing:?}"
    );
    hub.stop().await;
}

#[test]
fn example_configs_load_and_say_what_they_show() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let no_flags = serde_json::Map::new();
    let hub = Config::load(Some(&std::path::Path::new(dir).join("hub.toml")), &no_flags).unwrap();
    assert_eq!(hub.role, sorcha_peer::config::Role::Hub);
    assert_eq!(
        hub.hub.rate_limits.full_sync.every,
        std::time::Duration::from_secs(60)
    );
    let peer = Config::load(
        Some(&std::path::Path::new(dir).join("peer.toml")),
        &no_flags,
    )
    .unwrap();
    assert_eq!(peer.role, sorcha_peer::config::Role::Peer);
    assert_eq!(peer.hubs, vec!["http://127.0.0.1:5000".to_owned()]);
    assert_eq!(peer.peer.hub_order, sorcha_peer::config::HubOrder::Spread);
}
