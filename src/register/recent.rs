//! The recent window: the newest entries in memory, with the values derived from them for
//! streaming (event frames, push summaries), so the many followers near the head share one
//! copy and one encoding of each entry instead of each reading the store and encoding it.
//!
//! The window is bounded by entries ([`RECENT_CAPACITY`]) and by bytes
//! (`limits.recentWindowBytes`), counting each entry and everything derived from it together.
//! The oldest entries leave first; an entry larger than the whole byte bound is never kept.
//! Followers whose cursor is older than the window read from the store instead.

use super::INLINE_WORK_BYTES;
use super::budget::Held;
use super::entry::Entry;
use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::OnceCell;

/// Most entries kept, whatever their size.
pub const RECENT_CAPACITY: usize = 1024;
/// Most entries that wait for a missing version before the window restarts without it.
pub const PENDING_CAPACITY: usize = 64;

/// A value derived from an entry for streaming it; each is computed once per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The short document summary of a push notification.
    Summary,
    /// An event frame without the entry.
    Event,
    /// An event frame carrying the whole entry.
    EventWithEntry,
}

const FORMS: usize = 3;

impl Form {
    fn index(self) -> usize {
        match self {
            Form::Summary => 0,
            Form::Event => 1,
            Form::EventWithEntry => 2,
        }
    }
}

/// What a derivation produced: the parts to send in order (which may share the entry's own
/// document bytes) and how many bytes it newly allocated.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// The encoded parts, sent one after the other.
    pub parts: Arc<[Bytes]>,
    /// Bytes allocated by the derivation (shared document bytes excluded).
    pub own_bytes: usize,
}

/// An entry as followers receive it: the entry and its derived values, shared by every
/// follower that streams it.
#[derive(Debug)]
pub struct SharedEntry {
    /// The entry.
    pub entry: Entry,
    derived: [OnceCell<Derived>; FORMS],
    /// True while the window counts this entry's bytes.
    in_window: AtomicBool,
    /// Bytes of this entry counted by the window (entry plus derived values).
    charged: AtomicUsize,
    /// For an entry read from the store: its bytes in the read budget, given back when the
    /// last follower lets go of it.
    _held: Option<Held>,
}

impl SharedEntry {
    /// An entry not (yet) in any window.
    pub fn new(entry: Entry) -> Self {
        Self {
            entry,
            derived: Default::default(),
            in_window: AtomicBool::new(false),
            charged: AtomicUsize::new(0),
            _held: None,
        }
    }

    /// The `form` of this entry if it was derived already.
    pub fn derived_now(&self, form: Form) -> Option<Arc<[Bytes]>> {
        self.derived[form.index()]
            .get()
            .map(|value| Arc::clone(&value.parts))
    }

    /// The entry, keeping `held` (its bytes in the read budget) for as long as it lives.
    pub fn holding(mut self, held: Held) -> Self {
        self._held = Some(held);
        self
    }
}

/// The window.
#[derive(Debug)]
pub struct RecentWindow {
    state: RwLock<State>,
    max_bytes: usize,
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Arc<SharedEntry>>,
    bytes: usize,
    /// Entries that arrived ahead of a missing version, by version.
    pending: BTreeMap<i64, Entry>,
    /// Weight of the pending entries.
    pending_bytes: usize,
}

impl RecentWindow {
    /// An empty window of at most `max_bytes`, reporting its size in `gauge`.
    pub fn new(max_bytes: usize, gauge: Gauge) -> Self {
        Self {
            state: RwLock::default(),
            max_bytes,
            gauge,
        }
    }

    /// Bytes the window holds now.
    pub fn bytes(&self) -> usize {
        self.state.read().map_or(0, |s| s.bytes)
    }

    /// Remembers entries just made durable. Entries the window holds already are skipped;
    /// one that arrives ahead of a missing version (two appends finishing out of order,
    /// another hub's append not read yet) waits until the gap is filled, and a gap that stays
    /// open past [`PENDING_CAPACITY`] entries or a quarter of the byte bound restarts the
    /// window at the waiting entries.
    pub fn push(&self, new: impl IntoIterator<Item = Entry>) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        for entry in new {
            let Some(last) = state.entries.back().map(|e| e.entry.version) else {
                self.append(&mut state, entry);
                continue;
            };
            if entry.version <= last {
                continue;
            }
            if entry.version > last + 1 {
                state.pending_bytes += entry.weight();
                state.pending.insert(entry.version, entry);
                if state.pending.len() > PENDING_CAPACITY
                    || state.pending_bytes > self.max_bytes / 4
                {
                    while state.entries.pop_front().is_some_and(|e| evicted(&e)) {}
                    state.bytes = 0;
                    let first = state.pending.pop_first().map(|(_, e)| e);
                    state.pending_bytes -= first.as_ref().map_or(0, Entry::weight);
                    if let Some(first) = first {
                        self.append(&mut state, first);
                    }
                }
            } else {
                self.append(&mut state, entry);
            }
            // Whatever waited for this entry follows it.
            while let Some(next) = state
                .entries
                .back()
                .map(|e| e.entry.version + 1)
                .and_then(|v| state.pending.remove(&v))
            {
                state.pending_bytes -= next.weight();
                self.append(&mut state, next);
            }
            let newest = state.entries.back().map_or(0, |e| e.entry.version);
            state.pending.retain(|v, _| *v > newest);
            state.pending_bytes = state.pending.values().map(Entry::weight).sum();
        }
        self.gauge
            .set(i64::try_from(state.bytes).unwrap_or(i64::MAX));
    }

    /// Adds `entry` as the newest, then trims.
    fn append(&self, state: &mut State, entry: Entry) {
        let shared = Arc::new(SharedEntry::new(entry));
        let weight = shared.entry.weight();
        shared.charged.store(weight, Ordering::Relaxed);
        shared.in_window.store(true, Ordering::Relaxed);
        state.bytes += weight;
        state.entries.push_back(shared);
        self.trim(state);
    }

    /// Version of the newest entry the window holds.
    pub fn newest(&self) -> Option<i64> {
        let state = self.state.read().ok()?;
        state.entries.back().map(|e| e.entry.version)
    }

    /// The entries right after `after`, oldest first, as long as the window holds them
    /// contiguously: at most `max_entries`, and ending before their weights exceed
    /// `max_bytes` (the first is taken whatever its size). Empty when the window does not
    /// hold `after + 1`.
    pub fn after(&self, after: i64, max_entries: usize, max_bytes: usize) -> Vec<Arc<SharedEntry>> {
        let Ok(state) = self.state.read() else {
            return Vec::new();
        };
        let Some(first) = state.entries.front().map(|e| e.entry.version) else {
            return Vec::new();
        };
        let Some(start) = after
            .checked_add(1)
            .and_then(|v| v.checked_sub(first))
            .and_then(|i| usize::try_from(i).ok())
        else {
            return Vec::new();
        };
        let mut bytes = 0usize;
        let mut taken = Vec::new();
        for shared in state.entries.iter().skip(start).take(max_entries) {
            let weight = shared.entry.weight();
            if !taken.is_empty() && bytes.saturating_add(weight) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(weight);
            taken.push(Arc::clone(shared));
        }
        taken
    }

    /// The entry at `version`, if the window holds it.
    pub fn get(&self, version: i64) -> Option<Arc<SharedEntry>> {
        let state = self.state.read().ok()?;
        let first = state.entries.front()?.entry.version;
        let index = usize::try_from(version.checked_sub(first)?).ok()?;
        state.entries.get(index).cloned()
    }

    /// The `form` of `shared`, derived by `derive` if no follower did yet. Followers asking
    /// at once wait (without holding a thread) for the first one's result instead of all
    /// deriving it. A document above [`INLINE_WORK_BYTES`] is derived on the blocking pool:
    /// parsing up to `limits.maxDocumentBytes` of JSON must not stall a runtime thread and
    /// every stream it serves. Bytes derived for an entry in the window count against the
    /// window's bound.
    pub async fn derived<F>(&self, shared: &Arc<SharedEntry>, form: Form, derive: F) -> Arc<[Bytes]>
    where
        F: Fn(&Entry) -> Derived + Clone + Send + 'static,
    {
        let mut fresh = None;
        let value = shared.derived[form.index()]
            .get_or_init(|| async {
                let value = if shared.entry.document.len() <= INLINE_WORK_BYTES {
                    derive(&shared.entry)
                } else {
                    let (entry, off_thread) = (Arc::clone(shared), derive.clone());
                    match tokio::task::spawn_blocking(move || off_thread(&entry.entry)).await {
                        Ok(value) => value,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // The runtime is shutting down: derive here rather than not at all.
                        Err(_) => derive(&shared.entry),
                    }
                };
                fresh = Some(value.own_bytes);
                value
            })
            .await;
        if let Some(own) = fresh
            && shared.in_window.load(Ordering::Relaxed)
            && let Ok(mut state) = self.state.write()
            // Checked again under the lock: eviction may have won the race.
            && shared.in_window.load(Ordering::Relaxed)
        {
            shared.charged.fetch_add(own, Ordering::Relaxed);
            state.bytes += own;
            self.trim(&mut state);
            self.gauge
                .set(i64::try_from(state.bytes).unwrap_or(i64::MAX));
        }
        Arc::clone(&value.parts)
    }

    /// Drops the oldest entries until both bounds hold.
    fn trim(&self, state: &mut State) {
        while state.bytes > self.max_bytes || state.entries.len() > RECENT_CAPACITY {
            let Some(oldest) = state.entries.pop_front() else {
                state.bytes = 0;
                break;
            };
            evicted(&oldest);
            state.bytes = state
                .bytes
                .saturating_sub(oldest.charged.load(Ordering::Relaxed));
        }
    }
}

/// Marks an entry as out of the window (its bytes no longer counted); always true.
fn evicted(entry: &SharedEntry) -> bool {
    entry.in_window.store(false, Ordering::Relaxed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::entry::{EntryType, NewEntry};

    fn entries(count: i64, document_bytes: usize) -> Vec<Entry> {
        let mut head: Option<crate::register::entry::Head> = None;
        (0..count)
            .map(|i| {
                let doc = format!("{{\"x\":\"{}\"}}", "a".repeat(document_bytes));
                let e = NewEntry {
                    blueprint_id: format!("b{i}"),
                    checksum: crate::register::chain::checksum(doc.as_bytes()),
                    document: doc.into(),
                    published_at: 1,
                    published_by: "t".into(),
                    is_active: true,
                    publication_transaction_id: None,
                    metadata: Default::default(),
                    entry_type: EntryType::Published,
                    signature: None,
                }
                .into_entry_after(head.as_ref());
                head = Some(crate::register::entry::Head {
                    version: e.version,
                    chain_hash: e.chain_hash.clone(),
                });
                e
            })
            .collect()
    }

    #[tokio::test]
    async fn bytes_and_count_bound_the_window_and_derived_bytes_count() {
        let window = RecentWindow::new(10_000, Gauge::default());
        window.push(entries(20, 1000));
        assert!(window.bytes() <= 10_000, "{}", window.bytes());
        let newest = window.get(20).expect("the newest entry stays");
        assert!(window.get(1).is_none(), "the oldest left");
        let before = window.bytes();
        let parts = window
            .derived(&newest, Form::Event, |_| Derived {
                parts: vec![Bytes::from(vec![0u8; 3000])].into(),
                own_bytes: 3000,
            })
            .await;
        assert_eq!(parts[0].len(), 3000);
        assert!(window.bytes() <= 10_000);
        assert!(window.bytes() != before, "derived bytes are counted");
        // Derived once: a second derivation is not run.
        let again = window
            .derived(&newest, Form::Event, |_| unreachable!())
            .await;
        assert_eq!(again[0].len(), 3000);
        // An entry larger than the bound is not kept.
        let big = RecentWindow::new(500, Gauge::default());
        big.push(entries(1, 1000));
        assert!(big.get(1).is_none());
        assert_eq!(big.bytes(), 0);
    }

    #[test]
    fn entries_arriving_out_of_order_wait_for_the_gap_and_duplicates_are_skipped() {
        let all = entries(80, 10);
        let at = |v: i64| all[usize::try_from(v - 1).unwrap()].clone();
        let window = RecentWindow::new(1 << 30, Gauge::default());
        window.push((1..=3).map(at));
        let bytes = window.bytes();
        window.push([at(2), at(3)]);
        assert_eq!(
            window.bytes(),
            bytes,
            "what the window holds is not added twice"
        );
        // Two appends finishing out of order: 5 waits for 4.
        window.push([at(5)]);
        assert!(window.get(5).is_none());
        assert_eq!(window.newest(), Some(3));
        window.push([at(4)]);
        assert_eq!(window.newest(), Some(5));
        assert!(window.get(1).is_some(), "nothing was dropped");
        let after = window.after(2, 10, usize::MAX);
        let versions: Vec<i64> = after.iter().map(|s| s.entry.version).collect();
        assert_eq!(versions, [3, 4, 5]);
        assert!(window.after(5, 10, usize::MAX).is_empty());
        assert_eq!(window.after(0, 10, usize::MAX).len(), 5, "from the oldest");
        assert_eq!(
            window.after(0, 2, usize::MAX).len(),
            2,
            "bounded by entries"
        );
        assert_eq!(
            window.after(0, 10, 1).len(),
            1,
            "bounded by bytes, one at least"
        );
        // A gap that never fills: past PENDING_CAPACITY waiting entries, the window restarts.
        let first_waiting = 7;
        window.push((first_waiting..=first_waiting + PENDING_CAPACITY as i64).map(at));
        assert!(window.get(5).is_none(), "the old run left");
        assert_eq!(
            window.newest(),
            Some(first_waiting + PENDING_CAPACITY as i64)
        );
        assert!(window.get(first_waiting).is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_big_document_is_derived_off_the_runtime_thread() {
        let window = RecentWindow::new(1 << 30, Gauge::default());
        window.push(entries(2, 8));
        window.push(
            entries(3, INLINE_WORK_BYTES + 1)
                .into_iter()
                .skip(2)
                .collect::<Vec<_>>(),
        );
        let runtime_thread = std::thread::current().id();
        let on_thread = |entry: &Arc<SharedEntry>| {
            let entry = Arc::clone(entry);
            let window = &window;
            async move {
                window
                    .derived(&entry, Form::Summary, |_| Derived {
                        parts: vec![Bytes::from(format!("{:?}", std::thread::current().id()))]
                            .into(),
                        own_bytes: 0,
                    })
                    .await[0]
                    .clone()
            }
        };
        let small = on_thread(&window.get(2).expect("small entry")).await;
        let big = on_thread(&window.get(3).expect("big entry")).await;
        let here = Bytes::from(format!("{runtime_thread:?}"));
        assert_eq!(small, here, "a small document is derived in place");
        assert_ne!(big, here, "a big document is derived on the blocking pool");
    }
}
