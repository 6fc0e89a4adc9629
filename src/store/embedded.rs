//! The embedded backend: one SQLite database file in the data directory.
//!
//! Why SQLite rather than a key-value engine: the register needs secondary access paths
//! (newest entry per blueprint, history per blueprint, paging over current blueprints) that
//! SQLite maintains transactionally for us, and its durability is among the best tested there
//! is. The database runs in WAL mode with `synchronous=FULL`, so a commit is on disk before it
//! returns.
//!
//! One writer thread owns the only write connection and applies queued writes in batches, one
//! transaction and one fsync per batch (group commit); every operation in a batch runs in its
//! own savepoint so a refused operation leaves no trace. Reads use a small pool of read-only
//! connections on the blocking thread pool. An exclusive lock on `register.lock` keeps a second
//! process off the same data directory.

use super::{
    Checkpoint, EntrySize, KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError,
    check_continuation, check_expectation,
};
use crate::register::entry::{Entry, EntryType, Expectation, Head, NewEntry};
use async_trait::async_trait;
use bytes::Bytes;
use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::{self, Connection, OpenFlags, OptionalExtension, Row, params};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "register.sqlite";
/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "register.lock";
/// Most operations committed together in one transaction.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
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
    entry_type INTEGER NOT NULL
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
const CLAIM_KEY: &str = "INSERT INTO idempotency_keys (version, key, fingerprint, created_at) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT(key) DO UPDATE SET version = excluded.version, \
    fingerprint = excluded.fingerprint, created_at = excluded.created_at \
    WHERE idempotency_keys.created_at < ?5";

/// Deletes the records older than `?1`: all before the oldest live one (records age in log
/// order; one the hub's clock stamped out of order is deleted on a later round).
const FORGET_KEYS: &str = "DELETE FROM idempotency_keys WHERE version < COALESCE(\
    (SELECT version FROM idempotency_keys WHERE created_at >= ?1 ORDER BY version LIMIT 1), \
    9223372036854775807)";

const ENTRY_COLUMNS: &str = "version, blueprint_id, register_id, document, published_at, \
    published_by, is_active, publication_transaction_id, checksum, metadata, chain_hash, entry_type";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum WriteOp {
    Append {
        new: NewEntry,
        expect: Expectation,
        key: Option<KeyClaim>,
        reply: Reply<Entry>,
    },
    ForgetKeys {
        before: i64,
        reply: Reply<u64>,
    },
    AppendEntries {
        after_version: i64,
        entries: Vec<Entry>,
        checkpoint: Option<Checkpoint>,
        reply: Reply<()>,
    },
    Checkpoint {
        reply: Reply<()>,
    },
}

/// The embedded single-file register store.
pub struct EmbeddedStore {
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`.
    ///
    /// Fails if another process holds the data directory.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            unavailable(&format!("cannot create data dir {}", data_dir.display()), e)
        })?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| unavailable(&format!("cannot open {}", lock_path.display()), e))?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!(
                "data dir {} is in use by another sorcha-peer process",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| unavailable(&format!("cannot open {}", path.display()), e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .and_then(|()| conn.execute_batch(SCHEMA))
        .map_err(|e| unavailable("cannot initialise the database", e))?;

        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| c.execute_batch("PRAGMA busy_timeout=5000;"));
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)
            .map_err(|e| unavailable("cannot open read connections", e))?;

        let (tx, rx) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("register-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| unavailable("cannot start the writer thread", e))?;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(writer_thread)),
            readers,
            path,
            _lock: lock,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> WriteOp) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
        sender
            .send(make(reply))
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .get()
                .map_err(|e| unavailable("no read connection", e))?;
            f(&conn)
        })
        .await
        .map_err(|e| unavailable("read task failed", e))?
    }
}

#[async_trait]
impl RegisterStore for EmbeddedStore {
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.read(|c| read_head(c).map_err(sql_err)).await
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, StoreError> {
        let key = key.cloned();
        self.write(|reply| WriteOp::Append {
            new,
            expect,
            key,
            reply,
        })
        .await
    }

    async fn prior(
        &self,
        key: Option<&KeyClaim>,
        transaction_id: Option<&str>,
    ) -> Result<Option<Prior>, StoreError> {
        let key = key.cloned();
        let transaction_id = transaction_id.map(str::to_owned);
        self.read(move |c| find_prior(c, key.as_ref(), transaction_id.as_deref()).map_err(sql_err))
            .await
    }

    async fn forget_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.write(|reply| WriteOp::ForgetKeys { before, reply })
            .await
    }

    async fn append_entries(
        &self,
        after_version: i64,
        entries: Vec<Entry>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteOp::AppendEntries {
            after_version,
            entries,
            checkpoint,
            reply,
        })
        .await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(|c| {
            let body: Option<String> = c
                .query_row("SELECT body FROM sync_checkpoint WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_err)?;
            body.map(|b| {
                serde_json::from_str(&b).map_err(|e| StoreError::Corrupt {
                    version: 0,
                    reason: format!("sync checkpoint is unreadable: {e}"),
                })
            })
            .transpose()
        })
        .await
    }

    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.read(move |c| {
            query_entries(
                c,
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM entries WHERE version > ?1 ORDER BY version LIMIT ?2"
                ),
                params![after, limit_param(limit)],
            )
        })
        .await
    }

    async fn entry(&self, version: i64) -> Result<Option<Entry>, StoreError> {
        let rows = self
            .read(move |c| {
                query_entries(
                    c,
                    &format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE version = ?1"),
                    params![version],
                )
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn latest(&self, blueprint_id: &str) -> Result<Option<Entry>, StoreError> {
        let id = blueprint_id.to_owned();
        let rows = self
            .read(move |c| {
                query_entries(
                    c,
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM entries WHERE blueprint_id = ?1 \
                         ORDER BY version DESC LIMIT 1"
                    ),
                    params![id],
                )
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn history(
        &self,
        blueprint_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let id = blueprint_id.to_owned();
        self.read(move |c| {
            query_entries(
                c,
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM entries WHERE blueprint_id = ?1 AND version > ?2 \
                     ORDER BY version LIMIT ?3"
                ),
                params![id, after, limit_param(limit)],
            )
        })
        .await
    }

    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError> {
        // `length()` of a blob reads its size from the record header, not the blob itself;
        // columns after the document are not read (that would walk its overflow pages).
        let blueprint = match scope {
            Scope::Log => None,
            Scope::Blueprint(id) => Some(id.to_owned()),
        };
        self.read(move |c| {
            let sql = if blueprint.is_some() {
                "SELECT version, length(document) FROM entries \
                 WHERE blueprint_id = ?3 AND version > ?1 ORDER BY version LIMIT ?2"
            } else {
                "SELECT version, length(document) FROM entries \
                 WHERE version > ?1 AND ?3 IS NULL ORDER BY version LIMIT ?2"
            };
            let mut stmt = c.prepare_cached(sql).map_err(sql_err)?;
            let rows = stmt
                .query_map(params![after, limit_param(limit), blueprint], |r| {
                    Ok(EntrySize {
                        version: r.get(0)?,
                        bytes: r.get::<_, i64>(1)?.max(0).cast_unsigned(),
                    })
                })
                .map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        })
        .await
    }

    async fn latest_size(&self, blueprint_id: &str) -> Result<Option<EntrySize>, StoreError> {
        let id = blueprint_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT e.version, length(e.document) FROM blueprints b \
                 JOIN entries e ON e.version = b.version WHERE b.blueprint_id = ?1",
                params![id],
                |r| {
                    Ok(EntrySize {
                        version: r.get(0)?,
                        bytes: r.get::<_, i64>(1)?.max(0).cast_unsigned(),
                    })
                },
            )
            .optional()
            .map_err(sql_err)
        })
        .await
    }

    async fn list_current(&self, query: ListQuery) -> Result<Vec<Entry>, StoreError> {
        self.read(move |c| {
            let active = query.active.map(i64::from);
            let after = query.after_id.unwrap_or_default();
            query_entries(
                c,
                &format!(
                    "SELECT {} FROM blueprints b JOIN entries e ON e.version = b.version \
                     WHERE b.blueprint_id > ?1 AND (?2 IS NULL OR b.is_active = ?2) \
                     ORDER BY b.blueprint_id LIMIT ?3",
                    prefixed_columns("e.").replace("e.document", "X'' AS document")
                ),
                params![after, active, limit_param(query.limit)],
            )
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(|c| {
            let (entries, last_published_at): (i64, Option<i64>) = c
                .query_row(
                    "SELECT version, published_at FROM entries ORDER BY version DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err)?
                .unwrap_or((0, None));
            let (blueprints, active_blueprints): (i64, i64) = c
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(is_active), 0) FROM blueprints",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql_err)?;
            Ok(Stats {
                entries,
                blueprints,
                active_blueprints,
                last_published_at,
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Fold the WAL into the main file so the data dir is one file at rest, then stop the
        // writer; later writes fail with "store is closed".
        let result = self.write(|reply| WriteOp::Checkpoint { reply }).await;
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        result
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn prefixed_columns(prefix: &str) -> String {
    ENTRY_COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return StoreError::Full(e.to_string());
    }
    StoreError::Unavailable(format!("database error: {e}"))
}

/// The earlier write holding a live `key`, else the oldest entry carrying `transaction_id`.
fn find_prior(
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

fn read_head(c: &Connection) -> rusqlite::Result<Option<Head>> {
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

fn query_entries(
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

fn row_to_entry(r: &Row<'_>) -> Result<Entry, StoreError> {
    let version: i64 = r.get(0).map_err(sql_err)?;
    let corrupt = |reason: String| StoreError::Corrupt { version, reason };
    let col = |e: rusqlite::Error| corrupt(e.to_string());
    let metadata_text: String = r.get(9).map_err(col)?;
    let metadata: BTreeMap<String, String> = serde_json::from_str(&metadata_text)
        .map_err(|e| corrupt(format!("metadata is not a string map: {e}")))?;
    let type_code: i64 = r.get(11).map_err(col)?;
    let entry_type = EntryType::from_code(type_code)
        .ok_or_else(|| corrupt(format!("unknown entry type {type_code}")))?;
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
    })
}

fn insert_entry(c: &Connection, e: &Entry) -> rusqlite::Result<()> {
    let metadata = serde_json::to_string(&e.metadata).unwrap_or_else(|_| "{}".to_owned());
    c.prepare_cached(&format!(
        "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
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
    ])?;
    c.prepare_cached(
        "INSERT INTO blueprints (blueprint_id, version, is_active) VALUES (?1, ?2, ?3) \
         ON CONFLICT(blueprint_id) DO UPDATE SET version = excluded.version, is_active = excluded.is_active",
    )?
    .execute(params![e.blueprint_id, e.version, e.is_active])?;
    Ok(())
}

/// The single writer: drains queued operations into one transaction per batch.
fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

/// An operation's outcome, sent only after the batch's commit decides it.
enum Outcome {
    Entry(Reply<Entry>, Result<Entry, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
}

fn run_batch(conn: &mut Connection, batch: Vec<WriteOp>) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut head = read_head(&tx)?;
        for op in batch {
            match op {
                WriteOp::Append {
                    new,
                    expect,
                    key,
                    reply,
                } => {
                    let result = append_one(&mut tx, &mut head, new, expect, key.as_ref());
                    outcomes.push(Outcome::Entry(reply, result));
                }
                WriteOp::ForgetKeys { before, reply } => {
                    let result = tx
                        .prepare_cached(FORGET_KEYS)
                        .and_then(|mut s| s.execute(params![before]))
                        .map(|n| n as u64)
                        .map_err(sql_err);
                    outcomes.push(Outcome::Count(reply, result));
                }
                WriteOp::AppendEntries {
                    after_version,
                    entries,
                    checkpoint,
                    reply,
                } => {
                    let result = append_many(
                        &mut tx,
                        &mut head,
                        after_version,
                        &entries,
                        checkpoint.as_ref(),
                    );
                    outcomes.push(Outcome::Unit(reply, result));
                }
                WriteOp::Checkpoint { reply } => outcomes.push(Outcome::Unit(reply, Ok(()))),
            }
        }
        tx.commit()
    })();
    if committed.is_ok() && outcomes.iter().any(|o| matches!(o, Outcome::Unit(..))) {
        // Only checkpoint ops need this; it is harmless after appends too.
        let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }
    for outcome in outcomes {
        let fail = |e: &rusqlite::Error| {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                StoreError::Full(e.to_string())
            } else {
                unavailable("commit failed, nothing was written", e)
            }
        };
        match outcome {
            Outcome::Entry(reply, result) => {
                let _ = reply.send(match &committed {
                    Ok(()) => result,
                    Err(e) => Err(fail(e)),
                });
            }
            Outcome::Unit(reply, result) => {
                let _ = reply.send(match &committed {
                    Ok(()) => result,
                    Err(e) => Err(fail(e)),
                });
            }
            Outcome::Count(reply, result) => {
                let _ = reply.send(match &committed {
                    Ok(()) => result,
                    Err(e) => Err(fail(e)),
                });
            }
        }
    }
}

fn append_one(
    tx: &mut rusqlite::Transaction<'_>,
    head: &mut Option<Head>,
    new: NewEntry,
    expect: Expectation,
    key: Option<&KeyClaim>,
) -> Result<Entry, StoreError> {
    let sp = tx.savepoint().map_err(sql_err)?;
    let version = head.as_ref().map_or(1, |h| h.version + 1);
    if let Some(k) = key {
        // Claimed first, by one upsert: a new key (the common case) costs no lookup. A
        // refusal below rolls the savepoint and the claim back.
        let claimed = sp
            .prepare_cached(CLAIM_KEY)
            .and_then(|mut s| {
                s.execute(params![
                    version,
                    k.key,
                    k.fingerprint,
                    new.published_at,
                    k.live_after
                ])
            })
            .map_err(sql_err)?;
        if claimed == 0 {
            let prior = find_prior(&sp, Some(k), None)
                .map_err(sql_err)?
                .ok_or_else(|| unavailable("idempotency key", "its record vanished"))?;
            return Err(StoreError::Claimed(prior));
        }
    }
    if let Some(prior) =
        find_prior(&sp, None, new.publication_transaction_id.as_deref()).map_err(sql_err)?
    {
        return Err(StoreError::Claimed(prior));
    }
    let actual: Option<i64> = sp
        .query_row(
            "SELECT version FROM blueprints WHERE blueprint_id = ?1",
            params![new.blueprint_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    check_expectation(expect, actual)?;
    let entry = new.into_entry_after(head.as_ref());
    insert_entry(&sp, &entry).map_err(sql_err)?;
    sp.commit().map_err(sql_err)?;
    *head = Some(Head {
        version: entry.version,
        chain_hash: entry.chain_hash.clone(),
    });
    Ok(entry)
}

fn append_many(
    tx: &mut rusqlite::Transaction<'_>,
    head: &mut Option<Head>,
    after_version: i64,
    entries: &[Entry],
    checkpoint: Option<&Checkpoint>,
) -> Result<(), StoreError> {
    check_continuation(
        head.as_ref().map_or(0, |h| h.version),
        after_version,
        entries,
    )?;
    let sp = tx.savepoint().map_err(sql_err)?;
    for e in entries {
        insert_entry(&sp, e).map_err(sql_err)?;
    }
    if let Some(cp) = checkpoint {
        let body = serde_json::to_string(cp).map_err(|e| unavailable("checkpoint encoding", e))?;
        sp.execute(
            "INSERT INTO sync_checkpoint (id, body) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            params![body],
        )
        .map_err(sql_err)?;
    }
    sp.commit().map_err(sql_err)?;
    if let Some(last) = entries.last() {
        *head = Some(Head {
            version: last.version,
            chain_hash: last.chain_hash.clone(),
        });
    }
    Ok(())
}
