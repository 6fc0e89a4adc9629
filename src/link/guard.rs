//! Every call a session makes to its hub has a deadline, and all of them end at once when the
//! session gives the hub up.
//!
//! A network can fail silently: a connection stays open and no byte passes (a dead router, a
//! full conntrack table, a frozen VM). Without a deadline a call, or a sync stream waiting for
//! its next entry, would wait for HTTP/2 keep-alive — tens of seconds — while the heartbeats
//! already know the hub is gone. [`GuardedLink`] wraps any [`HubLink`] (the gRPC client, the
//! simulation's links) so the peer's rules hold whatever the transport: each call is bounded by
//! its [`Deadlines`], each item of a sync stream too, and once [`GiveUp::give_up`] is called
//! (by the heartbeats, or by a failed call) every call in flight and every later one fails at
//! once with the reason. Nothing is cut in the middle of applying: the peer's writes are local
//! and not calls to the hub, so a sync ends between batches.

use super::{HubLink, HubStatus, LinkError, LinkStream};
use crate::error_code::ErrorCode;
use crate::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
use async_trait::async_trait;
use futures::StreamExt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long each kind of call to a hub may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Opening a session (`peer.connectTimeout`).
    pub connect: Duration,
    /// A heartbeat's answer (`peer.heartbeatTimeout`).
    pub heartbeat: Duration,
    /// Any other answer — status, checkpoint, opening a sync or a push subscription — and each
    /// next entry of a sync stream (`peer.requestTimeout`).
    pub request: Duration,
    /// The goodbye to a hub the peer leaves in good order (a dead hub gets none).
    pub goodbye: Duration,
}

impl Deadlines {
    /// The deadlines a peer's configuration sets.
    pub fn from_config(peer: &crate::config::PeerConfig) -> Self {
        Self {
            connect: peer.connect_timeout,
            heartbeat: peer.heartbeat_timeout,
            request: peer.request_timeout,
            goodbye: peer.heartbeat_timeout.min(GOODBYE_AT_MOST),
        }
    }
}

/// The longest a goodbye may take: leaving must never wait long on the hub being left.
const GOODBYE_AT_MOST: Duration = Duration::from_secs(2);

/// A session's verdict that its hub is gone, with the reason. Set once; clones share it.
#[derive(Debug, Clone, Default)]
pub struct GiveUp {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl GiveUp {
    /// Gives the hub up for `reason` (the first reason given stands).
    pub fn give_up(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// Why the hub was given up, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.token
            .is_cancelled()
            .then(|| self.reason.get().map(String::as_str))
            .flatten()
    }

    /// Resolves once the hub is given up.
    pub async fn given_up(&self) {
        self.token.cancelled().await;
    }

    fn error(&self) -> LinkError {
        LinkError::new(
            ErrorCode::Unavailable,
            format!(
                "the hub was given up: {}",
                self.reason().unwrap_or("the session ended")
            ),
        )
    }

    /// Runs `call` within `limit`, unless the hub is given up first.
    async fn bound<T>(
        &self,
        what: &str,
        limit: Duration,
        call: impl Future<Output = Result<T, LinkError>>,
    ) -> Result<T, LinkError> {
        if self.token.is_cancelled() {
            return Err(self.error());
        }
        tokio::select! {
            biased;
            () = self.token.cancelled() => Err(self.error()),
            done = tokio::time::timeout(limit, call) => {
                done.unwrap_or_else(|_| Err(timed_out(what, limit)))
            }
        }
    }

    /// `stream`, ending with an error when the hub is given up, and — with `item_limit` —
    /// when its next item takes longer than that.
    fn stream<T: Send + 'static>(
        &self,
        what: &'static str,
        stream: LinkStream<T>,
        item_limit: Option<Duration>,
    ) -> LinkStream<T> {
        let give_up = self.clone();
        Box::pin(futures::stream::unfold(Some(stream), move |state| {
            let give_up = give_up.clone();
            async move {
                let mut stream = state?;
                let next = tokio::select! {
                    biased;
                    () = give_up.token.cancelled() => Some(Err(give_up.error())),
                    item = async {
                        match item_limit {
                            Some(limit) => tokio::time::timeout(limit, stream.next())
                                .await
                                .unwrap_or_else(|_| Some(Err(timed_out(what, limit)))),
                            None => stream.next().await,
                        }
                    } => item,
                };
                match next? {
                    Ok(item) => Some((Ok(item), Some(stream))),
                    // An error ends the stream.
                    Err(e) => Some((Err(e), None)),
                }
            }
        }))
    }
}

fn timed_out(what: &str, limit: Duration) -> LinkError {
    LinkError::new(
        ErrorCode::Timeout,
        format!("the hub sent no {what} within {limit:?}"),
    )
}

/// A [`HubLink`] whose every call is bounded by [`Deadlines`] and ended by [`GiveUp`].
pub struct GuardedLink {
    inner: Arc<dyn HubLink>,
    deadlines: Deadlines,
    give_up: GiveUp,
}

impl GuardedLink {
    /// Guards `inner` with `deadlines`; `give_up` ends every call.
    pub fn new(inner: Arc<dyn HubLink>, deadlines: Deadlines, give_up: GiveUp) -> Self {
        Self {
            inner,
            deadlines,
            give_up,
        }
    }
}

impl GuardedLink {
    /// Opens a sync stream within `peer.requestTimeout`, each next entry bounded by it too.
    async fn sync_stream(
        &self,
        open: impl Future<Output = Result<LinkStream<SyncedEntry>, LinkError>>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        let limit = self.deadlines.request;
        let stream = self.give_up.bound("sync stream", limit, open).await?;
        Ok(self.give_up.stream("next sync entry", stream, Some(limit)))
    }
}

#[async_trait]
impl HubLink for GuardedLink {
    async fn open_session(&self, request: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
        let limit = self.deadlines.connect;
        self.give_up
            .bound("answer to connect", limit, self.inner.open_session(request))
            .await
    }

    async fn close_session(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: Goodbye,
        now_ms: i64,
    ) -> Result<(), LinkError> {
        let call = self
            .inner
            .close_session(peer_id, session_id, goodbye, now_ms);
        self.give_up
            .bound("answer to goodbye", self.deadlines.goodbye, call)
            .await
    }

    async fn status(&self, peer_id: &PeerId) -> Result<HubStatus, LinkError> {
        let limit = self.deadlines.request;
        self.give_up
            .bound("status", limit, self.inner.status(peer_id))
            .await
    }

    async fn full_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        self.sync_stream(self.inner.full_sync(peer_id, session_id, max))
            .await
    }

    async fn incremental_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        self.sync_stream(self.inner.incremental_sync(peer_id, session_id, after, max))
            .await
    }

    async fn subscribe(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError> {
        let limit = self.deadlines.request;
        let call = self
            .inner
            .subscribe(peer_id, session_id, filters, resume_from);
        let stream = self.give_up.bound("push stream", limit, call).await?;
        // A quiet register sends no notifications for hours: no deadline per item; the
        // heartbeats watch the hub meanwhile.
        Ok(self.give_up.stream("notification", stream, None))
    }

    async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, LinkError> {
        let limit = self.deadlines.request;
        let call = self.inner.peer_sync_view(peer_id, session_id);
        self.give_up.bound("checkpoint", limit, call).await
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
        let limit = self.deadlines.heartbeat;
        self.give_up
            .bound("heartbeat answer", limit, self.inner.heartbeat(heartbeat))
            .await
    }

    async fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, LinkError> {
        let limit = self.deadlines.request;
        let call = self.inner.heartbeat_status(peer_id, session_id);
        self.give_up.bound("heartbeat status", limit, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub that never answers: every call and every stream item waits forever.
    struct Silent;

    #[async_trait]
    impl HubLink for Silent {
        async fn open_session(&self, _: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
            std::future::pending().await
        }
        async fn close_session(
            &self,
            _: &PeerId,
            _: &SessionId,
            _: Goodbye,
            _: i64,
        ) -> Result<(), LinkError> {
            std::future::pending().await
        }
        async fn status(&self, _: &PeerId) -> Result<HubStatus, LinkError> {
            std::future::pending().await
        }
        async fn full_sync(
            &self,
            _: &PeerId,
            _: &SessionId,
            _: Option<u32>,
        ) -> Result<LinkStream<SyncedEntry>, LinkError> {
            Ok(Box::pin(futures::stream::pending()))
        }
        async fn incremental_sync(
            &self,
            _: &PeerId,
            _: &SessionId,
            _: i64,
            _: Option<u32>,
        ) -> Result<LinkStream<SyncedEntry>, LinkError> {
            Ok(Box::pin(futures::stream::pending()))
        }
        async fn subscribe(
            &self,
            _: &PeerId,
            _: &SessionId,
            _: &Filters,
            _: i64,
        ) -> Result<LinkStream<Notification>, LinkError> {
            Ok(Box::pin(futures::stream::pending()))
        }
        async fn peer_sync_view(
            &self,
            _: &PeerId,
            _: &SessionId,
        ) -> Result<PeerSyncView, LinkError> {
            std::future::pending().await
        }
        async fn heartbeat(&self, _: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
            std::future::pending().await
        }
        async fn heartbeat_status(
            &self,
            _: &PeerId,
            _: &SessionId,
        ) -> Result<HeartbeatReport, LinkError> {
            std::future::pending().await
        }
    }

    fn peer() -> PeerId {
        PeerId::parse("p").unwrap()
    }

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            peer_id: peer(),
            session_id: "s".into(),
            timestamp: 0,
            sequence_number: 0,
            last_sync_version: 0,
            head_hash: String::new(),
            refusal: String::new(),
            trusted_version: 0,
            downstream: Vec::new(),
        }
    }

    fn deadlines() -> Deadlines {
        Deadlines {
            connect: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            request: Duration::from_secs(3),
            goodbye: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_hub_costs_each_call_its_deadline_and_no_more() {
        let link = GuardedLink::new(Arc::new(Silent), deadlines(), GiveUp::default());
        let started = tokio::time::Instant::now();
        let e = link.heartbeat(&heartbeat()).await.unwrap_err();
        assert_eq!(
            (e.code, started.elapsed()),
            (ErrorCode::Timeout, Duration::from_secs(1))
        );
        let started = tokio::time::Instant::now();
        let e = link.status(&peer()).await.unwrap_err();
        assert_eq!(
            (e.code, started.elapsed()),
            (ErrorCode::Timeout, Duration::from_secs(3))
        );
        // A sync stream that opened and then went quiet: its next entry times out.
        let mut stream = link
            .incremental_sync(&peer(), &"s".into(), 0, None)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let e = stream.next().await.unwrap().unwrap_err();
        assert_eq!(
            (e.code, started.elapsed()),
            (ErrorCode::Timeout, Duration::from_secs(3))
        );
        assert!(e.message.contains("next sync entry"), "{}", e.message);
        assert!(stream.next().await.is_none(), "an error ends the stream");
        // A quiet push stream is no fault.
        let mut push = link
            .subscribe(&peer(), &"s".into(), &Filters::default(), 0)
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), push.next())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn giving_up_ends_every_call_in_flight_and_every_later_one() {
        let give_up = GiveUp::default();
        let link = Arc::new(GuardedLink::new(
            Arc::new(Silent),
            deadlines(),
            give_up.clone(),
        ));
        let mut stream = link.full_sync(&peer(), &"s".into(), None).await.unwrap();
        let waiting = tokio::spawn(async move { stream.next().await });
        let in_flight = {
            let link = Arc::clone(&link);
            tokio::spawn(async move { link.status(&peer()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        give_up.give_up("3 heartbeats missed");
        give_up.give_up("a later reason does not replace the first");
        let started = tokio::time::Instant::now();
        let e = waiting.await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("3 heartbeats missed"), "{}", e.message);
        assert!(in_flight.await.unwrap().is_err());
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "at once, not at a deadline"
        );
        let e = link.heartbeat(&heartbeat()).await.unwrap_err();
        assert!(e.message.contains("3 heartbeats missed"));
        assert_eq!(give_up.reason(), Some("3 heartbeats missed"));
    }
}
