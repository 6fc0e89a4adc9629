//! The simulated network: a virtual clock, the links between peers and hubs with their faults,
//! and each peer's dialer.

use super::{HUBS, STALL};
use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use rand::rngs::StdRng;
use sorcha_peer::clock::Clock;
use sorcha_peer::error_code::ErrorCode;
use sorcha_peer::hub::Hub;
use sorcha_peer::hub::link::LocalLink;
use sorcha_peer::link::{Dialer, HubLink, HubStatus, LinkError, LinkStream};
use sorcha_peer::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wall time in virtual milliseconds since a fixed epoch, plus a per-node skew.
pub struct SimClock {
    pub origin: Instant,
    pub skew_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        1_800_000_000_000 + self.origin.elapsed().as_millis() as i64 + self.skew_ms
    }
}

/// Counts of what the simulation did.
#[derive(Default)]
pub struct Figures {
    pub hub_crashes: AtomicU64,
    pub partitions: AtomicU64,
    pub silences: AtomicU64,
    pub isolations: AtomicU64,
    pub outages: AtomicU64,
    pub drops: AtomicU64,
    pub delays: AtomicU64,
    pub stalls: AtomicU64,
    pub damaged: AtomicU64,
    pub refused_dials: AtomicU64,
    pub notifications: AtomicU64,
}

/// One dial by a peer: which hub, when (virtual ms), and whether it was refused at once.
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    /// Which run of the peer dialled (a restarted peer starts again at the first hub).
    pub run: u64,
    pub hub: usize,
    pub at_ms: u64,
    pub refused: bool,
}

/// The simulated network: which hubs are up, which links are cut, what was seen.
pub struct Net {
    pub origin: Instant,
    pub hubs: Vec<Mutex<Option<Arc<Hub>>>>,
    pub partitioned: Mutex<BTreeSet<(usize, usize)>>,
    /// Cancelled when the link (peer, hub) is cut: its open streams end with an error.
    pub cuts: Mutex<BTreeMap<(usize, usize), CancellationToken>>,
    /// Links gone silent (open, no byte passes) and since when: calls and dials on them, and
    /// the items of their open streams, wait until they are heard again or cut.
    pub silenced: Mutex<BTreeMap<(usize, usize), Instant>>,
    /// Woken when a silence ends.
    pub heard: tokio::sync::Notify,
    pub flaky: AtomicBool,
    pub link_rngs: Vec<Mutex<StdRng>>,
    pub dials: Vec<Mutex<Vec<Dial>>>,
    /// Per peer, when (virtual ms) it opened each of its sessions.
    pub opened: Vec<Mutex<Vec<u64>>>,
    /// Per peer, the full syncs it asked for.
    pub full_syncs: Vec<AtomicU64>,
    /// Per hub, the sessions it opened for a peer that insisted.
    pub insisted: Vec<AtomicU64>,
    pub push_gaps: Mutex<Vec<String>>,
    pub figures: Figures,
    /// Everything that crossed the network, in order, with its virtual time: two runs of one
    /// seed must produce the same trace.
    pub trace: Mutex<Vec<String>>,
}

impl Net {
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Adds `event` to the trace, stamped with the virtual time.
    pub fn record(&self, event: std::fmt::Arguments<'_>) {
        let line = format!("{} {event}", self.origin.elapsed().as_micros());
        self.trace.lock().unwrap().push(line);
    }

    pub fn hub(&self, index: usize) -> Option<Arc<Hub>> {
        self.hubs[index].lock().unwrap().clone()
    }

    pub fn cut_token(&self, peer: usize, hub: usize) -> CancellationToken {
        let mut cuts = self.cuts.lock().unwrap();
        let token = cuts.entry((peer, hub)).or_default();
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        token.clone()
    }

    pub fn cut(&self, peer: usize, hub: usize) {
        if let Some(token) = self.cuts.lock().unwrap().get(&(peer, hub)) {
            token.cancel();
        }
    }

    pub fn cut_hub(&self, hub: usize) {
        for ((_, h), token) in self.cuts.lock().unwrap().iter() {
            if *h == hub {
                token.cancel();
            }
        }
    }

    /// The link (peer, hub) goes silent: nothing is refused or reset, nothing arrives.
    pub fn silence(&self, peer: usize, hub: usize) {
        self.silenced
            .lock()
            .unwrap()
            .entry((peer, hub))
            .or_insert_with(Instant::now);
    }

    /// The link (peer, hub) passes bytes again (all of them, with `None`).
    pub fn hear(&self, link: Option<(usize, usize)>) {
        let mut silenced = self.silenced.lock().unwrap();
        match link {
            Some(link) => {
                silenced.remove(&link);
            }
            None => silenced.clear(),
        }
        self.heard.notify_waiters();
    }

    /// Waits while the link (peer, hub) is silent; fails when it is cut meanwhile.
    pub async fn until_heard(
        &self,
        peer: usize,
        hub: usize,
        cut: &CancellationToken,
    ) -> Result<(), LinkError> {
        loop {
            let heard = self.heard.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            if !self.silenced.lock().unwrap().contains_key(&(peer, hub)) {
                return Ok(());
            }
            tokio::select! {
                biased;
                () = cut.cancelled() => return Err(unavailable("connection reset (link cut)")),
                () = heard => {}
            }
        }
    }

    pub fn reachable(&self, peer: usize, hub: usize) -> bool {
        !self.partitioned.lock().unwrap().contains(&(peer, hub)) && self.hub(hub).is_some()
    }
}

pub fn unavailable(message: &str) -> LinkError {
    LinkError::new(ErrorCode::Unavailable, message)
}

/// A peer's link to one hub through the simulated network.
pub struct SimLink {
    pub net: Arc<Net>,
    pub peer: usize,
    pub hub: usize,
    pub inner: LocalLink,
    pub cut: CancellationToken,
}

pub enum Fault {
    None,
    Drop,
    Delay(Duration),
    Stall,
}

impl SimLink {
    /// Every call passes here first: a cut link fails, a flaky one may drop, delay or stall.
    pub async fn gate(&self, call: &str) -> Result<(), LinkError> {
        self.net
            .record(format_args!("p{} h{} {call}", self.peer, self.hub));
        if self.cut.is_cancelled() || !self.net.reachable(self.peer, self.hub) {
            return Err(unavailable("connection reset (link cut)"));
        }
        let fault = if self.net.flaky.load(Ordering::Relaxed) {
            let mut rng = self.net.link_rngs[self.peer].lock().unwrap();
            let roll: f64 = rng.random();
            if roll < 0.01 {
                Fault::Drop
            } else if roll < 0.03 {
                Fault::Delay(Duration::from_millis(rng.random_range(10..2_000)))
            } else if roll < 0.032 {
                Fault::Stall
            } else {
                Fault::None
            }
        } else {
            Fault::None
        };
        let figures = &self.net.figures;
        match fault {
            Fault::None => {}
            Fault::Drop => {
                figures.drops.fetch_add(1, Ordering::Relaxed);
                return Err(unavailable("connection reset (dropped)"));
            }
            Fault::Delay(d) => {
                figures.delays.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
            }
            Fault::Stall => {
                figures.stalls.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    biased;
                    () = tokio::time::sleep(STALL) => {}
                    () = self.cut.cancelled() => {}
                }
                return Err(LinkError::new(ErrorCode::Timeout, "stalled"));
            }
        }
        // A silent link holds the call until it is heard again (the peer's deadline ends it).
        self.net.until_heard(self.peer, self.hub, &self.cut).await?;
        if self.cut.is_cancelled() {
            return Err(unavailable("connection reset (link cut)"));
        }
        Ok(())
    }

    /// A sync stream on a flaky link now and then delivers an entry whose document was
    /// damaged on the way (as a buggy proxy or a bad disk on the hub would): a peer must refuse
    /// it by its chain, never store it.
    pub fn damaging(&self, stream: LinkStream<SyncedEntry>) -> LinkStream<SyncedEntry> {
        let net = Arc::clone(&self.net);
        let peer = self.peer;
        Box::pin(stream.map(move |item| {
            let mut synced = item?;
            let entry = &mut synced.entry;
            if net.flaky.load(Ordering::Relaxed)
                && net.link_rngs[peer].lock().unwrap().random_bool(0.002)
            {
                net.figures.damaged.fetch_add(1, Ordering::Relaxed);
                let mut document = entry.document.to_vec();
                document.push(b' ');
                document.insert(0, b' ');
                entry.document = document.into();
                entry.checksum = format!("{}0", &entry.checksum[1..]);
            }
            Ok(synced)
        }))
    }

    /// Ends `stream` with an error when the link is cut; holds its items while the link is
    /// silent (mid-stream too).
    pub fn cuttable<T: Send + 'static>(&self, stream: LinkStream<T>) -> LinkStream<T> {
        let cut = self.cut.clone();
        let (net, peer, hub) = (Arc::clone(&self.net), self.peer, self.hub);
        Box::pin(futures::stream::unfold(
            (stream, cut, false),
            move |(mut stream, cut, done)| {
                let net = Arc::clone(&net);
                async move {
                    if done {
                        return None;
                    }
                    let reset = || Err(unavailable("stream reset (link cut)"));
                    let item = tokio::select! {
                        biased;
                        () = cut.cancelled() => return Some((reset(), (stream, cut, true))),
                        item = stream.next() => item?,
                    };
                    if net.until_heard(peer, hub, &cut).await.is_err() {
                        return Some((reset(), (stream, cut, true)));
                    }
                    Some((item, (stream, cut, false)))
                }
            },
        ))
    }
}

#[async_trait]
impl HubLink for SimLink {
    async fn open_session(&self, request: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
        self.gate("open_session").await?;
        let grant = self.inner.open_session(request).await?;
        self.net.opened[self.peer]
            .lock()
            .unwrap()
            .push(self.net.now_ms());
        if request.insist {
            self.net.insisted[self.hub].fetch_add(1, Ordering::Relaxed);
        }
        Ok(grant)
    }

    async fn close_session(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        goodbye: Goodbye,
        now_ms: i64,
    ) -> Result<(), LinkError> {
        self.gate("close_session").await?;
        self.inner
            .close_session(peer_id, session_id, goodbye, now_ms)
            .await
    }

    async fn status(&self, peer_id: &PeerId) -> Result<HubStatus, LinkError> {
        self.gate("status").await?;
        self.inner.status(peer_id).await
    }

    async fn full_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        self.gate("full_sync").await?;
        self.net.full_syncs[self.peer].fetch_add(1, Ordering::Relaxed);
        let stream = self.inner.full_sync(peer_id, session_id, max).await?;
        Ok(self.cuttable(self.damaging(stream)))
    }

    async fn incremental_sync(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        self.gate("incremental_sync").await?;
        let stream = self
            .inner
            .incremental_sync(peer_id, session_id, after, max)
            .await?;
        Ok(self.cuttable(self.damaging(stream)))
    }

    async fn subscribe(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError> {
        self.gate("subscribe").await?;
        let stream = self
            .inner
            .subscribe(peer_id, session_id, filters, resume_from)
            .await?;
        // Sequence numbers of one stream go 1, 2, 3, … without a gap.
        let net = Arc::clone(&self.net);
        let (peer, hub) = (self.peer, self.hub);
        let mut last = 0i64;
        let checked = stream.inspect(move |item| {
            if let Ok(n) = item {
                net.record(format_args!(
                    "p{peer} h{hub} notified #{} v{}",
                    n.sequence_number, n.version
                ));
                net.figures.notifications.fetch_add(1, Ordering::Relaxed);
                if n.sequence_number != last + 1 {
                    net.push_gaps.lock().unwrap().push(format!(
                        "peer {peer} hub {hub}: sequence {} after {last}",
                        n.sequence_number
                    ));
                }
                last = n.sequence_number;
            }
        });
        Ok(self.cuttable(Box::pin(checked)))
    }

    async fn peer_sync_view(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<PeerSyncView, LinkError> {
        self.gate("checkpoint").await?;
        self.inner.peer_sync_view(peer_id, session_id).await
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
        self.gate("heartbeat").await?;
        self.inner.heartbeat(heartbeat).await
    }

    async fn heartbeat_status(
        &self,
        peer_id: &PeerId,
        session_id: &SessionId,
    ) -> Result<HeartbeatReport, LinkError> {
        self.gate("heartbeat_status").await?;
        self.inner.heartbeat_status(peer_id, session_id).await
    }
}

/// One peer's dialer: URLs `http://hub-N.sim:50051` name hub N.
pub struct SimDialer {
    pub net: Arc<Net>,
    pub peer: usize,
    pub run: u64,
}

pub fn hub_url(index: usize) -> String {
    format!("http://hub-{index}.sim:50051")
}

#[async_trait]
impl Dialer for SimDialer {
    async fn dial(&self, url: &str) -> Result<Arc<dyn HubLink>, LinkError> {
        let hub = (0..self.net.hubs.len())
            .find(|i| hub_url(*i) == url)
            .expect("a configured hub");
        let reachable = self.net.reachable(self.peer, hub);
        // A dial over a silent link is not refused: nothing answers until the link is heard
        // (the peer's connect timeout ends it).
        let silent = self
            .net
            .silenced
            .lock()
            .unwrap()
            .contains_key(&(self.peer, hub));
        self.net.record(format_args!(
            "p{} run {} dials h{hub}: {}",
            self.peer,
            self.run,
            match (silent, reachable) {
                (true, _) => "silent",
                (false, true) => "open",
                (false, false) => "refused",
            }
        ));
        self.net.dials[self.peer].lock().unwrap().push(Dial {
            run: self.run,
            hub,
            at_ms: self.net.now_ms(),
            refused: !reachable && !silent,
        });
        let cut = self.net.cut_token(self.peer, hub);
        self.net.until_heard(self.peer, hub, &cut).await?;
        let reachable = self.net.reachable(self.peer, hub);
        let Some(target) = self.net.hub(hub).filter(|_| reachable) else {
            self.net
                .figures
                .refused_dials
                .fetch_add(1, Ordering::Relaxed);
            return Err(unavailable("connection refused"));
        };
        Ok(Arc::new(SimLink {
            net: Arc::clone(&self.net),
            peer: self.peer,
            hub,
            inner: LocalLink::new(target),
            cut,
        }))
    }
}

impl Net {
    /// A network of `HUBS` hubs (all down until started) and `peers` peers whose link faults
    /// are drawn from generators seeded from `seed`.
    pub fn new(seed: u64, origin: Instant, peers: usize) -> Self {
        Self::serving(seed, origin, peers, HUBS)
    }

    /// [`Net::new`] with `served` nodes that serve peers: the `HUBS` hubs first, then relays
    /// (relay `r` is node `HUBS + r`, at [`hub_url`] of that index).
    pub fn serving(seed: u64, origin: Instant, peers: usize, served: usize) -> Self {
        use rand::SeedableRng;
        Self {
            origin,
            hubs: (0..served).map(|_| Mutex::new(None)).collect(),
            partitioned: Mutex::default(),
            cuts: Mutex::default(),
            silenced: Mutex::default(),
            heard: tokio::sync::Notify::new(),
            flaky: AtomicBool::new(true),
            link_rngs: (0..peers)
                .map(|p| Mutex::new(StdRng::seed_from_u64(seed ^ ((p as u64 + 1) << 20))))
                .collect(),
            dials: (0..peers).map(|_| Mutex::default()).collect(),
            opened: (0..peers).map(|_| Mutex::default()).collect(),
            full_syncs: (0..peers).map(|_| AtomicU64::new(0)).collect(),
            insisted: (0..served).map(|_| AtomicU64::new(0)).collect(),
            push_gaps: Mutex::default(),
            figures: Figures::default(),
            trace: Mutex::default(),
        }
    }
}
