//! What the peer records when its sessions report: connection state, alerts (log line,
//! webhook, watchers), metrics — one method per event, so the session code says what
//! happened and this says what follows from it.

use super::hub_clock::HubClock;
use super::session::SessionEnd;
use super::{CLOCK_OFFSET_ALERT_MS, CLOCK_SAMPLES_TO_ALERT, Peer, alerts, trust};
use crate::protocol::{ConnectionGrant, HeartbeatAck};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Peer {
    pub(super) fn alert(&self, event: &str, message: String) {
        self.alert_with(event, message, Vec::new());
    }

    pub(super) fn alert_with(&self, event: &str, message: String, evidence: Vec<String>) {
        let alert = alerts::Alert {
            event: event.to_owned(),
            node_id: self.node_id.to_string(),
            at: self.clock.now_ms(),
            message,
            evidence,
        };
        self.alerts.raise(alert);
    }

    pub(super) fn on_connected(&self, index: usize, grant: &ConnectionGrant) {
        self.note_refusal(index, None);
        self.newest_vouched.store(0, Ordering::Relaxed);
        grant
            .relay_path
            .clone_into(&mut self.upstream_path.lock().unwrap_or_else(|p| p.into_inner()));
        self.alerts.refused.store(false, Ordering::Relaxed);
        let now = self.clock.now_ms();
        if let Some(since) = self.state_mut().unconnected_since.take() {
            let ms = (now - since).max(0);
            self.metrics.connect_time.observe(ms as f64 / 1000.0);
        }
        let left_isolation = self.state_mut().connected(
            index,
            grant.session_id.as_str(),
            &grant.hub_id,
            grant.current_version,
            now,
        );
        if left_isolation {
            self.alert(
                "peer.reconnected",
                format!(
                    "left isolated mode: connected to {}",
                    self.settings.hubs[index]
                ),
            );
        }
    }

    pub(super) fn on_heartbeat_ack(&self, index: usize, ack: &HeartbeatAck) {
        let now = self.clock.now_ms();
        self.state_mut()
            .heartbeat_acked(index, ack.current_version, ack.relay_state, now);
    }

    /// A new estimate of hub `index`'s clock offset: shown and measured; alerted once when,
    /// over at least [`CLOCK_SAMPLES_TO_ALERT`] exchanges, the clocks are certainly more than
    /// [`CLOCK_OFFSET_ALERT_MS`] apart — the offset less its error bound, half the round trip
    /// of the best sample — and again only after it has come back within. One slow exchange
    /// never raises it.
    pub(super) fn on_clock_offset(&self, index: usize, clock: &HubClock) {
        let Some(estimate) = clock.estimate() else {
            return;
        };
        let offset_ms = estimate.offset_ms;
        self.state_mut().clock_offset(offset_ms);
        let url = &self.settings.hubs[index];
        self.metrics.hub_clock_offset.set(offset_ms as f64 / 1000.0);
        let off = estimate.samples >= CLOCK_SAMPLES_TO_ALERT
            && estimate.certain_ms() >= CLOCK_OFFSET_ALERT_MS;
        if off && !self.alerts.clock_off.swap(true, Ordering::Relaxed) {
            let direction = if offset_ms < 0 { "ahead of" } else { "behind" };
            self.alert(
                "peer.clock_offset",
                format!(
                    "this node's clock is {:.1} s (± {:.1} s) {direction} the clock of hub {url}: \
                     heartbeats are sent on the hub's clock, so the session holds; fix this \
                     node's clock (NTP)",
                    offset_ms.saturating_abs() as f64 / 1000.0,
                    estimate.error_ms as f64 / 1000.0,
                ),
            );
        } else if estimate.certain_ms() < CLOCK_OFFSET_ALERT_MS
            && self.alerts.clock_off.swap(false, Ordering::Relaxed)
        {
            tracing::info!(offset_ms, hub = %url, "clock offset from the hub is back within bounds");
        }
    }

    /// The current hub (or relay) handed out a trusted checkpoint: the newest one dates its
    /// view.
    pub(super) fn vouched_now(&self, v: &super::trust::Vouched) {
        self.newest_vouched
            .fetch_max(v.timestamp_ms, Ordering::Relaxed);
    }

    /// A heartbeat answer's trusted checkpoint: it dates the source's view; on a relay, when
    /// it covers exactly the replica's head, it becomes the checkpoint the relay hands on, so
    /// its downstream peers see fresh ones while nothing is published.
    pub(super) async fn fresh_head_checkpoint(&self, v: super::trust::Vouched) {
        self.vouched_now(&v);
        if !self.settings.peer.serve_downstream || v.version != self.register.head_version() {
            return;
        }
        let head = self.register.announced_head().await.ok().flatten();
        if head.is_some_and(|h| h.version == v.version && h.chain_hash == v.chain_hash) {
            self.keep_checkpoint(&v).await;
            self.checkpoint_applied(v);
        }
    }

    /// At a heartbeat answer stamped `hub_now` (the source's clock): how old the newest
    /// trusted checkpoint it handed out is. Older than `peer.maxCheckpointAge` raises
    /// `peer.stale_source` once, until a fresh one comes (a relay cut off from its hubs, or
    /// one that froze its view, still answers but vouches for nothing new).
    pub(super) fn on_checkpoint_age(&self, index: usize, hub_now: i64) {
        let newest = self.newest_vouched.load(Ordering::Relaxed);
        if newest == 0 {
            return;
        }
        let age_ms = (hub_now - newest).max(0);
        self.metrics
            .source_checkpoint_age
            .set(age_ms as f64 / 1000.0);
        let max = self.settings.peer.max_checkpoint_age;
        if max.is_zero() {
            return;
        }
        let url = &self.settings.hubs[index];
        let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
        if age_ms > max_ms && !self.alerts.stale.swap(true, Ordering::Relaxed) {
            self.alert(
                "peer.stale_source",
                format!(
                    "the newest trusted checkpoint {url} hands out is {:.1} s old on its clock \
                     (peer.maxCheckpointAge {max:?}): it answers but vouches for no new head — \
                     a relay cut off from its hubs, or a source that froze its view; the \
                     replica may be behind",
                    age_ms as f64 / 1000.0
                ),
            );
        } else if age_ms <= max_ms && self.alerts.stale.swap(false, Ordering::Relaxed) {
            tracing::info!(hub = %url, age_ms, "the source vouches for fresh heads again");
        }
    }

    pub(super) fn on_heartbeat_missed(&self, consecutive: u32) {
        self.state_mut().heartbeat_missed(consecutive);
    }

    pub(super) fn on_synced(&self, index: usize, version: i64) {
        self.state_mut().synced(index, version);
    }

    pub(super) fn on_hub_behind(&self, index: usize, hub_version: i64, replica: i64) {
        if self.state_mut().hub_behind(index, hub_version) {
            let url = &self.settings.hubs[index];
            tracing::warn!(hub = %url, hub_version, replica, "hub is behind the replica; not following it (no rollback)");
        }
    }

    pub(super) fn on_divergence(&self, index: usize, message: &str) {
        self.state_mut().diverged(index, message);
        let url = &self.settings.hubs[index];
        self.alert(
            "peer.divergence",
            format!("hub {url} diverges from the replica and is not followed: {message}"),
        );
    }

    /// Hub `index` sent entries whose publisher signatures do not verify, and the peer
    /// requires signatures: not followed, as for a fork.
    pub(super) fn on_unverified(&self, index: usize, message: &str) {
        self.state_mut().unverified(index, message);
        let url = &self.settings.hubs[index];
        self.alert(
            "peer.signature_refused",
            format!("hub {url} sent entries that are refused (peer.requireSignatures): {message}"),
        );
    }

    /// Hub `index`'s checkpoints are not trusted (or contradict others): not followed, as for
    /// a fork; equivocation is alerted with both notes.
    pub(super) fn on_untrusted(&self, index: usize, error: &trust::TrustError) -> SessionEnd {
        let url = &self.settings.hubs[index];
        let message = format!("hub {url} is not followed: {error}");
        self.state_mut().untrusted(index, &message);
        match error {
            trust::TrustError::Equivocation { evidence, new } => {
                // Counted and alerted once per evidence, however often the hub is retried.
                if *new {
                    self.metrics.equivocations.inc();
                    let notes = vec![evidence.first.clone(), evidence.second.clone()];
                    self.alert_with("peer.equivocation", message.clone(), notes);
                } else {
                    tracing::warn!(%message, "hub still equivocates; not followed");
                }
            }
            _ => {
                self.metrics.untrusted_checkpoints.inc();
                self.alert("peer.untrusted_hub", message.clone());
            }
        }
        SessionEnd::Diverged(message)
    }

    /// The replica cannot store what the hub sends (an entry too large for its store): logged
    /// and shown as the hub's `lastError` every time, alerted when it first appears.
    pub(super) fn on_unstorable(&self, index: usize, message: &str) {
        let error = format!("replica cannot store the hub's entries (permanent): {message}");
        tracing::error!(%error, "sync stopped");
        let url = &self.settings.hubs[index];
        if self.state_mut().unstorable(index, &error) {
            self.alert("peer.unstorable", format!("syncing from {url}: {error}"));
        }
    }

    pub(super) fn begin_attempt(&self, index: usize, delay: Duration) {
        let now = self.clock.now_ms();
        self.state_mut().begin_attempt(index, delay, now);
    }

    /// Records a permanent refusal (or its absence) of hub `index`; when every hub refuses
    /// permanently, raises `peer.refused` once, naming each hub's answer.
    pub(super) fn note_refusal(&self, index: usize, refusal: Option<&str>) {
        let all = {
            let mut refusals = self
                .refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            refusals[index] = refusal.map(str::to_owned);
            refusals.iter().all(Option::is_some).then(|| {
                refusals
                    .iter()
                    .zip(&self.settings.hubs)
                    .map(|(r, hub)| format!("{hub}: {}", r.as_deref().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        };
        if let Some(answers) = all
            && !self.alerts.refused.swap(true, Ordering::Relaxed)
        {
            self.alert(
                "peer.refused",
                format!(
                    "every hub refuses this peer, and retrying will not change that: fix the \
                     configuration (nodeId, peer.token) — {answers}"
                ),
            );
        }
    }

    /// The peer leaves hub `index` for the next one (its session broke, or it is refused).
    pub(super) fn failed_over(&self, index: usize, why: &str) {
        let now = self.clock.now_ms();
        let mut state = self.state_mut();
        state.failed_over();
        // The time to the next session counts from here, backoff included.
        state.unconnected_since.get_or_insert(now);
        drop(state);
        self.metrics.failovers.inc();
        let next = &self.settings.hubs[(index + 1) % self.settings.hubs.len()];
        tracing::warn!(from = %self.settings.hubs[index], to = %next, reason = %why, "failing over");
    }

    pub(super) fn attempt_failed(&self, index: usize, error: &str) {
        self.state_mut().attempt_failed(index, error);
    }

    pub(super) fn enter_isolation(&self) {
        let now = self.clock.now_ms();
        let entered = self.state_mut().enter_isolation(now);
        if entered {
            self.alert(
                "peer.isolated",
                "every hub failed: serving the local replica, retrying in the background".into(),
            );
        }
    }
}
