//! The embedded store's single writer thread: queued writes applied in batches, one
//! transaction and one fsync per batch, each operation in its own savepoint.

use crate::register::entry::{Entry, Expectation, Head, NewEntry};
use crate::store::{KeyClaim, StoreError, SyncProgress, check_continuation, check_expectation};
use r2d2_sqlite::rusqlite::{self, Connection, OptionalExtension, params};
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::sql::{
    CLAIM_KEY, FORGET_KEYS, find_prior, insert_entry, read_head, sql_err, unavailable,
};

/// Most operations committed together in one transaction.
pub(super) const MAX_BATCH: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum WriteOp {
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
        progress: Option<SyncProgress>,
        reply: Reply<()>,
    },
    KeepCheckpoints {
        notes: Vec<(i64, String)>,
        reply: Reply<u64>,
    },
    /// Fold the WAL into the main file (SQLite's checkpoint), at close.
    FoldWal {
        reply: Reply<()>,
    },
}

/// The single writer: drains queued operations into one transaction per batch.
pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>) {
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

/// Applies `batch` in one transaction and answers each operation once the commit decides it.
pub(super) fn run_batch(conn: &mut Connection, batch: Vec<WriteOp>) {
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
                    progress,
                    reply,
                } => {
                    let result = append_many(
                        &mut tx,
                        &mut head,
                        after_version,
                        &entries,
                        progress.as_ref(),
                    );
                    outcomes.push(Outcome::Unit(reply, result));
                }
                WriteOp::KeepCheckpoints { notes, reply } => {
                    let result = keep_notes(&tx, &notes).map_err(sql_err);
                    outcomes.push(Outcome::Count(reply, result));
                }
                WriteOp::FoldWal { reply } => outcomes.push(Outcome::Unit(reply, Ok(()))),
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
    progress: Option<&SyncProgress>,
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
    if let Some(cp) = progress {
        let body =
            serde_json::to_string(cp).map_err(|e| unavailable("sync progress encoding", e))?;
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

/// Keeps checkpoint notes by version, replacing one kept for the same version.
fn keep_notes(tx: &rusqlite::Transaction<'_>, notes: &[(i64, String)]) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO checkpoint_notes (version, note) VALUES (?1, ?2) \
         ON CONFLICT(version) DO UPDATE SET note = excluded.note",
    )?;
    for (version, note) in notes {
        insert.execute(params![version, note])?;
    }
    Ok(notes.len() as u64)
}
