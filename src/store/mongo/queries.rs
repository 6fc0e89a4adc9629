//! The MongoDB store's shared queries and its claiming transaction.

use crate::register::entry::Entry;
use crate::store::{EntrySize, KeyClaim, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::MongoStore;
use super::documents::{from_doc, to_doc, unavailable};

impl MongoStore {
    pub(super) async fn find_entries(
        &self,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<Document> = self
            .entries
            .find(filter)
            .sort(sort)
            .limit(limit)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.into_iter().map(|d| from_doc(d, false)).collect()
    }

    /// Inserts `docs` and upserts the checkpoint in one transaction.
    pub(super) async fn write_together(
        &self,
        docs: &[Document],
        progress: Option<&Document>,
    ) -> Result<(), mongodb::error::Error> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let result: Result<(), mongodb::error::Error> = async {
            if !docs.is_empty() {
                self.entries.insert_many(docs).session(&mut session).await?;
            }
            if let Some(cp) = progress {
                self.sync_progress
                    .replace_one(doc! { "_id": 1 }, cp)
                    .upsert(true)
                    .session(&mut session)
                    .await?;
            }
            Ok(())
        }
        .await;
        finish(&mut session, result).await
    }

    /// Inserts `entry` with its claims — the idempotency key (replacing a forgotten record of
    /// it) and the publication transaction id — in one transaction. A live record or claim
    /// of another writer makes it fail with a duplicate key or a write conflict.
    pub(super) async fn insert_claiming(
        &self,
        entry: &Entry,
        key: Option<&KeyClaim>,
    ) -> Result<(), mongodb::error::Error> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let result: Result<(), mongodb::error::Error> = async {
            self.entries
                .insert_one(to_doc(entry))
                .session(&mut session)
                .await?;
            if let Some(k) = key {
                self.idempotency_keys
                    .delete_one(doc! { "_id": &k.key, "createdAt": { "$lt": k.live_after } })
                    .session(&mut session)
                    .await?;
                self.idempotency_keys
                    .insert_one(doc! {
                        "_id": &k.key,
                        "fingerprint": &k.fingerprint,
                        "version": entry.version,
                        "createdAt": entry.published_at,
                    })
                    .session(&mut session)
                    .await?;
            }
            if let Some(tx) = &entry.publication_transaction_id {
                self.transaction_ids
                    .insert_one(doc! { "_id": tx, "version": entry.version })
                    .session(&mut session)
                    .await?;
            }
            Ok(())
        }
        .await;
        finish(&mut session, result).await
    }

    /// The documents `pipeline` yields over the entries.
    pub(super) async fn aggregate(
        &self,
        pipeline: Vec<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        self.entries
            .aggregate(pipeline)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)
    }

    /// Runs `pipeline` (which selects and orders entries) and reports each entry's version and
    /// document size (`$binarySize`), so the server never sends a document.
    pub(super) async fn sizes(
        &self,
        mut pipeline: Vec<Document>,
    ) -> Result<Vec<EntrySize>, StoreError> {
        pipeline.push(doc! { "$project": {
            "_id": 0,
            "version": 1,
            "bytes": { "$binarySize": "$document" },
        } });
        let docs = self.aggregate(pipeline).await?;
        docs.iter()
            .map(|d| {
                let version = d.get_i64("version").unwrap_or(0);
                Ok(EntrySize {
                    version,
                    bytes: size_of(d.get("bytes"), version)?,
                })
            })
            .collect()
    }

    pub(super) async fn latest_version(
        &self,
        blueprint_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let found = self
            .entries
            .find_one(doc! { "blueprintId": blueprint_id })
            .sort(doc! { "version": -1 })
            .projection(doc! { "version": 1 })
            .await
            .map_err(unavailable)?;
        Ok(found.and_then(|d| d.get_i64("version").ok()))
    }
}

/// Commits the session's transaction when `result` is Ok, else aborts it and hands the error
/// back.
pub(super) async fn finish(
    session: &mut mongodb::ClientSession,
    result: Result<(), mongodb::error::Error>,
) -> Result<(), mongodb::error::Error> {
    match result {
        Ok(()) => session.commit_transaction().await,
        Err(e) => {
            let _ = session.abort_transaction().await;
            Err(e)
        }
    }
}

/// A `$binarySize` the server computed, as bytes.
fn size_of(value: Option<&Bson>, version: i64) -> Result<u64, StoreError> {
    let bytes = match value {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        _ => {
            return Err(StoreError::Corrupt {
                version,
                reason: "document size is unreadable".into(),
            });
        }
    };
    Ok(bytes.max(0).cast_unsigned())
}
