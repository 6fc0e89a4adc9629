//! The announced head and the wake-up of everyone waiting for it to move.
//!
//! Why not `tokio::sync::watch`: its receivers park on one of eight notifiers picked at
//! random, so the order in which followers wake differs from run to run, and a seeded
//! simulation must replay exactly. One [`Notify`] wakes its waiters in the order they began
//! to wait.

use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Notify;

/// The newest announced version (only ever moves forward) and its waiters.
#[derive(Debug, Default)]
pub struct HeadSignal {
    version: AtomicI64,
    moved: Notify,
}

impl HeadSignal {
    /// A signal at `version`.
    pub fn new(version: i64) -> Self {
        Self {
            version: AtomicI64::new(version),
            moved: Notify::new(),
        }
    }

    /// The announced version.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Moves the version to `version` if that is forward, waking every waiter; returns
    /// whether it moved.
    pub fn advance(&self, version: i64) -> bool {
        let moved = self.version.fetch_max(version, Ordering::AcqRel) < version;
        if moved {
            self.moved.notify_waiters();
        }
        moved
    }

    /// The announced version once it is past `version` (at once if it already is).
    pub async fn past(&self, version: i64) -> i64 {
        loop {
            // Registered before the check, so an advance between the two still wakes us.
            let moved = self.moved.notified();
            let mut moved = std::pin::pin!(moved);
            moved.as_mut().enable();
            let head = self.version();
            if head > version {
                return head;
            }
            moved.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadSignal;
    use futures::FutureExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_wake_when_the_head_moves_forward_only() {
        let signal = Arc::new(HeadSignal::new(3));
        assert_eq!(signal.past(2).now_or_never(), Some(3), "already past");
        assert!(signal.past(3).now_or_never().is_none(), "not past yet");
        let waiter = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.past(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!signal.advance(2), "never backwards");
        assert!(!signal.advance(3), "not forward");
        assert_eq!(signal.version(), 3);
        assert!(signal.advance(5));
        assert_eq!(waiter.await.unwrap(), 5);
    }
}
