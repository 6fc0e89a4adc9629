//! Per-peer rate limits (SPEC §7): GCRA buckets from `governor`, keyed by peer id, one per
//! kind of call. Over the limit a call fails with [`HubError::RateLimited`], which says when
//! to try again.

use super::HubError;
use crate::config::{Rate, RateLimitsConfig};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::time::Duration;

/// The kinds of call that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// `ConnectToCentralNode`.
    Connect,
    /// `FullSync`.
    FullSync,
    /// A heartbeat.
    Heartbeat,
}

impl Limited {
    fn describe(self) -> &'static str {
        match self {
            Limited::Connect => "connect",
            Limited::FullSync => "full sync",
            Limited::Heartbeat => "heartbeat",
        }
    }
}

/// The hub's per-peer limiters.
pub struct PeerLimits {
    connect: DefaultKeyedRateLimiter<String>,
    full_sync: DefaultKeyedRateLimiter<String>,
    heartbeat: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for PeerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimits")
            .field("peers", &self.connect.len())
            .finish()
    }
}

fn quota(rate: Rate) -> Quota {
    // Config validation rejects zero periods and bursts; fall back to "one per second"
    // rather than panic if a caller skipped it.
    Quota::with_period(rate.every)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN))
}

impl PeerLimits {
    /// Limiters with the configured rates.
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self {
            connect: DefaultKeyedRateLimiter::keyed(quota(config.connect)),
            full_sync: DefaultKeyedRateLimiter::keyed(quota(config.full_sync)),
            heartbeat: DefaultKeyedRateLimiter::keyed(quota(config.heartbeat)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one permit of `kind` for `peer_id`, or says how long to wait for one.
    pub fn check(&self, kind: Limited, peer_id: &str) -> Result<(), HubError> {
        let limiter = match kind {
            Limited::Connect => &self.connect,
            Limited::FullSync => &self.full_sync,
            Limited::Heartbeat => &self.heartbeat,
        };
        match limiter.check_key(&peer_id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                // Whole milliseconds, rounded up, so a client that waits exactly this long
                // gets through.
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = Duration::from_millis(
                    u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
                );
                Err(HubError::RateLimited {
                    message: format!(
                        "peer {peer_id:?} exceeds its {} rate limit; retry in {} ms",
                        kind.describe(),
                        retry_after.as_millis()
                    ),
                    retry_after,
                })
            }
        }
    }

    /// Forgets peers whose buckets are full again, so memory follows the active peers.
    pub fn forget_idle(&self) {
        self.connect.retain_recent();
        self.full_sync.retain_recent();
        self.heartbeat.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_peer_waits_and_others_are_unaffected() {
        let limits = PeerLimits::new(&RateLimitsConfig {
            connect: Rate {
                every: Duration::from_secs(60),
                burst: 2,
            },
            ..RateLimitsConfig::default()
        });
        assert!(limits.check(Limited::Connect, "a").is_ok());
        assert!(limits.check(Limited::Connect, "a").is_ok());
        match limits.check(Limited::Connect, "a") {
            Err(HubError::RateLimited {
                retry_after,
                message,
            }) => {
                assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
                assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
                assert!(message.contains("connect rate limit"), "{message}");
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(limits.check(Limited::Connect, "b").is_ok());
        assert!(limits.check(Limited::FullSync, "a").is_ok());
    }
}
