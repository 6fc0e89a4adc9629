//! The MongoDB backend: several hubs share one database (a replica set in production).
//!
//! Entries live in `sorcha_system_register_blueprints`, one camelCase document per version with
//! `_id = version`, plus a unique index on `version` and indexes on `blueprintId`,
//! `publishedAt` (descending) and `isActive`. Appends are optimistic: read the head and the
//! blueprint's newest entry, check the expectation, insert `head + 1` with its chain link; a
//! duplicate key means another hub won that version, so re-read and retry. The unique version
//! is the only lock, which keeps the log contiguous and chained across hubs. Documents are
//! stored as the exact canonical bytes (BSON binary) so checksums stay verifiable.
//!
//! An append that claims an idempotency key or a publication transaction id writes the entry
//! and the claims (`sorcha_idempotency_keys`, `sorcha_transaction_ids`, both keyed by `_id`) in
//! one multi-document transaction, so of two hubs claiming the same name exactly one commits;
//! the other sees the duplicate key or write conflict, re-reads and answers from the winner's
//! entry. Plain appends stay one insert.
//!
//! Hubs also share their fleet record here (`sorcha_fleet_peers`, `sorcha_fleet_hubs`; see
//! `fleet`), written with `w: 1` in batches.
//!
//! This file holds the store, its set-up and the `RegisterStore` calls; `documents` maps
//! entries to BSON and driver errors to store errors, `queries` holds the queries and the
//! claiming transaction the calls share.

mod documents;
mod fleet;
mod queries;

pub use fleet::{FLEET_HUBS, FLEET_PEERS};

use super::fleet::{FleetBatch, SharedFleet};
use super::{
    EntrySize, KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError, SyncProgress,
    check_continuation, check_expectation,
};
use crate::config::MongoConfig;
use crate::register::entry::{Entry, Expectation, Head, NewEntry};
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use documents::{
    from_doc, is_conflict, is_duplicate_key, is_too_large, to_doc, too_large, unavailable,
};

/// Collection of register entries.
pub const ENTRIES: &str = "sorcha_system_register_blueprints";
/// Collection holding a peer's sync checkpoint (one document).
pub const SYNC_PROGRESS: &str = "sorcha_sync_checkpoint";
/// Collection of idempotency keys: `_id` = key, `fingerprint`, `version`, `createdAt` (ms);
/// each inserted in the transaction of its entry, deleted after `idempotency.retention`.
pub const IDEMPOTENCY_KEYS: &str = "sorcha_idempotency_keys";
/// Collection claiming publication transaction ids (`_id` = the id, `version`): written in the
/// transaction of the entry, so two hubs cannot both append one id. Entries written before it
/// existed are found through the entries' `publicationTransactionId` index instead.
pub const TRANSACTION_IDS: &str = "sorcha_transaction_ids";
/// Collection of hub checkpoint notes a relay keeps (`_id` = the version it covers, `note`);
/// see [`RegisterStore::keep_checkpoints`].
pub const CHECKPOINT_NOTES: &str = "sorcha_checkpoint_notes";
/// How often an append is retried after losing a version race.
const MAX_APPEND_ATTEMPTS: usize = 64;

/// The MongoDB register store.
#[derive(Debug, Clone)]
pub struct MongoStore {
    /// Serialises this process's appends: they would only race each other for the same
    /// version; other hubs are handled by the optimistic retry.
    append_lock: Arc<tokio::sync::Mutex<()>>,
    client: Client,
    entries: Collection<Document>,
    sync_progress: Collection<Document>,
    idempotency_keys: Collection<Document>,
    transaction_ids: Collection<Document>,
    checkpoint_notes: Collection<Document>,
    /// The database, for the fleet record's batch commands.
    fleet_db: mongodb::Database,
    fleet_peers: Collection<Document>,
    fleet_hubs: Collection<Document>,
    poll_interval: Duration,
}

impl MongoStore {
    /// Connects to `uri`, using the configured database and a pool of `pool` connections for
    /// reads and as many for writes (plus two for following other hubs' appends); creates the
    /// indexes (idempotent).
    pub async fn connect(uri: &str, config: &MongoConfig, pool: usize) -> Result<Self, StoreError> {
        let (database, poll_interval) = (config.database.as_str(), config.poll_interval);
        let mut options = ClientOptions::parse(uri).await.map_err(unavailable)?;
        options.app_name = Some("sorcha-peer".into());
        // Fail calls within seconds when the server is gone, not the driver's default 30 s.
        options.server_selection_timeout = Some(config.server_timeout);
        options.connect_timeout = Some(config.server_timeout);
        // The driver never queues a call: the guarded store lets at most `pool` reads and
        // `pool` writes in at once (the change stream and the head poll take the other two).
        let pool = u32::try_from(pool).unwrap_or(u32::MAX);
        options.max_pool_size = Some(pool.saturating_mul(2).saturating_add(2));
        // Acknowledged means durable: majority-committed and journaled.
        options.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(database);
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| unavailable(format!("cannot reach {database}: {e}")))?;
        let entries = db.collection::<Document>(ENTRIES);
        let index = |keys: Document, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(unique).build())
                .build()
        };
        entries
            .create_indexes([
                index(doc! { "version": 1 }, true),
                index(doc! { "blueprintId": 1, "version": -1 }, false),
                index(doc! { "publishedAt": -1 }, false),
                index(doc! { "isActive": 1 }, false),
                index(doc! { "publicationTransactionId": 1, "version": 1 }, false),
            ])
            .await
            .map_err(|e| unavailable(format!("cannot create indexes: {e}")))?;
        let idempotency_keys = db.collection::<Document>(IDEMPOTENCY_KEYS);
        idempotency_keys
            .create_index(index(doc! { "createdAt": 1 }, false))
            .await
            .map_err(|e| unavailable(format!("cannot create indexes: {e}")))?;
        let fleet_peers = db.collection::<Document>(FLEET_PEERS);
        fleet_peers
            .create_indexes([
                index(doc! { "writtenAt": 1 }, false),
                index(doc! { "hubId": 1 }, false),
            ])
            .await
            .map_err(|e| unavailable(format!("cannot create indexes: {e}")))?;
        Ok(Self {
            fleet_hubs: db.collection(FLEET_HUBS),
            fleet_peers,
            fleet_db: db.clone(),
            append_lock: Arc::default(),
            sync_progress: db.collection(SYNC_PROGRESS),
            idempotency_keys,
            transaction_ids: db.collection(TRANSACTION_IDS),
            checkpoint_notes: db.collection(CHECKPOINT_NOTES),
            client,
            entries,
            poll_interval,
        })
    }
}

#[async_trait]
impl RegisterStore for MongoStore {
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let found = self
            .entries
            .find_one(doc! {})
            .sort(doc! { "version": -1 })
            .projection(doc! { "version": 1, "chainHash": 1 })
            .await
            .map_err(unavailable)?;
        Ok(found.and_then(|d| {
            Some(Head {
                version: d.get_i64("version").ok()?,
                chain_hash: d.get_str("chainHash").ok()?.to_owned(),
            })
        }))
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, StoreError> {
        // Claims need a transaction; a plain append stays one insert.
        let claims = key.is_some() || new.publication_transaction_id.is_some();
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(50))
            .with_jitter()
            .with_max_times(MAX_APPEND_ATTEMPTS)
            .build();
        let _local_turn = self.append_lock.lock().await;
        loop {
            if claims
                && let Some(prior) = self
                    .prior(key, new.publication_transaction_id.as_deref())
                    .await?
            {
                return Err(StoreError::Claimed(prior));
            }
            let head = self.head().await?;
            let actual = self.latest_version(&new.blueprint_id).await?;
            check_expectation(expect, actual)?;
            let entry = new.clone().into_entry_after(head.as_ref());
            let inserted = if claims {
                self.insert_claiming(&entry, key).await
            } else {
                self.entries.insert_one(to_doc(&entry)).await.map(drop)
            };
            match inserted {
                Ok(()) => return Ok(entry),
                Err(e) if is_too_large(&e) => return Err(too_large(&e)),
                Err(e) if is_duplicate_key(&e) || is_conflict(&e) => match delays.next() {
                    // Another hub took this version (or the claim): re-read and try again.
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        return Err(StoreError::Unavailable(
                            "MongoDB: too many concurrent appends; try again".into(),
                        ));
                    }
                },
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    async fn prior(
        &self,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
    ) -> Result<Option<Prior>, StoreError> {
        if let Some(k) = key {
            let found = self
                .idempotency_keys
                .find_one(doc! { "_id": &k.key, "createdAt": { "$gte": k.live_after } })
                .await
                .map_err(unavailable)?;
            if let Some(d) = found {
                return Ok(Some(Prior::Key {
                    version: d.get_i64("version").map_err(|e| StoreError::Corrupt {
                        version: 0,
                        reason: format!("idempotency key record: {e}"),
                    })?,
                    fingerprint: d.get_str("fingerprint").unwrap_or_default().to_owned(),
                }));
            }
        }
        let Some(tx) = transaction_id else {
            return Ok(None);
        };
        let found = self
            .entries
            .find_one(doc! { "publicationTransactionId": tx })
            .sort(doc! { "version": 1 })
            .projection(doc! { "version": 1 })
            .await
            .map_err(unavailable)?;
        Ok(found
            .and_then(|d| d.get_i64("version").ok())
            .map(|version| Prior::Transaction { version }))
    }

    async fn forget_keys(&self, before: i64) -> Result<u64, StoreError> {
        let deleted = self
            .idempotency_keys
            .delete_many(doc! { "createdAt": { "$lt": before } })
            .await
            .map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn append_entries(
        &self,
        after_version: i64,
        entries: Vec<Entry>,
        progress: Option<SyncProgress>,
    ) -> Result<(), StoreError> {
        let head_version = self.head().await?.map_or(0, |h| h.version);
        check_continuation(head_version, after_version, &entries)?;
        let first = after_version + 1;
        let docs: Vec<Document> = entries.iter().map(to_doc).collect();
        let progress_doc = progress
            .map(|cp| {
                mongodb::bson::to_document(&cp)
                    .map_err(|e| unavailable(format!("sync progress: {e}")))
            })
            .transpose()?;
        for _ in 0..MAX_APPEND_ATTEMPTS {
            match self.write_together(&docs, progress_doc.as_ref()).await {
                Ok(()) => return Ok(()),
                Err(e) if is_too_large(&e) => return Err(too_large(&e)),
                Err(e) if is_duplicate_key(&e) => {
                    let head = self.head().await?.map_or(0, |h| h.version);
                    return Err(StoreError::HeadMoved { head, first });
                }
                // A concurrent writer touched the same documents (e.g. two hubs seeding
                // genesis): if the head moved, say so; otherwise try again.
                Err(e) if is_conflict(&e) => {
                    let head = self.head().await?.map_or(0, |h| h.version);
                    if head != after_version {
                        return Err(StoreError::HeadMoved { head, first });
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable(
            "MongoDB: write kept conflicting with concurrent writers; try again".into(),
        ))
    }

    async fn keep_checkpoints(&self, notes: Vec<(i64, String)>) -> Result<u64, StoreError> {
        // One upsert per note: a relay keeps one or two per sync batch.
        let kept = notes.len() as u64;
        for (version, note) in notes {
            self.checkpoint_notes
                .replace_one(
                    doc! { "_id": version },
                    doc! { "_id": version, "note": note },
                )
                .upsert(true)
                .await
                .map_err(unavailable)?;
        }
        Ok(kept)
    }

    async fn checkpoints_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let found: Vec<Document> = self
            .checkpoint_notes
            .find(doc! { "_id": { "$gt": after, "$lte": upto } })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(found
            .iter()
            .filter_map(|d| Some((d.get_i64("_id").ok()?, d.get_str("note").ok()?.to_owned())))
            .collect())
    }

    async fn sync_progress(&self) -> Result<Option<SyncProgress>, StoreError> {
        let found = self
            .sync_progress
            .find_one(doc! { "_id": 1 })
            .await
            .map_err(unavailable)?;
        found
            .map(|mut d| {
                d.remove("_id");
                mongodb::bson::from_document(d).map_err(|e| StoreError::Corrupt {
                    version: 0,
                    reason: format!("the stored sync progress is unreadable: {e}"),
                })
            })
            .transpose()
    }

    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.find_entries(
            doc! { "version": { "$gt": after } },
            doc! { "version": 1 },
            limit,
        )
        .await
    }

    async fn entry(&self, version: i64) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .find_entries(doc! { "version": version }, doc! { "version": 1 }, 1)
            .await?
            .pop())
    }

    async fn latest(&self, blueprint_id: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .find_entries(
                doc! { "blueprintId": blueprint_id },
                doc! { "version": -1 },
                1,
            )
            .await?
            .pop())
    }

    async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.find_entries(
            doc! { "blueprintId": blueprint_id, "version": { "$gt": after } },
            doc! { "version": 1 },
            limit,
        )
        .await
    }

    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError> {
        let filter = match scope {
            Scope::Log => doc! { "version": { "$gt": after } },
            Scope::Blueprint(id) => doc! { "blueprintId": id, "version": { "$gt": after } },
        };
        self.sizes(vec![
            doc! { "$match": filter },
            doc! { "$sort": { "version": 1 } },
            doc! { "$limit": i64::try_from(limit).unwrap_or(i64::MAX) },
        ])
        .await
    }

    async fn latest_size(&self, blueprint_id: &str) -> Result<Option<EntrySize>, StoreError> {
        Ok(self
            .sizes(vec![
                doc! { "$match": { "blueprintId": blueprint_id } },
                doc! { "$sort": { "version": -1 } },
                doc! { "$limit": 1 },
            ])
            .await?
            .pop())
    }

    async fn list_current(&self, query: ListQuery) -> Result<Vec<Entry>, StoreError> {
        let mut pipeline = vec![
            doc! { "$match": { "blueprintId": { "$gt": query.after_id.unwrap_or_default() } } },
            doc! { "$sort": { "blueprintId": 1, "version": -1 } },
            // A listing never carries documents; drop them before grouping.
            doc! { "$project": { "document": 0 } },
            doc! { "$group": { "_id": "$blueprintId", "top": { "$first": "$$ROOT" } } },
            doc! { "$replaceRoot": { "newRoot": "$top" } },
        ];
        if let Some(active) = query.active {
            pipeline.push(doc! { "$match": { "isActive": active } });
        }
        pipeline.push(doc! { "$sort": { "blueprintId": 1 } });
        pipeline.push(doc! { "$limit": i64::try_from(query.limit).unwrap_or(i64::MAX) });
        let docs = self.aggregate(pipeline).await?;
        docs.into_iter().map(|d| from_doc(d, true)).collect()
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let head = self
            .entries
            .find_one(doc! {})
            .sort(doc! { "version": -1 })
            .projection(doc! { "version": 1, "publishedAt": 1 })
            .await
            .map_err(unavailable)?;
        let pipeline = vec![
            doc! { "$sort": { "blueprintId": 1, "version": -1 } },
            doc! { "$group": { "_id": "$blueprintId", "active": { "$first": "$isActive" } } },
        ];
        let mut cursor = self
            .entries
            .aggregate(pipeline)
            .await
            .map_err(unavailable)?;
        let (mut blueprints, mut active_blueprints) = (0, 0);
        while let Some(d) = cursor.next().await {
            let d = d.map_err(unavailable)?;
            blueprints += 1;
            if d.get_bool("active").unwrap_or(false) {
                active_blueprints += 1;
            }
        }
        Ok(Stats {
            entries: head
                .as_ref()
                .and_then(|d| d.get_i64("version").ok())
                .unwrap_or(0),
            blueprints,
            active_blueprints,
            last_published_at: head.and_then(|d| d.get_i64("publishedAt").ok()),
        })
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Every acknowledged write is already durable on the server.
        Ok(())
    }

    fn shares_fleet(&self) -> bool {
        true
    }

    async fn write_fleet(&self, batch: FleetBatch) -> Result<(), StoreError> {
        self.write_fleet_batch(batch).await
    }

    async fn read_fleet(&self, since: i64) -> Result<SharedFleet, StoreError> {
        self.read_fleet_records(since).await
    }

    fn cancel_safe(&self) -> bool {
        // The driver's futures must be polled to completion (its README, "Warning about
        // timeouts / cancellation").
        false
    }

    async fn follow_external_appends(
        &self,
        announce: &(dyn Fn(i64) + Send + Sync),
        cancel: CancellationToken,
    ) {
        // A change stream wakes us at once; polling is the safety net (and the fallback when
        // the server offers no change streams).
        // Only the key of each insert: a change event carrying the whole entry can exceed
        // the 16 MiB limit itself; the version (`_id`) is all the tail needs, and followers
        // read the entries by version.
        let mut changes = match self
            .entries
            .watch()
            .pipeline([doc! { "$project": { "operationType": 1, "documentKey": 1 } }])
            .await
        {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::warn!(error = %e, "MongoDB change streams unavailable; polling instead");
                None
            }
        };
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_change = async {
                match changes.as_mut() {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                change = next_change => match change {
                    Some(Ok(event)) => {
                        if let Some(version) = event.document_key.as_ref().and_then(|d| d.get_i64("_id").ok()) {
                            announce(version);
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "MongoDB change stream failed; polling");
                        changes = None;
                    }
                    None => changes = None,
                },
                _ = ticker.tick() => {}
            }
            match self.head().await {
                Ok(Some(head)) => announce(head.version),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "polling the head failed"),
            }
        }
    }
}
