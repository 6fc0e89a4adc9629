//! sorcha-bench: the benchmark harness. Starts its own hub (a `sorcha-peer` child process, so
//! hub RSS and CPU are measured alone) on loopback, runs one bounded workload, and prints one
//! JSON line of figures. Exits non-zero when delivery or consistency fails, so small runs serve
//! as smoke tests. See BENCHMARKS.md.

mod bigdocs;
mod connections;
mod fanout;
mod figures;
mod fleet;
mod floor;
mod node;
mod relays;
mod signing;
mod storm_hubs;

use connections::{idle, storm};
pub(crate) use figures::{Receipts, histogram, latency_fields, report};
pub(crate) use node::{Hub, proc_cpu, proc_rss_kib};
use signing::Signer;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::HubLink;
use sorcha_peer::protocol::{ConnectRequest, PeerDescription, PeerId};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";

#[derive(Debug, Parser)]
#[command(
    name = "sorcha-bench",
    about = "Benchmark workloads against a fresh local hub"
)]
struct Cli {
    /// Keep the hub's register in this MongoDB server (a fresh database per run) instead of
    /// the embedded store; `fleet` takes its own `--mongodb`.
    #[arg(long, global = true, value_name = "URI")]
    hub_store: Option<String>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// C concurrent REST publishers, N durable publishes in total.
    Publish {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 512)]
        doc_bytes: usize,
        /// Send a fresh `Idempotency-Key` with every publish, which the hub records in the
        /// entry's transaction: `time-ordered` (UUIDv7, what the CLI sends) or `random`
        /// (UUIDv4).
        #[arg(long, value_enum)]
        idempotency_keys: Option<KeyKind>,
        /// Sign every publication (Ed25519, a fresh publisher key) on a hub that requires
        /// signatures (`signatures.require`) and checks each against the publisher's key.
        #[arg(long)]
        signed: bool,
    },
    /// S subscribers (half gRPC push streams, half SSE, or one kind: `--transport`), P
    /// publishes at R per second; `--include-document`: SSE streams carry each entry with its
    /// document (`include=document`).
    Fanout(fanout::Fanout),
    /// A register of N entries × D bytes: one client streams it, one real peer replicates it.
    Fullsync {
        #[arg(long, default_value_t = 100_000)]
        entries: i64,
        #[arg(long, default_value_t = 2048)]
        doc_bytes: usize,
        /// Every entry signed by a publisher key; the peer requires signatures and checks
        /// each against it (`peer.publisherKeys`, `peer.requireSignatures`).
        #[arg(long)]
        signed: bool,
    },
    /// S idle subscribers of each kind held open: hub RSS per subscriber.
    Idle {
        #[arg(long, default_value_t = 5_000)]
        subscribers: usize,
        /// Subscribers sharing one connection: 1 = a connection each (HTTP/1.1 for SSE);
        /// more = HTTP/2 multiplexing (SSE over h2c, several push streams per channel).
        #[arg(long, default_value_t = 1)]
        per_connection: usize,
    },
    /// S peers a few versions behind reconnect at once: time until all are current.
    Storm {
        #[arg(long, default_value_t = 5_000)]
        peers: usize,
        #[arg(long, default_value_t = 5)]
        behind: usize,
        /// Hubs sharing the `--hub-store` database: with 2 or more, the storm runs for each
        /// hub order, and the first hub is killed once all are current.
        #[arg(long, default_value_t = 1)]
        hubs: usize,
    },
    /// The machine's own fan-out floor: S raw TCP subscribers of a minimal server process,
    /// P messages of B bytes at R per second (no HTTP, gRPC or register).
    Floor {
        #[command(flatten)]
        shape: FanoutShape,
        /// Message size; the hub's notifications are about 300 bytes.
        #[arg(long, default_value_t = 300)]
        bytes: usize,
    },
    /// The server process of `floor` (started by it).
    #[command(hide = true)]
    FloorServer {
        #[arg(long, default_value_t = 300)]
        bytes: usize,
    },
    /// Large documents: P publishes of D-byte documents while S SSE subscribers take every
    /// entry with its document, a peer (its own process) replicates, and R readers page
    /// `/entries`; peak RSS of the hub and of the peer.
    Bigdocs {
        #[arg(long, default_value_t = 200)]
        publishes: usize,
        #[arg(long, default_value_t = 15 * 1024 * 1024)]
        doc_bytes: usize,
        #[arg(long, default_value_t = 10)]
        sse: usize,
        #[arg(long, default_value_t = 5)]
        readers: usize,
    },
    /// A fleet: N hubs on one MongoDB, P peer processes with SSE readers, a publish burst,
    /// the first hub killed while publishing goes on (see BENCHMARKS.md).
    Fleet(fleet::Fleet),
    /// One hub, R relays (peers serving downstream) with S gRPC subscribers each, against the
    /// same R × S subscribers on the hub alone: end-to-end latency and hub CPU.
    Relays(relays::Relays),
    /// Integrity check of N entries (in-process, embedded store).
    Verify {
        #[arg(long, default_value_t = 1_000_000)]
        entries: i64,
        #[arg(long, default_value_t = 256)]
        doc_bytes: usize,
        /// Every entry signed by a publisher key, and every signature checked (batch
        /// verification) against it.
        #[arg(long)]
        signed: bool,
    },
}

/// The shape of a fan-out: S subscribers, P publishes at R per second.
#[derive(Debug, clap::Args)]
struct FanoutShape {
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    #[arg(long, default_value_t = 200)]
    publishes: usize,
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

/// Which streams a fan-out subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    /// Half gRPC push streams, half SSE.
    Mixed,
    /// SSE streams only.
    Sse,
    /// gRPC push streams only.
    Grpc,
}

/// Which idempotency keys the publish workload sends.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyKind {
    /// UUIDv7: ascending, so the hub's key index grows at one end.
    TimeOrdered,
    /// UUIDv4: every key lands somewhere else in the index.
    Random,
}

async fn publish_one(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    doc: &Value,
    idempotency_key: Option<KeyKind>,
    signer: Option<&Signer>,
) -> anyhow::Result<i64> {
    let mut body = json!({ "blueprintId": id, "document": doc });
    if let Some(signer) = signer {
        body["signature"] = signer.sign(id);
    }
    let mut request = http
        .post(format!("{url}/api/v1/system-register/blueprints"))
        .bearer_auth(TOKEN)
        .json(&body);
    if let Some(kind) = idempotency_key {
        let key = match kind {
            KeyKind::TimeOrdered => uuid::Uuid::now_v7(),
            KeyKind::Random => uuid::Uuid::new_v4(),
        };
        request = request.header("idempotency-key", key.to_string());
    }
    let r = request.send().await?;
    if r.status() != 201 {
        bail!(
            "publish {id} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let entry: Value = r.json().await?;
    entry["version"].as_i64().context("version")
}

async fn publish(
    concurrency: usize,
    count: usize,
    doc_bytes: usize,
    idempotency_keys: Option<KeyKind>,
    signed: bool,
) -> anyhow::Result<()> {
    let doc = json!({ "pad": "x".repeat(doc_bytes) });
    let signer = if signed {
        Some(std::sync::Arc::new(Signer::new(&doc)?))
    } else {
        None
    };
    let hub = match &signer {
        Some(signer) => {
            let dir = tempfile::tempdir()?;
            let config = signer.hub_config(dir.path())?;
            let config = config.to_string_lossy().into_owned();
            Hub::start_with(Some(dir), &["--config", &config]).await?
        }
        None => Hub::start(None).await?,
    };
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, url, doc) = (http.clone(), hub.url.clone(), doc.clone());
        let signer = signer.clone();
        let n = count / concurrency + usize::from(c < count % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut versions = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                let id = format!("p{c}-{i}");
                versions.push(
                    publish_one(&http, &url, &id, &doc, idempotency_keys, signer.as_deref())
                        .await?,
                );
                h.record(t.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok((h, versions))
        }));
    }
    let mut all = histogram();
    let mut versions = Vec::new();
    for t in tasks {
        let (h, v) = t.await??;
        all.add(h)?;
        versions.extend(v);
    }
    let elapsed = started.elapsed().as_secs_f64();
    versions.sort_unstable();
    let expected: Vec<i64> = (2..=count as i64 + 1).collect();
    if versions != expected {
        bail!("versions are not contiguous 2..={}", count + 1);
    }
    let mut figures = latency_fields(&all);
    figures["throughput_per_s"] = json!(count as f64 / elapsed);
    figures["elapsed_s"] = json!(elapsed);
    figures["versions"] = json!([versions.first(), versions.last()]);
    // The hub's own figures before it is asked to verify (which takes CPU of its own).
    figures["hub_rss_mib"] = json!(hub.rss_kib() as f64 / 1024.0);
    figures["hub_cpu_s"] = json!(hub.cpu_seconds());
    let (checked, signatures) = hub.verify().await?;
    figures["register_checked"] = json!(checked);
    figures["register_signatures"] = json!(signatures);
    report(
        "publish",
        json!({"concurrency": concurrency, "count": count, "doc_bytes": doc_bytes,
               "idempotency_keys": idempotency_keys.map(|k| format!("{k:?}")), "signed": signed}),
        figures,
        None,
    );
    Ok(())
}

/// A bench peer's id (the bench names them by the node-id rule).
fn bench_peer(id: &str) -> PeerId {
    PeerId::parse(id).expect("bench peer ids follow the node-id rule")
}

fn peer_request(id: &PeerId, version: i64) -> ConnectRequest {
    ConnectRequest {
        peer_id: id.clone(),
        peer: PeerDescription {
            node_type: "Peer".into(),
            supports_push_notifications: true,
            ..Default::default()
        },
        last_known_version: version,
        connection_time: 0,
        insist: false,
        lost_hub: String::new(),
        relay_path: Vec::new(),
    }
}

/// Writes genesis + `n` entries of `doc_bytes` into the hub's store (embedded in `dir`, or
/// the `--hub-store` database), signed by
/// `signer` when given.
async fn build_register(
    dir: &Path,
    n: i64,
    doc_bytes: usize,
    signer: Option<&sorcha_peer::keys::SigningKey>,
) -> anyhow::Result<()> {
    use sorcha_peer::store::RegisterStore;
    let store: Box<dyn RegisterStore> = match node::hub_store() {
        Some(hub) => {
            let config = sorcha_peer::config::MongoConfig {
                database: hub.database.clone(),
                ..Default::default()
            };
            Box::new(sorcha_peer::store::mongo::MongoStore::connect(&hub.uri, &config, 10).await?)
        }
        None => Box::new(sorcha_peer::store::embedded::EmbeddedStore::open(dir)?),
    };
    sorcha_peer::store::synthetic::fill(store.as_ref(), n, doc_bytes, signer).await?;
    store.close().await?;
    Ok(())
}

async fn fullsync(entries: i64, doc_bytes: usize, signed: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = if signed {
        Some(sorcha_peer::keys::SigningKey::generate("bench-publisher")?)
    } else {
        None
    };
    build_register(dir.path(), entries, doc_bytes, key.as_ref()).await?;
    let hub = Hub::start(Some(dir)).await?;
    // 1. Hub streaming throughput to one peer-like client.
    let client = HubClient::connect(&hub.url, Duration::from_secs(30)).await?;
    let id = bench_peer("bench-stream");
    let grant = client.open_session(&peer_request(&id, 0)).await?;
    let started = Instant::now();
    let mut stream = client.full_sync(&id, &grant.session_id, None).await?;
    let mut count = 0i64;
    while let Some(e) = stream.next().await {
        e?;
        count += 1;
    }
    let stream_s = started.elapsed().as_secs_f64();
    if count != entries + 1 {
        bail!("streamed {count} entries, expected {}", entries + 1);
    }
    // 2. A real peer (in this process) replicating and applying durably.
    let peer_dir = tempfile::tempdir()?;
    let mut config = sorcha_peer::config::Config {
        data_dir: peer_dir.path().to_owned(),
        role: sorcha_peer::config::Role::Peer,
        hubs: vec![hub.url.clone()],
        node_id: Some("bench-peer".into()),
        admin_token: Some(sorcha_peer::config::Secret(TOKEN.into())),
        ..Default::default()
    };
    config.peer.sync_interval = Duration::from_secs(3600);
    if let Some(key) = &key {
        config.peer.publisher_keys = vec![key.verifier().clone()];
        config.peer.require_signatures = true;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let started = Instant::now();
    let peer = sorcha_peer::app::start(config, listener).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while peer.state.register.head_version() < entries + 1 {
        if Instant::now() > deadline {
            bail!("peer did not finish its full sync");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replicate_s = started.elapsed().as_secs_f64();
    let verify = peer.state.register.verify().await?;
    peer.stop().await?;
    if !verify.ok {
        bail!("replica does not verify: {:?}", verify.failure);
    }
    report(
        "fullsync",
        json!({"entries": entries + 1, "doc_bytes": doc_bytes, "signed": signed}),
        json!({
            "streamed": count,
            "stream_s": stream_s,
            "stream_entries_per_s": count as f64 / stream_s,
            "peer_replicate_s": replicate_s,
            "peer_entries_per_s": count as f64 / replicate_s,
            "replica_checked": verify.checked,
            "replica_signatures": verify.signed,
        }),
        Some(&hub),
    );
    Ok(())
}

async fn verify(entries: i64, doc_bytes: usize, signed: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = if signed {
        Some(sorcha_peer::keys::SigningKey::generate("bench-publisher")?)
    } else {
        None
    };
    build_register(dir.path(), entries, doc_bytes, key.as_ref()).await?;
    let store = sorcha_peer::store::embedded::EmbeddedStore::open(dir.path())?;
    let keys = key
        .as_ref()
        .map(|k| sorcha_peer::register::signature::PublisherKeys::new([k.verifier().clone()]));
    let started = Instant::now();
    let result = sorcha_peer::register::verify_store(&store, keys).await?;
    let elapsed = started.elapsed().as_secs_f64();
    report(
        "verify",
        json!({"entries": entries + 1, "doc_bytes": doc_bytes, "signed": signed}),
        json!({"ok": result.ok, "checked": result.checked, "signatures": result.signed,
               "elapsed_s": elapsed, "entries_per_s": result.checked as f64 / elapsed}),
        None,
    );
    if !result.ok {
        bail!("verification failed: {:?}", result.failure);
    }
    if signed && result.signed != u64::try_from(entries)? {
        bail!("{} of {entries} signatures verified", result.signed);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    node::set_hub_store(cli.hub_store);
    match cli.workload {
        Workload::Publish {
            concurrency,
            count,
            doc_bytes,
            idempotency_keys,
            signed,
        } => publish(concurrency, count, doc_bytes, idempotency_keys, signed).await,
        Workload::Fanout(run) => fanout::fanout(run).await,
        Workload::Fleet(run) => fleet::run(run).await,
        Workload::Relays(run) => relays::run(run).await,
        Workload::Fullsync {
            entries,
            doc_bytes,
            signed,
        } => fullsync(entries, doc_bytes, signed).await,
        Workload::Idle {
            subscribers,
            per_connection,
        } => idle(subscribers, per_connection).await,
        Workload::Storm {
            peers,
            behind,
            hubs,
        } if hubs > 1 => storm_hubs::run(hubs, peers, behind).await,
        Workload::Storm { peers, behind, .. } => storm(peers, behind).await,
        Workload::Verify {
            entries,
            doc_bytes,
            signed,
        } => verify(entries, doc_bytes, signed).await,
        Workload::Bigdocs {
            publishes,
            doc_bytes,
            sse,
            readers,
        } => bigdocs::run(publishes, doc_bytes, sse, readers).await,
        Workload::Floor {
            shape:
                FanoutShape {
                    subscribers,
                    publishes,
                    rate,
                },
            bytes,
        } => floor::run(subscribers, publishes, rate, bytes).await,
        Workload::FloorServer { bytes } => floor::server(bytes).await,
    }
}
