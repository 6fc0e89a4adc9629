//! Values derived from register entries (encoded frames, notification templates), computed
//! once per entry and shared by every subscriber that streams it. Entries are immutable, so
//! a version names its derived value for good; only the newest entries are kept, because
//! followers near the head are the many, and replays of old entries are rare.

use std::collections::VecDeque;
use std::sync::Mutex;

/// The derived values of the newest [`PerEntry::KEPT`] versions.
#[derive(Debug)]
pub struct PerEntry<T> {
    recent: Mutex<VecDeque<(i64, T)>>,
}

impl<T> Default for PerEntry<T> {
    fn default() -> Self {
        Self {
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T: Clone> PerEntry<T> {
    /// Versions kept; matches the register's in-memory window of recent entries.
    pub const KEPT: usize = 1024;

    /// The value for `version`, computed by `derive` only if no subscriber did yet.
    pub fn get_or_derive(&self, version: i64, derive: impl FnOnce() -> T) -> T {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Subscribers ask for the newest versions: search from the back.
        if let Some((_, value)) = recent.iter().rev().find(|(v, _)| *v == version) {
            return value.clone();
        }
        // Derived under the lock: the first subscriber pays, the others wait briefly and
        // share, instead of all deriving the same value at once.
        let value = derive();
        if recent.back().is_none_or(|(v, _)| *v < version) {
            recent.push_back((version, value.clone()));
            if recent.len() > Self::KEPT {
                recent.pop_front();
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_version_is_derived_once_and_old_ones_are_forgotten() {
        let cache = PerEntry::<String>::default();
        let derived = AtomicUsize::new(0);
        let get = |v: i64| {
            cache.get_or_derive(v, || {
                derived.fetch_add(1, Ordering::Relaxed);
                format!("v{v}")
            })
        };
        assert_eq!(get(1), "v1");
        assert_eq!(get(1), "v1");
        assert_eq!(derived.load(Ordering::Relaxed), 1);
        for v in 2..=(PerEntry::<String>::KEPT as i64 + 1) {
            get(v);
        }
        let before = derived.load(Ordering::Relaxed);
        assert_eq!(get(1), "v1", "recomputed after falling out of the window");
        assert_eq!(derived.load(Ordering::Relaxed), before + 1);
    }
}
