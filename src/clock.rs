//! Wall-clock seam: domain code asks a [`Clock`] for the time so tests can control it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of the current time in Unix milliseconds UTC.
pub trait Clock: Send + Sync + 'static {
    /// Current time, Unix ms UTC.
    fn now_ms(&self) -> i64;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
