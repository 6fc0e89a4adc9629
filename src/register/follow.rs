//! Following the register: a cursor from a version on, served from the recent window while it
//! can and from the store when a follower falls behind.

use super::recent::SharedEntry;
use super::{PAGE, Page, Register, RegisterError};
use crate::store::{Scope, StoreError};
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;

impl Register {
    /// Every entry after `after`, then every new one as it is appended, in version order with
    /// no gaps or duplicates. The follower is a cursor over the store: it never holds up
    /// writers and never misses an entry however slowly it is polled. Entries in the recent
    /// window are shared with every other follower; older ones are read in pages bounded by
    /// bytes, through the read budget (waiting for room). Ends after the first store error
    /// (yielded).
    pub fn follow(
        self: &Arc<Self>,
        after: i64,
    ) -> impl Stream<Item = Result<Arc<SharedEntry>, StoreError>> + Send + use<> {
        struct State {
            register: Arc<Register>,
            cursor: i64,
            page: Option<Page>,
            failed: bool,
        }
        let state = State {
            register: Arc::clone(self),
            cursor: after,
            page: None,
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            loop {
                if let Some((entry, held)) = s.page.as_mut().and_then(Page::pop) {
                    s.cursor = entry.version;
                    let shared = SharedEntry::new(entry).holding(held);
                    return Some((Ok(Arc::new(shared)), s));
                }
                s.page = None;
                // At once while behind; else until the next append is announced.
                s.register.head.past(s.cursor).await;
                // Recent entries come from memory: a publish wakes every follower, and
                // thousands of them must not each read the store.
                if let Some(shared) = s.register.recent.get(s.cursor + 1) {
                    s.cursor += 1;
                    return Some((Ok(shared), s));
                }
                let bound = s.register.page_bound(PAGE);
                match s
                    .register
                    .read_page(Scope::Log, s.cursor, bound, None)
                    .await
                {
                    Ok(page) if !page.entries.is_empty() => s.page = Some(page),
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(RegisterError::Store(e)) => {
                        s.failed = true;
                        return Some((Err(e), s));
                    }
                    Err(e) => {
                        s.failed = true;
                        return Some((Err(StoreError::Unavailable(e.to_string())), s));
                    }
                }
            }
        })
    }
}
