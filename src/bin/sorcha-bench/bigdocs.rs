//! `bigdocs`: memory under large documents. P publishes of D-byte blueprints (each a realistic
//! document of many actions) while S SSE subscribers take every entry with its document, a
//! peer in its own process replicates, and R readers page `/entries` through the whole
//! register. Everything is checked (every event in order with its document's checksum, every
//! page contiguous, both registers verify and agree) and the peak RSS of hub and peer is
//! reported.

use super::{Hub, TOKEN, histogram, latency_fields, report};
use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Upper bound of every wait in this workload.
const DEADLINE: Duration = Duration::from_secs(1800);

/// A canonical (RFC 8785) blueprint of at most `bytes` bytes: sorted keys, no whitespace,
/// nothing to escape, so the hub stores exactly these bytes.
fn document(index: usize, bytes: usize) -> String {
    let mut doc = String::with_capacity(bytes);
    doc.push_str("{\"actions\":[");
    let tail = format!("],\"index\":{index},\"title\":\"Big blueprint {index}\"}}");
    for id in 0.. {
        let action = format!(
            "{}{{\"description\":\"Action {id} of blueprint {index}: validate, enrich and route \
             the request to the next participant.\",\"id\":{id},\"name\":\"step-{id}\"}}",
            if id == 0 { "" } else { "," }
        );
        if doc.len() + action.len() + tail.len() > bytes {
            break;
        }
        doc.push_str(&action);
    }
    doc.push_str(&tail);
    doc
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn checksum(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What one SSE subscriber saw: versions in order, and the checksums of the documents it was
/// asked to hash (every `of`-th version, so together they hash every document once).
async fn subscriber(
    url: String,
    k: usize,
    of: usize,
    last: i64,
) -> anyhow::Result<(Vec<i64>, BTreeMap<i64, String>)> {
    let response = reqwest::Client::new()
        .get(format!(
            "{url}/api/v1/system-register/events?since=1&include=document"
        ))
        .send()
        .await?;
    if response.status() != 200 {
        bail!("event stream answered {}", response.status());
    }
    // Events are split on the blank line by hand: a general SSE parser walks a 15 MiB line
    // character by character and would make the clients, not the hub, the bottleneck.
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let (mut versions, mut hashed) = (Vec::new(), BTreeMap::new());
    let mut scanned = 0;
    'stream: while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk?);
        while let Some(end) = find(&buffer[scanned..], b"\n\n").map(|i| i + scanned) {
            let event = &buffer[..end];
            let (mut id, mut data) = (None, None);
            for line in event.split(|b| *b == b'\n') {
                if let Some(v) = line.strip_prefix(b"id: ") {
                    id = Some(std::str::from_utf8(v)?.parse::<i64>()?);
                } else if let Some(v) = line.strip_prefix(b"data: ") {
                    data = Some(v);
                }
            }
            if let (Some(version), Some(data)) = (id, data) {
                versions.push(version);
                if version as usize % of == k {
                    // The entry is the event's last field and its document the entry's last:
                    // the document runs from `"document":` to the two closing braces.
                    let at = find(data, b",\"document\":").context("event without a document")?;
                    hashed.insert(version, checksum(&data[at + 12..data.len() - 2]));
                }
                if version >= last {
                    break 'stream;
                }
            }
            buffer.drain(..end + 2);
            scanned = 0;
        }
        scanned = buffer.len().saturating_sub(1);
    }
    Ok((versions, hashed))
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    version: i64,
    checksum: String,
    #[serde(rename = "document")]
    _document: serde::de::IgnoredAny,
}

/// Pages `/entries` from the start until it has every version up to `last` (polling while
/// publishes go on); returns the versions seen and the pages read.
async fn reader(url: String, last: i64) -> anyhow::Result<(Vec<i64>, usize)> {
    let http = reqwest::Client::new();
    let (mut versions, mut pages, mut since) = (Vec::new(), 0, 0i64);
    let deadline = Instant::now() + DEADLINE;
    while since < last {
        if Instant::now() > deadline {
            bail!("reader stopped at version {since}");
        }
        let r = http
            .get(format!(
                "{url}/api/v1/system-register/entries?since={since}&limit=1000"
            ))
            .send()
            .await?;
        if r.status() == 503 {
            // The read budget is busy: wait as told.
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        if r.status() != 200 {
            bail!("entries answered {}", r.status());
        }
        let page: Page = serde_json::from_slice(&r.bytes().await?)?;
        pages += 1;
        for item in &page.items {
            if item.checksum.is_empty() {
                bail!("entry {} without checksum", item.version);
            }
            versions.push(item.version);
        }
        match (page.next, page.items.last()) {
            (Some(next), _) => since = next.parse()?,
            (None, Some(item)) => since = item.version,
            // Caught up with the publisher: look again shortly.
            (None, None) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok((versions, pages))
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(http.get(url).send().await?.json().await?)
}

/// Runs the workload; fails unless everything was delivered and verifies.
pub(crate) async fn run(
    publishes: usize,
    doc_bytes: usize,
    sse: usize,
    readers: usize,
) -> anyhow::Result<()> {
    let hub = Hub::start(None).await?;
    let peer = Hub::spawn(
        None,
        &[
            "--role",
            "peer",
            "--hub",
            &hub.url,
            "--node-id",
            "bench-peer",
        ],
    )
    .await?;
    let last = publishes as i64 + 1;
    let subscribers: Vec<_> = (0..sse)
        .map(|k| tokio::spawn(subscriber(hub.url.clone(), k, sse, last)))
        .collect();
    let pagers: Vec<_> = (0..readers)
        .map(|_| tokio::spawn(reader(hub.url.clone(), last)))
        .collect();

    let http = reqwest::Client::new();
    let mut expected = BTreeMap::new();
    let mut latency = histogram();
    let started = Instant::now();
    for i in 0..publishes {
        let doc = document(i, doc_bytes);
        let sum = checksum(doc.as_bytes());
        let body = format!("{{\"blueprintId\":\"big-{i}\",\"document\":{doc}}}");
        drop(doc);
        let t = Instant::now();
        let r = http
            .post(format!("{}/api/v1/system-register/blueprints", hub.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if r.status() != 201 {
            bail!("publish {i} answered {}: {}", r.status(), r.text().await?);
        }
        let entry: Value = r.json().await?;
        latency.record(t.elapsed().as_micros().max(1) as u64)?;
        if entry["checksum"] != sum.as_str() {
            bail!("publish {i}: the hub stored other bytes than were sent");
        }
        expected.insert(entry["version"].as_i64().context("version")?, sum);
    }
    let publish_s = started.elapsed().as_secs_f64();

    let mut delivered = 0;
    for s in subscribers {
        let (versions, hashed) = tokio::time::timeout(DEADLINE, s)
            .await
            .context("subscribers did not finish")???;
        if versions != (2..=last).collect::<Vec<_>>() {
            bail!(
                "a subscriber saw {} events, not 2..={last} in order",
                versions.len()
            );
        }
        for (version, sum) in hashed {
            if expected.get(&version) != Some(&sum) {
                bail!("a subscriber got another document for version {version}");
            }
        }
        delivered += versions.len();
    }
    let mut pages = 0;
    for r in pagers {
        let (versions, read) = tokio::time::timeout(DEADLINE, r)
            .await
            .context("readers did not finish")???;
        if versions != (1..=last).collect::<Vec<_>>() {
            bail!("a reader saw {} entries, not 1..={last}", versions.len());
        }
        pages += read;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let node = get_json(&http, &format!("{}/api/v1/node", peer.url)).await?;
        if node["register"]["headVersion"] == last {
            break;
        }
        if Instant::now() > deadline {
            bail!("the peer did not replicate everything: {node}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replicated_s = started.elapsed().as_secs_f64();
    let mut heads = Vec::new();
    for node in [&hub, &peer] {
        let verify = get_json(
            &http,
            &format!("{}/api/v1/system-register/verify", node.url),
        )
        .await?;
        if verify["ok"] != true || verify["headVersion"] != last {
            bail!("{} does not verify: {verify}", node.url);
        }
        heads.push(verify["headHash"].clone());
    }
    if heads[0] != heads[1] {
        bail!("hub and peer heads differ: {heads:?}");
    }
    let mut figures = latency_fields(&latency);
    figures["publish_s"] = json!(publish_s);
    figures["replicated_s"] = json!(replicated_s);
    figures["sse_delivered"] = json!(delivered);
    figures["reader_pages"] = json!(pages);
    figures["hub_peak_rss_mib"] = json!(hub.peak_rss_kib() as f64 / 1024.0);
    figures["peer_peak_rss_mib"] = json!(peer.peak_rss_kib() as f64 / 1024.0);
    figures["peer_rss_mib"] = json!(peer.rss_kib() as f64 / 1024.0);
    report(
        "bigdocs",
        json!({"publishes": publishes, "doc_bytes": doc_bytes, "sse": sse, "readers": readers}),
        figures,
        Some(&hub),
    );
    Ok(())
}
