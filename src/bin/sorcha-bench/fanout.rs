//! `fanout`: publishes at a steady rate to a hub with thousands of subscribers (gRPC push
//! streams, SSE streams or both) and reports delivery latency, order, memory and CPU.

use crate::{
    FanoutShape, Hub, Receipts, Transport, bench_peer, histogram, latency_fields, peer_request,
    proc_cpu, publish_one, report,
};
use anyhow::bail;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::json;
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::HubLink;
use sorcha_peer::protocol::Filters;
use std::time::{Duration, Instant};

/// What a fan-out runs: its shape, who subscribes, and what each event carries.
#[derive(Debug, clap::Args)]
pub(crate) struct Fanout {
    #[command(flatten)]
    shape: FanoutShape,
    /// Which streams subscribe.
    #[arg(long, value_enum, default_value_t = Transport::Mixed)]
    transport: Transport,
    /// SSE subscribers ask for every entry with its document (`include=document`); gRPC
    /// push notifications carry a summary either way.
    #[arg(long)]
    include_document: bool,
    /// Size of each published document's padding (the whole document is ≈ 40 bytes more).
    #[arg(long, default_value_t = 256)]
    doc_bytes: usize,
}

pub(crate) async fn fanout(run: Fanout) -> anyhow::Result<()> {
    let Fanout {
        shape:
            FanoutShape {
                subscribers,
                publishes,
                rate,
            },
        transport,
        include_document,
        doc_bytes,
    } = run;
    if include_document && transport == Transport::Grpc {
        bail!("--include-document needs SSE subscribers: gRPC push notifications carry a summary");
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hub = Hub::start(None).await?;
    let grpc_subs = match transport {
        Transport::Mixed => subscribers / 2,
        Transport::Sse => 0,
        Transport::Grpc => subscribers,
    };
    let sse_subs = subscribers - grpc_subs;
    let events_url = format!(
        "{}{}{}",
        hub.url,
        sorcha_peer::api::sse::EVENTS_PATH,
        if include_document {
            "?include=document"
        } else {
            ""
        }
    );
    // Each subscriber records (version, arrival) for every notification.
    let mut grpc_receivers = Vec::new();
    for i in 0..grpc_subs {
        grpc_receivers.push(grpc_subscriber(&hub.url, &format!("fan-{i}"), publishes).await?);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut sse_receivers = Vec::new();
    for _ in 0..sse_subs {
        let response = http.get(&events_url).send().await?;
        if !response.status().is_success() {
            bail!("event stream answered {}", response.status());
        }
        let mut events = response.bytes_stream().eventsource();
        sse_receivers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(publishes);
            while got.len() < publishes {
                match events.next().await {
                    // Entries only, by their event type: the `caught-up` marker and the
                    // `checkpoint` events are not (SSE keeps the last id for them).
                    Some(Ok(e)) if e.event.starts_with("blueprint.") => {
                        // A document event must carry the document: a frame cut short or
                        // without it counts as not delivered (version 0 breaks the order).
                        let whole = !include_document
                            || (e.data.len() > doc_bytes && e.data.contains("\"document\":{"));
                        let version = if whole { e.id.parse().unwrap_or(0) } else { 0 };
                        got.push((version, Instant::now()))
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            got
        }));
    }
    let rss_before = hub.rss_kib();
    let cpu_before = proc_cpu(hub.pid());
    let clients_before = proc_cpu(std::process::id());
    let doc = json!({ "title": "fanout", "pad": "x".repeat(doc_bytes) });
    let Published {
        ack_of,
        latency: publish_latency,
        seconds: publishing_s,
    } = publish_at_rate(&hub.url, publishes, rate, &doc).await?;
    let mut receipts = Receipts::new();
    let ack = |v| ack_of.get(&v).copied();
    receipts.add("grpc", grpc_receivers, ack).await?;
    receipts.add("sse", sse_receivers, ack).await?;
    let cpu = proc_cpu(hub.pid()).delta(cpu_before);
    let clients = proc_cpu(std::process::id()).delta(clients_before);
    let expected = subscribers * publishes;
    let mut figures = receipts.figures(expected);
    figures["hub_rss_before_publishing_mib"] = json!(rss_before as f64 / 1024.0);
    figures["publish"] = latency_fields(&publish_latency);
    figures["publishing_s"] = json!(publishing_s);
    cpu.record(&mut figures, "hub_publish");
    clients.record(&mut figures, "clients_publish");
    report(
        "fanout",
        json!({"subscribers": subscribers, "grpc": grpc_subs, "sse": sse_subs, "publishes": publishes,
               "rate": rate, "include_document": include_document, "doc_bytes": doc_bytes}),
        figures,
        Some(&hub),
    );
    receipts.check(expected)
}

/// A gRPC subscriber of the node at `url` (a hub or a relay) named `id`: a session and a push
/// stream from now; the task records (version, arrival) of the next `publishes` notifications.
pub(crate) async fn grpc_subscriber(
    url: &str,
    id: &str,
    publishes: usize,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<(i64, Instant)>>> {
    let client = HubClient::connect(url, Duration::from_secs(30)).await?;
    let id = bench_peer(id);
    let grant = client.open_session(&peer_request(&id, 1)).await?;
    let mut stream = client
        .subscribe(&id, &grant.session_id, &Filters::default(), 0)
        .await?;
    Ok(tokio::spawn(async move {
        let _keep = client;
        let mut got = Vec::with_capacity(publishes);
        while got.len() < publishes {
            match stream.next().await {
                Some(Ok(n)) => got.push((n.version, Instant::now())),
                _ => break,
            }
        }
        got
    }))
}

/// What a steady run of publishes left: when each version was acknowledged, how long each
/// publish took, and how long the whole run took.
pub(crate) struct Published {
    pub(crate) ack_of: std::collections::HashMap<i64, Instant>,
    pub(crate) latency: hdrhistogram::Histogram<u64>,
    pub(crate) seconds: f64,
}

/// Publishes `publishes` copies of `doc` (ids `fan-0`, …) to the hub at `url`, `rate` a
/// second.
pub(crate) async fn publish_at_rate(
    url: &str,
    publishes: usize,
    rate: f64,
    doc: &serde_json::Value,
) -> anyhow::Result<Published> {
    let publisher = reqwest::Client::new();
    let mut acks = Vec::with_capacity(publishes);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    // How long each publish took while the hub fans out: a hub that falls behind on writes
    // under load shows here (and in a publishing phase longer than planned).
    let mut latency = histogram();
    for i in 0..publishes {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        let v = publish_one(&publisher, url, &format!("fan-{i}"), doc, None, None).await?;
        latency.record(sent.elapsed().as_micros().max(1) as u64)?;
        acks.push((v, Instant::now()));
    }
    Ok(Published {
        ack_of: acks.into_iter().collect(),
        latency,
        seconds: started.elapsed().as_secs_f64(),
    })
}
