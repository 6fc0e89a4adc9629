//! `relays`: one hub, R relay processes (peers with `--serve-downstream`) and S gRPC
//! subscribers on each relay, against the same R × S subscribers on a hub alone, in one run:
//! end-to-end latency (a publish acknowledged by the hub → its notification at a subscriber)
//! and the CPU of the hub (and of the relays).

use crate::fanout::{Published, grpc_subscriber, publish_at_rate};
use crate::{Hub, Receipts, latency_fields, proc_cpu, report};
use anyhow::bail;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The two-tier shape.
#[derive(Debug, clap::Args)]
pub(crate) struct Relays {
    /// Relay processes below the hub.
    #[arg(long, default_value_t = 4)]
    relays: usize,
    /// gRPC subscribers on each relay (the hub alone gets relays × this many).
    #[arg(long, default_value_t = 500)]
    subscribers_per_relay: usize,
    #[arg(long, default_value_t = 200)]
    publishes: usize,
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

pub(crate) async fn run(run: Relays) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let direct = phase(&run, false).await?;
    let relayed = phase(&run, true).await?;
    report(
        "relays",
        json!({"relays": run.relays, "subscribers_per_relay": run.subscribers_per_relay,
               "subscribers": run.relays * run.subscribers_per_relay,
               "publishes": run.publishes, "rate": run.rate}),
        json!({"hub_alone": direct, "through_relays": relayed}),
        None,
    );
    Ok(())
}

/// One fan-out of `relays × subscribers_per_relay`: on the hub itself, or `relayed` through
/// the relays. Each phase starts its own hub (and relays), so neither inherits the other's.
async fn phase(run: &Relays, relayed: bool) -> anyhow::Result<Value> {
    let hub = Hub::start(None).await?;
    let mut relays = Vec::new();
    if relayed {
        for i in 0..run.relays {
            let id = format!("relay-{i}");
            let args = [
                "--role",
                "peer",
                "--hub",
                &hub.url,
                "--serve-downstream",
                "--node-id",
                &id,
            ];
            relays.push(Hub::spawn(None, &args).await?);
        }
        wait_connected(&relays).await?;
    }
    let total = run.relays * run.subscribers_per_relay;
    let mut receivers = Vec::with_capacity(total);
    for i in 0..total {
        let url = match relays.get(i % run.relays.max(1)) {
            Some(relay) if relayed => relay.url.clone(),
            _ => hub.url.clone(),
        };
        receivers.push(grpc_subscriber(&url, &format!("sub-{i}"), run.publishes).await?);
    }
    let pids: Vec<u32> = relays.iter().map(Hub::pid).collect();
    let cpu_before = proc_cpu(hub.pid());
    let relays_before: Vec<_> = pids.iter().map(|p| proc_cpu(*p)).collect();
    let doc = json!({ "title": "relays", "pad": "x".repeat(256) });
    let Published {
        ack_of,
        latency,
        seconds,
    } = publish_at_rate(&hub.url, run.publishes, run.rate, &doc).await?;
    let mut receipts = Receipts::new();
    receipts
        .add("grpc", receivers, |v| ack_of.get(&v).copied())
        .await?;
    let expected = total * run.publishes;
    let mut figures = receipts.figures(expected);
    proc_cpu(hub.pid())
        .delta(cpu_before)
        .record(&mut figures, "hub");
    if relayed {
        let relay_cpu: f64 = pids
            .iter()
            .zip(relays_before)
            .map(|(p, before)| proc_cpu(*p).delta(before).seconds())
            .sum();
        figures["relays_cpu_s"] = json!(relay_cpu);
    }
    figures["hub_rss_mib"] = json!(hub.rss_kib() as f64 / 1024.0);
    figures["publish"] = latency_fields(&latency);
    figures["publishing_s"] = json!(seconds);
    receipts.check(expected)?;
    Ok(figures)
}

/// Waits (at most a minute) until every relay is in session with the hub.
async fn wait_connected(relays: &[Hub]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for relay in relays {
        loop {
            let state = http
                .get(format!("{}/api/v1/connection", relay.url))
                .send()
                .await?
                .json::<Value>()
                .await?;
            if state["state"] == "Connected" {
                break;
            }
            if Instant::now() > deadline {
                bail!("relay {} did not connect: {state}", relay.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
