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
//!
//! [`Execution::Inline`] runs the same statements on the caller's thread instead, each call
//! complete within its first poll, so a simulation on tokio's paused clock replays exactly.
//!
//! This file holds the store and its reads; `sql` the schema, statements and row mapping,
//! `writer` the writer thread and its group commit.

mod sql;
mod writer;

use super::fleet::{FleetBatch, MemoryFleet, SharedFleet};
use super::{
    EntrySize, KeyClaim, ListQuery, Prior, RegisterStore, Scope, Stats, StoreError, SyncProgress,
};
use crate::register::entry::{Entry, Expectation, Head, NewEntry};
use async_trait::async_trait;
use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

use sql::{
    ENTRY_COLUMNS, SCHEMA, find_prior, limit_param, prefixed_columns, query_entries, read_head,
    sql_err, unavailable,
};
use writer::{Reply, WriteOp, run_batch, writer_loop};

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "register.sqlite";
/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "register.lock";
/// Where the store runs its SQLite work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Execution {
    /// A writer thread with group commit, reads on the blocking pool: how a node serves.
    #[default]
    Threaded,
    /// Every operation on the calling thread over one connection, finished before the call's
    /// first poll returns: no thread, no group commit. Each statement blocks the caller's
    /// runtime thread, which suits a deterministic simulation on a paused clock (nothing
    /// completes on real time behind the scheduler's back), not a node serving clients.
    Inline,
}

/// The embedded single-file register store.
pub struct EmbeddedStore {
    engine: Engine,
    path: PathBuf,
    _lock: File,
    /// The fleet record shared by hubs of this process (see [`EmbeddedStore::sharing_fleet`]).
    fleet: Option<Arc<MemoryFleet>>,
}

/// The connections behind the store, per [`Execution`].
enum Engine {
    Threaded {
        writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
        writer_thread: Mutex<Option<JoinHandle<()>>>,
        readers: r2d2::Pool<SqliteConnectionManager>,
    },
    /// The one connection; `None` once closed.
    Inline(Mutex<Option<Connection>>),
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`, threaded.
    ///
    /// Fails if another process holds the data directory.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Execution::Threaded)
    }

    /// Opens (creating if needed) the store in `data_dir`, running its work as `execution`
    /// says.
    ///
    /// Fails if another process (or another open store) holds the data directory.
    pub fn open_with(data_dir: &Path, execution: Execution) -> Result<Self, StoreError> {
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
        .and_then(|()| sql::migrate(&conn))
        .map_err(|e| unavailable("cannot initialise the database", e))?;
        if execution == Execution::Inline {
            return Ok(Self {
                engine: Engine::Inline(Mutex::new(Some(conn))),
                path,
                _lock: lock,
                fleet: None,
            });
        }

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
            engine: Engine::Threaded {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(writer_thread)),
                readers,
            },
            path,
            _lock: lock,
            fleet: None,
        })
    }

    /// This store with `fleet` as the fleet record its hubs share, as hubs sharing a MongoDB
    /// database share theirs: for several hubs of one process on one store (the
    /// simulation). A node's own embedded store shares nothing; its hub keeps its record.
    #[must_use]
    pub fn sharing_fleet(mut self, fleet: Arc<MemoryFleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> WriteOp) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        match &self.engine {
            Engine::Threaded { writer, .. } => {
                let sender = writer
                    .lock()
                    .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?
                    .clone()
                    .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
                sender
                    .send(make(reply))
                    .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
            }
            Engine::Inline(conn) => {
                let mut conn = conn
                    .lock()
                    .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
                let conn = conn
                    .as_mut()
                    .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
                // A batch of one; the reply is sent before this returns.
                run_batch(conn, vec![make(reply)]);
            }
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.engine {
            Engine::Threaded { readers, .. } => {
                let pool = readers.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = pool
                        .get()
                        .map_err(|e| unavailable("no read connection", e))?;
                    f(&conn)
                })
                .await
                .map_err(|e| unavailable("read task failed", e))?
            }
            Engine::Inline(conn) => {
                let conn = conn
                    .lock()
                    .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
                f(conn
                    .as_ref()
                    .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?)
            }
        }
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
        progress: Option<SyncProgress>,
    ) -> Result<(), StoreError> {
        self.write(|reply| WriteOp::AppendEntries {
            after_version,
            entries,
            progress,
            reply,
        })
        .await
    }

    async fn sync_progress(&self) -> Result<Option<SyncProgress>, StoreError> {
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
                    reason: format!("the stored sync progress is unreadable: {e}"),
                })
            })
            .transpose()
        })
        .await
    }

    async fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.read(move |c| entries_of(c, None, after, limit)).await
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
        self.read(move |c| entries_of(c, Some(&id), after, limit))
            .await
    }

    async fn sizes_after(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EntrySize>, StoreError> {
        let blueprint = scope.owned_blueprint();
        self.read(move |c| sizes_of(c, blueprint.as_deref(), after, limit))
            .await
    }

    async fn read_ahead(
        &self,
        scope: Scope<'_>,
        after: i64,
        limit: usize,
        load_bytes: usize,
    ) -> Result<(Vec<Entry>, Vec<EntrySize>), StoreError> {
        // One call on one read connection (one snapshot): size, then load what fits.
        let blueprint = scope.owned_blueprint();
        self.read(move |c| {
            let mut sizes = sizes_of(c, blueprint.as_deref(), after, limit)?;
            let load = super::leading_within(&sizes, load_bytes);
            if load == 0 {
                return Ok((Vec::new(), sizes));
            }
            let loaded = entries_of(c, blueprint.as_deref(), after, load)?;
            let rest = sizes.split_off(loaded.len().min(sizes.len()));
            Ok((loaded, rest))
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

    async fn keep_checkpoints(&self, notes: Vec<(i64, String)>) -> Result<u64, StoreError> {
        if notes.is_empty() {
            return Ok(0);
        }
        self.write(|reply| WriteOp::KeepCheckpoints { notes, reply })
            .await
    }

    async fn checkpoints_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(move |c| {
            let mut query = c
                .prepare_cached(
                    "SELECT version, note FROM checkpoint_notes \
                     WHERE version > ?1 AND version <= ?2 ORDER BY version",
                )
                .map_err(sql_err)?;
            let rows = query
                .query_map(params![after, upto], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
        })
        .await
    }

    fn shares_fleet(&self) -> bool {
        self.fleet.is_some()
    }

    async fn write_fleet(&self, batch: FleetBatch) -> Result<(), StoreError> {
        if let Some(fleet) = &self.fleet {
            fleet.write(batch);
        }
        Ok(())
    }

    async fn read_fleet(&self, since: i64) -> Result<SharedFleet, StoreError> {
        Ok(self
            .fleet
            .as_ref()
            .map(|f| f.read(since))
            .unwrap_or_default())
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Fold the WAL into the main file so the data dir is one file at rest, then stop the
        // writer; later writes fail with "store is closed".
        let result = self.write(|reply| WriteOp::FoldWal { reply }).await;
        match &self.engine {
            Engine::Threaded {
                writer,
                writer_thread,
                ..
            } => {
                if let Ok(mut writer) = writer.lock() {
                    writer.take();
                }
                let handle = writer_thread.lock().ok().and_then(|mut h| h.take());
                if let Some(handle) = handle {
                    let _ = tokio::task::spawn_blocking(move || handle.join()).await;
                }
            }
            Engine::Inline(conn) => {
                if let Ok(mut conn) = conn.lock() {
                    conn.take();
                }
            }
        }
        result
    }
}

/// Up to `limit` entries after `after` (of `blueprint`, when given), in version order.
fn entries_of(
    c: &Connection,
    blueprint: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    match blueprint {
        Some(id) => query_entries(
            c,
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE blueprint_id = ?1 AND version > ?2 \
                 ORDER BY version LIMIT ?3"
            ),
            params![id, after, limit_param(limit)],
        ),
        None => query_entries(
            c,
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE version > ?1 ORDER BY version LIMIT ?2"
            ),
            params![after, limit_param(limit)],
        ),
    }
}

/// Versions and document sizes of up to `limit` entries after `after` (of `blueprint`, when
/// given). `length()` of a blob reads its size from the record header, not the blob itself;
/// columns after the document are not read (that would walk its overflow pages).
fn sizes_of(
    c: &Connection,
    blueprint: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<EntrySize>, StoreError> {
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
}
