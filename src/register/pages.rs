//! Pages of entries: how far one may reach, and reading one — from memory when the recent
//! window holds it or the reader is at the head, else from the store — with its bytes held
//! from the read budget.

use super::budget::{Held, ReadBudget};
use super::entry::Entry;
use super::{Register, RegisterError};
use crate::store::{RegisterStore, Scope, page_weight};
use std::collections::VecDeque;
use std::time::Duration;

/// How far a page may reach.
#[derive(Debug, Clone, Copy)]
pub struct PageBound {
    /// Most entries.
    pub entries: usize,
    /// Most bytes, counting each entry as its document plus [`ENTRY_OVERHEAD_BYTES`](super::entry::ENTRY_OVERHEAD_BYTES) (what the
    /// store can tell without reading it); the first entry is taken whatever its size.
    pub bytes: usize,
}

/// Entries read from the store, with their bytes held from the read budget until they are
/// released (or the page is dropped).
#[derive(Debug)]
pub struct Page {
    /// The entries, in version order.
    pub entries: VecDeque<Entry>,
    /// True when the scope has entries after this page.
    pub more: bool,
    /// The page's bytes in the read budget.
    pub held: Held,
}

impl Page {
    /// Takes the next entry off the page; the page keeps holding the budget for all its
    /// entries until it is dropped. For streams of many small entries, where a share per
    /// entry would cost a semaphore operation each.
    pub fn next_entry(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    /// Takes the next entry off the page with its share of the page's budget, which the
    /// caller keeps until the entry has left memory (is written out).
    pub fn pop(&mut self) -> Option<(Entry, Held)> {
        let entry = self.entries.pop_front()?;
        let held = self.held.split_off(entry.weight());
        Some((entry, held))
    }
}

impl Register {
    /// The largest page of entries a read brings into memory (at least one entry).
    pub fn max_page_bytes(&self) -> usize {
        self.options.max_page_bytes
    }

    /// Reads the page after `after` in `scope`: sizes it first (without loading documents),
    /// takes its bytes from the read budget (waiting at most `wait`; `None` waits as long as
    /// it takes), then reads it. The page ends at `bound` but always holds one entry if any.
    pub async fn read_page(
        &self,
        scope: Scope<'_>,
        after: i64,
        bound: PageBound,
        wait: Option<Duration>,
    ) -> Result<Page, RegisterError> {
        if let Scope::Log = scope
            && let Some(page) = self.window_page(after, bound, wait).await?
        {
            return Ok(page);
        }
        read_page(self.store.as_ref(), &self.budget, scope, after, bound, wait).await
    }

    /// The log page after `after` from memory: empty at or past the announced head, else
    /// from the recent window when it holds the entry right after `after`. A peer or reader
    /// near the head costs the store nothing. The page's
    /// bytes are held from the read budget like a page read from the store, so what a reader
    /// keeps after the window lets go is still counted.
    async fn window_page(
        &self,
        after: i64,
        bound: PageBound,
        wait: Option<Duration>,
    ) -> Result<Option<Page>, RegisterError> {
        if after >= self.head_version() {
            // Nothing past what this node has announced: a reader at the head (the end of
            // every catch-up) is told so without asking the store.
            return Ok(Some(Page {
                entries: VecDeque::new(),
                more: false,
                held: self.budget.acquire(0, wait).await?,
            }));
        }
        let shared = self.recent.after(after, bound.entries, bound.bytes);
        let Some(last) = shared.last().map(|s| s.entry.version) else {
            return Ok(None);
        };
        let bytes = shared.iter().map(|s| s.entry.weight()).sum();
        let held = self.budget.acquire(bytes, wait).await?;
        Ok(Some(Page {
            entries: shared.iter().map(|s| s.entry.clone()).collect(),
            more: last < self.head_version(),
            held,
        }))
    }

    /// A page bound of at most `entries` entries and the node's page bytes.
    pub fn page_bound(&self, entries: usize) -> PageBound {
        PageBound {
            entries,
            bytes: self.options.max_page_bytes,
        }
    }
}

/// Reads the page after `after` in `scope` from `store`, holding its bytes from `budget`
/// (waiting at most `wait`; `None` waits as long as it takes) before any document is loaded:
/// the page bound first, given back down to what the page holds once its sizes are known (a
/// page within its bound is one [`RegisterStore::read_ahead`]); a first entry larger than the
/// bound has its exact bytes taken before it is loaded. The page ends at `bound` but always
/// holds one entry if any.
pub async fn read_page(
    store: &dyn RegisterStore,
    budget: &ReadBudget,
    scope: Scope<'_>,
    after: i64,
    bound: PageBound,
    wait: Option<Duration>,
) -> Result<Page, RegisterError> {
    let reserve = bound.bytes;
    let mut held = budget.acquire(reserve, wait).await?;
    let (mut entries, rest) = store
        .read_ahead(scope, after, bound.entries.saturating_add(1), reserve)
        .await?;
    let weights = entries
        .iter()
        .map(|e| page_weight(e.document.len() as u64))
        .chain(rest.iter().map(|s| page_weight(s.bytes)));
    let (mut count, mut bytes) = (0usize, 0usize);
    for weight in weights.take(bound.entries) {
        if count > 0 && bytes.saturating_add(weight) > bound.bytes {
            break;
        }
        bytes = bytes.saturating_add(weight);
        count += 1;
    }
    let more = entries.len() + rest.len() > count;
    entries.truncate(count);
    if bytes > reserve {
        held.merge(budget.acquire(bytes - reserve, wait).await?);
    } else {
        drop(held.split_off(reserve - bytes));
    }
    if count > entries.len() {
        let from = entries.last().map_or(after, |e| e.version);
        let remainder = count - entries.len();
        entries.extend(match scope {
            Scope::Log => store.entries_after(from, remainder).await?,
            Scope::Blueprint(id) => store.history(id, from, remainder).await?,
        });
    }
    Ok(Page {
        more,
        entries: entries.into(),
        held,
    })
}
