//! Conformance suite for [`RegisterStore`] implementations. Every backend runs it from the
//! integration tests; a failed check panics with a message naming the rule.

#![allow(clippy::unwrap_used)]

use super::{KeyClaim, ListQuery, Prior, RegisterStore, StoreError};
use crate::register::chain;
use crate::register::entry::{EntryType, Expectation, NewEntry};
use crate::register::genesis::genesis_entry;
use crate::register::verify_store;
use std::collections::BTreeMap;
use std::sync::Arc;

fn new_entry(id: &str, entry_type: EntryType, doc: &str) -> NewEntry {
    NewEntry {
        blueprint_id: id.to_owned(),
        checksum: chain::checksum(doc.as_bytes()),
        document: bytes::Bytes::copy_from_slice(doc.as_bytes()),
        published_at: 1_700_000_000_000,
        published_by: "conformance".to_owned(),
        is_active: entry_type != EntryType::Deprecated,
        publication_transaction_id: None,
        metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        entry_type,
        signature: None,
    }
}

/// Runs every check against a fresh, empty store made by `make`.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn RegisterStore>>,
{
    empty_store(make().await).await;
    genesis_and_appends(make().await).await;
    expectations(make().await).await;
    sync_progress(make().await).await;
    listing_and_paging(make().await).await;
    read_ahead(make().await).await;
    concurrent_appends(make().await).await;
    claims(make().await).await;
    checkpoint_notes(make().await).await;
}

/// `read_ahead` loads exactly the leading entries whose running page weight fits, sizes the
/// rest without loading them, and keeps to the limit and the scope.
pub async fn read_ahead(store: Arc<dyn RegisterStore>) {
    use super::{Scope, page_weight};
    store
        .append_entries(0, vec![genesis_entry()], None)
        .await
        .unwrap();
    // Versions 2..=6: documents of 100, 2000, 300, 4000, 500 bytes; "x" has 2, 4 and 6.
    let sizes = [100usize, 2000, 300, 4000, 500];
    for (i, size) in sizes.iter().enumerate() {
        let id = if i % 2 == 0 {
            "x".to_owned()
        } else {
            format!("y{i}")
        };
        let doc = format!("{{\"p\":\"{}\"}}", "a".repeat(size - 8));
        let expect = match store.latest(&id).await.unwrap() {
            Some(e) => Expectation::AtVersion(e.version),
            None => Expectation::Absent,
        };
        store
            .append(new_entry(&id, EntryType::Published, &doc), expect, None)
            .await
            .unwrap();
    }
    let w = |bytes: usize| page_weight(bytes as u64);
    let versions = |entries: &[crate::register::entry::Entry]| {
        entries.iter().map(|e| e.version).collect::<Vec<_>>()
    };
    // Room for 2 and 3 together, not 4 as well.
    let (loaded, rest) = store
        .read_ahead(Scope::Log, 1, 10, w(100) + w(2000) + w(300) - 1)
        .await
        .unwrap();
    assert_eq!(
        versions(&loaded),
        [2, 3],
        "leading entries within the bytes"
    );
    assert_eq!(loaded[1].document.len(), 2000, "loaded whole");
    let rest: Vec<(i64, u64)> = rest.iter().map(|s| (s.version, s.bytes)).collect();
    assert_eq!(
        rest,
        [(4, 300), (5, 4000), (6, 500)],
        "the rest sized, in order"
    );
    // Nothing fits: nothing loaded, everything sized; the limit holds.
    let (loaded, rest) = store.read_ahead(Scope::Log, 0, 3, 10).await.unwrap();
    assert!(loaded.is_empty(), "nothing loaded beyond the bytes");
    assert_eq!(
        rest.iter().map(|s| s.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Everything fits.
    let (loaded, rest) = store
        .read_ahead(Scope::Log, 3, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!((versions(&loaded), rest.len()), (vec![4, 5, 6], 0));
    // One blueprint's entries only.
    let (loaded, rest) = store
        .read_ahead(Scope::Blueprint("x"), 2, 10, w(300))
        .await
        .unwrap();
    assert_eq!(versions(&loaded), [4], "the blueprint's next entry");
    assert_eq!(rest.iter().map(|s| s.version).collect::<Vec<_>>(), [6]);
    // Past the head: nothing.
    let (loaded, rest) = store
        .read_ahead(Scope::Log, 6, 10, usize::MAX)
        .await
        .unwrap();
    assert!(loaded.is_empty() && rest.is_empty());
}

/// An empty store has no head, no entries, zero counts.
pub async fn empty_store(store: Arc<dyn RegisterStore>) {
    assert_eq!(store.head().await.unwrap(), None, "empty store has no head");
    assert!(store.entries_after(0, 10).await.unwrap().is_empty());
    assert_eq!(store.stats().await.unwrap().entries, 0);
    assert!(store.latest("x").await.unwrap().is_none());
}

/// Genesis goes in once; appends continue the chain; entries read back unchanged.
pub async fn genesis_and_appends(store: Arc<dyn RegisterStore>) {
    let genesis = genesis_entry();
    store
        .append_entries(0, vec![genesis.clone()], None)
        .await
        .unwrap();
    let again = store.append_entries(0, vec![genesis.clone()], None).await;
    assert!(
        matches!(again, Err(StoreError::HeadMoved { head: 1, .. })),
        "a second genesis is refused: {again:?}"
    );
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(
        (head.version, head.chain_hash.as_str()),
        (1, genesis.chain_hash.as_str())
    );
    assert_eq!(
        store.entry(1).await.unwrap().unwrap(),
        genesis,
        "genesis reads back unchanged"
    );

    let a = store
        .append(
            new_entry("a", EntryType::Published, r#"{"a":1}"#),
            Expectation::Absent,
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.version, 2);
    assert_eq!(a.chain_hash, chain::link(Some(&genesis.chain_hash), &a));
    assert_eq!(store.entry(2).await.unwrap().unwrap(), a);
    let report = verify_store(store.as_ref(), None).await.unwrap();
    assert!(report.ok, "chain verifies: {report:?}");
    assert_eq!(report.checked, 2);
}

/// Appends honour their blueprint expectation atomically and leave no trace when refused.
pub async fn expectations(store: Arc<dyn RegisterStore>) {
    store
        .append_entries(0, vec![genesis_entry()], None)
        .await
        .unwrap();
    let a = store
        .append(
            new_entry("a", EntryType::Published, r#"{"v":1}"#),
            Expectation::Absent,
            None,
        )
        .await
        .unwrap();
    let dup = store
        .append(
            new_entry("a", EntryType::Published, r#"{"v":9}"#),
            Expectation::Absent,
            None,
        )
        .await;
    assert!(
        matches!(
            dup,
            Err(StoreError::ExpectationFailed {
                actual: Some(2),
                ..
            })
        ),
        "publishing an existing id is refused: {dup:?}"
    );
    let b = store
        .append(
            new_entry("a", EntryType::Updated, r#"{"v":2}"#),
            Expectation::AtVersion(a.version),
            None,
        )
        .await
        .unwrap();
    assert_eq!(b.version, 3, "a refused append consumes no version");
    let stale = store
        .append(
            new_entry("a", EntryType::Updated, r#"{"v":3}"#),
            Expectation::AtVersion(a.version),
            None,
        )
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::ExpectationFailed {
            actual: Some(3),
            ..
        })
    ));
    let missing = store
        .append(
            new_entry("zz", EntryType::Updated, "{}"),
            Expectation::AtVersion(1),
            None,
        )
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::ExpectationFailed { actual: None, .. })
    ));
    assert_eq!(store.latest("a").await.unwrap().unwrap(), b);
    let history = store.history("a", 0, 100).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let wrong_start = store.append_entries(5, vec![], None).await;
    assert!(matches!(
        wrong_start,
        Err(StoreError::HeadMoved { head: 3, .. })
    ));
    assert!(verify_store(store.as_ref(), None).await.unwrap().ok);
}

/// Current-state listing filters by activity and pages by id; the log pages by version.
pub async fn listing_and_paging(store: Arc<dyn RegisterStore>) {
    store
        .append_entries(0, vec![genesis_entry()], None)
        .await
        .unwrap();
    for id in ["c", "a", "b", "d"] {
        store
            .append(
                new_entry(id, EntryType::Published, "{}"),
                Expectation::Absent,
                None,
            )
            .await
            .unwrap();
    }
    let b = store.latest("b").await.unwrap().unwrap();
    store
        .append(
            new_entry("b", EntryType::Deprecated, "{}"),
            Expectation::AtVersion(b.version),
            None,
        )
        .await
        .unwrap();
    let ids = |entries: Vec<crate::register::entry::Entry>| {
        entries
            .into_iter()
            .map(|e| e.blueprint_id)
            .collect::<Vec<_>>()
    };
    let all = store
        .list_current(ListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(all), ["a", "b", "c", "d", "register-creation-v1"]);
    let active = store
        .list_current(ListQuery {
            active: Some(true),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(active), ["a", "c", "d", "register-creation-v1"]);
    let deprecated = store
        .list_current(ListQuery {
            active: Some(false),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(deprecated), ["b"]);
    let page2 = store
        .list_current(ListQuery {
            active: None,
            after_id: Some("b".into()),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(ids(page2), ["c", "d"]);
    let log = store.entries_after(2, 3).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.entries, stats.blueprints, stats.active_blueprints),
        (6, 5, 4)
    );
}

/// Concurrent appends get contiguous, unique versions and a valid chain.
pub async fn concurrent_appends(store: Arc<dyn RegisterStore>) {
    store
        .append_entries(0, vec![genesis_entry()], None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    new_entry(&format!("bp-{i}"), EntryType::Published, "{}"),
                    Expectation::Absent,
                    None,
                )
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=201).collect::<Vec<_>>(),
        "versions contiguous and unique"
    );
    let report = verify_store(store.as_ref(), None).await.unwrap();
    assert!(report.ok && report.checked == 201, "{report:?}");
}

/// Idempotency keys and transaction ids: recorded with the append, refused to a second
/// append (checked before the expectation), expired keys read as absent and are replaced,
/// forgetting deletes only older keys.
pub async fn claims(store: Arc<dyn RegisterStore>) {
    store
        .append_entries(0, vec![genesis_entry()], None)
        .await
        .unwrap();
    let published_at = 1_700_000_000_000; // what `new_entry` stamps
    let claim = |key: &str, live_after: i64| KeyClaim {
        key: key.to_owned(),
        fingerprint: format!("fp-{key}"),
        live_after,
    };
    let live = published_at - 1;
    let k1 = claim("k1", live);
    assert_eq!(store.prior(Some(&k1), None).await.unwrap(), None);
    let mut with_tx = new_entry("a", EntryType::Published, "{}");
    with_tx.publication_transaction_id = Some("tx-1".into());
    let a = store
        .append(with_tx.clone(), Expectation::Absent, Some(&k1))
        .await
        .unwrap();
    let by_key = Prior::Key {
        version: a.version,
        fingerprint: "fp-k1".into(),
    };
    assert_eq!(
        store.prior(Some(&k1), None).await.unwrap(),
        Some(by_key.clone())
    );
    let by_tx = Prior::Transaction { version: a.version };
    assert_eq!(
        store.prior(None, Some("tx-1")).await.unwrap(),
        Some(by_tx.clone())
    );
    assert_eq!(
        store.prior(Some(&k1), Some("tx-1")).await.unwrap(),
        Some(by_key.clone()),
        "the key is looked up first"
    );
    // A second append claiming either is refused, even where its expectation would hold.
    let again = store
        .append(
            new_entry("b", EntryType::Published, "{}"),
            Expectation::Absent,
            Some(&k1),
        )
        .await;
    assert!(
        matches!(&again, Err(StoreError::Claimed(p)) if *p == by_key),
        "{again:?}"
    );
    let mut tx_again = new_entry("c", EntryType::Published, "{}");
    tx_again.publication_transaction_id = Some("tx-1".into());
    let again = store.append(tx_again, Expectation::Absent, None).await;
    assert!(
        matches!(&again, Err(StoreError::Claimed(p)) if *p == by_tx),
        "{again:?}"
    );
    assert_eq!(
        store.head().await.unwrap().unwrap().version,
        a.version,
        "nothing appended"
    );

    // A key older than the retention reads as absent, and a new append takes it over.
    let expired = claim("k1", published_at + 1);
    assert_eq!(store.prior(Some(&expired), None).await.unwrap(), None);
    let b = store
        .append(
            new_entry("b", EntryType::Published, "{}"),
            Expectation::Absent,
            Some(&expired),
        )
        .await
        .unwrap();
    assert_eq!(
        store.prior(Some(&k1), None).await.unwrap(),
        Some(Prior::Key {
            version: b.version,
            fingerprint: "fp-k1".into()
        })
    );
    let k2 = claim("k2", live);
    let mut later = new_entry("d", EntryType::Published, "{}");
    later.published_at = published_at + 10;
    store
        .append(later, Expectation::Absent, Some(&k2))
        .await
        .unwrap();
    assert_eq!(store.forget_keys(published_at + 5).await.unwrap(), 1);
    assert_eq!(
        store.prior(Some(&k1), None).await.unwrap(),
        None,
        "forgotten"
    );
    assert!(
        store.prior(Some(&k2), None).await.unwrap().is_some(),
        "kept"
    );
    assert_eq!(store.forget_keys(published_at + 5).await.unwrap(), 0);
    let report = verify_store(store.as_ref(), None).await.unwrap();
    assert!(report.ok && report.checked == 4, "{report:?}");
}

/// A checkpoint is stored with its entries and untouched by a refused write.
pub async fn sync_progress(store: Arc<dyn RegisterStore>) {
    use super::SyncProgress;
    assert_eq!(store.sync_progress().await.unwrap(), None);
    let genesis = genesis_entry();
    let cp = SyncProgress {
        current_version: 1,
        head_hash: genesis.chain_hash.clone(),
        hub_id: "n0".into(),
        last_sync_time: 5,
        next_sync_due: 10,
        total_entries_synced: 1,
        total_syncs: 1,
    };
    store
        .append_entries(0, vec![genesis.clone()], Some(cp.clone()))
        .await
        .unwrap();
    assert_eq!(store.sync_progress().await.unwrap(), Some(cp.clone()));
    let refused = SyncProgress {
        current_version: 99,
        ..cp.clone()
    };
    assert!(
        store
            .append_entries(7, vec![], Some(refused))
            .await
            .is_err()
    );
    assert_eq!(
        store.sync_progress().await.unwrap(),
        Some(cp.clone()),
        "refused write left it alone"
    );
    let later = SyncProgress {
        last_sync_time: 6,
        ..cp
    };
    store
        .append_entries(1, vec![], Some(later.clone()))
        .await
        .unwrap();
    assert_eq!(store.sync_progress().await.unwrap(), Some(later));
}

/// Checkpoint notes kept by version: read back by range in version order, a note kept again
/// for a version replaces the first, nothing outside the range comes back.
pub async fn checkpoint_notes(store: Arc<dyn RegisterStore>) {
    assert!(
        store
            .checkpoints_between(0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.keep_checkpoints(Vec::new()).await.unwrap(), 0);
    let notes = vec![(7, "note 7".to_owned()), (3, "note 3".to_owned())];
    assert_eq!(store.keep_checkpoints(notes).await.unwrap(), 2);
    store
        .keep_checkpoints(vec![
            (7, "note 7, fresher".to_owned()),
            (12, "note 12".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.checkpoints_between(0, 100).await.unwrap(),
        vec![
            (3, "note 3".to_owned()),
            (7, "note 7, fresher".to_owned()),
            (12, "note 12".to_owned())
        ],
        "kept notes by version, the later replacing the earlier"
    );
    assert_eq!(
        store.checkpoints_between(3, 7).await.unwrap(),
        vec![(7, "note 7, fresher".to_owned())],
        "the range is (after, upto]"
    );
}
