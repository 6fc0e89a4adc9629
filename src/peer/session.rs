//! One session with one hub: connect, catch up, subscribe, heartbeat, periodic sync, until the
//! session ends and the manager decides what comes next.

use super::heartbeats::{HeartbeatEvent, heartbeat_loop};
use super::hub_clock::HubClock;
use super::sync::{self, RateLimitWait, SyncError};
use super::{Command, Peer, PeerError};
use crate::error_code::ErrorCode;
use crate::link::{HubLink, LinkError, LinkStream};
use crate::protocol::{
    ConnectRequest, DisconnectReason, Filters, Heartbeat, Notification, PeerDescription,
    RecommendedAction,
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
        biased;
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
    let session = Session {
        peer: Arc::clone(peer),
        index,
        link: client,
        hub_clock: Arc::new(hub_clock),
        session_id: grant.session_id.clone(),
        hub_id: grant.hub_id.clone(),
        url: url.clone(),
    };
    peer.on_connected(index, &grant);
    if let Some(offset) = session.hub_clock.offset_ms() {
        peer.on_clock_offset(index, offset);
    }
    tracing::info!(hub = %url, hub_id = %session.hub_id, session_id = %session.session_id, hub_version = grant.current_version, "connected to hub");

    let mut ending = SessionGuard {
        session: session.clone(),
        reason: DisconnectReason::Failover,
    };

    // A hub whose checkpoint (or key) is not trusted is left before anything is applied.
    let admitted = peer.trust().admit(
        &url,
        &grant.checkpoint_key,
        &grant.checkpoint,
        grant.current_version,
    );
    if let Err(e) = admitted {
        return ending.end(peer.on_untrusted(index, &e)).await;
    }
    // Catch up first, then subscribe from our head so nothing in between is lost.
    if let Some(end) = session.catch_up().await {
        return ending.end(end).await;
    }
    let mut push = match session.subscribe().await {
        Ok(stream) => Some(stream),
        Err(e) => return ending.end(SessionEnd::Failover(e)).await,
    };
    let mut last_sequence = 0i64;
    let mut resubscribe_at: Option<Instant> = None;

    let heartbeat_stop = shutdown.child_token();
    let (hb_tx, mut hb_rx) = mpsc::channel(8);
    let heartbeats = tokio::spawn(heartbeat_loop(
        session.clone(),
        hb_tx,
        heartbeat_stop.clone(),
    ));
    // The heartbeat task ends with the session: stopped, and aborted should it linger.
    let _stop_heartbeats = (heartbeat_stop.drop_guard(), AbortOnDrop(heartbeats));

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
            biased;
            () = shutdown.cancelled() => {
                ending.reason = DisconnectReason::Shutdown;
                return ending.end(SessionEnd::Shutdown).await;
            }
            command = commands.recv() => match command {
                Some(Command::Sync { full, reply }) => {
                    let result = session.sync(full, RateLimitWait::Report).await;
                    let answer = result.clone().map_err(|e| match e {
                        SyncError::Transport(LinkError { code, message, retry_after }) if code.is_back_off() => {
                            PeerError::Refused { message, retry_after }
                        }
                        other => PeerError::SyncFailed(other.to_string()),
                    });
                    let _ = reply.send(answer);
                    if let Some(end) = session.settle(result) {
                        return ending.end(end).await;
                    }
                }
                Some(Command::Reconnect) => {
                    ending.reason = DisconnectReason::ClientRequest;
                    return ending.end(SessionEnd::Reconnect).await;
                }
                None => return ending.end(SessionEnd::Shutdown).await,
            },
            item = next_push => {
                let broken = match item {
                    Some(Ok(notification)) => {
                        if let Some(end) = session.on_notification(&notification, &mut last_sequence).await {
                            return ending.end(end).await;
                        }
                        None
                    }
                    Some(Err(e)) => Some(e.to_string()),
                    None => Some("push stream ended".to_owned()),
                };
                if let Some(why) = broken {
                    push = None;
                    if let Some(end) = session.on_push_broken(why).await {
                        return ending.end(end).await;
                    }
                    resubscribe_at = Some(Instant::now() + cfg.resubscribe_delay);
                }
            }
            () = resubscribe => {
                resubscribe_at = None;
                // Catch up, then follow again from our head.
                if let Some(end) = session.catch_up().await {
                    return ending.end(end).await;
                }
                match session.subscribe().await {
                    Ok(stream) => {
                        push = Some(stream);
                        last_sequence = 0;
                    }
                    Err(e) => return ending.end(SessionEnd::Failover(e)).await,
                }
            }
            event = hb_rx.recv() => match event {
                Some(HeartbeatEvent::Ack(ack, offset)) => {
                    if !ack.checkpoint.is_empty() && peer.trust().checks(&url)
                        && let Err(e) = peer.trust().vouch_head(&url, &ack.checkpoint)
                    {
                        return ending.end(peer.on_untrusted(index, &e)).await;
                    }
                    peer.on_heartbeat_ack(index, &ack);
                    peer.on_clock_offset(index, offset);
                    match ack.action {
                        RecommendedAction::Sync => {
                            if let Some(end) = session.catch_up().await {
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
                if let Some(end) = session.catch_up().await {
                    return ending.end(end).await;
                }
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One open session with one hub: the link, the session's and the hub's ids, the hub's clock
/// as estimated. Every exchange of the session goes through it.
#[derive(Clone)]
pub(super) struct Session {
    pub(super) peer: Arc<Peer>,
    index: usize,
    pub(super) link: Arc<dyn HubLink>,
    pub(super) hub_clock: Arc<HubClock>,
    session_id: String,
    hub_id: String,
    url: String,
}

impl Session {
    /// Now on the hub's clock, as estimated.
    fn hub_now(&self) -> i64 {
        self.hub_clock.hub_time(self.peer.clock().now_ms())
    }

    /// Syncs (full or incremental) through this session.
    async fn sync(&self, full: bool, wait: RateLimitWait) -> Result<sync::SyncOutcome, SyncError> {
        sync::catch_up(
            &self.peer,
            &*self.link,
            &self.session_id,
            &sync::HubRef {
                url: &self.url,
                id: &self.hub_id,
            },
            full,
            wait,
        )
        .await
    }

    /// An incremental catch-up, settled: `Some` ends the session.
    async fn catch_up(&self) -> Option<SessionEnd> {
        let result = self.sync(false, RateLimitWait::Honour).await;
        self.settle(result)
    }

    /// Decides what a sync result means for the session; `None` = carry on.
    fn settle(&self, result: Result<sync::SyncOutcome, SyncError>) -> Option<SessionEnd> {
        let (peer, index) = (&self.peer, self.index);
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
            // Every hub serves the same register, but another may hold it as it was signed.
            Err(SyncError::Unverified(m)) => {
                peer.on_unverified(index, &m);
                Some(SessionEnd::Diverged(m))
            }
            Err(SyncError::Untrusted(e)) => Some(peer.on_untrusted(index, &e)),
            Err(SyncError::Transport(e)) if e.code == ErrorCode::UnknownSession => {
                Some(SessionEnd::Reconnect)
            }
            // The hub is alive and asks for patience; the next periodic or advised sync retries.
            Err(SyncError::Transport(e)) if e.code.is_back_off() => {
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

    /// Follows the hub's push notifications from the replica's head.
    async fn subscribe(&self) -> Result<LinkStream<Notification>, String> {
        self.link
            .subscribe(
                self.peer.node_id(),
                &self.session_id,
                &Filters::default(),
                self.peer.register().head_version(),
            )
            .await
            .map_err(|e| format!("push subscription failed: {e}"))
    }

    /// A notification: catch up when it announces something beyond the replica's head.
    async fn on_notification(
        &self,
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
        if n.version <= self.peer.register().head_version() {
            return None;
        }
        self.catch_up().await
    }

    /// A broken push stream: if the hub does not answer a heartbeat either, fail over at once;
    /// otherwise re-subscribe after the configured delay.
    async fn on_push_broken(&self, why: String) -> Option<SessionEnd> {
        let probe = self.heartbeat(self.peer.register().head_version(), String::new());
        let timeout = self.peer.config().peer.heartbeat_timeout;
        match tokio::time::timeout(timeout, self.link.heartbeat(&probe)).await {
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

    /// The next heartbeat of this session, stamped on the hub's clock.
    pub(super) fn heartbeat(&self, last_sync_version: i64, head_hash: String) -> Heartbeat {
        Heartbeat {
            peer_id: self.peer.node_id().to_owned(),
            session_id: self.session_id.clone(),
            timestamp: self.hub_now(),
            sequence_number: self.peer.next_heartbeat_sequence(),
            last_sync_version,
            head_hash,
        }
    }
}

/// Ends a session politely (DisconnectFromCentralNode with a reason), bounded in time.
struct SessionGuard {
    session: Session,
    reason: DisconnectReason,
}

impl SessionGuard {
    async fn end(&mut self, end: SessionEnd) -> SessionEnd {
        let s = &self.session;
        let farewell =
            s.link
                .close_session(s.peer.node_id(), &s.session_id, self.reason, s.hub_now());
        // A dead hub does not answer; do not hold up failover or shutdown for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), farewell).await;
        end
    }
}
