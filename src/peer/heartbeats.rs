//! The heartbeat loop of one session: a heartbeat every `peer.heartbeatInterval`, stamped on
//! the hub's clock, each outcome reported to the session.

use super::session::Session;
use crate::error_code::ErrorCode;
use crate::metrics::{Outcome, OutcomeLabels};
use crate::protocol::HeartbeatAck;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the loop reports to the session.
pub(super) enum HeartbeatEvent {
    /// An acknowledgement, and the hub's clock offset estimated with it.
    Ack(HeartbeatAck, i64),
    /// `consecutive` heartbeats in a row failed, the last with `error`.
    Missed { consecutive: u32, error: String },
}

/// Sends heartbeats every `peer.heartbeatInterval`, stamped on the hub's clock as estimated
/// (and refined with each acknowledgement), and reports each outcome to the session.
pub(super) async fn heartbeat_loop(
    session: Session,
    events: mpsc::Sender<HeartbeatEvent>,
    stop: CancellationToken,
) {
    let peer = Arc::clone(&session.peer);
    let cfg = peer.config().peer.clone();
    let mut ticker = tokio::time::interval_at(
        Instant::now() + cfg.heartbeat_interval,
        cfg.heartbeat_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consecutive = 0u32;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let head = peer.register().head().await.ok().flatten();
        let sent_ms = peer.clock().now_ms();
        let hb = session.heartbeat(
            head.as_ref().map_or(0, |h| h.version),
            head.map(|h| h.chain_hash).unwrap_or_default(),
        );
        let sent = std::time::Instant::now();
        let metrics = peer.metrics();
        let outcome = |outcome| {
            metrics
                .heartbeats_sent
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        };
        let event = match tokio::time::timeout(cfg.heartbeat_timeout, session.link.heartbeat(&hb))
            .await
        {
            Ok(Ok(ack)) => {
                consecutive = 0;
                metrics
                    .heartbeat_latency
                    .observe(sent.elapsed().as_secs_f64());
                outcome(Outcome::Ok);
                let offset =
                    session
                        .hub_clock
                        .observe(sent_ms, peer.clock().now_ms(), ack.timestamp);
                HeartbeatEvent::Ack(ack, offset)
            }
            Ok(Err(e)) if e.code == ErrorCode::Invalid => {
                // The hub is alive and refuses the heartbeat itself (its clock check): every
                // hub would say the same, so this is no miss and no reason to fail over.
                tracing::warn!(error = %e.message, "the hub refused a heartbeat; not counted as missed");
                outcome(Outcome::Failed);
                continue;
            }
            Ok(Err(e)) if e.code.is_back_off() => {
                // The hub is alive and asks us to slow down: not a missed heartbeat.
                let wait = e.retry_after.unwrap_or(cfg.heartbeat_interval);
                tracing::warn!(error = %e.message, wait_ms = wait.as_millis() as u64, "heartbeat rate limited by the hub; waiting");
                outcome(Outcome::Failed);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                consecutive += 1;
                outcome(Outcome::Failed);
                HeartbeatEvent::Missed {
                    consecutive,
                    error: e.to_string(),
                }
            }
            Err(_) => {
                consecutive += 1;
                outcome(Outcome::Failed);
                HeartbeatEvent::Missed {
                    consecutive,
                    error: format!("no answer within {:?}", cfg.heartbeat_timeout),
                }
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
