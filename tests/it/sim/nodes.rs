//! The nodes of the simulation: hubs that crash and restart on their shared store, peers that
//! crash and restart on their replicas.

use super::crash_point::CrashPoint;
use super::net::{Net, SimClock, SimDialer, hub_url};
use super::{BACKOFF_INITIAL, BACKOFF_MAX, HUBS};
use sorcha_peer::clock::SharedClock;
use sorcha_peer::config::{Config, HubConfig, Rate};
use sorcha_peer::hub::Hub;
use sorcha_peer::metrics::Metrics;
use sorcha_peer::peer::alerts::Alert;
use sorcha_peer::peer::{Peer, PeerParts, PeerSettings};
use sorcha_peer::register::{Register, RegisterOptions};
use sorcha_peer::store::embedded::{EmbeddedStore, Execution};
use sorcha_peer::store::{RegisterStore, SyncProgress};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub fn hub_config() -> HubConfig {
    let generous = Rate {
        every: Duration::from_millis(1),
        burst: 10_000,
    };
    let mut config = HubConfig {
        heartbeat_interval: Duration::from_secs(10),
        heartbeat_timeout: Duration::from_secs(25),
        session_timeout: Duration::from_secs(30),
        session_grace: Duration::from_secs(60),
        sync_interval: Duration::from_secs(30),
        ..HubConfig::default()
    };
    config.rate_limits.connect = generous;
    config.rate_limits.full_sync = generous;
    config.rate_limits.heartbeat = generous;
    config
}

pub fn peer_config() -> Config {
    let mut config = Config {
        hubs: (0..HUBS).map(hub_url).collect(),
        ..Config::default()
    };
    config.peer.backoff_initial = BACKOFF_INITIAL;
    config.peer.backoff_max = BACKOFF_MAX;
    config.peer.attempts_per_hub = 3;
    config.peer.connect_timeout = Duration::from_secs(5);
    // Heartbeats are what notices a silent link mid-sync: a stalled sync entry would wait a
    // minute.
    config.peer.heartbeat_interval = Duration::from_secs(5);
    config.peer.heartbeat_timeout = Duration::from_secs(5);
    config.peer.request_timeout = Duration::from_secs(60);
    config.peer.resubscribe_delay = Duration::from_secs(2);
    config
}

/// A running hub and what stops it.
pub struct HubRun {
    pub stop: CancellationToken,
}

pub async fn start_hub(
    net: &Arc<Net>,
    index: usize,
    store: &Arc<EmbeddedStore>,
    origin: Instant,
    config: HubConfig,
) -> HubRun {
    let clock: SharedClock = Arc::new(SimClock { origin, skew_ms: 0 });
    let store: Arc<dyn RegisterStore> = Arc::clone(store) as _;
    let metrics = Arc::new(Metrics::default());
    let register = Register::open(
        Arc::clone(&store),
        Arc::clone(&clock),
        RegisterOptions {
            seed_genesis: true,
            metrics: Arc::clone(&metrics),
            ..RegisterOptions::default()
        },
    )
    .await
    .expect("hub register opens");
    let stop = CancellationToken::new();
    let hub = Hub::new(
        Arc::clone(&register),
        metrics,
        config,
        format!("hub-{index}"),
        clock,
        stop.clone(),
        // The same key on every start, as a hub's key file gives it (peers pin it).
        Arc::new(
            sorcha_peer::keys::SigningKey::from_seed(&format!("hub-{index}"), &[index as u8; 32])
                .unwrap(),
        ),
    );
    // Housekeeping runs the fleet record too (shared when the store shares it).
    tokio::spawn(Arc::clone(&hub).run_housekeeping());
    // The shared store's tailer: appends through the other hubs move this hub's head.
    let tail_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                () = tail_stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Ok(Some(head)) = store.head().await {
                        register.announce(head.version);
                    }
                }
            }
        }
    });
    *net.hubs[index].lock().unwrap() = Some(hub);
    HubRun { stop }
}

/// Makes the running peer `run` a relay: a hub over its replica that hands on its hubs'
/// checkpoints, served as node `index` of the network (URL [`hub_url`]`(index)`).
pub fn start_relay(net: &Arc<Net>, index: usize, run: &PeerRun, origin: Instant) -> HubRun {
    let stop = CancellationToken::new();
    let peer = Arc::clone(&run.peer);
    let hub = Hub::vouched_by(
        Arc::clone(peer.register()),
        Arc::new(Metrics::default()),
        hub_config(),
        peer.node_id().to_string(),
        Arc::new(SimClock { origin, skew_ms: 0 }),
        stop.clone(),
        sorcha_peer::hub::Voucher::Forwards(peer.clone() as Arc<dyn sorcha_peer::hub::Upstream>),
    );
    let downstream: Arc<dyn sorcha_peer::peer::Downstream> = Arc::clone(&hub) as _;
    peer.report_downstream(&downstream);
    tokio::spawn(Arc::clone(&hub).run_housekeeping());
    *net.hubs[index].lock().unwrap() = Some(hub);
    HubRun { stop }
}

pub fn crash_hub(net: &Net, index: usize, run: &mut Option<HubRun>) {
    if let Some(run) = run.take() {
        *net.hubs[index].lock().unwrap() = None;
        run.stop.cancel();
        net.cut_hub(index);
    }
}

/// A running peer: what it is, what runs it and where its replica lives.
pub struct PeerRun {
    pub peer: Arc<Peer>,
    /// Its replica's store, whose crash point the driver arms.
    pub store: Arc<CrashPoint>,
    task: JoinHandle<()>,
    stop: CancellationToken,
    pub alerts: broadcast::Receiver<Alert>,
}

/// What every peer of one simulation shares.
pub struct Peers {
    pub net: Arc<Net>,
    pub config: Arc<Config>,
    pub origin: Instant,
    pub seed: u64,
}

/// Every tenth peer runs three minutes ahead, every tenth from the seventh 90 s behind.
fn skew_ms(peer: usize) -> i64 {
    match peer % 10 {
        3 => 180_000,
        7 => -90_000,
        _ => 0,
    }
}

impl Peers {
    /// Starts run `run` of peer `index` on the replica in `dir` (new or left by a crashed
    /// run), first checking what the replica holds.
    pub async fn start(
        &self,
        index: usize,
        run: u64,
        dir: &Path,
        failures: &mut Vec<String>,
    ) -> PeerRun {
        start_peer(self, index, run, dir, failures).await
    }
}

async fn start_peer(
    peers: &Peers,
    index: usize,
    run: u64,
    dir: &Path,
    failures: &mut Vec<String>,
) -> PeerRun {
    let (net, config, origin) = (&peers.net, &peers.config, peers.origin);
    let skew_ms = skew_ms(index);
    let jitter_seed = peers.seed.wrapping_mul(1_000_003) ^ ((index as u64) << 32) ^ run;
    let clock: SharedClock = Arc::new(SimClock { origin, skew_ms });
    // A crashed run's store holds the replica's lock until its last task has let go of it.
    let mut store = None;
    for _ in 0..200 {
        match EmbeddedStore::open_with(dir, Execution::Inline) {
            Ok(s) => {
                store = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let crash_point = Arc::new(CrashPoint::new(store.expect("the replica reopens")));
    let store: Arc<dyn RegisterStore> = Arc::clone(&crash_point) as _;
    let metrics = Arc::new(Metrics::default());
    let register = Register::open(
        store,
        Arc::clone(&clock),
        RegisterOptions {
            seed_genesis: false,
            metrics: Arc::clone(&metrics),
            ..RegisterOptions::default()
        },
    )
    .await
    .expect("the replica opens and verifies");
    // What a crash left behind, before the peer gets to touch it.
    let store = register.store();
    let progress = store
        .sync_progress()
        .await
        .expect("the sync progress reads");
    let head = store.head().await.expect("the head reads");
    super::checks::progress_behind_head(
        index,
        progress.as_ref(),
        head.as_ref().map_or(0, |h| h.version),
        head.as_ref().map(|h| h.chain_hash.as_str()),
        failures,
    );
    let stop = CancellationToken::new();
    let (peer, task) = Peer::start(
        PeerParts {
            register,
            // Its data directory is its replica's (pinned hub keys, last checkpoint).
            settings: PeerSettings {
                data_dir: dir.to_owned(),
                ..PeerSettings::from(config.as_ref())
            },
            node_id: crate::support::pid(&format!("peer-{index}")),
            clock,
            dialer: Arc::new(SimDialer {
                net: Arc::clone(net),
                peer: index,
                run,
            }),
            metrics,
        },
        stop.clone(),
        Some(jitter_seed),
    );
    let alerts = peer.alerts();
    PeerRun {
        peer,
        store: crash_point,
        task,
        stop,
        alerts,
    }
}

impl PeerRun {
    /// Kills the peer mid-whatever (its task is aborted, nothing says goodbye) and waits until
    /// the task is gone; returns the alerts it raised before, and how many were lost.
    pub async fn crash(mut self) -> (Vec<Alert>, u64) {
        self.task.abort();
        let _ = self.task.await;
        self.stop.cancel();
        drain(&mut self.alerts)
    }

    /// Stops the peer as an operator would.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Its replica's newest stored sync progress, next to the replica's head.
    pub async fn progress_and_head(&self) -> (Option<SyncProgress>, i64, Option<String>) {
        let store = self.peer.register().store();
        let progress = store
            .sync_progress()
            .await
            .expect("the sync progress reads");
        let head = store.head().await.expect("the head reads");
        (
            progress,
            head.as_ref().map_or(0, |h| h.version),
            head.map(|h| h.chain_hash),
        )
    }
}

/// Every alert waiting on `feed`, and how many were lost because the feed overflowed.
pub fn drain(feed: &mut broadcast::Receiver<Alert>) -> (Vec<Alert>, u64) {
    let (mut alerts, mut lost) = (Vec::new(), 0);
    loop {
        match feed.try_recv() {
            Ok(alert) => alerts.push(alert),
            Err(broadcast::error::TryRecvError::Lagged(n)) => lost += n,
            Err(_) => return (alerts, lost),
        }
    }
}

/// How long a peer may stay in a session with a hub whose link went silent: the heartbeat
/// that finds it (one interval), two missed answers, and the watcher's own sampling.
pub fn silent_hub_bound(config: &Config) -> Duration {
    config.peer.heartbeat_interval + 2 * config.peer.heartbeat_timeout + Duration::from_secs(1)
}
