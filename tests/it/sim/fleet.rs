//! The fleet simulation: `FLEET_PEERS` peers on 3 hubs that share one store and its fleet
//! record (as hubs share a MongoDB database), on tokio's paused clock. Every tenth peer keeps
//! the seed's priority order, the rest spread (`peer.hubOrder = spread`); the links are clean,
//! the faults are the hubs': one at a time a hub is killed, drained and stopped, or brought
//! back, drawn from the seed, while publishes go on through the hubs that are up.
//!
//! Checked on every seed:
//! - **caps at every instant**: every `SAMPLE` of virtual time, no hub that is up and not
//!   draining grows while it holds more than its fair share of the fleet as it is at that
//!   instant — ceil(`hub.fairSharePercent` × sessions of those hubs ÷ those hubs), at least
//!   `hub.fairShareFloor` — except by peers that insisted (every hub had refused them); a
//!   hub a return or a drain left above its share may only shed;
//! - **convergence within `SETTLE_BOUND`** of the start and of each event: every peer in
//!   session with a hub that is up and not draining, holding the head, and every such hub at
//!   or below its share and at 60 % of the fair share or more;
//! - no peer opens more than two sessions for one event, and none does a full sync once the
//!   fleet has its replicas (a moved peer continues incrementally);
//! - at the end every peer holds every acknowledged write with a valid chain.
//!
//! `sim_fleet_with_caps_off_breaks_the_caps` runs a smaller fleet with the caps off — the
//! planted bug — and requires these checks to fail.

use super::checks;
use super::net::{Net, hub_url};
use super::nodes::{HubRun, PeerRun, Peers, crash_hub, hub_config, peer_config, start_hub};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sorcha_peer::config::{HubConfig, HubOrder};
use sorcha_peer::peer::state::ConnectionState;
use sorcha_peer::register::{Publication, WriteOptions};
use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::embedded::{EmbeddedStore, Execution};
use sorcha_peer::store::fleet::MemoryFleet;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HUBS: usize = super::HUBS;
/// The fleet the fixed seeds run.
const FLEET_PEERS: usize = 2_000;
/// Every this many peers, one keeps the priority order (n0 first).
const PRIORITY_EVERY: usize = 10;
/// How often the caps are checked (virtual).
const SAMPLE: Duration = Duration::from_millis(100);
/// Virtual seconds the fleet gets to settle after the start and after each event.
const SETTLE_BOUND: u64 = 30;
/// Events (kills, drains, returns) per seed.
const EVENTS: usize = 6;
/// The drain period of a drained hub.
const DRAIN_PERIOD: Duration = Duration::from_secs(10);
/// A settled fleet stays so this long before the next event.
const QUIET: u64 = 5;
/// A hub's share a settled fleet must give every hub that is up, in percent of the fair share.
const LEAST_SHARE_PERCENT: usize = 60;
/// The caps the hubs are meant to keep (the defaults), as the checks compute them whatever
/// the hubs are configured with.
const FAIR_SHARE_PERCENT: usize = 110;
const FAIR_SHARE_FLOOR: usize = 4;
/// Seeds every run of the test command checks: odd seeds have relays.
const FIXED_SEEDS: [u64; 2] = [3, 20_261_206];
/// In a seed with relays: the peers below each of the two relays.
const RELAY_PEERS: usize = 20;

/// One thing that happens to a hub.
#[derive(Debug, Clone, Copy)]
enum Event {
    Kill(usize),
    /// Drained over `DRAIN_PERIOD`, then stopped.
    Drain(usize),
    Return(usize),
}

/// What a run saw.
struct Outcome {
    failures: Vec<String>,
    summary: String,
}

/// The hubs that are up and not draining, each with its sessions (those it counts toward its
/// share), in hub order.
fn counting_hubs(net: &Net) -> Vec<(usize, usize)> {
    (0..HUBS)
        .filter_map(|i| net.hub(i).map(|h| (i, h)))
        .filter(|(_, h)| !h.is_draining())
        .map(|(i, h)| (i, h.staying_sessions()))
        .collect()
}

/// The fair share of each of `hubs` in a fleet of `fleet` peers: the cap
/// (`FAIR_SHARE_PERCENT` of the fleet ÷ the hubs, at least `FAIR_SHARE_FLOOR`) and the plain
/// average. The fleet counts every peer, those moving between hubs included: peers a killed
/// hub dropped are the survivors' to share.
fn shares(fleet: usize, hubs: &[(usize, usize)]) -> (usize, f64) {
    let n = hubs.len().max(1);
    let cap = (fleet * FAIR_SHARE_PERCENT)
        .div_ceil(100 * n)
        .max(FAIR_SHARE_FLOOR);
    (cap, fleet as f64 / n as f64)
}

/// Samples the hubs every `SAMPLE` until `stop`: a hub above its fair share must not grow
/// but by peers that insisted.
fn watch_caps(net: Arc<Net>, fleet: usize, stop: CancellationToken) -> Arc<Mutex<Vec<String>>> {
    let found = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::clone(&found);
    tokio::spawn(async move {
        let mut last = [0usize; HUBS];
        let mut insisted = [0u64; HUBS];
        let mut tick = tokio::time::interval(SAMPLE);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let hubs = counting_hubs(&net);
            let (cap, _) = shares(fleet, &hubs);
            let mut now = [0usize; HUBS];
            for (i, sessions) in &hubs {
                now[*i] = *sessions;
            }
            for i in 0..HUBS {
                let so_far = net.insisted[i].load(Ordering::Relaxed);
                let excused = usize::try_from(so_far - insisted[i]).unwrap_or(usize::MAX);
                insisted[i] = so_far;
                if now[i] > cap && now[i] > last[i] + excused {
                    failures.lock().unwrap().push(format!(
                        "at {} ms hub {i} grew from {} to {} sessions ({excused} insisted) \
                         above its fair share {cap} (hubs {hubs:?})",
                        net.now_ms(),
                        last[i],
                        now[i],
                    ));
                }
            }
            last = now;
        }
    });
    found
}

/// Where a settled fleet is not yet: the first reason, or `None` once every peer is in
/// session — with a counting hub, or below a relay with the node `served_by` names (a peer's
/// `current` counts its own hub list: a relay's downstream peers list the relay alone) — holding
/// `head`, and every counting hub holds its share of the `on_hubs` peers that sit on hubs.
fn unsettled(
    net: &Net,
    peers: &[PeerRun],
    served_by: &[Option<usize>],
    on_hubs: usize,
    head: i64,
) -> Option<String> {
    let hubs = counting_hubs(net);
    for (p, run) in peers.iter().enumerate() {
        let state = run.peer.state();
        let on = state
            .current
            .filter(|_| state.state == ConnectionState::Connected);
        let placed = match served_by[p] {
            None => on.is_some_and(|h| hubs.iter().any(|(i, _)| *i == h)),
            Some(_) => on == Some(0),
        };
        if !placed {
            return Some(format!("peer {p} is {:?} on {:?}", state.state, on));
        }
        let at = run.peer.register().head_version();
        if at != head {
            return Some(format!("peer {p} holds {at}, the head is {head}"));
        }
    }
    let (cap, fair) = shares(on_hubs, &hubs);
    let least = (fair * LEAST_SHARE_PERCENT as f64 / 100.0).floor() as usize;
    hubs.iter()
        .find(|(_, s)| *s > cap || *s < least)
        .map(|(i, s)| format!("hub {i} holds {s} sessions (share {least}..={cap}; {hubs:?})"))
}

/// Sessions each peer opened since `from` (virtual ms).
fn moves_since(net: &Net, from: u64) -> Vec<usize> {
    net.opened
        .iter()
        .map(|o| o.lock().unwrap().iter().filter(|at| **at >= from).count())
        .collect()
}

fn full_syncs(net: &Net) -> u64 {
    net.full_syncs
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}

/// The next event for hubs that are `up`: a hub down comes back; else one of the up hubs is
/// killed or drained (one always stays up).
fn next_event(rng: &mut StdRng, up: &[bool; HUBS]) -> Event {
    if let Some(down) = (0..HUBS).find(|i| !up[*i]) {
        return Event::Return(down);
    }
    let hub = rng.random_range(0..HUBS);
    if rng.random_bool(0.5) {
        Event::Kill(hub)
    } else {
        Event::Drain(hub)
    }
}

/// One fleet of `fleet` peers driven by `seed` on hubs configured as `config`.
#[allow(clippy::too_many_lines)] // one schedule, read top to bottom
async fn simulate_fleet(seed: u64, fleet: usize, config: HubConfig) -> Outcome {
    let started = std::time::Instant::now();
    let origin = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let scratch = std::path::Path::new("/dev/shm");
    let root = if scratch.is_dir() {
        tempfile::tempdir_in(scratch).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    // Odd seeds add two tiers of relays: relay A (a peer of the hubs, spread like the
    // others) serving relay B and `RELAY_PEERS` peers, relay B serving `RELAY_PEERS` more.
    let relays = seed % 2 == 1;
    let (relay_a, relay_b) = (fleet, fleet + 1);
    let total = if relays {
        fleet + 2 + 2 * RELAY_PEERS
    } else {
        fleet
    };
    let served = if relays { HUBS + 2 } else { HUBS };
    let net = Arc::new(Net::serving(seed, origin, total, served));
    // Clean links: the faults here are the hubs'.
    net.flaky.store(false, Ordering::Relaxed);
    let mut failures = Vec::new();

    let hub_store = Arc::new(
        EmbeddedStore::open_with(&root.path().join("hubs"), Execution::Inline)
            .unwrap()
            .sharing_fleet(Arc::new(MemoryFleet::default())),
    );
    let mut hub_runs: Vec<Option<HubRun>> = Vec::new();
    for i in 0..HUBS {
        hub_runs.push(Some(
            start_hub(&net, i, &hub_store, origin, config.clone()).await,
        ));
    }
    // The hubs see each other (three flushes) before the fleet arrives.
    tokio::time::sleep(3 * config.fleet_flush_interval).await;
    let stop_watch = CancellationToken::new();
    let on_hubs = fleet + usize::from(relays);
    let cap_failures = watch_caps(Arc::clone(&net), on_hubs, stop_watch.clone());

    let spread = Peers {
        net: Arc::clone(&net),
        config: Arc::new({
            let mut c = peer_config();
            c.peer.hub_order = HubOrder::Spread;
            c
        }),
        origin,
        seed,
    };
    let priority = Peers {
        config: Arc::new(peer_config()),
        net: Arc::clone(&net),
        origin,
        seed,
    };
    let mut peers = Vec::with_capacity(total);
    // Which node serves each peer: `None`, the hubs; `Some(n)`, relay node `n`.
    let mut served_by = vec![None; total];
    let mut relay_runs = Vec::new();
    // The relays and the peers below them, started first, listed after the fleet's own.
    let mut late: Vec<PeerRun> = Vec::new();
    if relays {
        // Relays fail over between hubs signing with different keys: what sits below them
        // trusts all three.
        let keys: Vec<_> = (0..HUBS)
            .map(|i| {
                sorcha_peer::keys::SigningKey::from_seed(&format!("hub-{i}"), &[i as u8; 32])
                    .unwrap()
                    .verifier()
                    .clone()
            })
            .collect();
        let below = |node: usize, serves: bool| Peers {
            net: Arc::clone(&net),
            config: Arc::new({
                let mut c = peer_config();
                c.hubs = vec![hub_url(node)];
                c.peer.trusted_hub_keys.clone_from(&keys);
                c.peer.serve_downstream = serves;
                c
            }),
            origin,
            seed,
        };
        let relay_of_hubs = Peers {
            config: Arc::new({
                let mut c = (*spread.config).clone();
                c.peer.trusted_hub_keys.clone_from(&keys);
                c.peer.serve_downstream = true;
                c
            }),
            net: Arc::clone(&net),
            origin,
            seed,
        };
        let mut started = Vec::new();
        for (p, of, node) in [
            (relay_a, &relay_of_hubs, None),
            (relay_b, &below(HUBS, true), Some(HUBS)),
        ] {
            let dir = root.path().join(format!("peer-{p}"));
            let run = of.start(p, 0, &dir, &mut failures).await;
            relay_runs.push(super::nodes::start_relay(
                &net,
                HUBS + started.len(),
                &run,
                origin,
            ));
            started.push((p, run, node));
        }
        let mut downstream = Vec::new();
        for (tier, node) in [HUBS, HUBS + 1].into_iter().enumerate() {
            let of = below(node, false);
            for k in 0..RELAY_PEERS {
                let p = relay_b + 1 + tier * RELAY_PEERS + k;
                let dir = root.path().join(format!("peer-{p}"));
                downstream.push((p, of.start(p, 0, &dir, &mut failures).await, Some(node)));
            }
        }
        // Kept in index order after the fleet's own.
        for (p, _, node) in started.iter().chain(downstream.iter()) {
            served_by[*p] = *node;
        }
        let mut rest: Vec<_> = started.into_iter().chain(downstream).collect();
        rest.sort_by_key(|(p, _, _)| *p);
        late = rest.into_iter().map(|(_, run, _)| run).collect();
    }
    for p in 0..fleet {
        let of = if p % PRIORITY_EVERY == 0 {
            &priority
        } else {
            &spread
        };
        let dir = root.path().join(format!("peer-{p}"));
        peers.push(of.start(p, 0, &dir, &mut failures).await);
    }
    peers.extend(late);

    let mut blueprints = 0u64;
    let mut acknowledged: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut up = [true; HUBS];
    let mut draining: Option<(usize, tokio::task::JoinHandle<()>)> = None;
    let mut settled_after = Vec::new();
    let mut most_moves = 0;
    let mut full_syncs_at_start = None;
    let mut events = Vec::new();
    for round in 0..=EVENTS {
        let event = (round > 0).then(|| next_event(&mut rng, &up));
        let from = net.now_ms();
        match event {
            None => {}
            Some(Event::Kill(i)) => {
                crash_hub(&net, i, &mut hub_runs[i]);
                up[i] = false;
            }
            Some(Event::Drain(i)) => {
                let hub = net.hub(i).unwrap();
                draining = Some((
                    i,
                    tokio::spawn(async move { hub.drain(DRAIN_PERIOD).await }),
                ));
            }
            Some(Event::Return(i)) => {
                hub_runs[i] = Some(start_hub(&net, i, &hub_store, origin, config.clone()).await);
                up[i] = true;
            }
        }
        if let Some(event) = event {
            events.push(format!("{event:?}"));
        }
        // Each second: a drained hub stops; a publish every third; is the fleet settled?
        let mut settled = None;
        let mut why = String::new();
        for second in 0..SETTLE_BOUND {
            if draining.as_ref().is_some_and(|(_, d)| d.is_finished()) {
                let (i, _) = draining.take().unwrap();
                crash_hub(&net, i, &mut hub_runs[i]);
                up[i] = false;
            }
            if second % 3 == 0 {
                let hubs: Vec<usize> = (0..HUBS).filter(|i| up[*i]).collect();
                let via = net.hub(hubs[rng.random_range(0..hubs.len())]).unwrap();
                blueprints += 1;
                let written = via
                    .register()
                    .publish(
                        Publication {
                            blueprint_id: format!("fleet-{blueprints}"),
                            document: serde_json::json!({"seed": seed, "n": blueprints}),
                            metadata: BTreeMap::new(),
                            publication_transaction_id: None,
                            signature: None,
                        },
                        "sim",
                        &WriteOptions::default(),
                    )
                    .await
                    .expect("a hub that is up takes a publish");
                acknowledged.insert(
                    written.entry.version,
                    (written.entry.blueprint_id, written.entry.chain_hash),
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let head = hub_store.head().await.unwrap().unwrap().version;
            match unsettled(&net, &peers, &served_by, on_hubs, head) {
                None if draining.is_none() => {
                    settled = Some(second + 1);
                    break;
                }
                None => why = "the drain has not ended".into(),
                Some(reason) => why = reason,
            }
        }
        let name = event.map_or("the start".to_owned(), |e| format!("{e:?}"));
        match settled {
            Some(after) => settled_after.push(format!("{after} s {:?}", counting_hubs(&net))),
            None => failures.push(format!(
                "not settled within {SETTLE_BOUND} s of {name}: {why}"
            )),
        }
        let moves = moves_since(&net, from);
        let busiest = (0..total).max_by_key(|p| moves[*p]).unwrap_or(0);
        if event.is_some() {
            most_moves = most_moves.max(moves[busiest]);
            if moves[busiest] > 2 {
                failures.push(format!(
                    "peer {busiest} opened {} sessions after {name}",
                    moves[busiest]
                ));
            }
        }
        match full_syncs_at_start {
            None => full_syncs_at_start = Some(full_syncs(&net)),
            Some(before) => {
                let now = full_syncs(&net);
                if now > before {
                    failures.push(format!(
                        "{} full syncs after {name} (peers hold their replicas)",
                        now - before
                    ));
                }
                full_syncs_at_start = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_secs(QUIET)).await;
        // A seed that failed stops at its first failed event: that is the one to read.
        if !failures.is_empty() || !cap_failures.lock().unwrap().is_empty() {
            break;
        }
    }
    stop_watch.cancel();
    failures.extend(cap_failures.lock().unwrap().iter().cloned());

    let head = hub_store.head().await.unwrap().unwrap();
    for (p, run) in peers.iter().enumerate() {
        checks::replica(p, &run.peer, &acknowledged, &head.chain_hash, &mut failures).await;
    }
    for run in &peers {
        run.stop();
    }
    for relay in &relay_runs {
        relay.stop.cancel();
    }
    for (i, run) in hub_runs.iter_mut().enumerate() {
        crash_hub(&net, i, run);
    }
    let trace = std::mem::take(&mut *net.trace.lock().unwrap());
    let insisted: u64 = net.insisted.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let summary = format!(
        "fleet seed {seed}: {fleet} peers ({} priority) on {HUBS} hubs{}; events {}; settled after \
         {settled_after:?}; at most {most_moves} sessions opened by one peer per \
         event; {insisted} insisted sessions; {} full syncs; {} acknowledged writes; head {}; \
         trace of {} events, digest {:016x}; {} ms real time",
        fleet.div_ceil(PRIORITY_EVERY),
        if relays {
            format!(
                ", relay A (a peer of the hubs, {} sessions opened) serving relay B and \
                 {RELAY_PEERS} peers, relay B serving {RELAY_PEERS}",
                net.opened[relay_a].lock().unwrap().len()
            )
        } else {
            String::new()
        },
        events.join(", "),
        full_syncs(&net),
        acknowledged.len(),
        head.version,
        trace.len(),
        super::digest(&trace),
        started.elapsed().as_millis(),
    );
    Outcome { failures, summary }
}

/// The simulation's hubs with the caps the checks expect.
fn fleet_hub_config() -> HubConfig {
    HubConfig {
        fair_share_percent: FAIR_SHARE_PERCENT as u32,
        fair_share_floor: FAIR_SHARE_FLOOR,
        ..hub_config()
    }
}

fn run_fleet(seed: u64, fleet: usize, config: HubConfig) -> Outcome {
    super::paused(simulate_fleet(seed, fleet, config))
}

#[test]
fn sim_fleet_holds_fair_shares_through_kills_drains_and_returns() {
    let seeds = super::seeds(&FIXED_SEEDS);
    let fleet = std::env::var("SORCHA_SIM_FLEET").map_or(FLEET_PEERS, |n| {
        n.parse().expect("SORCHA_SIM_FLEET is a number")
    });
    let mut failed = Vec::new();
    for seed in seeds {
        let outcome = run_fleet(seed, fleet, fleet_hub_config());
        let _ = writeln!(std::io::stderr(), "{}", outcome.summary);
        if !outcome.failures.is_empty() {
            let shown: Vec<_> = outcome.failures.iter().take(20).cloned().collect();
            failed.push(format!(
                "fleet seed {seed} ({} failures; reproduce with SORCHA_SIM_SEED={seed} cargo \
                 test sim_fleet):\n  {}",
                outcome.failures.len(),
                shown.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The planted bug: hubs that ignore their caps (`hub.fairSharePercent = 0`) let the
/// priority-ordered peers pile onto n0 and never rebalance; the checks must see it.
#[test]
fn sim_fleet_with_caps_off_breaks_the_caps() {
    let caps_off = HubConfig {
        fair_share_percent: 0,
        ..fleet_hub_config()
    };
    let outcome = run_fleet(FIXED_SEEDS[0], 300, caps_off);
    let _ = writeln!(std::io::stderr(), "caps off: {}", outcome.summary);
    let caps = |f: &&String| f.contains("above its fair share") || f.contains("sessions (share");
    assert!(
        outcome.failures.iter().any(|f| caps(&f)),
        "the fleet checks missed hubs without caps: {:?}",
        outcome.failures
    );
}

/// A fleet seed is a replay too: the same seed twice, the same trace and figures.
#[test]
fn sim_fleet_one_seed_replays_exactly() {
    // Seed 3 has relays.
    let seed = std::env::var("SORCHA_SIM_SEED").map_or(FIXED_SEEDS[0], |s| {
        s.parse().expect("SORCHA_SIM_SEED is a number")
    });
    let figures = |o: Outcome| o.summary.rsplit_once("; ").unwrap().0.to_owned();
    let first = figures(run_fleet(seed, 300, fleet_hub_config()));
    let second = figures(run_fleet(seed, 300, fleet_hub_config()));
    assert_eq!(first, second, "fleet seed {seed} did not replay");
    let _ = writeln!(std::io::stderr(), "replayed {second}");
}
