//! The node-wide budget for bytes in flight on read paths (`limits.readBudgetBytes`).
//!
//! Every read that brings entries into memory (REST pages, a blueprint, sync streams, replays
//! of followers behind the recent window) first sizes what it will read and then takes that
//! many bytes from one shared budget; it gives them back as the entries leave (are handed to
//! the transport) or when it is dropped. So N concurrent large reads queue (or, for REST, are
//! refused with 503 and `Retry-After` after a short wait) instead of multiplying memory.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Permits are KiB, so budgets beyond 4 GiB fit the semaphore's `u32` requests.
const UNIT: usize = 1024;

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Semaphore,
    total_units: u32,
    in_flight: Gauge,
}

/// The budget had no room within the allowed wait.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node's read budget is exhausted by other large reads; retry shortly")]
pub struct BudgetExhausted;

impl ReadBudget {
    /// A budget of `bytes` (at least one unit), reporting bytes held in `in_flight`.
    pub fn new(bytes: usize, in_flight: Gauge) -> Self {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(units as usize),
                total_units: units,
                in_flight,
            }),
        }
    }

    /// Takes `bytes` from the budget, waiting at most `wait` (`None`: as long as it takes).
    /// A request larger than the whole budget takes the whole budget, so it still runs, alone.
    pub async fn acquire(
        &self,
        bytes: usize,
        wait: Option<Duration>,
    ) -> Result<Held, BudgetExhausted> {
        let units = units(bytes).min(self.inner.total_units);
        let acquire = self.inner.permits.acquire_many(units);
        let permit = match wait {
            None => acquire.await.map_err(|_| BudgetExhausted)?,
            Some(wait) => tokio::time::timeout(wait, acquire)
                .await
                .map_err(|_| BudgetExhausted)?
                .map_err(|_| BudgetExhausted)?,
        };
        // Given back by `Held`, which knows how much is left.
        permit.forget();
        self.inner.in_flight.inc_by(i64::from(units) * UNIT as i64);
        Ok(Held {
            budget: self.clone(),
            units,
        })
    }

    /// Bytes currently held by reads.
    pub fn in_flight(&self) -> u64 {
        u64::from(self.inner.total_units - self.available_units()) * UNIT as u64
    }

    fn available_units(&self) -> u32 {
        u32::try_from(self.inner.permits.available_permits()).unwrap_or(u32::MAX)
    }

    fn give_back(&self, units: u32) {
        if units > 0 {
            self.inner.permits.add_permits(units as usize);
            self.inner.in_flight.dec_by(i64::from(units) * UNIT as i64);
        }
    }
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

/// Bytes taken from the budget; what is left goes back on drop.
#[derive(Debug)]
pub struct Held {
    budget: ReadBudget,
    units: u32,
}

impl Held {
    /// Moves `bytes` of what is held (never more than is held) into a guard of their own, to
    /// travel with one entry until it has left memory.
    pub fn split_off(&mut self, bytes: usize) -> Held {
        // Round down, so the last split (or the drop) carries the remainder exactly.
        let units = u32::try_from(bytes / UNIT)
            .unwrap_or(u32::MAX)
            .min(self.units);
        self.units -= units;
        Held {
            budget: self.budget.clone(),
            units,
        }
    }
}

impl Held {
    /// Takes over what `other` holds.
    pub fn merge(&mut self, mut other: Held) {
        self.units += std::mem::take(&mut other.units);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_beyond_the_budget_wait_or_are_refused_and_bytes_come_back() {
        let budget = ReadBudget::new(4 * UNIT, Gauge::default());
        let mut first = budget.acquire(3 * UNIT, None).await.unwrap();
        assert_eq!(budget.in_flight(), 3 * UNIT as u64);
        assert!(
            budget
                .acquire(2 * UNIT, Some(Duration::from_millis(20)))
                .await
                .is_err()
        );
        drop(first.split_off(UNIT));
        let second = budget
            .acquire(2 * UNIT, Some(Duration::from_millis(20)))
            .await
            .unwrap();
        drop(first);
        drop(second);
        assert_eq!(budget.in_flight(), 0);
        // Larger than the whole budget: takes all of it rather than never running.
        let all = budget.acquire(100 * UNIT, None).await.unwrap();
        assert_eq!(budget.in_flight(), 4 * UNIT as u64);
        drop(all);
        assert_eq!(budget.in_flight(), 0);
    }
}
