//! The heartbeat loop of one session: a heartbeat every `peer.heartbeatInterval`, stamped on
//! the hub's clock, judged on its own — and one soon after the replica applies new entries, so
//! the hub learns what this peer holds within about a second ([`REPORT_EVERY`]), not at the
//! next beat.
//!
//! The loop never waits for the session: it records each outcome itself (state, clock offset,
//! metrics) and, at the second consecutive miss, gives the hub up through the session's
//! [`GiveUp`] — which ends every call the session has in flight, a sync included, at once.
//! What only the session can act on (the hub's advice, an untrusted checkpoint) is handed over
//! without waiting; a session busy syncing finds the newest advice when it is done.

use super::session::Session;
use super::trust::TrustError;
use crate::error_code::ErrorCode;
use crate::link::guard::GiveUp;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::protocol::RecommendedAction;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Consecutive missed heartbeats that make the session give its hub up (one is a warning).
pub(super) const MISSES_TO_FAIL_OVER: u32 = 2;

/// What the loop hands to the session to act on.
#[derive(Debug)]
pub(super) enum HeartbeatAdvice {
    /// The hub's recommended action with an acknowledgement.
    Act(RecommendedAction),
    /// The acknowledgement's checkpoint is not trusted.
    Untrusted(TrustError),
}

/// Room for advice not yet acted on; more is dropped (the next acknowledgement repeats it).
pub(super) const ADVICE_QUEUE: usize = 4;

/// At most one heartbeat per this long reports newly applied entries: a sync applying many
/// batches, or a burst of publishes, is told in one report (within the hub's default
/// `hub.rateLimits.heartbeat` of one a second).
pub(super) const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends heartbeats every `peer.heartbeatInterval` until `stop`, stamped on the hub's clock as
/// estimated (and refined with each acknowledgement); gives the hub up at
/// [`MISSES_TO_FAIL_OVER`] consecutive misses.
pub(super) async fn heartbeat_loop(
    session: Session,
    advice: mpsc::Sender<HeartbeatAdvice>,
    give_up: GiveUp,
    stop: CancellationToken,
) {
    let peer = Arc::clone(&session.peer);
    let cfg = peer.settings().peer.clone();
    let mut ticker = tokio::time::interval_at(
        Instant::now() + cfg.heartbeat_interval,
        cfg.heartbeat_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consecutive = 0u32;
    // The interval in use: the configured one, or the slower pace the hub asked for.
    let mut pace = cfg.heartbeat_interval;
    let register = Arc::clone(peer.register());
    // What the hub has been told the replica holds, and when it was last told anything.
    let mut reported = register.head_version();
    let mut last_sent: Option<Instant> = None;
    loop {
        // Newly applied entries are reported at most once per REPORT_EVERY; a regular beat
        // due sooner carries them instead.
        let report_due = async {
            register.head_past(reported).await;
            let due = last_sent.map_or_else(Instant::now, |at| at + REPORT_EVERY);
            tokio::time::sleep_until(due).await;
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = give_up.given_up() => return,
            _ = ticker.tick() => {}
            // A report is a heartbeat: the next regular one comes a full interval later.
            () = report_due => ticker.reset(),
        }
        let (version, hash) = replica_head(&session).await;
        reported = reported.max(version);
        last_sent = Some(Instant::now());
        let sent_ms = peer.clock().now_ms();
        let hb = session.heartbeat(version, hash);
        let sent = std::time::Instant::now();
        let metrics = peer.metrics();
        let outcome = |outcome| {
            metrics
                .heartbeats_sent
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        };
        // The link bounds the call by `peer.heartbeatTimeout`.
        let error = match session.link.heartbeat(&hb).await {
            Ok(ack) => {
                consecutive = 0;
                metrics
                    .heartbeat_latency
                    .observe(sent.elapsed().as_secs_f64());
                outcome(Outcome::Ok);
                session
                    .hub_clock
                    .observe(sent_ms, peer.clock().now_ms(), ack.timestamp);
                peer.on_heartbeat_ack(session.index, &ack);
                peer.on_clock_offset(session.index, &session.hub_clock);
                let url = session.url();
                let vouched = match &ack.checkpoint {
                    Some(note) if peer.trust().checks(url) => {
                        Some(peer.trust().vouch_head(url, note))
                    }
                    _ => None,
                };
                match vouched {
                    Some(Err(e)) => {
                        let _ = advice.try_send(HeartbeatAdvice::Untrusted(e));
                        continue;
                    }
                    Some(Ok(v)) => peer.fresh_head_checkpoint(v).await,
                    None => {}
                }
                peer.on_checkpoint_age(session.index, ack.timestamp);
                if ack.action != RecommendedAction::None {
                    let _ = advice.try_send(HeartbeatAdvice::Act(ack.action));
                }
                continue;
            }
            Err(e) if e.code == ErrorCode::Invalid => {
                // The hub is alive and refuses the heartbeat itself (its clock check): every
                // hub would say the same, so this is no miss and no reason to fail over.
                tracing::warn!(error = %e.message, "the hub refused a heartbeat; not counted as missed");
                outcome(Outcome::Failed);
                continue;
            }
            Err(e) if e.code.is_back_off() => {
                // The hub is alive and asks us to slow down: not a missed heartbeat. We take
                // the hub's pace (never faster than configured) and say so once per change.
                outcome(Outcome::Failed);
                let wait = e.retry_after.unwrap_or(cfg.heartbeat_interval);
                // A quarter more than the spacing the hub asked for keeps clear of its edge
                // (arrival times wobble; a beat right at the limit is refused now and then).
                let slower = (cfg.heartbeat_interval + wait).mul_f64(1.25).max(pace);
                if slower > pace {
                    tracing::warn!(
                        hub = %session.url(),
                        configured_ms = cfg.heartbeat_interval.as_millis() as u64,
                        pace_ms = slower.as_millis() as u64,
                        "the hub refuses heartbeats at this peer's interval (hub.rateLimits.heartbeat); heartbeating at the hub's pace instead"
                    );
                    pace = slower;
                    ticker = tokio::time::interval_at(Instant::now() + wait, pace);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                continue;
            }
            Err(e) => e,
        };
        consecutive += 1;
        outcome(Outcome::Failed);
        peer.on_heartbeat_missed(consecutive);
        if consecutive >= MISSES_TO_FAIL_OVER {
            give_up.give_up(format!(
                "{consecutive} consecutive heartbeats missed: {error}"
            ));
            return;
        }
        tracing::warn!(hub = %session.url(), %error, "heartbeat missed; failing over at the next miss");
    }
}

/// The replica's head for a heartbeat: from memory when the recent window holds it, so a
/// heartbeat does not wait on the replica's store while a sync writes to it.
async fn replica_head(session: &Session) -> (i64, String) {
    let head = session
        .peer
        .register()
        .announced_head()
        .await
        .ok()
        .flatten();
    head.map_or((0, String::new()), |h| (h.version, h.chain_hash))
}
