//! The connection workloads: `idle` (many quiet subscribers) and `storm` (peers reconnecting at
//! once, each behind by some entries).

use crate::{Hub, peer_request, publish_one, report};
use anyhow::bail;
use futures::StreamExt;
use serde_json::{Value, json};
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::{HubLink, LinkError};
use sorcha_peer::protocol::Filters;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn idle(subscribers: usize, per_connection: usize) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let per_connection = per_connection.max(1);
    let hub = Hub::start(None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = hub.rss_kib();
    let mut held = Vec::new();
    let mut http = None;
    for i in 0..subscribers {
        if i % per_connection == 0 || http.is_none() {
            // One connection per subscriber: no pooling; several: one HTTP/2 connection.
            let builder = if per_connection > 1 {
                reqwest::Client::builder().http2_prior_knowledge()
            } else {
                reqwest::Client::builder().pool_max_idle_per_host(0)
            };
            http = Some(builder.build()?);
        }
        let r = http
            .as_ref()
            .expect("a client")
            .get(format!("{}{}", hub.url, sorcha_peer::api::sse::EVENTS_PATH))
            .send()
            .await?;
        held.push(r);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_sse = hub.rss_kib();
    let mut streams = Vec::new();
    let mut shared: Option<HubClient> = None;
    for i in 0..subscribers {
        if i % per_connection == 0 || shared.is_none() {
            shared = Some(HubClient::connect(&hub.url, Duration::from_secs(30)).await?);
        }
        let client = shared.clone().expect("a client");
        let id = crate::bench_peer(&format!("idle-{i}"));
        let grant = client.open_session(&peer_request(&id, 1)).await?;
        let stream = client
            .subscribe(&id, &grant.session_id, &Filters::default(), 0)
            .await?;
        streams.push((client, stream));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_grpc = hub.rss_kib();
    // What the hub itself counts as open, by transport.
    let open = hub.samples("sorcha_peer_subscribers").await?;
    report(
        "idle",
        json!({"sse": subscribers, "grpc": subscribers, "per_connection": per_connection}),
        json!({
            "open_streams": open,
            "base_rss_kib": base,
            "sse_kib_per_subscriber": (with_sse.saturating_sub(base)) as f64 / subscribers as f64,
            "grpc_kib_per_stream": (with_grpc.saturating_sub(with_sse)) as f64 / subscribers as f64,
        }),
        Some(&hub),
    );
    drop((held, streams));
    Ok(())
}

pub(crate) async fn storm(peers: usize, behind: usize) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hub = Hub::start(None).await?;
    let http = reqwest::Client::new();
    for i in 0..behind {
        publish_one(
            &http,
            &hub.url,
            &format!("storm-{i}"),
            &json!({"i": i}),
            None,
            None,
        )
        .await?;
    }
    let head = behind as i64 + 1;
    let started = Instant::now();
    // Retries counted by the kind of failure that caused them, with the first error of each.
    type Retries = std::collections::BTreeMap<String, (u64, String)>;
    let retries: Arc<std::sync::Mutex<Retries>> = Arc::default();
    let tasks: Vec<_> = (0..peers)
        .map(|i| {
            let (url, retries) = (hub.url.clone(), Arc::clone(&retries));
            tokio::spawn(async move {
                let id = crate::bench_peer(&format!("storm-peer-{i}"));
                let known = 1i64; // every peer holds genesis only: `behind` versions behind
                for _ in 0..100 {
                    let attempt = async {
                        let client = HubClient::connect(&url, Duration::from_secs(30)).await?;
                        let grant = client.open_session(&peer_request(&id, known)).await?;
                        let mut stream = client
                            .incremental_sync(&id, &grant.session_id, known, None)
                            .await?;
                        let mut last = known;
                        while let Some(e) = stream.next().await {
                            last = e?.entry.version;
                        }
                        anyhow::Ok(last)
                    };
                    match attempt.await {
                        Ok(v) => return anyhow::Ok(v),
                        Err(e) => {
                            let kind = match e.downcast_ref::<LinkError>() {
                                Some(c) => format!("{:?}", c.code),
                                None => "other".to_owned(),
                            };
                            {
                                let mut retries = retries.lock().unwrap_or_else(|p| p.into_inner());
                                let (count, example) = retries.entry(kind).or_default();
                                *count += 1;
                                if example.is_empty() {
                                    *example = format!("{e:#}");
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                bail!("peer {id} never got current")
            })
        })
        .collect();
    let mut current = 0;
    for t in tasks {
        if t.await?? == head {
            current += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fleet = fleet_figures(&hub, &http, peers, started).await?;
    let retries = retries.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report(
        "storm",
        json!({"peers": peers, "behind": behind}),
        json!({
            "all_current_s": elapsed,
            "fleet": fleet,
            "current": current,
            "retries": retries.iter().map(|(k, (n, _))| (k.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "retry_examples": retries.iter().map(|(k, (_, e))| (k.clone(), json!(e))).collect::<serde_json::Map<_, _>>(),
        }),
        Some(&hub),
    );
    if current != peers {
        bail!("{current} of {peers} peers current");
    }
    Ok(())
}

/// What the storm's peers cost the hub's fleet record, once they are all current: the records
/// and store writes it made for them (per second of the storm, on a shared store), and how
/// long `GET /api/v1/fleet` takes with all of them listed (the first page of 1000, and every
/// page). Rates are over the time from the storm's start to the measurement.
async fn fleet_figures(
    hub: &Hub,
    http: &reqwest::Client,
    peers: usize,
    since: Instant,
) -> anyhow::Result<Value> {
    let walk = || async {
        let started = Instant::now();
        let (mut listed, mut pages, mut first_ms, mut after) = (0usize, 0usize, 0.0, String::new());
        // Bounded: the storm's peers in pages of 1000, plus one.
        for _ in 0..=peers / 1000 + 1 {
            let page: Value = http
                .get(format!("{}/api/v1/fleet?limit=1000{after}", hub.url))
                .timeout(Duration::from_secs(30))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            pages += 1;
            if pages == 1 {
                first_ms = started.elapsed().as_secs_f64() * 1000.0;
            }
            listed += page["peers"].as_array().map_or(0, Vec::len);
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        anyhow::Ok((
            listed,
            pages,
            first_ms,
            started.elapsed().as_secs_f64() * 1000.0,
        ))
    };
    // What the hub spent before anyone listed the fleet, for comparison with the release
    // before it.
    let (cpu_before, rss_before) = (hub.cpu_seconds(), hub.rss_kib() as f64 / 1024.0);
    // The record catches up within a flush or two (1 s each by default).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut listed, mut pages, mut first_ms, mut all_ms) = walk().await?;
    while listed < peers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (listed, pages, first_ms, all_ms) = walk().await?;
    }
    // (records written, write calls) so far.
    let written = || async {
        let metrics = hub.metrics_text().await?;
        let scalar = |name: &str| {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        anyhow::Ok((
            scalar("sorcha_peer_fleet_records_written_total"),
            scalar("sorcha_peer_store_call_duration_seconds_count{operation=\"write_fleet\"}"),
        ))
    };
    // On a shared store, until every peer's record is written (bounded).
    let shared = crate::node::hub_store().is_some();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut records, mut writes) = written().await?;
    while shared && records < peers as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (records, writes) = written().await?;
    }
    let seconds = since.elapsed().as_secs_f64();
    // Then a quiet stretch: the storm's peers hold the head and nothing changes.
    const QUIET: Duration = Duration::from_secs(5);
    tokio::time::sleep(QUIET).await;
    let (quiet_records, quiet_writes) = written().await?;
    Ok(json!({
        "hub_cpu_before_listing_s": cpu_before,
        "hub_rss_before_listing_mib": rss_before,
        "records_per_s": records / seconds,
        "write_calls_per_s": writes / seconds,
        "over_s": seconds,
        "quiet_records_per_s": (quiet_records - records) / QUIET.as_secs_f64(),
        "quiet_write_calls_per_s": (quiet_writes - writes) / QUIET.as_secs_f64(),
        "listed": listed,
        "pages": pages,
        "first_page_ms": first_ms,
        "all_pages_ms": all_ms,
        "records_written": records,
        "write_calls": writes,
    }))
}
