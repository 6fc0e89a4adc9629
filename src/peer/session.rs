//! One session with one hub: connect, catch up, subscribe, heartbeat, periodic sync, until the
//! session ends and the manager decides what comes next.

use super::heartbeats::{ADVICE_QUEUE, HeartbeatAdvice, heartbeat_loop};
use super::hub_clock::HubClock;
use super::sync::{self, RateLimitWait, SyncError};
use super::{Command, Peer, PeerError};
use crate::error_code::ErrorCode;
use crate::link::guard::{Deadlines, GiveUp, GuardedLink};
use crate::link::{HubLink, LinkError, LinkStream};
use crate::protocol::{
    ConnectRequest, DisconnectReason, Filters, Goodbye, Heartbeat, HubLoad, Notification,
    PeerDescription, RecommendedAction, SessionId,
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
    /// The hub sent the peer on at connect (it holds its fair share, with its load when it
    /// said, or it drains): try the next hub at once, with no penalty (it does not count
    /// toward isolation).
    SentOn {
        /// The hub's words.
        why: String,
        /// Its sessions and cap, when it refused for its fair share.
        load: Option<HubLoad>,
    },
    /// A working session the hub ended by sending the peer to another hub (it drains, or
    /// holds more than its fair share): continue on another hub at once, from the replica's
    /// head, with no penalty.
    Moved(String),
    /// A working session broke or the hub told us to go: move to the next hub, after a
    /// random share of the first backoff (peers that lost the same hub spread out).
    Failover(String),
    /// The hub took the session but lost it before the first catch-up and subscription were
    /// done: a failed attempt on this hub; move to the next.
    BrokeEarly(String),
    /// The hub is refused (its chain forks from the replica, its checkpoints are not trusted,
    /// its entries' signatures are refused): a failed attempt on this hub; move to the next
    /// after a backoff.
    Diverged(String),
    /// Reconnect to the same hub now (RECONNECT advice, operator request).
    Reconnect,
    /// The node is shutting down.
    Shutdown,
}

/// What a connect request says beyond the peer itself.
#[derive(Debug, Clone, Default)]
pub struct ConnectHints {
    /// Ask the hub to take the peer above its fair share (every hub it reached refused it so).
    pub insist: bool,
    /// The id of the hub whose session the peer just lost ("" = none).
    pub lost_hub: String,
}

/// Runs one session with hub `index`, connecting with `hints`.
#[tracing::instrument(name = "session", skip_all, fields(hub = %peer.settings().hubs[index], peer_id = %peer.node_id()))]
pub async fn run(
    peer: &Arc<Peer>,
    index: usize,
    hints: ConnectHints,
    commands: &mut mpsc::Receiver<Command>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let url = peer.settings().hubs[index].clone();
    let cfg = peer.settings().peer.clone();
    let give_up = GiveUp::default();
    let connect = async {
        let dialed = peer.dialer().dial(&url).await?;
        // Every call of the session from here on has its deadline and ends when the hub is
        // given up.
        let link: Arc<dyn HubLink> = Arc::new(GuardedLink::new(
            dialed,
            Deadlines::from_config(&cfg),
            give_up.clone(),
        ));
        let request = ConnectRequest {
            peer_id: peer.node_id().clone(),
            peer: PeerDescription {
                address: peer.settings().listen.ip().to_string(),
                port: peer.settings().listen.port(),
                node_type: "Peer".into(),
                supported_protocols: vec!["grpc".into(), "grpc-web".into()],
                supports_push_notifications: true,
                supports_incremental_sync: true,
                max_blueprint_size: i32::try_from(peer.settings().max_document_bytes)
                    .unwrap_or(i32::MAX),
                is_nat_restricted: false,
                software_version: crate::SOFTWARE_VERSION.into(),
            },
            last_known_version: peer.register().head_version(),
            connection_time: peer.clock().now_ms(),
            insist: hints.insist,
            lost_hub: hints.lost_hub.clone(),
            relay_path: if peer.settings().peer.serve_downstream {
                peer.relay_path()
            } else {
                Vec::new()
            },
        };
        let sent = peer.clock().now_ms();
        let grant = link.open_session(&request).await?;
        let hub_clock = HubClock::default();
        hub_clock.observe(sent, peer.clock().now_ms(), grant.connected_at);
        Ok::<_, LinkError>((link, grant, hub_clock))
    };
    let (link, grant, hub_clock) = tokio::select! {
        biased;
        () = shutdown.cancelled() => return SessionEnd::Shutdown,
        // Dialing and connecting together: one attempt's `peer.connectTimeout`.
        result = tokio::time::timeout(cfg.connect_timeout, connect) => match result {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) if e.code.is_move_on() => {
                return SessionEnd::SentOn { why: e.to_string(), load: e.load };
            }
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
        link,
        hub_clock: Arc::new(hub_clock),
        session_id: grant.session_id.clone(),
        hub_id: grant.hub_id.clone(),
        url: url.clone(),
        give_up: give_up.clone(),
    };
    peer.on_connected(index, &grant);
    peer.on_clock_offset(index, &session.hub_clock);
    tracing::info!(hub = %url, hub_id = %session.hub_id, session_id = %session.session_id, hub_version = grant.current_version, "connected to hub");

    let mut ending = SessionGuard {
        session: session.clone(),
        goodbye: DisconnectReason::Failover.into(),
    };

    // A relay that finds itself on its upstream's path has dialled its own downstream (the
    // upstream refuses such a connect; this catches two relays connecting to each other at
    // once).
    if grant
        .relay_path
        .iter()
        .any(|id| id == peer.node_id().as_str())
    {
        return ending
            .end(SessionEnd::BrokeEarly(format!(
                "relay loop: this relay is on the path of {url} ({})",
                grant.relay_path.join(" → ")
            )))
            .await;
    }

    // A hub whose checkpoint (or key) is not trusted is left before anything is applied.
    let admitted = peer.trust().admit(
        &url,
        grant.checkpoint_key.as_deref(),
        grant.checkpoint.as_deref(),
        grant.current_version,
    );
    match admitted {
        Err(e) => return ending.end(peer.on_untrusted(index, &e)).await,
        Ok(Some(v)) => peer.vouched_now(&v),
        Ok(None) => {}
    }

    // Heartbeats start at once and judge the hub on their own, the first catch-up (which may
    // take long on a large register) included.
    let heartbeat_stop = shutdown.child_token();
    let (advice_tx, mut advice) = mpsc::channel(ADVICE_QUEUE);
    let heartbeats = tokio::spawn(heartbeat_loop(
        session.clone(),
        advice_tx,
        give_up.clone(),
        heartbeat_stop.clone(),
    ));
    // The heartbeat task ends with the session: stopped, and aborted should it linger.
    let _stop_heartbeats = (heartbeat_stop.drop_guard(), AbortOnDrop(heartbeats));

    // Catch up first, then subscribe from our head so nothing in between is lost. Until both
    // are done the session is not established: losing the hub now is a failed attempt.
    let early = |end| match end {
        SessionEnd::Failover(why) => SessionEnd::BrokeEarly(why),
        other => other,
    };
    if let Some(end) = session.catch_up().await {
        return ending.end(early(end)).await;
    }
    let mut push = match session.subscribe().await {
        Ok(stream) => Some(stream),
        Err(e) => return ending.end(SessionEnd::BrokeEarly(e)).await,
    };
    let mut last_sequence = 0i64;
    let mut resubscribe_at: Option<Instant> = None;

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
        let end = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                ending.goodbye = DisconnectReason::Shutdown.into();
                Some(SessionEnd::Shutdown)
            }
            () = give_up.given_up() => Some(SessionEnd::Failover(
                give_up.reason().unwrap_or("the hub was given up").to_owned(),
            )),
            command = commands.recv() => match command {
                Some(command) => session.on_command(command, &mut ending).await,
                None => Some(SessionEnd::Shutdown),
            },
            item = next_push => match item {
                Some(Ok(notification)) => session.on_notification(&notification, &mut last_sequence).await,
                Some(Err(e)) if e.code.is_move_on() => {
                    tracing::info!(hub = %url, why = %e.message, "the hub sends this peer to another hub");
                    Some(SessionEnd::Moved(e.message))
                }
                broken => {
                    let why = match broken {
                        Some(Err(e)) => e.to_string(),
                        _ => "push stream ended".to_owned(),
                    };
                    push = None;
                    resubscribe_at = Some(Instant::now() + cfg.resubscribe_delay);
                    session.on_push_broken(why).await
                }
            },
            () = resubscribe => {
                resubscribe_at = None;
                match session.resubscribe().await {
                    Ok(stream) => {
                        push = Some(stream);
                        last_sequence = 0;
                        None
                    }
                    Err(end) => Some(end),
                }
            }
            Some(advice) = advice.recv() => session.on_advice(advice).await,
            _ = periodic.tick() => session.catch_up().await,
        };
        if let Some(end) = end {
            return ending.end(end).await;
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
    pub(super) index: usize,
    pub(super) link: Arc<dyn HubLink>,
    pub(super) hub_clock: Arc<HubClock>,
    session_id: SessionId,
    hub_id: String,
    url: String,
    /// Set when the hub is given up (heartbeats missed, a call failed for the transport):
    /// ends every call of the session at once.
    give_up: GiveUp,
}

impl Session {
    /// The hub's URL as configured.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// A command from the node (REST): sync now and report, or reconnect.
    async fn on_command(&self, command: Command, ending: &mut SessionGuard) -> Option<SessionEnd> {
        match command {
            Command::Sync { full, reply } => {
                let result = self.sync(full, RateLimitWait::Report).await;
                let answer = result.clone().map_err(|e| match e {
                    SyncError::Transport(LinkError {
                        code,
                        message,
                        retry_after,
                        ..
                    }) if code.is_back_off() => PeerError::Refused {
                        message,
                        retry_after,
                    },
                    other => PeerError::SyncFailed(other.to_string()),
                });
                let _ = reply.send(answer);
                self.settle(result)
            }
            Command::Reconnect => {
                ending.goodbye = DisconnectReason::ClientRequest.into();
                Some(SessionEnd::Reconnect)
            }
        }
    }

    /// What the heartbeats found for the session to act on.
    async fn on_advice(&self, advice: HeartbeatAdvice) -> Option<SessionEnd> {
        match advice {
            HeartbeatAdvice::Untrusted(e) => Some(self.peer.on_untrusted(self.index, &e)),
            HeartbeatAdvice::Act(RecommendedAction::Sync) => self.catch_up().await,
            HeartbeatAdvice::Act(RecommendedAction::Reconnect) => {
                tracing::warn!(hub = %self.url, "hub does not know this session; reconnecting");
                Some(SessionEnd::Reconnect)
            }
            HeartbeatAdvice::Act(RecommendedAction::Failover) => {
                Some(SessionEnd::Failover("hub recommended failover".into()))
            }
            HeartbeatAdvice::Act(RecommendedAction::None | RecommendedAction::ReduceFrequency) => {
                None
            }
        }
    }

    /// After a broken push stream: catch up, then follow again from the replica's head.
    async fn resubscribe(&self) -> Result<LinkStream<Notification>, SessionEnd> {
        if let Some(end) = self.catch_up().await {
            return Err(end);
        }
        self.subscribe().await.map_err(SessionEnd::Failover)
    }

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
            Err(SyncError::Transport(e)) => {
                let why = format!("sync failed: {e}");
                if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Timeout) {
                    // The hub is gone or silent: no goodbye, and nothing else waits on it.
                    self.give_up.give_up(why.clone());
                }
                Some(SessionEnd::Failover(why))
            }
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
        // The link bounds the probe by `peer.heartbeatTimeout`.
        match self.link.heartbeat(&probe).await {
            Ok(ack) if ack.success => {
                tracing::warn!(%why, "push stream broke; hub alive, re-subscribing after the delay");
                None
            }
            Ok(_) => Some(SessionEnd::Reconnect),
            Err(e) => {
                let why = format!("{why}, and the hub does not answer: {e}");
                self.give_up.give_up(why.clone());
                Some(SessionEnd::Failover(why))
            }
        }
    }

    /// The next heartbeat of this session, stamped on the hub's clock.
    pub(super) fn heartbeat(&self, last_sync_version: i64, head_hash: String) -> Heartbeat {
        Heartbeat {
            peer_id: self.peer.node_id().clone(),
            session_id: self.session_id.clone(),
            timestamp: self.hub_now(),
            sequence_number: self.peer.next_heartbeat_sequence(),
            last_sync_version,
            head_hash,
            refusal: self.peer.refusal_of(self.index).unwrap_or_default(),
            trusted_version: self.peer.trust().last_checkpoint().map_or(0, |v| v.version),
            downstream: self.peer.downstream_report(),
        }
    }
}

/// Ends a session politely (DisconnectFromCentralNode with a reason), bounded in time.
struct SessionGuard {
    session: Session,
    goodbye: Goodbye,
}

impl SessionGuard {
    async fn end(&mut self, end: SessionEnd) -> SessionEnd {
        let s = &self.session;
        // A hub given up gets no goodbye: failover does not wait on a dead hub. Any other is
        // told, within the link's short goodbye deadline.
        if s.give_up.reason().is_none() {
            // A refused hub is told why, so its fleet view lists this peer as refusing it.
            if let SessionEnd::Diverged(why) = &end {
                self.goodbye = Goodbye {
                    reason: DisconnectReason::Error,
                    detail: why
                        .chars()
                        .take(crate::protocol::MAX_REFUSAL_CHARS)
                        .collect(),
                };
            }
            let goodbye = std::mem::replace(&mut self.goodbye, DisconnectReason::Unknown.into());
            let farewell =
                s.link
                    .close_session(s.peer.node_id(), &s.session_id, goodbye, s.hub_now());
            if let Err(e) = farewell.await {
                tracing::debug!(error = %e, "the hub did not take the goodbye");
            }
        }
        // Whatever the session had in flight ends now.
        s.give_up.give_up("the session ended");
        end
    }
}
