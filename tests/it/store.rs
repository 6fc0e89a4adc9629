//! The store conformance suite against the embedded backend.

use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::conformance;
use sorcha_peer::store::embedded::EmbeddedStore;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_conformance() {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    conformance::run(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn RegisterStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            dirs.lock().unwrap().push(dir);
            store
        }
    })
    .await;
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let second = EmbeddedStore::open(dir.path()).unwrap_err().to_string();
    assert!(second.contains("in use"), "{second}");
}
