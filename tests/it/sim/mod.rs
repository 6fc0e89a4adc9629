//! A seeded simulation of a whole network in one process on tokio's paused clock: 3 hubs on one
//! shared store (as hubs share one MongoDB database) and 50 peers, each on its own embedded
//! replica, talking through an in-process dialer whose links drop, delay, stall, cut and damage
//! entries; hubs crash and restart on their store, peers on their replicas; some peers' clocks
//! run minutes off. After `FAULT_SECONDS` of virtual time the network heals and the invariants
//! are checked: no peer head ever went backwards (across restarts too); every peer holds every
//! acknowledged write with a valid chain; a replica's checkpoint never runs ahead of it; push
//! sequences are gap-free per stream; failover follows the priority order with backoff in
//! bounds; each isolation is entered and left with exactly one alert each.
//!
//! Every random choice is drawn from the seed: the fault schedule and publishes from the
//! driver's generator, each peer's link faults and backoff jitter from its own. The test runs
//! the fixed seeds plus one random seed, printed; `SORCHA_SIM_SEED=N cargo test sim` runs seed N
//! alone, and runs it twice more to check it replays exactly (docs/architecture.md says what
//! keeps a run deterministic). `net` is the network, `nodes` starts and crashes hubs and peers, `checks` holds the
//! invariants.

mod checks;
mod crash_point;
mod fleet;
mod net;
mod nodes;

use net::Net;
use nodes::{
    HubRun, PeerRun, Peers, crash_hub, drain, hub_config, peer_config, silent_hub_bound, start_hub,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sorcha_peer::peer::Peer;
use sorcha_peer::peer::state::ConnectionState;
use sorcha_peer::register::{Publication, WriteOptions};
use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::embedded::{EmbeddedStore, Execution};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HUBS: usize = 3;
const PEERS: usize = 50;
/// Virtual seconds of faults and publishes before the network heals.
const FAULT_SECONDS: u64 = 1_000;
/// Virtual seconds the healed network gets to converge.
const CONVERGE_SECONDS: u64 = 600;
/// Seeds every run of the test command checks.
const FIXED_SEEDS: [u64; 3] = [1, 7, 20_261_202];

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Seconds a crash point stays armed before the peer is killed wherever it is.
const ARMED_FOR: u64 = 20;
/// How long a stalled call hangs before its caller sees a timeout.
const STALL: Duration = Duration::from_secs(40);

/// What a run saw, for the checks and the figures.
struct Outcome {
    acknowledged: usize,
    failures: Vec<String>,
    summary: String,
    /// What crossed the network, in order (see [`Net::trace`]).
    trace: Vec<String>,
}

/// The peers: the running one of each slot (none while crashed), shared with the head watcher.
type Running = Arc<Mutex<Vec<Option<Arc<Peer>>>>>;

/// Watches every running peer every 250 ms: its head must never go backwards, across
/// restarts included, and it must not stay in a session with a hub whose link went silent
/// for longer than the heartbeats take to give the hub up ([`silent_hub_bound`]), whatever it
/// was doing (a sync in flight included).
fn watch_heads(
    running: Running,
    net: Arc<Net>,
    stop: CancellationToken,
) -> Arc<Mutex<Vec<String>>> {
    let regressions = Arc::new(Mutex::new(Vec::new()));
    let found = Arc::clone(&regressions);
    let bound = silent_hub_bound(&peer_config());
    tokio::spawn(async move {
        let mut reported = BTreeSet::new();
        let mut highest = vec![0i64; PEERS];
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers = running.lock().unwrap().clone();
            for (p, peer) in peers.iter().enumerate() {
                let Some(peer) = peer else { continue };
                let head = peer.register().head_version();
                if head < highest[p] {
                    found
                        .lock()
                        .unwrap()
                        .push(format!("peer {p}: head {head} after {}", highest[p]));
                }
                highest[p] = highest[p].max(head);
                let state = peer.state();
                let Some(h) = state.current.filter(|_| state.state.in_session()) else {
                    continue;
                };
                let since = net.silenced.lock().unwrap().get(&(p, h)).copied();
                if let Some(since) = since
                    && since.elapsed() > bound
                    && reported.insert((p, h, since))
                {
                    found.lock().unwrap().push(format!(
                        "peer {p}: still in a session with hub {h} {:?} after its link went silent (bound {bound:?})",
                        since.elapsed()
                    ));
                }
            }
        }
    });
    regressions
}

/// One simulated network, driven by `seed`.
#[allow(clippy::too_many_lines)] // one schedule, read top to bottom
async fn simulate(seed: u64) -> Outcome {
    let started = std::time::Instant::now();
    let origin = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let scratch = std::path::Path::new("/dev/shm");
    let tempdir = || {
        if scratch.is_dir() {
            tempfile::tempdir_in(scratch).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        }
    };
    let net = Arc::new(Net::new(seed, origin, PEERS));
    let figures = &net.figures;
    let mut failures = Vec::new();

    let hub_dir = tempdir();
    let hub_store = Arc::new(EmbeddedStore::open_with(hub_dir.path(), Execution::Inline).unwrap());
    let mut hub_runs: Vec<Option<HubRun>> = Vec::new();
    for i in 0..HUBS {
        hub_runs.push(Some(
            start_hub(&net, i, &hub_store, origin, hub_config()).await,
        ));
    }
    let mut hub_back_at: Vec<Option<u64>> = vec![None; HUBS];

    let peers_of = Peers {
        net: Arc::clone(&net),
        config: Arc::new(peer_config()),
        origin,
        seed,
    };
    let peer_dirs: Vec<_> = (0..PEERS).map(|_| tempdir()).collect();
    let mut peer_runs: Vec<Option<PeerRun>> = Vec::new();
    for (p, dir) in peer_dirs.iter().enumerate() {
        let run = peers_of.start(p, 0, dir.path(), &mut failures).await;
        peer_runs.push(Some(run));
    }
    let running: Running = Arc::new(Mutex::new(
        peer_runs
            .iter()
            .map(|r| r.as_ref().map(|r| Arc::clone(&r.peer)))
            .collect(),
    ));
    let mut peer_back_at: Vec<Option<u64>> = vec![None; PEERS];
    let mut peer_restarts = vec![0u64; PEERS];
    let mut isolation: Vec<checks::Isolation> = (0..PEERS).map(|_| Default::default()).collect();
    let stop_watch = CancellationToken::new();
    let regressions = watch_heads(Arc::clone(&running), Arc::clone(&net), stop_watch.clone());
    let peer_crashes = AtomicU64::new(0);
    let crashes_at_write = AtomicU64::new(0);
    // Per peer: the crash point is armed until this second, then down for that many seconds.
    let mut armed: Vec<Option<(u64, u64)>> = vec![None; PEERS];

    // Faults and publishes, one decision round per virtual second.
    let mut acknowledged: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut heal_partition: Vec<(u64, usize, usize)> = Vec::new();
    let mut heal_silence: Vec<(u64, usize, usize)> = Vec::new();
    let mut blueprints = 0u64;
    for second in 0..FAULT_SECONDS {
        for (i, at) in hub_back_at.iter_mut().enumerate() {
            if at.is_some_and(|t| t <= second) {
                *at = None;
                hub_runs[i] = Some(start_hub(&net, i, &hub_store, origin, hub_config()).await);
            }
        }
        for p in 0..PEERS {
            if peer_back_at[p].is_some_and(|t| t <= second) {
                peer_back_at[p] = None;
                peer_restarts[p] += 1;
                let run = peers_of
                    .start(p, peer_restarts[p], peer_dirs[p].path(), &mut failures)
                    .await;
                running.lock().unwrap()[p] = Some(Arc::clone(&run.peer));
                peer_runs[p] = Some(run);
            }
        }
        heal_silence.retain(|(until, p, h)| {
            if *until <= second {
                net.hear(Some((*p, *h)));
                false
            } else {
                true
            }
        });
        heal_partition.retain(|(until, p, h)| {
            if *until <= second {
                net.partitioned.lock().unwrap().remove(&(*p, *h));
                false
            } else {
                true
            }
        });
        let roll: f64 = rng.random();
        if roll < 0.015 {
            let up: Vec<usize> = (0..HUBS).filter(|i| hub_runs[*i].is_some()).collect();
            if !up.is_empty() {
                let i = up[rng.random_range(0..up.len())];
                crash_hub(&net, i, &mut hub_runs[i]);
                hub_back_at[i] = Some(second + rng.random_range(5..60));
                figures.hub_crashes.fetch_add(1, Ordering::Relaxed);
            }
        } else if roll < 0.018 {
            // Every hub at once: every peer goes isolated and must come back.
            let back = second + rng.random_range(20..90);
            for (i, run) in hub_runs.iter_mut().enumerate() {
                if run.is_some() {
                    crash_hub(&net, i, run);
                    hub_back_at[i] = Some(back);
                    figures.hub_crashes.fetch_add(1, Ordering::Relaxed);
                }
            }
            figures.outages.fetch_add(1, Ordering::Relaxed);
        } else if roll < 0.068 {
            let p = rng.random_range(0..PEERS);
            let h = rng.random_range(0..HUBS);
            let until = second + rng.random_range(5..120);
            if rng.random_bool(0.5) {
                // Silent: the link stays open and passes nothing, mid-stream too.
                net.silence(p, h);
                heal_silence.push((until, p, h));
                figures.silences.fetch_add(1, Ordering::Relaxed);
            } else {
                net.partitioned.lock().unwrap().insert((p, h));
                net.cut(p, h);
                heal_partition.push((until, p, h));
                figures.partitions.fetch_add(1, Ordering::Relaxed);
            }
        } else if roll < 0.078 {
            let p = rng.random_range(0..PEERS);
            let until = second + rng.random_range(30..200);
            for h in 0..HUBS {
                net.partitioned.lock().unwrap().insert((p, h));
                net.cut(p, h);
                heal_partition.push((until, p, h));
            }
            figures.isolations.fetch_add(1, Ordering::Relaxed);
        }
        // A publish (or an update of an earlier blueprint) through a random hub that is up.
        if rng.random_bool(0.15) {
            let up: Vec<usize> = (0..HUBS).filter(|i| hub_runs[*i].is_some()).collect();
            if !up.is_empty() {
                let hub_index = up[rng.random_range(0..up.len())];
                let hub = net.hub(hub_index).unwrap();
                let update = blueprints > 0 && rng.random_bool(0.25);
                let id = if update {
                    format!("sim-{}", rng.random_range(0..blueprints))
                } else {
                    blueprints += 1;
                    format!("sim-{}", blueprints - 1)
                };
                let publication_id = id.clone();
                let publication = Publication {
                    blueprint_id: id,
                    document: serde_json::json!({"second": second, "seed": seed}),
                    metadata: BTreeMap::new(),
                    publication_transaction_id: None,
                    signature: None,
                };
                let register = hub.register();
                let options = WriteOptions::default();
                let written = if update {
                    register.update(publication, "sim", &options).await
                } else {
                    register.publish(publication, "sim", &options).await
                };
                net.record(format_args!(
                    "publish {} via h{}: {:?}",
                    publication_id,
                    hub_index,
                    written
                        .as_ref()
                        .map(|w| w.entry.version)
                        .map_err(ToString::to_string)
                ));
                if let Ok(w) = written {
                    acknowledged
                        .insert(w.entry.version, (w.entry.blueprint_id, w.entry.chain_hash));
                }
            }
        }
        // A peer dies right after one of its sync writes lands — preferably one that is
        // catching up now — or, if it writes nothing within `ARMED_FOR`, wherever it is then;
        // it comes back on its replica later.
        if (0.078..0.093).contains(&roll) {
            let newest = net
                .hubs
                .iter()
                .filter_map(|h| {
                    h.lock()
                        .unwrap()
                        .as_ref()
                        .map(|h| h.register().head_version())
                })
                .max()
                .unwrap_or(0);
            let behind: Vec<usize> = (0..PEERS)
                .filter(|p| {
                    peer_runs[*p]
                        .as_ref()
                        .is_some_and(|r| r.peer.register().head_version() < newest)
                })
                .collect();
            let p = if behind.is_empty() {
                rng.random_range(0..PEERS)
            } else {
                behind[rng.random_range(0..behind.len())]
            };
            if let Some(run) = &peer_runs[p]
                && armed[p].is_none()
            {
                run.store.arm();
                armed[p] = Some((second + ARMED_FOR, rng.random_range(1..30)));
            }
        }
        for p in 0..PEERS {
            let Some((until, down_for)) = armed[p] else {
                continue;
            };
            let hit = peer_runs[p]
                .as_ref()
                .is_some_and(|r| r.store.hit.is_cancelled());
            if hit || until <= second {
                armed[p] = None;
                if let Some(run) = peer_runs[p].take() {
                    running.lock().unwrap()[p] = None;
                    let (alerts, lost) = run.crash().await;
                    isolation[p].observe(p, &alerts, lost, &mut failures);
                    isolation[p].crashed();
                    peer_back_at[p] = Some(second + down_for);
                    peer_crashes.fetch_add(1, Ordering::Relaxed);
                    if hit {
                        crashes_at_write.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        for (p, run) in peer_runs.iter_mut().enumerate() {
            if let Some(run) = run {
                let (alerts, lost) = drain(&mut run.alerts);
                isolation[p].observe(p, &alerts, lost, &mut failures);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Heal: every hub and peer up, no partition, no flaky link, no crash point armed (a peer
    // that already hit its crash point is killed, and restarted below).
    for p in 0..PEERS {
        if armed[p].take().is_none() {
            continue;
        }
        let Some(run) = peer_runs[p].take() else {
            continue;
        };
        run.store.disarm();
        if run.store.hit.is_cancelled() {
            running.lock().unwrap()[p] = None;
            let (alerts, lost) = run.crash().await;
            isolation[p].observe(p, &alerts, lost, &mut failures);
            isolation[p].crashed();
            peer_crashes.fetch_add(1, Ordering::Relaxed);
            crashes_at_write.fetch_add(1, Ordering::Relaxed);
        } else {
            peer_runs[p] = Some(run);
        }
    }
    net.flaky.store(false, Ordering::Relaxed);
    net.partitioned.lock().unwrap().clear();
    net.hear(None);
    for (i, run) in hub_runs.iter_mut().enumerate() {
        if run.is_none() {
            *run = Some(start_hub(&net, i, &hub_store, origin, hub_config()).await);
        }
    }
    for p in 0..PEERS {
        if peer_runs[p].is_none() {
            peer_restarts[p] += 1;
            let run = peers_of
                .start(p, peer_restarts[p], peer_dirs[p].path(), &mut failures)
                .await;
            running.lock().unwrap()[p] = Some(Arc::clone(&run.peer));
            peer_runs[p] = Some(run);
        }
    }
    let peers: Vec<Arc<Peer>> = peer_runs
        .iter()
        .map(|r| Arc::clone(&r.as_ref().unwrap().peer))
        .collect();
    let head = hub_store.head().await.unwrap().unwrap();
    let settled = |p: &Arc<Peer>| {
        p.register().head_version() == head.version && p.state().state == ConnectionState::Connected
    };
    let mut converged_after = None;
    for second in 0..CONVERGE_SECONDS {
        if peers.iter().all(settled) {
            converged_after = Some(second);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if converged_after.is_none() {
        let behind: Vec<String> = peers
            .iter()
            .enumerate()
            .filter(|(_, p)| !settled(p))
            .map(|(i, p)| {
                let state = p.state().state;
                format!("peer {i} at {} ({state:?})", p.register().head_version())
            })
            .collect();
        failures.push(format!(
            "not converged on version {} within {CONVERGE_SECONDS} s: {}",
            head.version,
            behind.join(", ")
        ));
    }

    for (p, run) in peer_runs.iter_mut().enumerate() {
        let run = run.as_mut().unwrap();
        checks::replica(p, &run.peer, &acknowledged, &head.chain_hash, &mut failures).await;
        let (progress, version, hash) = run.progress_and_head().await;
        checks::progress_behind_head(
            p,
            progress.as_ref(),
            version,
            hash.as_deref(),
            &mut failures,
        );
        let (alerts, lost) = drain(&mut run.alerts);
        isolation[p].observe(p, &alerts, lost, &mut failures);
        isolation[p].finish(p, &mut failures);
        checks::failover(p, &net.dials[p].lock().unwrap(), &mut failures);
    }
    failures.extend(regressions.lock().unwrap().iter().cloned());
    failures.extend(net.push_gaps.lock().unwrap().iter().cloned());

    stop_watch.cancel();
    for run in peer_runs.iter().flatten() {
        run.stop();
    }
    for (i, run) in hub_runs.iter_mut().enumerate() {
        crash_hub(&net, i, run);
    }
    let trace = std::mem::take(&mut *net.trace.lock().unwrap());
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let summary = format!(
        "seed {seed}: {FAULT_SECONDS} virtual s of faults + {} s to converge; {} acknowledged \
         writes (head {}); {} hub crashes ({} total outages), {} peer crashes ({} right after a write), \
         {} partitions, {} silent links, \
         {} peer isolations ({} isolation alerts), {} dropped / {} delayed / {} stalled calls, \
         {} damaged entries, {} refused dials, {} notifications; trace of {} events, digest \
         {:016x}; {} ms real time",
        converged_after.map_or("no".to_owned(), |s| s.to_string()),
        acknowledged.len(),
        head.version,
        load(&figures.hub_crashes),
        load(&figures.outages),
        load(&peer_crashes),
        load(&crashes_at_write),
        load(&figures.partitions),
        load(&figures.silences),
        load(&figures.isolations),
        isolation.iter().map(|i| i.entered).sum::<u64>(),
        load(&figures.drops),
        load(&figures.delays),
        load(&figures.stalls),
        load(&figures.damaged),
        load(&figures.refused_dials),
        load(&figures.notifications),
        trace.len(),
        digest(&trace),
        started.elapsed().as_millis(),
    );
    Outcome {
        acknowledged: acknowledged.len(),
        failures,
        summary,
        trace,
    }
}

/// A fixed-key hash of the trace, to compare runs by their figures line.
fn digest(trace: &[String]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    trace.hash(&mut hasher);
    hasher.finish()
}

/// Runs `simulation` on one thread on tokio's paused clock.
fn paused<T>(simulation: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(simulation)
}

/// The seeds a test runs: `SORCHA_SIM_SEED` alone when set, else `fixed` and one random seed.
fn seeds(fixed: &[u64]) -> Vec<u64> {
    match std::env::var("SORCHA_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SORCHA_SIM_SEED is a number")],
        Err(_) => {
            let mut seeds = fixed.to_vec();
            seeds.push(rand::random::<u32>().into());
            seeds
        }
    }
}

fn run_seed(seed: u64) -> Outcome {
    paused(simulate(seed))
}

#[test]
fn sim_seeded_network_keeps_every_acknowledged_publish_through_faults() {
    let seeds = seeds(&FIXED_SEEDS);
    let mut failed = Vec::new();
    for seed in seeds {
        let outcome = run_seed(seed);
        // Past the harness's capture, so every run's log shows its seeds and figures.
        let _ = writeln!(std::io::stderr(), "{}", outcome.summary);
        assert!(outcome.acknowledged > 0, "seed {seed} published nothing");
        if !outcome.failures.is_empty() {
            let shown: Vec<_> = outcome.failures.iter().take(20).cloned().collect();
            failed.push(format!(
                "seed {seed} ({} failures; reproduce with SORCHA_SIM_SEED={seed} cargo test sim):\n  {}",
                outcome.failures.len(),
                shown.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A seed is a replay: the same seed twice gives the same trace, event for event, and the
/// same figures (the real time aside).
#[test]
fn sim_one_seed_replays_exactly() {
    let seed = std::env::var("SORCHA_SIM_SEED").map_or(20_261_202, |s| {
        s.parse().expect("SORCHA_SIM_SEED is a number")
    });
    let first = run_seed(seed);
    let second = run_seed(seed);
    let figures = |o: &Outcome| o.summary.rsplit_once("; ").unwrap().0.to_owned();
    if let Some(at) = (0..first.trace.len().max(second.trace.len()))
        .find(|i| first.trace.get(*i) != second.trace.get(*i))
    {
        let around = |t: &[String]| t[at.saturating_sub(3)..(at + 3).min(t.len())].join("\n    ");
        panic!(
            "seed {seed} diverged at event {at} of {} / {}:\n  first run:\n    {}\n  second run:\n    {}",
            first.trace.len(),
            second.trace.len(),
            around(&first.trace),
            around(&second.trace)
        );
    }
    assert_eq!(figures(&first), figures(&second));
    let _ = writeln!(std::io::stderr(), "replayed {}", second.summary);
}
