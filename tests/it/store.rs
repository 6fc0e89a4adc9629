//! The store conformance suite against the embedded backend, threaded and inline.

use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::conformance;
use sorcha_peer::store::embedded::{EmbeddedStore, Execution};
use sorcha_peer::store::guarded::{CallLimits, GuardedStore};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

async fn conformance_of(execution: Execution) {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    conformance::run(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn RegisterStore> =
                Arc::new(EmbeddedStore::open_with(dir.path(), execution).unwrap());
            dirs.lock().unwrap().push(dir);
            store
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_conformance() {
    conformance_of(Execution::Threaded).await;
}

/// The guarded store (deadlines, slots, calls run to completion) keeps every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_embedded_store_passes_conformance() {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    conformance::run(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let inner: Arc<dyn RegisterStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            dirs.lock().unwrap().push(dir);
            let limits = CallLimits {
                deadline: Duration::from_secs(10),
                slot_wait: Duration::from_secs(2),
                slots: 4,
                write_slots: 4,
            };
            let store: Arc<dyn RegisterStore> =
                Arc::new(GuardedStore::new(inner, limits, Arc::default()));
            store
        }
    })
    .await;
}

/// Inline (the simulation's mode): the same rules, and every call is done by its first poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_embedded_store_passes_conformance_and_answers_within_one_poll() {
    conformance_of(Execution::Inline).await;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), Execution::Inline).unwrap();
    let polled = futures::FutureExt::now_or_never(store.head());
    assert!(
        matches!(polled, Some(Ok(None))),
        "an inline read is ready at its first poll"
    );
    let dir_is_held = EmbeddedStore::open_with(dir.path(), Execution::Inline).unwrap_err();
    assert!(dir_is_held.to_string().contains("in use"), "{dir_is_held}");
    store.close().await.unwrap();
    drop(store);
    EmbeddedStore::open_with(dir.path(), Execution::Inline).expect("a closed store's dir reopens");
}

/// A second `sorcha-peer` process started on a data dir in use stops at start-up, naming why,
/// and leaves the first one's store alone.
#[tokio::test]
async fn a_second_process_cannot_open_the_same_data_dir() {
    use sorcha_peer::store::RegisterStore;
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).unwrap();
    let second = tokio::process::Command::new(crate::support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output();
    let second = tokio::time::timeout(crate::support::WAIT, second)
        .await
        .expect("the second process stops at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another sorcha-peer process"),
        "{stderr}"
    );
    assert_eq!(
        first.head().await.unwrap(),
        None,
        "the first store is untouched"
    );
}

/// A data dir written by the previous release (commit 5afff23: a hub that published, updated,
/// published a 200 KiB document and deprecated; no `entries_head` index) opens, gains the
/// index, verifies, serves every entry as before and takes new publishes on the same chain;
/// opening it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_previous_release_opens_migrates_and_verifies() {
    use crate::support::TestHub;
    use serde_json::json;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/release-5afff23/register.sqlite"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture, dir.path().join("register.sqlite")).unwrap();
    let indexes = |dir: &std::path::Path| -> Vec<String> {
        let c = r2d2_sqlite::rusqlite::Connection::open(dir.join("register.sqlite")).unwrap();
        let mut s = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(!indexes(dir.path()).contains(&"entries_head".to_owned()));
    let mut dir = Some(dir);
    for round in 0..2 {
        let hub = TestHub::start_in(dir.take().unwrap()).await;
        let (_, verify) = hub.get("/api/v1/system-register/verify").await;
        assert_eq!(verify["ok"], true, "{verify}");
        let expected_head = if round == 0 { 6 } else { 7 };
        assert_eq!(verify["headVersion"], expected_head);
        if round == 0 {
            assert_eq!(
                verify["headHash"],
                "sha256:7be7169c9b107f4221f192a163b59a8a3cc9511018435c432aba9218bda81c1f"
            );
        }
        let (status, big) = hub
            .get("/api/v1/system-register/blueprints/big-document")
            .await;
        assert_eq!(status, 200);
        assert_eq!(big["document"]["pad"].as_str().unwrap().len(), 200 * 1024);
        let (_, history) = hub
            .get("/api/v1/system-register/blueprints/loan-approval/history")
            .await;
        assert_eq!(history["items"].as_array().unwrap().len(), 2);
        let (_, onboarding) = hub
            .get("/api/v1/system-register/blueprints/onboarding")
            .await;
        assert_eq!(onboarding["isActive"], false);
        if round == 0 {
            let (status, entry) = hub.publish("after-upgrade", json!({"title": "new"})).await;
            assert_eq!(status, 201, "{entry}");
            assert_eq!(entry["version"], 7);
        }
        dir = Some(hub.stop().await);
    }
    assert!(indexes(dir.unwrap().path()).contains(&"entries_head".to_owned()));
}

/// A data dir of the previous release (commit 5afff23) gains the relay's checkpoint notes
/// table when it opens: a relay on it keeps and hands on notes, and they survive a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_data_dir_keeps_relay_checkpoints_once_opened() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/release-5afff23/register.sqlite"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture, dir.path().join("register.sqlite")).unwrap();
    let note = (6, "a hub's note of version 6".to_owned());
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.head().await.unwrap().unwrap().version, 6);
        assert!(store.checkpoints_between(0, 6).await.unwrap().is_empty());
        assert_eq!(store.keep_checkpoints(vec![note.clone()]).await.unwrap(), 1);
        store.close().await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.checkpoints_between(0, 6).await.unwrap(), vec![note]);
    let report = sorcha_peer::register::verify_store(&store, None)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
}
