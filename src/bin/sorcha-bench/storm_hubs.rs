//! `storm --hubs N`: the reconnect storm against N hubs sharing one MongoDB database (the
//! `--hub-store`), for each hub order in the same run (`priority`, then `spread`): S peers a few
//! versions behind connect at once (each by its own order, going past hubs that refuse it for
//! their fair share, insisting on the least loaded when all do), sync, and follow the push
//! stream; once the sessions are within 110 % of an even share (or a minute has passed) and
//! after 5 s more, the first hub is killed (SIGKILL) and its peers reconnect, naming it lost.
//! Reported per order: time until all are current, sessions per hub and the largest share, the
//! same after the kill, refusals and insists, and each hub's CPU and RSS.
//!
//! The peers are light clients of the wire contract (one HTTP/2 connection each), not peer
//! processes: what they do on a refusal is the peer's rule (see `sorcha_peer::peer`), kept to
//! what the storm needs. Heartbeats are not sent; the hubs' heartbeat interval is set long so
//! the fleet record keeps the peers live for the run.

use crate::{Hub, bench_peer, peer_request, publish_one, report};
use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use sorcha_peer::config::HubOrder;
use sorcha_peer::error_code::ErrorCode;
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::HubLink;
use sorcha_peer::peer::hub_order::hub_order;
use sorcha_peer::peer::pick_least_loaded;
use sorcha_peer::protocol::{Filters, HubLoad, PeerId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the fleet stays quiet between settling and the kill.
const QUIET_BEFORE_KILL: Duration = Duration::from_secs(5);

/// Longest the storm waits for anything.
const PATIENCE: Duration = Duration::from_secs(300);

/// Refusals and insists over the whole storm.
#[derive(Default)]
struct Counts {
    full: AtomicU64,
    insisted: AtomicU64,
    /// Sessions ended by their hub sending the peer on (rebalancing).
    moved: AtomicU64,
    other_errors: AtomicU64,
}

/// A peer's session: the hub's index and the head it synced to.
struct Joined {
    /// Holds the connection open with the stream; says goodbye when sent on.
    client: HubClient,
    session: sorcha_peer::protocol::SessionId,
    hub: usize,
    version: i64,
    stream: sorcha_peer::link::LinkStream<sorcha_peer::protocol::Notification>,
}

/// Connects `id` through its `order` (skipping `skip`, naming `lost_hub`), syncs from
/// `known`, subscribes.
async fn join(
    urls: &[String],
    order: &[usize],
    id: &PeerId,
    known: i64,
    skip: Option<usize>,
    lost_hub: &str,
    counts: &Counts,
) -> anyhow::Result<Joined> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let mut loads: Vec<(usize, HubLoad)> = Vec::new();
        let candidates = order
            .iter()
            .map(|&h| (h, false))
            .filter(|(h, _)| skip != Some(*h));
        let mut tried: Vec<(usize, bool)> = candidates.collect();
        let mut i = 0;
        while i < tried.len() {
            let (hub, insist) = tried[i];
            i += 1;
            let mut request = peer_request(id, known);
            request.insist = insist;
            request.lost_hub = lost_hub.to_owned();
            let attempt = async {
                let client = HubClient::connect(&urls[hub], Duration::from_secs(30)).await?;
                let grant = client.open_session(&request).await?;
                let mut sync = client
                    .incremental_sync(id, &grant.session_id, known, None)
                    .await?;
                let mut version = known;
                while let Some(e) = sync.next().await {
                    version = e?.entry.version;
                }
                let stream = client
                    .subscribe(id, &grant.session_id, &Filters::default(), version)
                    .await?;
                anyhow::Ok(Joined {
                    client,
                    session: grant.session_id,
                    hub,
                    version,
                    stream,
                })
            };
            match attempt.await {
                Ok(joined) => {
                    if insist {
                        counts.insisted.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(joined);
                }
                Err(e) => match e.downcast_ref::<sorcha_peer::link::LinkError>() {
                    Some(l) if l.code == ErrorCode::HubFull => {
                        counts.full.fetch_add(1, Ordering::Relaxed);
                        if let Some(load) = l.load {
                            loads.push((hub, load));
                        }
                    }
                    _ => {
                        if counts.other_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first other error: {e:#}");
                        }
                    }
                },
            }
            // Every hub answered and some were full: insist on one of the least loaded, by the
            // peer's rule.
            let full: Vec<(usize, u32)> = loads.iter().map(|(h, l)| (*h, l.sessions)).collect();
            if i == tried.len()
                && let Some(least) = pick_least_loaded(&full, rand::random::<f64>())
            {
                tokio::time::sleep(Duration::from_millis(50 + rand::random::<u64>() % 100)).await;
                tried.push((least, true));
                loads.clear();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("peer {id} never joined a hub")
}

/// One storm over `hubs` hub processes on a fresh database of `mongodb`, peers ordered by
/// `order`.
async fn one_storm(
    mongodb: &str,
    hub_count: usize,
    peers: usize,
    behind: usize,
    order: HubOrder,
) -> anyhow::Result<Value> {
    let database = format!("storm_{}", uuid::Uuid::new_v4().simple());
    let mut hubs = Vec::new();
    for i in 0..hub_count {
        hubs.push(
            Hub::spawn_env(
                None,
                &[
                    "--role",
                    "hub",
                    "--store",
                    mongodb,
                    "--node-id",
                    &format!("n{i}"),
                ],
                &[
                    ("SORCHA_MONGO__DATABASE", database.as_str()),
                    // The storm's peers do not heartbeat: keep them live in the fleet record.
                    ("SORCHA_HUB__HEARTBEAT_INTERVAL", "10m"),
                    ("SORCHA_HUB__HEARTBEAT_TIMEOUT", "10m"),
                ],
            )
            .await?,
        );
    }
    let urls: Vec<String> = hubs.iter().map(|h| h.url.clone()).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    crate::node::hubs_see_each_other(&http, &urls, PATIENCE).await?;
    for i in 0..behind {
        publish_one(
            &http,
            &urls[0],
            &format!("storm-{i}"),
            &json!({"i": i}),
            None,
            None,
        )
        .await?;
    }
    let head = behind as i64 + 1;
    let cpu_before: Vec<f64> = hubs.iter().map(Hub::cpu_seconds).collect();
    let counts = Arc::new(Counts::default());
    let (rejoined_tx, mut rejoined) = tokio::sync::mpsc::unbounded_channel::<(usize, f64)>();
    let (joined_tx, mut joined) = tokio::sync::mpsc::unbounded_channel::<usize>();
    // Each peer's hub now, as the peers know it (a hub's own count keeps sessions of peers
    // that vanished until they time out).
    let placement: Arc<Vec<std::sync::atomic::AtomicUsize>> = Arc::new(
        (0..peers)
            .map(|_| std::sync::atomic::AtomicUsize::new(usize::MAX))
            .collect(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..peers)
        .map(|i| {
            let (urls, counts) = (urls.clone(), Arc::clone(&counts));
            let placement = Arc::clone(&placement);
            let (joined_tx, rejoined_tx) = (joined_tx.clone(), rejoined_tx.clone());
            tokio::spawn(async move {
                let id = bench_peer(&format!("storm-peer-{i}"));
                let order = hub_order(order, id.as_str(), &urls);
                let mut current = join(&urls, &order, &id, 1, None, "", &counts).await?;
                if current.version != head {
                    bail!("{id} synced to {} of {head}", current.version);
                }
                placement[i].store(current.hub, Ordering::Relaxed);
                let _ = joined_tx.send(current.hub);
                // Follows the push stream until its hub sends it on (rebalancing) or breaks
                // (killed), then joins another, naming a lost one; until the storm ends.
                loop {
                    let mut moved = false;
                    while let Some(item) = current.stream.next().await {
                        if let Err(e) = item {
                            moved = e.code.is_move_on();
                            break;
                        }
                    }
                    let (from, at) = (current.hub, Instant::now());
                    if moved {
                        // As a peer does: a polite goodbye, so the hub forgets the session.
                        let _ = current
                            .client
                            .close_session(
                                &id,
                                &current.session,
                                sorcha_peer::protocol::DisconnectReason::Failover.into(),
                                0,
                            )
                            .await;
                    }
                    let lost = if moved {
                        String::new()
                    } else {
                        format!("n{from}")
                    };
                    current = join(
                        &urls,
                        &order,
                        &id,
                        current.version,
                        Some(from),
                        &lost,
                        &counts,
                    )
                    .await?;
                    placement[i].store(current.hub, Ordering::Relaxed);
                    if moved {
                        counts.moved.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = rejoined_tx.send((current.hub, at.elapsed().as_secs_f64()));
                    }
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            })
        })
        .collect();
    drop((joined_tx, rejoined_tx));
    for _ in 0..peers {
        tokio::time::timeout(PATIENCE, joined.recv())
            .await
            .context("peers still joining")?
            .context("a peer failed")?;
    }
    let all_current_s = started.elapsed().as_secs_f64();
    let placed = |hubs: usize| {
        let mut per_hub = vec![0.0; hubs];
        for p in placement.iter() {
            if let Some(n) = per_hub.get_mut(p.load(Ordering::Relaxed)) {
                *n += 1.0;
            }
        }
        per_hub
    };
    let sessions_at_start = placed(hub_count);
    let caps_at_start = series(&http, &urls, "sorcha_peer_fair_share_cap").await;
    let (settled_s, sessions_settled) = settle(|| placed(hub_count)).await;
    let rss_before: Vec<u64> = hubs.iter().map(Hub::rss_kib).collect();
    // A quiet stretch before the kill: the hubs read each other's storm records (a hub dies at
    // some moment of a settled fleet, not within a flush of a storm).
    tokio::time::sleep(QUIET_BEFORE_KILL).await;
    let moving = placed(hub_count)[0] as usize;
    let hub0_cpu = hubs[0].cpu_seconds() - cpu_before[0];

    // The first hub dies.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &hubs[0].pid().to_string()])
        .status();
    let killed = Instant::now();
    let mut times = Vec::with_capacity(moving);
    let mut moved_to = vec![0usize; hub_count];
    for _ in 0..moving {
        let (hub, _) = tokio::time::timeout(PATIENCE, rejoined.recv())
            .await
            .context("the killed hub's peers still rejoining")?
            .context("a peer failed")?;
        moved_to[hub] += 1;
        times.push(killed.elapsed().as_secs_f64());
    }
    let sessions_after = placed(hub_count)[1..].to_vec();
    let (settled_after_kill_s, sessions_settled_after_kill) =
        settle(|| placed(hub_count)[1..].to_vec()).await;
    let at = |share: f64| {
        let n = ((share * times.len() as f64).ceil() as usize).max(1);
        times.get(n - 1).copied()
    };
    let largest = |counts: &[f64]| {
        let total: f64 = counts.iter().sum();
        counts.iter().copied().fold(0.0, f64::max) / total.max(1.0)
    };
    let hub_figures: Vec<Value> = hubs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                json!({"hub": "n0", "cpu_s": hub0_cpu, "rss_mib": rss_before[0] as f64 / 1024.0, "killed": true})
            } else {
                json!({"hub": format!("n{i}"), "cpu_s": h.cpu_seconds() - cpu_before[i],
                       "rss_mib_at_start": rss_before[i] as f64 / 1024.0,
                       "rss_mib_after_kill": h.rss_kib() as f64 / 1024.0})
            }
        })
        .collect();
    for t in tasks {
        t.abort();
    }
    drop(hubs);
    Ok(json!({
        "all_current_s": all_current_s,
        "sessions_per_hub_at_start": sessions_at_start,
        "largest_hub_share_at_start": largest(&sessions_at_start),
        "caps_at_start": caps_at_start,
        "within_110_percent_after_s": settled_s,
        "sessions_per_hub_then": sessions_settled,
        "killed_hub_peers": moving,
        "moved_to": moved_to,
        "current_after_kill_95_s": at(0.95),
        "current_after_kill_100_s": at(1.0),
        "sessions_per_survivor_after_kill": sessions_after,
        "largest_hub_share_after_kill": largest(&sessions_after),
        "within_110_percent_after_kill_s": settled_after_kill_s,
        "sessions_per_survivor_then": sessions_settled_after_kill,
        "moved_by_rebalancing": counts.moved.load(Ordering::Relaxed),
        "refused_full": counts.full.load(Ordering::Relaxed),
        "insisted": counts.insisted.load(Ordering::Relaxed),
        "other_errors": counts.other_errors.load(Ordering::Relaxed),
        "hubs": hub_figures,
    }))
}

/// Waits (at most 60 s) until every hub holds at most 110 % of an even share of the sessions;
/// the seconds it took (`None`: not within 60 s) and the sessions then.
async fn settle(now: impl Fn() -> Vec<f64>) -> (Option<f64>, Vec<f64>) {
    let started = Instant::now();
    loop {
        let now = now();
        let total: f64 = now.iter().sum();
        let fair = (total * 1.1 / now.len() as f64).ceil();
        if now.iter().all(|n| *n <= fair) {
            return (Some(started.elapsed().as_secs_f64()), now);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return (None, now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each hub's `name` (an unlabelled series) now.
async fn series(http: &reqwest::Client, urls: &[String], name: &str) -> Vec<f64> {
    let prefix = format!("{name} ");
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let text = match http.get(format!("{url}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push(
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
                .unwrap_or(0.0),
        );
    }
    out
}

/// `storm --hubs N`: both orders, one after the other, in one report.
pub(crate) async fn run(hubs: usize, peers: usize, behind: usize) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let Some(store) = crate::node::hub_store() else {
        bail!("storm --hubs needs --hub-store mongodb://… (the hubs share one database)");
    };
    if hubs < 2 {
        bail!("--hubs must be at least 2: the first is killed");
    }
    let priority = one_storm(&store.uri, hubs, peers, behind, HubOrder::Priority).await?;
    let spread = one_storm(&store.uri, hubs, peers, behind, HubOrder::Spread).await?;
    report(
        "storm",
        json!({"hubs": hubs, "peers": peers, "behind": behind}),
        json!({"priority": priority, "spread": spread}),
        None,
    );
    Ok(())
}
