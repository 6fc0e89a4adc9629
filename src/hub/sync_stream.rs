//! One peer's sync stream: the register's entries after a version, page by page, each page
//! read through the node's read budget and given back once the transport has taken it, with
//! the hub's checkpoint on the last entry of every page and of the stream. A relay signs
//! none: it sends the checkpoints its store kept with the entries they cover, and its newest
//! with the head.

use super::sessions::StreamGuard;
use super::{Hub, HubError};
use crate::protocol::SyncedEntry;
use crate::register::{PAGE, Page};
use crate::store::Scope;
use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

/// Where a sync stream stands.
pub(super) struct SyncStream {
    hub: Arc<Hub>,
    /// The version of the last entry sent (or the version the stream starts after).
    cursor: i64,
    sent: usize,
    limit: usize,
    /// The page being sent. Its budget is held until the entry after its last is asked for:
    /// by then the transport has taken (encoded and sent) them all.
    page: Option<Page>,
    /// A relay's kept checkpoints of the page's versions, by version.
    notes: std::collections::BTreeMap<i64, String>,
    /// Set by a failed read: the error was the stream's last item.
    failed: bool,
    /// Counts the stream on its session while it runs; records the peer's progress at the end.
    guard: StreamGuard,
    /// A full sync's slot of `hub.maxConcurrentFullSyncs`, held while the stream lives.
    _full_sync: Option<tokio::sync::OwnedSemaphorePermit>,
    served: Counter,
}

impl SyncStream {
    /// A stream of at most `limit` entries after version `after`.
    pub(super) fn new(
        hub: Arc<Hub>,
        after: i64,
        limit: usize,
        guard: StreamGuard,
        full_sync: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Self {
        let served = hub.metrics.sync_entries_served.clone();
        Self {
            hub,
            cursor: after,
            sent: 0,
            limit,
            page: None,
            notes: std::collections::BTreeMap::new(),
            failed: false,
            guard,
            _full_sync: full_sync,
            served,
        }
    }

    /// The entries as a stream; a read error is its last item.
    pub(super) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<SyncedEntry, HubError>> + Send + use<> {
        futures::stream::unfold(self, |mut s| async move {
            let item = s.next_entry().await?;
            Some((item, s))
        })
    }

    /// The next entry, reading the next page when this one is drained; `None` at the end
    /// (the limit reached, nothing more in the register, or after an error).
    async fn next_entry(&mut self) -> Option<Result<SyncedEntry, HubError>> {
        if self.failed {
            return None;
        }
        if self.sent >= self.limit {
            self.guard.finish_sync(self.cursor);
            return None;
        }
        if self.drained() {
            match self.read_page().await {
                Ok(true) => {}
                Ok(false) => {
                    // A peer asking beyond the head has only what the hub has.
                    let head = self.hub.register.head_version();
                    self.guard.finish_sync(self.cursor.min(head));
                    return None;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let entry = self.page.as_mut().and_then(Page::next_entry)?;
        self.served.inc();
        self.cursor = entry.version;
        self.sent += 1;
        let checkpoint = if self.hub.forwards() {
            self.notes
                .remove(&entry.version)
                .or_else(|| self.hub.vouch(entry.version, &entry.chain_hash))
        } else if self.vouches_here() {
            self.hub.vouch(entry.version, &entry.chain_hash)
        } else {
            None
        };
        Some(Ok(SyncedEntry { entry, checkpoint }))
    }

    fn drained(&self) -> bool {
        self.page.as_ref().is_none_or(|p| p.entries.is_empty())
    }

    /// Reads the page after the cursor; false when there is none. The drained page gives its
    /// bytes back first.
    async fn read_page(&mut self) -> Result<bool, HubError> {
        self.page = None;
        let register = &self.hub.register;
        let bound = register.page_bound(PAGE.min(self.limit - self.sent));
        let page = register
            .read_page(Scope::Log, self.cursor, bound, None)
            .await?;
        let Some(last) = page.entries.back().map(|e| e.version) else {
            return Ok(false);
        };
        if self.hub.forwards() {
            self.notes = register
                .store()
                .checkpoints_between(self.cursor, last)
                .await?
                .into_iter()
                .collect();
        }
        self.page = Some(page);
        Ok(true)
    }

    /// The hub vouches for the register up to the last entry of each page and of the stream,
    /// so a peer stages at most a page before it can apply.
    fn vouches_here(&self) -> bool {
        self.sent >= self.limit || self.drained()
    }
}
