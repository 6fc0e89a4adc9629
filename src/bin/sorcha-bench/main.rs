//! sorcha-bench: the benchmark harness. Starts its own hub (a `sorcha-peer` child process, so
//! hub RSS and CPU are measured alone) on loopback, runs one bounded workload, and prints one
//! JSON line of figures. Exits non-zero when delivery or consistency fails, so small runs serve
//! as smoke tests. See BENCHMARKS.md.

mod bigdocs;
mod floor;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sorcha_peer::hub_client::HubClient;
use sorcha_peer::link::{HubLink, LinkError};
use sorcha_peer::protocol::{ConnectRequest, Filters, PeerDescription};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "bench-admin-token-0123456789";

#[derive(Debug, Parser)]
#[command(
    name = "sorcha-bench",
    about = "Benchmark workloads against a fresh local hub"
)]
struct Cli {
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
    },
    /// S subscribers (half gRPC push streams, half SSE), P publishes at R per second.
    Fanout(FanoutShape),
    /// A register of N entries × D bytes: one client streams it, one real peer replicates it.
    Fullsync {
        #[arg(long, default_value_t = 100_000)]
        entries: i64,
        #[arg(long, default_value_t = 2048)]
        doc_bytes: usize,
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
    /// Integrity check of N entries (in-process, embedded store).
    Verify {
        #[arg(long, default_value_t = 1_000_000)]
        entries: i64,
        #[arg(long, default_value_t = 256)]
        doc_bytes: usize,
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

/// A hub running as a child process.
struct Hub {
    child: Child,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Hub {
    async fn start(dir: Option<tempfile::TempDir>) -> anyhow::Result<Self> {
        Self::spawn(dir, &["--role", "hub"]).await
    }

    /// A node (hub or peer, by `role_args`) on `dir` (a fresh one if `None`).
    async fn spawn(dir: Option<tempfile::TempDir>, role_args: &[&str]) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => tempfile::tempdir()?,
        };
        let exe = std::env::current_exe()?;
        let binary = exe.with_file_name("sorcha-peer");
        let mut child = Command::new(&binary)
            .arg("serve")
            .args(role_args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                TOKEN,
                "--data-dir",
            ])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .env("SORCHA_HUB__MAX_SESSIONS", "100000")
            // Benchmark subscribers do not heartbeat; keep their sessions for the whole run.
            .env("SORCHA_HUB__SESSION_TIMEOUT", "1h")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let url = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("sorcha-peer listening on ") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("hub exited before listening")
        })
        .await
        .context("hub did not start")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            url,
            _dir: Some(dir),
        })
    }

    /// Asks the hub to stop (SIGTERM) and gives it a bounded time to exit cleanly, so a
    /// profiler wrapped around it (valgrind, perf) can write its report; `kill_on_drop` ends
    /// it otherwise.
    fn stop(&self) {
        let pid = self.pid();
        if pid == 0 {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        for _ in 0..300 {
            if std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        proc_rss_kib(self.pid())
    }

    /// Peak resident set size so far (`VmHWM`) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// User + system CPU seconds used so far.
    fn cpu_seconds(&self) -> f64 {
        let cpu = proc_cpu(self.pid());
        cpu.user + cpu.sys
    }
}

/// Resident set size of process `pid` in KiB (0 if it is gone).
fn proc_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (0 if the process is gone).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds a process has used, in user space and in the kernel.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    user: f64,
    sys: f64,
}

impl Cpu {
    /// Adds `<name>_cpu_user_s` and `<name>_cpu_sys_s` to a report's figures.
    fn record(self, figures: &mut Value, name: &str) {
        figures[format!("{name}_cpu_user_s")] = json!(self.user);
        figures[format!("{name}_cpu_sys_s")] = json!(self.sys);
    }

    /// What was used since `earlier`.
    fn delta(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }
}

/// CPU used so far by process `pid` (`utime` and `stime` of `/proc/<pid>/stat`).
fn proc_cpu(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0) as f64
            / 100.0
    };
    Cpu {
        user: seconds(11),
        sys: seconds(12),
    }
}

/// What a fan-out's subscribers received, against the publishes' acknowledgements.
struct Receipts {
    /// Acknowledgement-to-receipt latency (µs) of every receipt.
    latency: Histogram<u64>,
    delivered: usize,
    /// Every subscriber saw consecutive versions (sequence numbers), none skipped or repeated.
    in_order: bool,
}

impl Receipts {
    /// Waits (bounded) for every subscriber task's `(version, arrival)` list.
    async fn gather(
        receivers: Vec<tokio::task::JoinHandle<Vec<(i64, Instant)>>>,
        ack_of: impl Fn(i64) -> Option<Instant>,
    ) -> anyhow::Result<Self> {
        let mut receipts = Receipts {
            latency: histogram(),
            delivered: 0,
            in_order: true,
        };
        for r in receivers {
            let got = tokio::time::timeout(Duration::from_secs(120), r)
                .await
                .context("subscribers did not finish")??;
            receipts.in_order &= got.windows(2).all(|w| w[1].0 == w[0].0 + 1);
            receipts.delivered += got.len();
            for (v, at) in got {
                if let Some(ack) = ack_of(v) {
                    let us = at.saturating_duration_since(ack).as_micros().max(1);
                    receipts.latency.record(us as u64)?;
                }
            }
        }
        Ok(receipts)
    }

    /// Fails unless every subscriber got every publish, in order.
    fn check(&self, expected: usize) -> anyhow::Result<()> {
        if self.delivered != expected || !self.in_order {
            bail!(
                "delivered {} of {expected} (in order: {})",
                self.delivered,
                self.in_order
            );
        }
        Ok(())
    }

    /// The report's delivery figures: latency percentiles, delivered/expected, in order.
    fn figures(&self, expected: usize) -> Value {
        let mut figures = latency_fields(&self.latency);
        figures["delivered"] = json!(self.delivered);
        figures["expected"] = json!(expected);
        figures["in_order"] = json!(self.in_order);
        figures
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn latency_fields(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

fn report(workload: &str, params: Value, mut figures: Value, hub: Option<&Hub>) {
    if let Some(hub) = hub {
        figures["hub_rss_mib"] = json!(hub.rss_kib() as f64 / 1024.0);
        figures["hub_cpu_s"] = json!(hub.cpu_seconds());
    }
    let line = json!({ "workload": workload, "params": params, "figures": figures });
    println!("{line}");
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
) -> anyhow::Result<i64> {
    let mut request = http
        .post(format!("{url}/api/v1/system-register/blueprints"))
        .bearer_auth(TOKEN)
        .json(&json!({ "blueprintId": id, "document": doc }));
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
) -> anyhow::Result<()> {
    let hub = Hub::start(None).await?;
    let http = reqwest::Client::new();
    let doc = json!({ "pad": "x".repeat(doc_bytes) });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, url, doc) = (http.clone(), hub.url.clone(), doc.clone());
        let n = count / concurrency + usize::from(c < count % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut versions = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                let id = format!("p{c}-{i}");
                versions.push(publish_one(&http, &url, &id, &doc, idempotency_keys).await?);
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
    report(
        "publish",
        json!({"concurrency": concurrency, "count": count, "doc_bytes": doc_bytes,
               "idempotency_keys": idempotency_keys.map(|k| format!("{k:?}"))}),
        figures,
        Some(&hub),
    );
    Ok(())
}

fn peer_request(id: &str, version: i64) -> ConnectRequest {
    ConnectRequest {
        peer_id: id.to_owned(),
        peer: PeerDescription {
            node_type: "Peer".into(),
            supports_push_notifications: true,
            ..Default::default()
        },
        last_known_version: version,
        connection_time: 0,
    }
}

async fn fanout(subscribers: usize, publishes: usize, rate: f64) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let hub = Hub::start(None).await?;
    let grpc_subs = subscribers / 2;
    let sse_subs = subscribers - grpc_subs;
    // Each subscriber records (version, arrival) for every notification.
    let mut receivers = Vec::new();
    for i in 0..grpc_subs {
        let client = HubClient::connect(&hub.url, Duration::from_secs(30)).await?;
        let id = format!("fan-{i}");
        let grant = client.open_session(&peer_request(&id, 1)).await?;
        let mut stream = client
            .subscribe(&id, &grant.session_id, &Filters::default(), 0)
            .await?;
        receivers.push(tokio::spawn(async move {
            let _keep = client;
            let mut got = Vec::with_capacity(publishes);
            while got.len() < publishes {
                match stream.next().await {
                    Some(Ok(n)) => got.push((n.version, Instant::now())),
                    _ => break,
                }
            }
            got
        }));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    for _ in 0..sse_subs {
        let response = http
            .get(format!("{}/api/v1/system-register/events", hub.url))
            .send()
            .await?;
        let mut events = response.bytes_stream().eventsource();
        receivers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(publishes);
            while got.len() < publishes {
                match events.next().await {
                    // Entries only: the `caught-up` marker has no id.
                    Some(Ok(e)) if !e.data.is_empty() && !e.id.is_empty() => {
                        got.push((e.id.parse().unwrap_or(0), Instant::now()))
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
    let publisher = reqwest::Client::new();
    let doc = json!({ "title": "fanout", "pad": "x".repeat(256) });
    let mut acks = Vec::with_capacity(publishes);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for i in 0..publishes {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let v = publish_one(&publisher, &hub.url, &format!("fan-{i}"), &doc, None).await?;
        acks.push((v, Instant::now()));
    }
    let ack_of: std::collections::HashMap<i64, Instant> = acks.into_iter().collect();
    let receipts = Receipts::gather(receivers, |v| ack_of.get(&v).copied()).await?;
    let cpu = proc_cpu(hub.pid()).delta(cpu_before);
    let clients = proc_cpu(std::process::id()).delta(clients_before);
    let expected = subscribers * publishes;
    let mut figures = receipts.figures(expected);
    figures["hub_rss_before_publishing_mib"] = json!(rss_before as f64 / 1024.0);
    cpu.record(&mut figures, "hub_publish");
    clients.record(&mut figures, "clients_publish");
    report(
        "fanout",
        json!({"subscribers": subscribers, "grpc": grpc_subs, "sse": sse_subs, "publishes": publishes, "rate": rate}),
        figures,
        Some(&hub),
    );
    receipts.check(expected)
}

/// Writes genesis + `n` entries of `doc_bytes` into an embedded store in `dir`.
async fn build_register(dir: &Path, n: i64, doc_bytes: usize) -> anyhow::Result<()> {
    use sorcha_peer::store::RegisterStore;
    let store = sorcha_peer::store::embedded::EmbeddedStore::open(dir)?;
    sorcha_peer::store::synthetic::fill(&store, n, doc_bytes).await?;
    store.close().await?;
    Ok(())
}

async fn fullsync(entries: i64, doc_bytes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    build_register(dir.path(), entries, doc_bytes).await?;
    let hub = Hub::start(Some(dir)).await?;
    // 1. Hub streaming throughput to one peer-like client.
    let client = HubClient::connect(&hub.url, Duration::from_secs(30)).await?;
    let grant = client
        .open_session(&peer_request("bench-stream", 0))
        .await?;
    let started = Instant::now();
    let mut stream = client
        .full_sync("bench-stream", &grant.session_id, 0)
        .await?;
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
        json!({"entries": entries + 1, "doc_bytes": doc_bytes}),
        json!({
            "stream_s": stream_s,
            "stream_entries_per_s": count as f64 / stream_s,
            "peer_replicate_s": replicate_s,
            "peer_entries_per_s": count as f64 / replicate_s,
        }),
        Some(&hub),
    );
    Ok(())
}

async fn idle(subscribers: usize, per_connection: usize) -> anyhow::Result<()> {
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
            .get(format!("{}/api/v1/system-register/events", hub.url))
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
        let id = format!("idle-{i}");
        let grant = client.open_session(&peer_request(&id, 1)).await?;
        let stream = client
            .subscribe(&id, &grant.session_id, &Filters::default(), 0)
            .await?;
        streams.push((client, stream));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_grpc = hub.rss_kib();
    report(
        "idle",
        json!({"sse": subscribers, "grpc": subscribers, "per_connection": per_connection}),
        json!({
            "base_rss_kib": base,
            "sse_kib_per_subscriber": (with_sse.saturating_sub(base)) as f64 / subscribers as f64,
            "grpc_kib_per_stream": (with_grpc.saturating_sub(with_sse)) as f64 / subscribers as f64,
        }),
        Some(&hub),
    );
    drop((held, streams));
    Ok(())
}

async fn storm(peers: usize, behind: usize) -> anyhow::Result<()> {
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
                let id = format!("storm-peer-{i}");
                let known = 1i64; // every peer holds genesis only: `behind` versions behind
                for _ in 0..100 {
                    let attempt = async {
                        let client = HubClient::connect(&url, Duration::from_secs(30)).await?;
                        let grant = client.open_session(&peer_request(&id, known)).await?;
                        let mut stream = client
                            .incremental_sync(&id, &grant.session_id, known, 0)
                            .await?;
                        let mut last = known;
                        while let Some(e) = stream.next().await {
                            last = e?.version;
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
    let retries = retries.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report(
        "storm",
        json!({"peers": peers, "behind": behind}),
        json!({
            "all_current_s": elapsed,
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

async fn verify(entries: i64, doc_bytes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    build_register(dir.path(), entries, doc_bytes).await?;
    let store = sorcha_peer::store::embedded::EmbeddedStore::open(dir.path())?;
    let started = Instant::now();
    let result = sorcha_peer::register::verify_store(&store).await?;
    let elapsed = started.elapsed().as_secs_f64();
    report(
        "verify",
        json!({"entries": entries + 1, "doc_bytes": doc_bytes}),
        json!({"ok": result.ok, "checked": result.checked, "elapsed_s": elapsed, "entries_per_s": result.checked as f64 / elapsed}),
        None,
    );
    if !result.ok {
        bail!("verification failed: {:?}", result.failure);
    }
    Ok(())
}

use eventsource_stream::Eventsource;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.workload {
        Workload::Publish {
            concurrency,
            count,
            doc_bytes,
            idempotency_keys,
        } => publish(concurrency, count, doc_bytes, idempotency_keys).await,
        Workload::Fanout(FanoutShape {
            subscribers,
            publishes,
            rate,
        }) => fanout(subscribers, publishes, rate).await,
        Workload::Fullsync { entries, doc_bytes } => fullsync(entries, doc_bytes).await,
        Workload::Idle {
            subscribers,
            per_connection,
        } => idle(subscribers, per_connection).await,
        Workload::Storm { peers, behind } => storm(peers, behind).await,
        Workload::Verify { entries, doc_bytes } => verify(entries, doc_bytes).await,
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
