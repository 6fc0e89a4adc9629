//! The fleet workload: N hubs sharing one MongoDB database, P real peer processes (each
//! listing every hub, by `--hub-order`; started once the hubs see each other) with an SSE
//! reader on every peer, a publish burst through the second hub, then the first hub killed
//! (SIGKILL) while publishing goes on. Every hub's sessions and fair-share cap are sampled every
//! 250 ms throughout.
//!
//! It prints per-peer delivery (shares within 1 s / 5 s / 30 s, p50 / p99, the worst
//! publish's share within 30 s: the seed's SC-016), how long until 95 % and 100 % of the
//! peers were connected to a surviving hub and current after the kill, sessions per hub,
//! store requests per publish per peer (from the MongoDB server's own operation counters,
//! and from the hubs' store-call metrics where they have them), failovers and missed
//! heartbeats of the peers, and the hubs' CPU and RSS. Fails when a publish goes
//! unanswered or a peer misses a version.

use crate::{Hub, TOKEN, histogram, latency_fields, publish_one, report};
use anyhow::{Context, bail};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fleet workload runs.
#[derive(Debug, clap::Args)]
pub(crate) struct Fleet {
    /// The MongoDB server the hubs share (the test command's wire server); every run uses a
    /// fresh database on it.
    #[arg(long, env = "MONGODB_URI")]
    mongodb: String,
    #[arg(long, default_value_t = 3)]
    hubs: usize,
    #[arg(long, default_value_t = 150)]
    peers: usize,
    /// Publishes of the burst, through the second hub.
    #[arg(long, default_value_t = 30)]
    publishes: usize,
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Publishes after the first hub is killed, through the second.
    #[arg(long, default_value_t = 10)]
    after_kill: usize,
    #[arg(long, default_value_t = 1.0)]
    after_kill_rate: f64,
    /// The peers' (and hubs') heartbeat interval.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// How long a peer waits for a heartbeat's answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Duration,
    /// The peers' `--hub-order`: `priority` (every peer on n0 first) or `spread`.
    #[arg(long, default_value = "priority", value_parser = ["priority", "spread"])]
    hub_order: String,
    /// The hubs' `hub.fairSharePercent` (0: no cap; default: the hubs' own default).
    #[arg(long)]
    fair_share_percent: Option<u32>,
}

/// How often the balance sampler reads every hub's sessions and cap.
const BALANCE_SAMPLE: Duration = Duration::from_millis(250);

/// What the balance sampler saw: per sample, the phase (0: peers starting, 1: all connected,
/// 2: after the kill) and each hub's (sessions, its own cap), `None` when it did not answer.
type BalanceSamples = Arc<Mutex<Vec<(usize, Vec<Option<(f64, f64)>>)>>>;

/// Samples every hub's `sorcha_peer_hub_sessions` and `sorcha_peer_fair_share_cap` every
/// [`BALANCE_SAMPLE`] until aborted.
fn sample_balance(
    http: reqwest::Client,
    urls: Vec<String>,
    phase: Arc<std::sync::atomic::AtomicUsize>,
) -> (BalanceSamples, tokio::task::JoinHandle<()>) {
    let samples: BalanceSamples = Arc::default();
    let into = Arc::clone(&samples);
    let task = tokio::spawn(async move {
        loop {
            let mut row = Vec::with_capacity(urls.len());
            for url in &urls {
                let text = metrics(&http, url).await;
                row.push(
                    sample(&text, "sorcha_peer_hub_sessions")
                        .zip(sample(&text, "sorcha_peer_fair_share_cap")),
                );
            }
            if let Ok(mut all) = into.lock() {
                all.push((phase.load(std::sync::atomic::Ordering::Relaxed), row));
            }
            tokio::time::sleep(BALANCE_SAMPLE).await;
        }
    });
    (samples, task)
}

/// Figures of the balance samples: the largest hub share of the sessions, and how often (and
/// by how much at most) a hub held more than its own cap, and more than the fair cap of the
/// sample (110 % of the sessions ÷ the hubs that answered).
fn balance_figures<'a>(samples: impl Iterator<Item = &'a Vec<Option<(f64, f64)>>>) -> Value {
    let mut count = 0;
    let (mut over_own, mut most_over_own, mut over_fair, mut most_over_fair) =
        (0, 0.0f64, 0, 0.0f64);
    let mut largest_share = 0.0f64;
    for row in samples {
        count += 1;
        let live: Vec<(f64, f64)> = row.iter().flatten().copied().collect();
        let total: f64 = live.iter().map(|(s, _)| s).sum();
        if live.is_empty() || total == 0.0 {
            continue;
        }
        let fair = (total * 1.1 / live.len() as f64).ceil();
        for (sessions, cap) in &live {
            largest_share = largest_share.max(sessions / total);
            if *cap > 0.0 && sessions > cap {
                over_own += 1;
                most_over_own = most_over_own.max(sessions - cap);
            }
            if live.len() > 1 && *sessions > fair {
                over_fair += 1;
                most_over_fair = most_over_fair.max(sessions - fair);
            }
        }
    }
    json!({
        "samples": count,
        "largest_hub_share": largest_share,
        "hub_samples_over_own_cap": over_own,
        "most_over_own_cap": most_over_own,
        "hub_samples_over_fair_cap": over_fair,
        "most_over_fair_cap": most_over_fair,
    })
}

/// Longest the workload waits for anything (peers to start and connect, deliveries).
const PATIENCE: Duration = Duration::from_secs(180);
/// A publish not answered within this counts as unanswered.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What one peer's SSE reader saw: (version, arrival) of every entry event.
type Seen = Arc<Mutex<Vec<(i64, Instant)>>>;

pub(crate) async fn run(fleet: Fleet) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let Fleet {
        mongodb,
        hubs: hub_count,
        peers: peer_count,
        publishes,
        rate,
        after_kill,
        after_kill_rate,
        heartbeat,
        heartbeat_timeout,
        hub_order,
        fair_share_percent,
    } = fleet;
    if hub_count < 2 {
        bail!("--hubs must be at least 2: the first is killed, the second takes publishes");
    }
    let database = format!("fleet_{}", uuid::Uuid::new_v4().simple());
    let beat = humantime::format_duration(heartbeat).to_string();
    let beat_timeout = humantime::format_duration(heartbeat_timeout).to_string();
    let percent = fair_share_percent.map(|p| p.to_string());
    let mut hubs = Vec::new();
    for i in 0..hub_count {
        let id = format!("n{i}");
        let mut env = vec![
            ("SORCHA_MONGO__DATABASE", database.as_str()),
            ("SORCHA_HUB__HEARTBEAT_INTERVAL", beat.as_str()),
            ("SORCHA_HUB__HEARTBEAT_TIMEOUT", beat_timeout.as_str()),
        ];
        if let Some(percent) = &percent {
            env.push(("SORCHA_HUB__FAIR_SHARE_PERCENT", percent.as_str()));
        }
        hubs.push(
            Hub::spawn_env(
                None,
                &["--role", "hub", "--store", &mongodb, "--node-id", &id],
                &env,
            )
            .await?,
        );
    }
    // Peers start once the hubs know each other, as in a deployment (a hub that has not read
    // the others' presence yet takes every peer: it is alone as far as it knows).
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let hub_urls: Vec<String> = hubs.iter().map(|h| h.url.clone()).collect();
    crate::node::hubs_see_each_other(&probe, &hub_urls, PATIENCE).await?;
    let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (balance, sampler) = sample_balance(probe, hub_urls.clone(), Arc::clone(&phase));
    let hub_cpu_before: Vec<f64> = hubs.iter().map(Hub::cpu_seconds).collect();

    // The peers, a few at a time (each opens its store and dials its hub).
    let started = Instant::now();
    let mut peers = Vec::with_capacity(peer_count);
    for batch in (0..peer_count).collect::<Vec<_>>().chunks(10) {
        let spawned = futures::future::join_all(batch.iter().map(|i| {
            let id = format!("peer-{i:03}");
            let mut args = vec![
                "--role".to_owned(),
                "peer".into(),
                "--node-id".into(),
                id,
                "--hub-order".into(),
                hub_order.clone(),
            ];
            for url in &hub_urls {
                args.extend(["--hub".to_owned(), url.clone()]);
            }
            let (beat, beat_timeout) = (beat.clone(), beat_timeout.clone());
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Hub::spawn_env(
                    None,
                    &args,
                    &[
                        ("SORCHA_PEER__HEARTBEAT_INTERVAL", &beat),
                        ("SORCHA_PEER__HEARTBEAT_TIMEOUT", &beat_timeout),
                    ],
                )
                .await
            }
        }))
        .await;
        for peer in spawned {
            peers.push(peer?);
        }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let connected = all_connected(&http, &peers).await?;
    let startup_s = started.elapsed().as_secs_f64();
    phase.store(1, std::sync::atomic::Ordering::Relaxed);
    let mut sessions_at_start = Vec::new();
    for hub in &hubs {
        let text = metrics(&http, &hub.url).await;
        sessions_at_start.push(json!(sample(&text, "sorcha_peer_hub_sessions")));
    }

    // An SSE reader on every peer, from now on.
    let mut seen: Vec<Seen> = Vec::with_capacity(peer_count);
    let mut readers = Vec::with_capacity(peer_count);
    let streams = reqwest::Client::builder().build()?;
    for peer in &peers {
        let got: Seen = Arc::default();
        let response = streams
            .get(format!(
                "{}{}",
                peer.url,
                sorcha_peer::api::sse::EVENTS_PATH
            ))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("a peer's event stream answered {}", response.status());
        }
        let mut events = response.bytes_stream().eventsource();
        let into = Arc::clone(&got);
        readers.push(tokio::spawn(async move {
            while let Some(Ok(e)) = events.next().await {
                if e.event.starts_with("blueprint.")
                    && let Ok(version) = e.id.parse::<i64>()
                    && let Ok(mut got) = into.lock()
                {
                    got.push((version, Instant::now()));
                }
            }
        }));
        seen.push(got);
    }

    let ops_before = server_ops(&mongodb).await?;
    let calls_before = hub_store_calls(&http, &hub_urls[..]).await;
    let publisher = reqwest::Client::builder()
        .timeout(PUBLISH_TIMEOUT)
        .build()?;
    let doc = json!({ "title": "fleet" });
    let through = &hubs[1].url;

    // The burst.
    let burst = publish_at(&publisher, through, "burst", publishes, rate, &doc).await;
    let burst_last = burst.iter().map(|a| a.0).max().unwrap_or(0);
    wait_all_have(&seen, burst_last).await;
    let ops_after = server_ops(&mongodb).await?;
    let calls_after = hub_store_calls(&http, &hub_urls[..]).await;

    // The first hub dies; publishing goes on through the second.
    let hub0_rss = hubs[0].rss_kib();
    let hub0_cpu = hubs[0].cpu_seconds() - hub_cpu_before[0];
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &hubs[0].pid().to_string()])
        .status();
    let killed_at = Instant::now();
    phase.store(2, std::sync::atomic::Ordering::Relaxed);
    let after = publish_at(
        &publisher,
        through,
        "after-kill",
        after_kill,
        after_kill_rate,
        &doc,
    )
    .await;
    let last = after.iter().map(|a| a.0).max().unwrap_or(burst_last);
    wait_all_have(&seen, last).await;

    // Figures.
    let mut figures = json!({});
    let unanswered = (publishes - burst.len()) + (after_kill - after.len());
    figures["acknowledged"] = json!(burst.len() + after.len());
    figures["unanswered"] = json!(unanswered);
    figures["startup_all_connected_s"] = json!(startup_s);
    figures["startup_connected"] = json!(connected);
    figures["sessions_per_hub_at_start"] = json!(sessions_at_start);
    let arrivals: Vec<HashMap<i64, Instant>> = seen
        .iter()
        .map(|s| {
            s.lock()
                .map(|g| g.iter().copied().collect())
                .unwrap_or_default()
        })
        .collect();
    figures["burst"] = delivery(&burst, &arrivals);
    figures["after_kill"] = delivery(&after, &arrivals);
    // Connected to a survivor and current: holding the first version published after the
    // kill, which only a surviving hub can have served.
    if let Some(&(first_after, _)) = after.first() {
        let mut times: Vec<f64> = arrivals
            .iter()
            .filter_map(|a| a.get(&first_after))
            .map(|at| at.saturating_duration_since(killed_at).as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        let at_share = |share: f64| {
            let needed = (share * peer_count as f64).ceil() as usize;
            (times.len() >= needed && needed > 0).then(|| times[needed - 1])
        };
        figures["current_after_kill_95_s"] = json!(at_share(0.95));
        figures["current_after_kill_100_s"] = json!(at_share(1.0));
    }
    let ops = ops_after.saturating_sub(ops_before);
    let per = (publishes.max(1) * peer_count.max(1)) as f64;
    figures["store_ops_per_publish_per_peer"] = json!(ops as f64 / per);
    figures["store_ops_burst"] = json!(ops);
    figures["hub_store_calls_per_publish_per_peer"] = match (calls_before, calls_after) {
        (Some(b), Some(a)) => json!((a - b) / per),
        _ => Value::Null,
    };
    let mut sessions = Vec::new();
    let mut hub_figures = Vec::new();
    for (i, hub) in hubs.iter().enumerate() {
        if i == 0 {
            sessions.push(Value::Null);
            hub_figures.push(json!({"hub": "n0", "rss_mib": hub0_rss as f64 / 1024.0, "cpu_s": hub0_cpu, "killed": true}));
            continue;
        }
        let text = metrics(&http, &hub.url).await;
        sessions.push(json!(sample(&text, "sorcha_peer_hub_sessions")));
        hub_figures.push(json!({
            "hub": format!("n{i}"),
            "rss_mib": hub.rss_kib() as f64 / 1024.0,
            "cpu_s": hub.cpu_seconds() - hub_cpu_before[i],
        }));
    }
    figures["sessions_per_hub"] = json!(sessions);
    figures["hubs"] = json!(hub_figures);
    figures["syncing_after_settle"] = json!(syncing_after_settle(&http, &hubs[1..]).await);
    let (mut failovers, mut max_failovers, mut missed, mut rss) = (0.0, 0.0f64, 0.0, 0u64);
    for peer in &peers {
        let text = metrics(&http, &peer.url).await;
        let f = sample(&text, "sorcha_peer_failovers_total").unwrap_or(0.0);
        failovers += f;
        max_failovers = max_failovers.max(f);
        missed += sample(
            &text,
            "sorcha_peer_heartbeats_sent_total{outcome=\"failed\"}",
        )
        .unwrap_or(0.0);
        rss += peer.rss_kib();
    }
    figures["peer_failovers"] = json!(failovers);
    figures["peer_failovers_max"] = json!(max_failovers);
    figures["peer_missed_heartbeats"] = json!(missed);
    figures["peer_rss_mib_mean"] = json!(rss as f64 / 1024.0 / peer_count.max(1) as f64);
    let missing: usize = arrivals
        .iter()
        .map(|a| {
            burst
                .iter()
                .chain(after.iter())
                .filter(|(v, _)| !a.contains_key(v))
                .count()
        })
        .sum();
    figures["missing_deliveries"] = json!(missing);
    sampler.abort();
    let samples = balance.lock().map(|b| b.clone()).unwrap_or_default();
    let of_phase =
        |p: usize| balance_figures(samples.iter().filter(move |s| s.0 == p).map(|s| &s.1));
    figures["balance"] = json!({
        "starting": of_phase(0),
        "connected": of_phase(1),
        "after_kill": of_phase(2),
    });

    for r in readers {
        r.abort();
    }
    for peer in &peers {
        peer.terminate();
    }
    report(
        "fleet",
        json!({"hubs": hub_count, "peers": peer_count, "publishes": publishes, "rate": rate,
               "after_kill": after_kill, "after_kill_rate": after_kill_rate,
               "heartbeat_ms": heartbeat.as_millis() as u64,
               "heartbeat_timeout_ms": heartbeat_timeout.as_millis() as u64,
               "hub_order": hub_order, "fair_share_percent": fair_share_percent}),
        figures,
        None,
    );
    if unanswered > 0 || missing > 0 {
        bail!("{unanswered} publishes unanswered, {missing} deliveries missing");
    }
    Ok(())
}

/// Publishes `count` documents at `rate` per second through `url`; the (version,
/// acknowledged at) of every one answered in time.
async fn publish_at(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    count: usize,
    rate: f64,
    doc: &Value,
) -> Vec<(i64, Instant)> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        match publish_one(http, url, &format!("{prefix}-{i}"), doc, None, None).await {
            Ok(version) => acks.push((version, Instant::now())),
            Err(e) => eprintln!("publish {prefix}-{i}: {e:#}"),
        }
    }
    acks
}

/// Delivery of `acks` to every peer: latency from acknowledgement to arrival, the shares
/// within 1, 5 and 30 s (a delivery that never came counts as later), and the worst
/// publish's share within 30 s.
fn delivery(acks: &[(i64, Instant)], arrivals: &[HashMap<i64, Instant>]) -> Value {
    let mut latency = histogram();
    let (mut within_1, mut within_5, mut within_30) = (0usize, 0usize, 0usize);
    let mut worst_30 = 1.0f64;
    for &(version, acked) in acks {
        let mut this_30 = 0usize;
        for peer in arrivals {
            let Some(at) = peer.get(&version) else {
                continue;
            };
            let took = at.saturating_duration_since(acked);
            let _ = latency.record(took.as_micros().max(1) as u64);
            within_1 += usize::from(took <= Duration::from_secs(1));
            within_5 += usize::from(took <= Duration::from_secs(5));
            if took <= Duration::from_secs(30) {
                within_30 += 1;
                this_30 += 1;
            }
        }
        worst_30 = worst_30.min(this_30 as f64 / arrivals.len().max(1) as f64);
    }
    let pairs = (acks.len() * arrivals.len()).max(1) as f64;
    let mut figures = latency_fields(&latency);
    figures["share_within_1s"] = json!(within_1 as f64 / pairs);
    figures["share_within_5s"] = json!(within_5 as f64 / pairs);
    figures["share_within_30s"] = json!(within_30 as f64 / pairs);
    figures["worst_publish_share_within_30s"] = json!(worst_30);
    figures
}

/// Waits (bounded by [`PATIENCE`]) until every reader has seen `version`.
async fn wait_all_have(seen: &[Seen], version: i64) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let all = seen.iter().all(|s| {
            s.lock()
                .map(|g| g.iter().any(|(v, _)| *v >= version))
                .unwrap_or(false)
        });
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until every peer says `Connected`; how many did.
async fn all_connected(http: &reqwest::Client, peers: &[Hub]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + PATIENCE;
    let mut connected = vec![false; peers.len()];
    while Instant::now() < deadline {
        for (peer, done) in peers.iter().zip(connected.iter_mut()) {
            if *done {
                continue;
            }
            let url = format!("{}/api/v1/connection", peer.url);
            if let Ok(r) = http.get(url).bearer_auth(TOKEN).send().await
                && let Ok(view) = r.json::<Value>().await
            {
                *done = view["state"] == "Connected";
            }
        }
        if connected.iter().all(|c| *c) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let count = connected.iter().filter(|c| **c).count();
    if count < peers.len() {
        bail!("only {count} of {} peers connected", peers.len());
    }
    Ok(count)
}

/// Every operation the MongoDB server has counted (its `serverStatus` opcounters).
async fn server_ops(uri: &str) -> anyhow::Result<u64> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    let status = client
        .database("admin")
        .run_command(mongodb::bson::doc! { "serverStatus": 1 })
        .await
        .context("serverStatus")?;
    let counters = status
        .get_document("opcounters")
        .context("serverStatus has no opcounters")?;
    Ok(counters
        .values()
        .filter_map(|v| match v {
            mongodb::bson::Bson::Int32(n) => u64::try_from(*n).ok(),
            mongodb::bson::Bson::Int64(n) => u64::try_from(*n).ok(),
            mongodb::bson::Bson::Double(n) => Some(*n as u64),
            _ => None,
        })
        .sum())
}

/// Sessions the surviving hubs still list as syncing once every peer is current, after at most
/// [`SETTLE`]: a sync counted as running after it ended would show here (0 expected).
async fn syncing_after_settle(http: &reqwest::Client, hubs: &[Hub]) -> usize {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut syncing = 0;
        for hub in hubs {
            let peers: Value = match http
                .get(format!("{}/api/v1/peers", hub.url))
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            syncing += peers["peers"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|s| s["activeSyncs"] != 0).count());
        }
        if syncing == 0 || Instant::now() > deadline {
            return syncing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long the surviving hubs' sync counts may take to settle.
const SETTLE: Duration = Duration::from_secs(10);

async fn metrics(http: &reqwest::Client, url: &str) -> String {
    match http.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The first sample of `series` in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Store calls the hubs have made, summed (`None` when a hub does not count them: a release
/// before store-call metrics).
async fn hub_store_calls(http: &reqwest::Client, urls: &[String]) -> Option<f64> {
    let mut total = 0.0;
    for url in urls {
        let text = metrics(http, url).await;
        let counts: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("sorcha_peer_store_call_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if counts.is_empty() {
            return None;
        }
        total += counts.iter().sum::<f64>();
    }
    Some(total)
}
