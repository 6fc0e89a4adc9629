//! The hub's clock as a peer estimates it, so the times a peer sends (heartbeats above all,
//! which the hub refuses beyond ±`hub.maxClockSkew`) are on the hub's clock even when the
//! peer's own clock is wrong.
//!
//! Each exchange that carries the hub's time — the connect answer's `connected_at`, every
//! heartbeat acknowledgement's `timestamp` — gives one sample: the hub's time minus the
//! midpoint of the local send and receive times, accurate to half the round trip. Of the
//! recent samples the one with the shortest round trip is used (NTP's clock filter, in small):
//! a slow exchange says least about the offset.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Samples kept; the estimate is the one with the shortest round trip among them.
const SAMPLES: usize = 8;

/// One offset sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// Hub clock − local clock, ms.
    offset_ms: i64,
    /// The exchange's round trip on the local clock, ms.
    round_trip_ms: i64,
}

/// An estimate of a hub's clock offset and how far off it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Hub clock − local clock, ms.
    pub offset_ms: i64,
    /// The offset is right to within this (half the round trip of the sample it comes from).
    pub error_ms: i64,
    /// Samples the estimate was chosen from.
    pub samples: usize,
}

impl Estimate {
    /// The smallest offset the samples allow: how far the clocks are apart for certain.
    pub fn certain_ms(&self) -> i64 {
        self.offset_ms
            .saturating_abs()
            .saturating_sub(self.error_ms)
    }
}

/// The estimated offset of one hub's clock from this node's.
#[derive(Debug, Default)]
pub struct HubClock {
    samples: Mutex<VecDeque<Sample>>,
}

impl HubClock {
    /// Records an exchange sent at `sent_ms` and answered at `received_ms` (local clock) whose
    /// answer says the hub's clock read `hub_ms`; returns the estimate after it.
    pub fn observe(&self, sent_ms: i64, received_ms: i64, hub_ms: i64) -> i64 {
        let round_trip_ms = received_ms.saturating_sub(sent_ms).max(0);
        let midpoint = sent_ms.saturating_add(round_trip_ms / 2);
        let sample = Sample {
            offset_ms: hub_ms.saturating_sub(midpoint),
            round_trip_ms,
        };
        let mut samples = self.lock();
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
        best(&samples).map_or(sample.offset_ms, |s| s.offset_ms)
    }

    /// The estimate with its error bound, once an exchange has been observed.
    pub fn estimate(&self) -> Option<Estimate> {
        let samples = self.lock();
        best(&samples).map(|s| Estimate {
            offset_ms: s.offset_ms,
            error_ms: (s.round_trip_ms + 1) / 2,
            samples: samples.len(),
        })
    }

    /// Hub clock − local clock, ms, once an exchange has been observed.
    pub fn offset_ms(&self) -> Option<i64> {
        best(&self.lock()).map(|s| s.offset_ms)
    }

    /// `local_ms` on the hub's clock (unchanged before any exchange).
    pub fn hub_time(&self, local_ms: i64) -> i64 {
        local_ms.saturating_add(self.offset_ms().unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sample with the shortest round trip (the newest of equals).
fn best(samples: &VecDeque<Sample>) -> Option<Sample> {
    samples
        .iter()
        .rev()
        .min_by_key(|s| s.round_trip_ms)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_comes_from_the_fastest_recent_exchange() {
        let clock = HubClock::default();
        assert_eq!(clock.offset_ms(), None);
        assert_eq!(clock.hub_time(1_000), 1_000);
        // The local clock runs 180 s ahead: the hub reads 180 000 ms less at the midpoint.
        assert_eq!(clock.observe(200_000, 200_010, 20_005), -180_000);
        // A slow exchange (asymmetric delay) is less trusted than the fast one.
        assert_eq!(clock.observe(201_000, 201_400, 21_300), -180_000);
        assert_eq!(clock.hub_time(202_000), 22_000);
        // Fast samples age out: after `SAMPLES` slower ones, the best of those counts.
        for i in 0..SAMPLES as i64 {
            clock.observe(300_000 + i, 300_020 + i, 120_010 + i - 50);
        }
        assert_eq!(clock.offset_ms(), Some(-180_050));
    }

    #[test]
    fn a_slow_exchange_bounds_its_own_error() {
        let clock = HubClock::default();
        // Same clocks; the answer took 3.2 s, stamped early in it: it looks 1.6 s off, ± 1.6 s.
        clock.observe(0, 3_200, 0);
        let e = clock.estimate().unwrap();
        assert_eq!((e.offset_ms, e.error_ms, e.samples), (-1_600, 1_600, 1));
        assert_eq!(e.certain_ms(), 0, "nothing certain about the offset");
        // A fast exchange says much more.
        clock.observe(10_000, 10_010, 12_005);
        assert_eq!(clock.estimate().unwrap().certain_ms(), 2_000 - 5);
    }
}
