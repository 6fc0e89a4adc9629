//! Test helpers: in-process nodes on port 0, child-process nodes, HTTP and SSE clients.

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use sorcha_peer::app::{self, Node};
use sorcha_peer::config::{Config, Secret};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Admin token configured on test nodes.
pub const ADMIN: &str = "test-admin-token-0123456789";
/// Publisher token configured on test nodes.
pub const PUBLISHER: &str = "test-publisher-token-0123456789";
/// Genesis chain hash every hub must produce.
pub const GENESIS_HASH: &str =
    "sha256:ee9bc34cc3eef92eab7c096cc28cb8b3edecdc5915212abe35feecb00ab2771f";
/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A test configuration over `dir` with known tokens and fast keep-alives.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(Secret(ADMIN.into())),
        ..Config::default()
    };
    config.tokens.push(sorcha_peer::config::TokenConfig {
        token: Secret(PUBLISHER.into()),
        identity: "alice".into(),
        role: sorcha_peer::config::TokenRole::Publisher,
    });
    config.sse.keep_alive = Duration::from_millis(200);
    // Tests heartbeat every 100 ms and reconnect often; the rate-limit tests set their own.
    let lenient = sorcha_peer::config::Rate {
        every: Duration::from_millis(1),
        burst: 1000,
    };
    config.hub.rate_limits = sorcha_peer::config::RateLimitsConfig {
        connect: lenient,
        full_sync: lenient,
        heartbeat: lenient,
    };
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// Adds a token of role `reader` (identity `reader`) to `cfg`.
pub fn add_reader(cfg: &mut Config, token: &str) {
    cfg.tokens.push(sorcha_peer::config::TokenConfig {
        token: Secret(token.into()),
        identity: "reader".into(),
        role: sorcha_peer::config::TokenRole::Reader,
    });
}

/// An in-process hub with its data dir.
pub struct TestHub {
    pub node: Node,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl TestHub {
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(dir: TempDir) -> Self {
        let cfg = config(dir.path());
        Self::start_with(dir, cfg).await
    }

    pub async fn start_with(dir: TempDir, cfg: Config) -> Self {
        Self::start_at(dir, cfg, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_at(dir: TempDir, cfg: Config, addr: SocketAddr) -> Self {
        Self::start_on_clock(dir, cfg, addr, Arc::new(sorcha_peer::clock::SystemClock)).await
    }

    /// A node on `clock` instead of the system's.
    pub async fn start_on_clock(
        dir: TempDir,
        cfg: Config,
        addr: SocketAddr,
        clock: Arc<dyn sorcha_peer::clock::Clock>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let node = app::start_with_clock(cfg, listener, "test-host", clock)
            .await
            .unwrap();
        Self {
            node,
            dir,
            http: http_client(),
        }
    }

    /// A hub on a fresh data dir with the test configuration changed by `adjust`.
    pub async fn configured(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        adjust(&mut cfg);
        Self::start_with(dir, cfg).await
    }

    /// A peer of `hubs` on a fresh data dir with [`peer_config`] changed by `adjust`.
    pub async fn peer_of(hubs: Vec<String>, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = peer_config(dir.path(), hubs);
        adjust(&mut cfg);
        Self::start_with(dir, cfg).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    /// Stops the node and starts it again on the same address and data dir with `cfg`.
    pub async fn restart_with(self, mut cfg: Config) -> Self {
        let addr = self.addr();
        let dir = self.stop().await;
        cfg.data_dir = dir.path().to_owned();
        Self::start_at(dir, cfg, addr).await
    }

    /// Stops the node and hands back its data dir.
    pub async fn stop(self) -> TempDir {
        self.node.stop().await.unwrap();
        self.dir
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    pub async fn publish(&self, id: &str, document: Value) -> (u16, Value) {
        publish(&self.http, self.addr(), PUBLISHER, id, document).await
    }
}

/// POSTs a publish and returns status and body.
pub async fn publish(
    http: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    id: &str,
    document: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("http://{addr}/api/v1/system-register/blueprints"))
        .bearer_auth(token)
        .json(&json!({"blueprintId": id, "document": document}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One publishing client: `count` sequential publishes of ids `{prefix}-{i}`, each asserted 201;
/// resolves to the acknowledged versions.
pub fn publish_client(
    addr: SocketAddr,
    prefix: String,
    count: usize,
) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let http = http_client();
        let mut versions = Vec::with_capacity(count);
        for i in 0..count {
            let (status, entry) = publish(
                &http,
                addr,
                PUBLISHER,
                &format!("{prefix}-{i}"),
                json!({"i": i}),
            )
            .await;
            assert_eq!(status, 201, "{entry}");
            versions.push(entry["version"].as_i64().unwrap());
        }
        versions
    })
}

/// Awaits publishing clients and returns every acknowledged version, sorted.
pub async fn sorted_versions(tasks: Vec<tokio::task::JoinHandle<Vec<i64>>>) -> Vec<i64> {
    let mut versions = Vec::new();
    for t in tasks {
        let got = tokio::time::timeout(WAIT, t)
            .await
            .expect("publisher finished");
        versions.extend(got.unwrap());
    }
    versions.sort_unstable();
    versions
}

/// An HTTP client whose every request is bounded by [`WAIT`].
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// Opens an SSE stream of entry events (the `caught-up` marker and `checkpoint` events left
/// out); `last_event_id`
/// becomes the `Last-Event-ID` header.
pub async fn sse(
    addr: SocketAddr,
    query: &str,
    last_event_id: Option<&str>,
) -> impl Stream<Item = Event> + Unpin {
    let mut req = reqwest::Client::new().get(format!(
        "http://{addr}/api/v1/system-register/events{query}"
    ));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "sse status");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Box::pin(r.bytes_stream().eventsource().filter_map(|e| async move {
        e.ok()
            .filter(|e| !e.data.is_empty() && e.event != "caught-up" && e.event != "checkpoint")
    }))
}

/// Reads `n` data events within [`WAIT`].
pub async fn take_events(stream: &mut (impl Stream<Item = Event> + Unpin), n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    tokio::time::timeout(WAIT, async {
        while out.len() < n {
            match stream.next().await {
                Some(e) => out.push(e),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {} of {n} events", out.len()));
    out
}

/// Path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sorcha-peer"))
}

/// A node running as a child process.
pub struct ChildNode {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the node wrote to stderr (its log), line by line, as it arrives.
    pub logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ChildNode {
    /// The log so far.
    pub fn log(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

/// Starts `sorcha-peer serve` on port 0 over `dir` and waits for its listening line.
pub async fn spawn_node(dir: &Path, extra: &[&str]) -> ChildNode {
    spawn_node_env(dir, extra, &[]).await
}

/// [`spawn_node`] with extra environment variables.
pub async fn spawn_node_env(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> ChildNode {
    spawn_node_at(dir, "127.0.0.1:0", extra, envs).await
}

/// [`spawn_node_env`] listening on `listen`.
pub async fn spawn_node_at(
    dir: &Path,
    listen: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> ChildNode {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(dir)
        .args(["--admin-token", ADMIN])
        .args(extra)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let keep = |logs: &std::sync::Mutex<String>, line: &str| {
        let mut logs = logs.lock().unwrap();
        logs.push_str(line);
        logs.push('\n');
    };
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            keep(&logs, &line);
            if let Some(rest) = line.strip_prefix("sorcha-peer listening on http://") {
                return rest.trim().parse::<SocketAddr>().unwrap();
            }
        }
        panic!("node exited before listening:\n{}", logs.lock().unwrap());
    })
    .await
    .expect("node did not start in time");
    // Keep draining stderr so the child never blocks on a full pipe.
    let kept = std::sync::Arc::clone(&logs);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            keep(&kept, &line);
        }
    });
    ChildNode { child, addr, logs }
}

/// A peer configuration over `dir` replicating from `hubs`, with test-speed intervals.
pub fn peer_config(dir: &Path, hubs: Vec<String>) -> Config {
    let mut c = config(dir);
    c.role = sorcha_peer::config::Role::Peer;
    c.hubs = hubs;
    c.node_id = Some("peer-1".into());
    c.peer.heartbeat_interval = Duration::from_millis(100);
    c.peer.heartbeat_timeout = Duration::from_millis(300);
    c.peer.sync_interval = Duration::from_secs(600);
    c.peer.backoff_initial = Duration::from_millis(20);
    c.peer.backoff_max = Duration::from_millis(100);
    c.peer.attempts_per_hub = 2;
    c.peer.resubscribe_delay = Duration::from_millis(100);
    c.peer.connect_timeout = Duration::from_millis(1000);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET a JSON document from any node.
pub async fn get_json(addr: SocketAddr, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// A TCP proxy on loopback that can stop forwarding (a paused or firewalled hub): while
/// paused, bytes are held, nothing is dropped or refused.
pub struct PausableProxy {
    pub addr: SocketAddr,
    paused: tokio::sync::watch::Sender<bool>,
}

impl PausableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (paused, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, watch.clone()));
                tokio::spawn(pipe(sr, cw, watch.clone()));
            }
        });
        Self { addr, paused }
    }

    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The MongoDB server of the test run (`scripts/test.sh` starts one and sets MONGODB_URI).
pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI").unwrap_or_else(|_| {
        panic!("MONGODB_URI is not set: run the tests with `bash scripts/test.sh`, which starts a MongoDB wire-protocol server")
    })
}

/// A fresh database name, so tests sharing one server never see each other's data.
pub fn fresh_database(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A hub configuration on MongoDB database `database`.
pub fn mongo_hub_config(dir: &Path, database: &str) -> Config {
    let mut c = config(dir);
    c.store = mongodb_uri();
    c.mongo.database = database.to_owned();
    c.mongo.poll_interval = Duration::from_millis(100);
    c
}

/// A webhook receiver for `alerts.webhookUrl`: POSTs to `/alerts` are kept; the URL to
/// configure is `{uri}/alerts`.
pub async fn alert_webhook() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let webhook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/alerts"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&webhook)
        .await;
    webhook
}

/// The alerts of kind `event` (`peer.equivocation`, …) that `webhook` received, in order.
pub async fn alerts_of(webhook: &wiremock::MockServer, event: &str) -> Vec<Value> {
    webhook
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|a| a["event"] == event)
        .collect()
}

/// Waits (bounded) until `peer` refuses hub `hub`'s checkpoints, and checks its `lastError`
/// says `why`; the connection view then.
pub async fn checkpoint_refused(peer: &TestHub, hub: usize, why: &str) -> Value {
    let c = wait_for("the peer to refuse the hub's checkpoint", || async {
        let (_, c) = peer.get("/api/v1/connection").await;
        (c["hubs"][hub]["checkpointRefused"] == true).then_some(c)
    })
    .await;
    let error = c["hubs"][hub]["lastError"].as_str().unwrap_or_default();
    assert!(error.contains(why), "{c}");
    c
}

/// A peer id that follows the node-id rule (tests name their peers).
pub fn pid(id: &str) -> sorcha_peer::protocol::PeerId {
    sorcha_peer::protocol::PeerId::parse(id).expect("a valid peer id")
}

/// The value of one series (a name, with its labels if any) on a node's metrics page.
pub async fn metric_sample(addr: SocketAddr, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
