//! One session with one hub: connect, catch up, subscribe, heartbeat, periodic sync, until the
//! session ends and the manager decides what comes next.

use super::hub_clock::HubClock;
use super::sync::{self, RateLimitWait, SyncError};
use super::{Command, Peer, PeerError};
use crate::link::{HubLink, LinkError, LinkErrorKind, LinkStream};
use crate::metrics::{Outcome, OutcomeLabels};
use crate::protocol::{
    ConnectRequest, DisconnectReason, Filters, Heartbeat, HeartbeatAck, Notification,
    PeerDescription, RecommendedAction,
};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// Connecting failed: retry this hub after a backoff, and not before `retry_after` when
    /// the hub said so (rate limit).
    ConnectFailed {
        /// What went wrong.
        error: String,
        /// The hub's retry hint.
        retry_after: Option<Duration>,
        /// The hub refused this peer for good (its id or credentials), not for now.
        permanent: bool,
    },
    /// A working session broke or the hub told us to go: move to the next hub now.
    Failover(String),
    /// The hub's chain forks from the replica: move to the next hub now.
    Diverged(String),
    /// Reconnect to the same hub now (RECONNECT advice, operator request).
    Reconnect,
    /// The node is shutting down.
    Shutdown,
}

enum HeartbeatEvent {
    /// An acknowledgement, and the hub's clock offset estimated with it.
    Ack(HeartbeatAck, i64),
    Missed {
        consecutive: u32,
        error: String,
    },
}

/// Runs one session with hub `index`.
#[tracing::instrument(name = "session", skip_all, fields(hub = %peer.config().hubs[index], peer_id = %peer.node_id()))]
pub async fn run(
    peer: &Arc<Peer>,
    index: usize,
    commands: &mut mpsc::Receiver<Command>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let url = peer.config().hubs[index].clone();
    let cfg = peer.config().peer.clone();
    let connect = async {
        let client = peer.dialer().dial(&url).await?;
        let request = ConnectRequest {
            peer_id: peer.node_id().to_owned(),
            peer: PeerDescription {
                address: peer.config().listen.ip().to_string(),
                port: i32::from(peer.config().listen.port()),
                node_type: "Peer".into(),
                supported_protocols: vec!["grpc".into(), "grpc-web".into()],
                supports_push_notifications: true,
                supports_incremental_sync: true,
                max_blueprint_size: i32::try_from(peer.config().limits.max_document_bytes)
                    .unwrap_or(i32::MAX),
                is_nat_restricted: false,
            },
            last_known_version: peer.register().head_version(),
            connection_time: peer.clock().now_ms(),
        };
        let sent = peer.clock().now_ms();
        let grant = client.open_session(&request).await?;
        let hub_clock = HubClock::default();
        hub_clock.observe(sent, peer.clock().now_ms(), grant.connected_at);
        Ok::<_, LinkError>((client, grant, hub_clock))
    };
    let (client, grant, hub_clock) = tokio::select! {
        () = shutdown.cancelled() => return SessionEnd::Shutdown,
        result = tokio::time::timeout(cfg.connect_timeout, connect) => match result {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return SessionEnd::ConnectFailed {
                error: e.to_string(),
                retry_after: e.retry_after,
                permanent: e.is_permanent_refusal(),
            },
            Err(_) => return SessionEnd::ConnectFailed {
                error: format!("no answer within {:?}", cfg.connect_timeout),
                retry_after: None,
                permanent: false,
            },
        },
    };
    let session_id = grant.session_id.clone();
    let hub_id = grant.hub_id.clone();
    let hub_clock = Arc::new(hub_clock);
    peer.on_connected(index, &grant);
    if let Some(offset) = hub_clock.offset_ms() {
        peer.on_clock_offset(index, offset);
    }
    tracing::info!(hub = %url, %hub_id, %session_id, hub_version = grant.current_version, "connected to hub");

    let mut ending = SessionGuard {
        client: Arc::clone(&client),
        peer: Arc::clone(peer),
        hub_clock: Arc::clone(&hub_clock),
        session_id: session_id.clone(),
        reason: DisconnectReason::Failover,
    };

    // Catch up first, then subscribe from our head so nothing in between is lost.
    if let Some(end) = handle_sync(
        peer,
        index,
        sync::catch_up(
            peer,
            &*client,
            &session_id,
            &hub_id,
            false,
            RateLimitWait::Honour,
        )
        .await,
    ) {
        return ending.end(end).await;
    }
    let mut push = match subscribe(peer, &*client, &session_id).await {
        Ok(stream) => Some(stream),
        Err(e) => return ending.end(SessionEnd::Failover(e)).await,
    };
    let mut last_sequence = 0i64;
    let mut resubscribe_at: Option<Instant> = None;

    let heartbeat_stop = shutdown.child_token();
    let (hb_tx, mut hb_rx) = mpsc::channel(8);
    tokio::spawn(heartbeat_loop(
        Arc::clone(peer),
        Arc::clone(&client),
        Arc::clone(&hub_clock),
        session_id.clone(),
        hb_tx,
        heartbeat_stop.clone(),
    ));
    let _stop_heartbeats = heartbeat_stop.drop_guard();

    let mut periodic =
        tokio::time::interval_at(Instant::now() + cfg.sync_interval, cfg.sync_interval);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let resubscribe = async {
            match resubscribe_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let next_push = async {
            match push.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                ending.reason = DisconnectReason::Shutdown;
                return ending.end(SessionEnd::Shutdown).await;
            }
            command = commands.recv() => match command {
                Some(Command::Sync { full, reply }) => {
                    let result = sync::catch_up(peer, &*client, &session_id, &hub_id, full, RateLimitWait::Report).await;
                    let answer = result.clone().map_err(|e| match e {
                        SyncError::Transport(LinkError { kind: LinkErrorKind::RateLimited, message, retry_after }) => {
                            PeerError::Refused { message, retry_after }
                        }
                        other => PeerError::SyncFailed(other.to_string()),
                    });
                    let _ = reply.send(answer);
                    if let Some(end) = handle_sync(peer, index, result) {
                        return ending.end(end).await;
                    }
                }
                Some(Command::Reconnect) => {
                    ending.reason = DisconnectReason::ClientRequest;
                    return ending.end(SessionEnd::Reconnect).await;
                }
                None => return ending.end(SessionEnd::Shutdown).await,
            },
            item = next_push => match item {
                Some(Ok(notification)) => {
                    if let Some(end) = on_notification(peer, index, &*client, &session_id, &hub_id, &notification, &mut last_sequence).await {
                        return ending.end(end).await;
                    }
                }
                Some(Err(e)) => {
                    push = None;
                    if let Some(end) = on_push_broken(peer, &*client, &hub_clock, &session_id, e.to_string()).await {
                        return ending.end(end).await;
                    }
                    resubscribe_at = Some(Instant::now() + cfg.resubscribe_delay);
                }
                None => {
                    push = None;
                    if let Some(end) = on_push_broken(peer, &*client, &hub_clock, &session_id, "push stream ended".into()).await {
                        return ending.end(end).await;
                    }
                    resubscribe_at = Some(Instant::now() + cfg.resubscribe_delay);
                }
            },
            () = resubscribe => {
                resubscribe_at = None;
                // Catch up, then follow again from our head.
                let result = sync::catch_up(peer, &*client, &session_id, &hub_id, false, RateLimitWait::Honour).await;
                if let Some(end) = handle_sync(peer, index, result) {
                    return ending.end(end).await;
                }
                match subscribe(peer, &*client, &session_id).await {
                    Ok(stream) => {
                        push = Some(stream);
                        last_sequence = 0;
                    }
                    Err(e) => return ending.end(SessionEnd::Failover(e)).await,
                }
            }
            event = hb_rx.recv() => match event {
                Some(HeartbeatEvent::Ack(ack, offset)) => {
                    peer.on_heartbeat_ack(index, &ack);
                    peer.on_clock_offset(index, offset);
                    match ack.action {
                        RecommendedAction::Sync => {
                            let result = sync::catch_up(peer, &*client, &session_id, &hub_id, false, RateLimitWait::Honour).await;
                            if let Some(end) = handle_sync(peer, index, result) {
                                return ending.end(end).await;
                            }
                        }
                        RecommendedAction::Reconnect => {
                            tracing::warn!(hub = %url, "hub does not know this session; reconnecting");
                            return SessionEnd::Reconnect;
                        }
                        RecommendedAction::Failover => {
                            return ending.end(SessionEnd::Failover("hub recommended failover".into())).await;
                        }
                        RecommendedAction::None | RecommendedAction::ReduceFrequency => {}
                    }
                }
                Some(HeartbeatEvent::Missed { consecutive, error }) => {
                    peer.on_heartbeat_missed(consecutive);
                    if consecutive >= 2 {
                        return ending.end(SessionEnd::Failover(format!("{consecutive} consecutive heartbeats missed: {error}"))).await;
                    }
                    tracing::warn!(hub = %url, %error, "heartbeat missed; failing over at the next miss");
                }
                None => {}
            },
            _ = periodic.tick() => {
                let result = sync::catch_up(peer, &*client, &session_id, &hub_id, false, RateLimitWait::Honour).await;
                if let Some(end) = handle_sync(peer, index, result) {
                    return ending.end(end).await;
                }
            }
        }
    }
}

/// Ends a session politely (DisconnectFromCentralNode with a reason), bounded in time.
struct SessionGuard {
    client: Arc<dyn HubLink>,
    peer: Arc<Peer>,
    hub_clock: Arc<HubClock>,
    session_id: String,
    reason: DisconnectReason,
}

impl SessionGuard {
    async fn end(&mut self, end: SessionEnd) -> SessionEnd {
        let now = self.hub_clock.hub_time(self.peer.clock().now_ms());
        let node_id = self.peer.node_id().to_owned();
        let farewell = self
            .client
            .close_session(&node_id, &self.session_id, self.reason, now);
        // A dead hub does not answer; do not hold up failover or shutdown for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), farewell).await;
        end
    }
}

async fn subscribe(
    peer: &Peer,
    client: &dyn HubLink,
    session_id: &str,
) -> Result<LinkStream<Notification>, String> {
    client
        .subscribe(
            peer.node_id(),
            session_id,
            &Filters::default(),
            peer.register().head_version(),
        )
        .await
        .map_err(|e| format!("push subscription failed: {e}"))
}

/// Decides what a sync result means for the session; `None` = carry on.
fn handle_sync(
    peer: &Peer,
    index: usize,
    result: Result<sync::SyncOutcome, SyncError>,
) -> Option<SessionEnd> {
    match result {
        Ok(outcome) => {
            peer.on_synced(index, outcome.to_version);
            None
        }
        Err(SyncError::HubBehind { hub, replica }) => {
            peer.on_hub_behind(index, hub, replica);
            None
        }
        Err(SyncError::Diverged(m)) | Err(SyncError::Rejected(m)) => {
            peer.on_divergence(index, &m);
            Some(SessionEnd::Diverged(m))
        }
        Err(SyncError::Transport(e)) if e.kind == LinkErrorKind::UnknownSession => {
            Some(SessionEnd::Reconnect)
        }
        // The hub is alive and asks for patience; the next periodic or advised sync retries.
        Err(SyncError::Transport(e)) if e.kind == LinkErrorKind::RateLimited => {
            tracing::warn!(error = %e.message, "sync refused by the hub for now; staying connected");
            None
        }
        Err(SyncError::Transport(e)) => Some(SessionEnd::Failover(format!("sync failed: {e}"))),
        // Permanent: failing over cannot help; stay, report, and let operators act.
        Err(SyncError::Unstorable(m)) => {
            peer.on_unstorable(index, &m);
            None
        }
        Err(SyncError::Store(e)) => {
            tracing::error!(error = %e, "replica store failed during sync");
            Some(SessionEnd::Failover(format!("replica store failed: {e}")))
        }
    }
}

async fn on_notification(
    peer: &Peer,
    index: usize,
    client: &dyn HubLink,
    session_id: &str,
    hub_id: &str,
    n: &Notification,
    last_sequence: &mut i64,
) -> Option<SessionEnd> {
    if n.sequence_number != *last_sequence + 1 {
        tracing::warn!(
            expected = *last_sequence + 1,
            got = n.sequence_number,
            "push sequence gap; resyncing"
        );
    }
    *last_sequence = n.sequence_number;
    if n.version <= peer.register().head_version() {
        return None;
    }
    let result = sync::catch_up(
        peer,
        client,
        session_id,
        hub_id,
        false,
        RateLimitWait::Honour,
    )
    .await;
    handle_sync(peer, index, result)
}

/// A broken push stream: if the hub does not answer a heartbeat either, fail over at once;
/// otherwise re-subscribe after the configured delay.
async fn on_push_broken(
    peer: &Peer,
    client: &dyn HubLink,
    hub_clock: &HubClock,
    session_id: &str,
    why: String,
) -> Option<SessionEnd> {
    let probe = Heartbeat {
        peer_id: peer.node_id().to_owned(),
        session_id: session_id.to_owned(),
        timestamp: hub_clock.hub_time(peer.clock().now_ms()),
        sequence_number: peer.next_heartbeat_sequence(),
        last_sync_version: peer.register().head_version(),
        head_hash: String::new(),
    };
    let timeout = peer.config().peer.heartbeat_timeout;
    match tokio::time::timeout(timeout, client.heartbeat(&probe)).await {
        Ok(Ok(ack)) if ack.success => {
            tracing::warn!(%why, "push stream broke; hub alive, re-subscribing after the delay");
            None
        }
        Ok(Ok(_)) => Some(SessionEnd::Reconnect),
        _ => Some(SessionEnd::Failover(format!(
            "{why}, and the hub does not answer"
        ))),
    }
}

/// Sends heartbeats every `peer.heartbeatInterval`, stamped on the hub's clock as estimated
/// (and refined with each acknowledgement), and reports each outcome to the session.
async fn heartbeat_loop(
    peer: Arc<Peer>,
    client: Arc<dyn HubLink>,
    hub_clock: Arc<HubClock>,
    session_id: String,
    events: mpsc::Sender<HeartbeatEvent>,
    stop: CancellationToken,
) {
    let cfg = peer.config().peer.clone();
    let mut ticker = tokio::time::interval_at(
        Instant::now() + cfg.heartbeat_interval,
        cfg.heartbeat_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consecutive = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let head = peer.register().head().await.ok().flatten();
        let sent_ms = peer.clock().now_ms();
        let hb = Heartbeat {
            peer_id: peer.node_id().to_owned(),
            session_id: session_id.clone(),
            timestamp: hub_clock.hub_time(sent_ms),
            sequence_number: peer.next_heartbeat_sequence(),
            last_sync_version: head.as_ref().map_or(0, |h| h.version),
            head_hash: head.map(|h| h.chain_hash).unwrap_or_default(),
        };
        let sent = std::time::Instant::now();
        let metrics = peer.register().metrics();
        let outcome = |outcome| {
            metrics
                .heartbeats_sent
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        };
        let event = match tokio::time::timeout(cfg.heartbeat_timeout, client.heartbeat(&hb)).await {
            Ok(Ok(ack)) => {
                consecutive = 0;
                metrics
                    .heartbeat_latency
                    .observe(sent.elapsed().as_secs_f64());
                outcome(Outcome::Ok);
                let offset = hub_clock.observe(sent_ms, peer.clock().now_ms(), ack.timestamp);
                HeartbeatEvent::Ack(ack, offset)
            }
            Ok(Err(e)) if e.kind == LinkErrorKind::Invalid => {
                // The hub is alive and refuses the heartbeat itself (its clock check): every
                // hub would say the same, so this is no miss and no reason to fail over.
                tracing::warn!(error = %e.message, "the hub refused a heartbeat; not counted as missed");
                outcome(Outcome::Failed);
                continue;
            }
            Ok(Err(e)) if e.kind == LinkErrorKind::RateLimited => {
                // The hub is alive and asks us to slow down: not a missed heartbeat.
                let wait = e.retry_after.unwrap_or(cfg.heartbeat_interval);
                tracing::warn!(error = %e.message, wait_ms = wait.as_millis() as u64, "heartbeat rate limited by the hub; waiting");
                outcome(Outcome::Failed);
                tokio::select! {
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
