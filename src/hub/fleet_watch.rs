//! The hub's side of the fleet record: the loop that writes its batch and reads the other
//! hubs' (sharing a store), the merged view, SC-011's figures, and how far a publication has
//! reached (answered at once, or when a share of the fleet holds it).

use super::fleet::{FleetView, SC011_WINDOW};
use super::{Hub, HubError, MAX_PENDING_NAMED, Propagation};
use crate::metrics::{FleetStateLabels, HubLabels};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

impl Hub {
    /// The fleet now: every peer of every hub sharing this hub's store, once each.
    pub fn fleet_view(&self) -> FleetView {
        let now = self.clock.now_ms();
        let own = self.own_records(now);
        self.view_of(own, now)
    }

    /// The fleet from this hub's `own` records (as [`super::fleet::FleetBook::own`] gives them) at `now`.
    fn view_of(&self, own: Vec<crate::store::fleet::FleetRecord>, now: i64) -> FleetView {
        let recent = self.register.recent();
        self.fleet
            .view(own, self.register.head_version(), now, |version| {
                recent.get(version).map(|s| s.entry.published_at)
            })
    }

    /// SC-011's reference: the newest version committed at least [`SC011_WINDOW`] before
    /// `now`, among those this hub saw committed in its recent window (0 = none yet, as
    /// for five minutes after the hub starts: the ratio is then 1). Versions a burst pushed
    /// out of the window before the hub looked are missed, which only makes it older.
    pub fn settled_version(&self, now: i64) -> i64 {
        let window = i64::try_from(SC011_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now - window;
        let head = self.register.head_version();
        let recent = self.register.recent();
        let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let from = commits
            .keys()
            .next_back()
            .map_or(1, |v| v + 1)
            .max(head - 4096);
        for version in from..=head {
            if let Some(shared) = recent.get(version) {
                commits.insert(version, shared.entry.published_at);
            }
        }
        let settled = commits
            .iter()
            .rev()
            .find(|(_, at)| **at <= cutoff)
            .map_or(0, |(v, _)| *v);
        // Keep the settled version and those that may settle later.
        commits.retain(|v, _| *v >= settled);
        settled
    }

    /// Writes this hub's batch of the fleet record and reads the others' (when the store is
    /// shared), then sets the fleet gauges and wakes propagation waits.
    async fn refresh_fleet(self: &Arc<Self>) {
        let store = self.register.store();
        let now = self.clock.now_ms();
        let own = self.own_records(now);
        if store.shares_fleet() {
            let batch = self.fleet.batch(&own, now);
            let records = batch.upserts.len() as u64;
            match store.write_fleet(batch).await {
                Ok(()) => {
                    self.metrics.fleet_records_written.inc_by(records);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the fleet record; retrying at the next flush");
                    self.fleet.unwritten();
                }
            }
            let since = self.fleet.read_since(now);
            match store.read_fleet(since).await {
                Ok(read) => self.fleet.absorb(read, since, now),
                Err(e) => tracing::warn!(error = %e, "cannot read the fleet record"),
            }
        }
        let view = self.view_of(own, now);
        if store.shares_fleet() {
            self.note_fair_share(&view);
            self.rebalance();
        }
        let summary = view.summary(self.settled_version(view.now));
        for (state, count) in &summary.by_state {
            self.metrics
                .fleet_peers
                .get_or_create(&FleetStateLabels {
                    hub: self.node_id.clone(),
                    state: state.name().to_owned(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.metrics
            .fleet_current_ratio
            .get_or_create(&HubLabels {
                hub: self.node_id.clone(),
            })
            .set(summary.current_ratio);
        self.fleet_changed.notify_waiters();
    }

    /// Runs the fleet record until shutdown: one refresh per `hub.fleetFlushInterval`.
    pub async fn run_fleet(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.fleet_flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                _ = ticker.tick() => self.refresh_fleet().await,
                // A drain starts: the other hubs learn it at once.
                () = self.flush_now.notified() => self.refresh_fleet().await,
            }
        }
    }

    /// How far the entry at `version` has reached the fleet (see [`FleetView::propagation`]).
    pub async fn propagation(&self, version: i64) -> Result<Propagation, HubError> {
        let published_at = match self.register.recent().get(version) {
            Some(shared) => shared.entry.published_at,
            None => self.register.entry_at(version, None).await?.0.published_at,
        };
        let reach = self
            .fleet_view()
            .propagation(version, published_at, MAX_PENDING_NAMED);
        Ok(Propagation {
            version,
            published_at,
            reach,
        })
    }

    /// Waits (until `deadline`) for a version another hub sharing the store has committed but
    /// this one has not yet followed; one the store does not hold is not waited for.
    async fn await_version(
        &self,
        version: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), HubError> {
        if version > self.register.head_version() {
            let stored = self.register.head().await?.map_or(0, |h| h.version);
            if stored >= version {
                let _ =
                    tokio::time::timeout_at(deadline, self.register.head_past(version - 1)).await;
            }
        }
        Ok(())
    }

    /// Answers [`Hub::propagation`] once at least `ratio` of the fleet holds `version`, or
    /// when `timeout` has passed (whichever comes first); a version another hub sharing the
    /// store has committed but this one has not yet followed is awaited within it.
    pub async fn await_propagation(
        self: &Arc<Self>,
        version: i64,
        ratio: f64,
        timeout: Duration,
    ) -> Result<Propagation, HubError> {
        let updates = self.follow_propagation(version, ratio, timeout);
        futures::pin_mut!(updates);
        let mut last = None;
        while let Some(update) = updates.next().await {
            last = Some(update?.0);
        }
        last.ok_or_else(|| HubError::Unavailable("the hub is shutting down".into()))
    }

    /// How far `version` has reached, as it goes: the answer at once, then each time the
    /// count of peers or of those holding it changes, the last one (`true`) when `ratio` is
    /// reached or `timeout` has passed. Woken by peers' reports and the fleet record's reads;
    /// looks again at least every quarter second. Ends at shutdown.
    pub fn follow_propagation(
        self: &Arc<Self>,
        version: i64,
        ratio: f64,
        timeout: Duration,
    ) -> impl futures::Stream<Item = Result<(Propagation, bool), HubError>> + Send + use<> {
        struct Follow {
            hub: Arc<Hub>,
            deadline: tokio::time::Instant,
            shown: Option<(usize, usize)>,
            started: bool,
            finished: bool,
        }
        let state = Follow {
            hub: Arc::clone(self),
            deadline: tokio::time::Instant::now() + timeout,
            shown: None,
            started: false,
            finished: false,
        };
        futures::stream::unfold(state, move |mut f| async move {
            if f.finished {
                return None;
            }
            if !f.started {
                f.started = true;
                if let Err(e) = f.hub.await_version(version, f.deadline).await {
                    f.finished = true;
                    return Some((Err(e), f));
                }
            }
            let hub = Arc::clone(&f.hub);
            loop {
                let changed = hub.fleet_changed.notified();
                let answer = match hub.propagation(version).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        f.finished = true;
                        return Some((Err(e), f));
                    }
                };
                let now = tokio::time::Instant::now();
                let stopping = hub.shutdown.is_cancelled();
                let done = answer.reach.ratio() >= ratio || now >= f.deadline || stopping;
                let counts = (answer.reach.peers, answer.reach.applied);
                if done || f.shown != Some(counts) {
                    f.shown = Some(counts);
                    f.finished = done;
                    return Some((Ok((answer, done)), f));
                }
                let next = (now + Duration::from_millis(250)).min(f.deadline);
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(next) => {}
                    () = hub.shutdown.cancelled() => {}
                }
            }
        })
    }
}
