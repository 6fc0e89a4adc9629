//! The embedded store's schema, statements and row mapping, shared by its reads and its
//! writer.

use crate::register::entry::{Entry, EntryType, Head};
use crate::register::signature::PublisherSignature;
use crate::store::{KeyClaim, Prior, StoreError};
use bytes::Bytes;
use r2d2_sqlite::rusqlite::{self, Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    version INTEGER PRIMARY KEY,
    blueprint_id TEXT NOT NULL,
    register_id TEXT NOT NULL,
    document BLOB NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    publication_transaction_id TEXT,
    checksum TEXT NOT NULL,
    metadata TEXT NOT NULL,
    chain_hash TEXT NOT NULL,
    entry_type INTEGER NOT NULL,
    -- The publisher's signature, `<keyName> <base64>`; NULL when unsigned. Added by
    -- `migrate` to a table of an earlier release.
    signature TEXT
);
CREATE INDEX IF NOT EXISTS entries_by_blueprint ON entries(blueprint_id, version);
-- The head (and its time) without touching the row: a row's later columns sit behind its
-- document, and reading them walks every overflow page of a large one. Built once when an
-- older data dir is opened.
CREATE INDEX IF NOT EXISTS entries_head ON entries(version, chain_hash, published_at);
CREATE TABLE IF NOT EXISTS sync_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blueprints (
    blueprint_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    is_active INTEGER NOT NULL
) WITHOUT ROWID;
-- A publication transaction id names one entry: an append looks it up here, inside its
-- transaction (one writer, so the check and the insert cannot be raced). Partial: only entries
-- that carry one. Built once when an older data dir is opened.
CREATE INDEX IF NOT EXISTS entries_by_transaction
    ON entries(publication_transaction_id, version)
    WHERE publication_transaction_id IS NOT NULL;
-- Hub checkpoint notes a relay received for versions its replica holds, handed on to its
-- downstream peers with the entries they cover (`RegisterStore::keep_checkpoints`).
CREATE TABLE IF NOT EXISTS checkpoint_notes (
    version INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
-- Idempotency keys, each written in the transaction of the entry it names (`version`, so
-- rows are appended in log order and age with it) and deleted once older than
-- `idempotency.retention` by the hub's housekeeping.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    version INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Claims a key for the entry about to be appended: inserts its record, or replaces a record
/// older than `?5` (forgotten); changes nothing — and so reports no change — when a live
/// record holds the key.
pub(super) const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (version, key, fingerprint, created_at) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT(key) DO UPDATE SET version = excluded.version, \
    fingerprint = excluded.fingerprint, created_at = excluded.created_at \
    WHERE idempotency_keys.created_at < ?5";

/// Deletes the records older than `?1`: all before the oldest live one (records age in log
/// order; one the hub's clock stamped out of order is deleted on a later round).
pub(super) const FORGET_KEYS: &str = "DELETE FROM idempotency_keys WHERE version < COALESCE(\
    (SELECT version FROM idempotency_keys WHERE created_at >= ?1 ORDER BY version LIMIT 1), \
    9223372036854775807)";

pub(super) const ENTRY_COLUMNS: &str = "version, blueprint_id, register_id, document, published_at, \
    published_by, is_active, publication_transaction_id, checksum, metadata, chain_hash, entry_type, \
    signature";

/// Brings a database of an earlier release to this schema (after [`SCHEMA`], which creates
/// what is missing but cannot add a column): the `signature` column of releases before
/// publisher signatures. Idempotent: a database already migrated is left as it is.
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let has_signature: bool = c.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('entries') WHERE name = 'signature'",
        [],
        |r| r.get(0),
    )?;
    if !has_signature {
        c.execute_batch("ALTER TABLE entries ADD COLUMN signature TEXT")?;
    }
    Ok(())
}

/// A store error for a failure outside SQLite itself, with what was being done.
pub(super) fn unavailable(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}

pub(super) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn prefixed_columns(prefix: &str) -> String {
    ENTRY_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn sql_err(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return StoreError::Full(e.to_string());
    }
    StoreError::Unavailable(format!("database error: {e}"))
}

/// The earlier write holding a live `key`, else the oldest entry carrying `transaction_id`.
pub(super) fn find_prior(
    c: &Connection,
    key: Option<&KeyClaim>,
    transaction_id: Option<&str>,
) -> rusqlite::Result<Option<Prior>> {
    if let Some(k) = key {
        let found = c
            .prepare_cached(
                "SELECT version, fingerprint FROM idempotency_keys \
                 WHERE key = ?1 AND created_at >= ?2",
            )?
            .query_row(params![k.key, k.live_after], |r| {
                Ok(Prior::Key {
                    version: r.get(0)?,
                    fingerprint: r.get(1)?,
                })
            })
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    let Some(tx) = transaction_id else {
        return Ok(None);
    };
    c.prepare_cached(
        "SELECT version FROM entries WHERE publication_transaction_id = ?1 \
         ORDER BY version LIMIT 1",
    )?
    .query_row(params![tx], |r| {
        Ok(Prior::Transaction { version: r.get(0)? })
    })
    .optional()
}

pub(super) fn read_head(c: &Connection) -> rusqlite::Result<Option<Head>> {
    c.query_row(
        "SELECT version, chain_hash FROM entries ORDER BY version DESC LIMIT 1",
        [],
        |r| {
            Ok(Head {
                version: r.get(0)?,
                chain_hash: r.get(1)?,
            })
        },
    )
    .optional()
}

pub(super) fn query_entries(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Entry>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = stmt.query(params).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        out.push(row_to_entry(row)?);
    }
    Ok(out)
}

pub(super) fn row_to_entry(r: &Row<'_>) -> Result<Entry, StoreError> {
    let version: i64 = r.get(0).map_err(sql_err)?;
    let corrupt = |reason: String| StoreError::Corrupt { version, reason };
    let col = |e: rusqlite::Error| corrupt(e.to_string());
    let metadata_text: String = r.get(9).map_err(col)?;
    let metadata: BTreeMap<String, String> = serde_json::from_str(&metadata_text)
        .map_err(|e| corrupt(format!("metadata is not a string map: {e}")))?;
    let type_code: i64 = r.get(11).map_err(col)?;
    let entry_type = EntryType::from_code(type_code)
        .ok_or_else(|| corrupt(format!("unknown entry type {type_code}")))?;
    let signature = r
        .get::<_, Option<String>>(12)
        .map_err(col)?
        .map(|text| PublisherSignature::parse_text(&text).map(Box::new))
        .transpose()
        .map_err(|e| corrupt(format!("signature: {e}")))?;
    Ok(Entry {
        version,
        blueprint_id: r.get(1).map_err(col)?,
        register_id: r.get(2).map_err(col)?,
        document: Bytes::from(r.get::<_, Vec<u8>>(3).map_err(col)?),
        published_at: r.get(4).map_err(col)?,
        published_by: r.get(5).map_err(col)?,
        is_active: r.get::<_, i64>(6).map_err(col)? != 0,
        publication_transaction_id: r.get(7).map_err(col)?,
        checksum: r.get(8).map_err(col)?,
        metadata,
        chain_hash: r.get(10).map_err(col)?,
        entry_type,
        signature,
    })
}

pub(super) fn insert_entry(c: &Connection, e: &Entry) -> rusqlite::Result<()> {
    let metadata = serde_json::to_string(&e.metadata).unwrap_or_else(|_| "{}".to_owned());
    c.prepare_cached(&format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        e.version,
        e.blueprint_id,
        e.register_id,
        &e.document[..],
        e.published_at,
        e.published_by,
        e.is_active,
        e.publication_transaction_id,
        e.checksum,
        metadata,
        e.chain_hash,
        e.entry_type.code(),
        e.signature.as_deref().map(PublisherSignature::to_text),
    ])?;
    c.prepare_cached(
        "INSERT INTO blueprints (blueprint_id, version, is_active) VALUES (?1, ?2, ?3) \
         ON CONFLICT(blueprint_id) DO UPDATE SET version = excluded.version, is_active = excluded.is_active",
    )?
    .execute(params![e.blueprint_id, e.version, e.is_active])?;
    Ok(())
}
