//! Genesis: deterministic, seeded once, never re-seeded.

use crate::support::{GENESIS_HASH, TestHub};

#[tokio::test]
async fn fresh_hub_seeds_one_deterministic_genesis_entry() {
    let hub = TestHub::start().await;
    let (status, page) = hub.get("/api/v1/system-register/entries?since=0").await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "exactly one genesis entry");
    let g = &items[0];
    assert_eq!(g["version"], 1);
    assert_eq!(g["blueprintId"], "register-creation-v1");
    assert_eq!(g["publishedBy"], "system");
    assert_eq!(g["chainHash"], GENESIS_HASH);
    assert_eq!(g["metadata"]["category"], "register");
    assert_eq!(g["metadata"]["type"], "creation");
    assert_eq!(g["metadata"]["isDefault"], "true");
    assert!(g["document"]["actions"].as_array().unwrap().len() >= 5);

    // Restart on the same data dir: no second genesis, same head.
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let (_, summary) = hub.get("/api/v1/system-register").await;
    assert_eq!(summary["headVersion"], 1);
    assert_eq!(summary["entries"], 1);
    assert_eq!(summary["headHash"], GENESIS_HASH);
    hub.stop().await;

    // Another fresh data dir produces the identical genesis hash.
    let other = TestHub::start().await;
    let (_, summary) = other.get("/api/v1/system-register").await;
    assert_eq!(summary["headHash"], GENESIS_HASH);
    other.stop().await;
}
