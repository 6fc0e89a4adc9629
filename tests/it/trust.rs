//! Peers trust hub keys, not addresses: configured keys (`peer.trustedHubKeys`, the
//! `--trust-hub-key` flag), trust on first use, equivocation between hubs, the checkpoint an
//! isolated peer serves, and the `checkpoint` events of an event stream.

use crate::support::{
    TestHub, alert_webhook, binary, checkpoint_refused, config, peer_config, pid, spawn_node,
    wait_for,
};
use futures::StreamExt;
use serde_json::{Value, json};
use sorcha_peer::hub_client::{ClientOptions, GrpcDialer};
use sorcha_peer::keys::{SigningKey, VerifierKey};
use sorcha_peer::link::{Dialer, HubLink, HubStatus, LinkError, LinkStream};
use sorcha_peer::metrics::Metrics;
use sorcha_peer::peer::{Peer, PeerParts, PeerSettings};
use sorcha_peer::protocol::{
    ConnectRequest, ConnectionGrant, Filters, Goodbye, Heartbeat, HeartbeatAck, HeartbeatReport,
    Notification, PeerId, PeerSyncView, SessionId, SyncedEntry,
};
use sorcha_peer::register::checkpoint_note;
use sorcha_peer::register::{Register, RegisterOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A hub with small pages (64 KiB), so a sync of `n` 8 KiB documents takes several steps,
/// each ending at a checkpoint.
async fn hub_with_entries(n: usize) -> (TestHub, VerifierKey) {
    let hub = TestHub::configured(|c| c.limits.max_page_bytes = 64 * 1024).await;
    for i in 0..n {
        let (status, e) = hub
            .publish(
                &format!("t-{i}"),
                json!({"i": i, "pad": "x".repeat(8 * 1024)}),
            )
            .await;
        assert_eq!(status, 201, "{e}");
    }
    let key = hub_key(&hub).await;
    (hub, key)
}

async fn hub_key(hub: &TestHub) -> VerifierKey {
    let (_, node) = hub.get("/api/v1/node").await;
    VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap()
}

async fn get_text(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn child_get(addr: std::net::SocketAddr, path: &str) -> Value {
    crate::support::get_json(addr, path).await
}

/// A fresh peer with a wrong `--trust-hub-key` applies nothing and says why; with the hub's
/// key it replicates in steps that each end at a checkpoint, and serves the last one — still
/// after the hub is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_applies_only_what_a_trusted_hub_key_vouched_for() {
    let (hub, key) = hub_with_entries(30).await;
    let (_, register) = hub.get("/api/v1/system-register").await;
    let head = register["headVersion"].as_i64().unwrap();
    assert_eq!(head, 31);

    // A wrong key (same name, another key): nothing applied, the hub not followed.
    let stranger = SigningKey::generate(key.name()).unwrap();
    let webhook = alert_webhook().await;
    let wrong = TestHub::peer_of(vec![hub.url("")], |c| {
        c.peer.trusted_hub_keys = vec![stranger.verifier().clone()];
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    let c = checkpoint_refused(&wrong, 0, "not signed by a trusted key").await;
    assert_eq!(c["trust"]["mode"], "configured", "{c}");
    let (_, register) = wrong.get("/api/v1/system-register").await;
    assert_eq!(register["headVersion"], 0, "nothing applied: {register}");
    let (status, _) = get_text(wrong.url("/api/v1/system-register/checkpoint")).await;
    assert_eq!(status, 404, "no checkpoint covers an empty replica");
    assert!(
        wrong
            .metrics()
            .await
            .lines()
            .any(|l| l.starts_with("sorcha_peer_untrusted_checkpoints_total")
                && !l.ends_with(" 0")),
        "metric counts the refusal"
    );
    let alerts = wait_for("the untrusted-hub alert", || async {
        let got: Vec<Value> = webhook
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .filter(|a: &Value| a["event"] == "peer.untrusted_hub")
            .collect();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(
        alerts[0]["message"]
            .as_str()
            .unwrap()
            .contains(&hub.url("")),
        "{alerts:?}"
    );
    wrong.stop().await;

    // The hub's real key, given as the flag to a peer process.
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_node(
        dir.path(),
        &[
            "--role",
            "peer",
            "--node-id",
            "trusting",
            "--hub",
            &hub.url(""),
            "--trust-hub-key",
            &key.to_string(),
            "--heartbeat-interval",
            "100ms",
            "--backoff-initial",
            "20ms",
            "--backoff-max",
            "100ms",
        ],
    )
    .await;
    let addr = child.addr;
    wait_for("the trusting peer to replicate", || async {
        let r = child_get(addr, "/api/v1/system-register").await;
        (r["headVersion"] == head).then_some(())
    })
    .await;
    let c = child_get(addr, "/api/v1/connection").await;
    let last = &c["trust"]["lastCheckpoint"];
    assert_eq!(
        (last["version"].as_i64(), last["key"].as_str()),
        (Some(head), Some(key.to_string().as_str())),
        "{c}"
    );
    let (status, note) = get_text(format!("http://{addr}/api/v1/system-register/checkpoint")).await;
    assert_eq!(status, 200, "{note}");
    let opened = checkpoint_note::open(&note, std::slice::from_ref(&key)).unwrap();
    assert_eq!(opened.checkpoint.version, head);
    let (_, register) = hub.get("/api/v1/system-register").await;
    assert_eq!(
        opened.checkpoint.chain_hash,
        register["headHash"].as_str().unwrap()
    );

    // The hub goes away: the isolated peer still serves who vouched for its replica, and the
    // CLI checks it against the hub's key.
    hub.stop().await;
    wait_for("the peer to notice the hub is gone", || async {
        let c = child_get(addr, "/api/v1/connection").await;
        (c["state"] != "connected").then_some(())
    })
    .await;
    let (status, again) =
        get_text(format!("http://{addr}/api/v1/system-register/checkpoint")).await;
    assert_eq!((status, again.as_str()), (200, note.as_str()));
    let out = std::process::Command::new(binary())
        .args([
            "checkpoint",
            "--server",
            &format!("http://{addr}"),
            "--trust",
            &key.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    child.child.kill().await.unwrap();
    child.child.wait().await.unwrap();

    // Offline, the stopped replica holds what the note vouches for; another key's note is an
    // error.
    let note_file = dir.path().join("served.note");
    std::fs::write(&note_file, &note).unwrap();
    let verify = |trust: &str| {
        std::process::Command::new(binary())
            .args(["verify", "--data-dir"])
            .arg(dir.path())
            .arg("--checkpoint")
            .arg(&note_file)
            .args(["--trust", trust])
            .output()
            .unwrap()
    };
    let out = verify(&key.to_string());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "ok: the replica holds the checkpoint of version {head}"
        )),
        "{stdout}"
    );
    let out = verify(&stranger.verifier().to_string());
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{out:?}"
    );
}

/// Without keys configured, a peer pins the first key a hub URL offers (and says so), keeps
/// the pin across its restart, and refuses that URL when it offers another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_on_first_use_pins_a_key_and_refuses_another() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("p-1", json!({"a": 1})).await.0, 201);
    let key = hub_key(&hub).await;
    let url = hub.url("");
    let dir = tempfile::tempdir().unwrap();
    let cfg = peer_config(dir.path(), vec![url.clone()]);
    let peer = TestHub::start_with(dir, cfg.clone()).await;
    let c = wait_for("the peer to pin the hub's key", || async {
        let (_, c) = peer.get("/api/v1/connection").await;
        (c["trust"]["pinnedKeys"][&url] == key.to_string().as_str()
            && c["trust"]["lastCheckpoint"]["version"] == 2)
            .then_some(c)
    })
    .await;
    assert_eq!(c["trust"]["mode"], "first-use", "{c}");
    let peer = peer.restart_with(cfg).await;

    // The same address, the same register, another key: an impersonator (its data dir copied
    // without the hub's key file).
    let hub_dir = hub.stop().await;
    let copy = tempfile::tempdir().unwrap();
    copy_register(hub_dir.path(), copy.path());
    let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
    let mut impostor_cfg = config(copy.path());
    impostor_cfg.node_id = Some("impostor".into());
    let impostor = TestHub::start_at(copy, impostor_cfg, addr).await;
    assert_eq!(impostor.publish("p-2", json!({"a": 2})).await.0, 201);
    assert_ne!(hub_key(&impostor).await, key);
    checkpoint_refused(&peer, 0, "pinned for it on first use").await;
    let (_, register) = peer.get("/api/v1/system-register").await;
    assert_eq!(
        register["headVersion"], 2,
        "the impostor's entry is not applied"
    );
}

/// Copies a hub's register file (not its signing key).
fn copy_register(from: &Path, to: &Path) {
    let file = sorcha_peer::store::embedded::DB_FILE;
    std::fs::copy(from.join(file), to.join(file)).unwrap();
}

/// Two hubs holding diverged copies of one register, both trusted: the peer that followed
/// one is shown the other's checkpoint for the same version with another hash, keeps both
/// notes as evidence, alerts with them, counts it, and does not follow the second hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_between_two_hubs_is_kept_with_both_notes() {
    let first = TestHub::start().await;
    assert_eq!(first.publish("e-0", json!({"shared": true})).await.0, 201);
    let first_dir = first.stop().await;
    let second_dir = tempfile::tempdir().unwrap();
    copy_register(first_dir.path(), second_dir.path());
    let first = TestHub::start_in(first_dir).await;
    let mut second_cfg = config(second_dir.path());
    second_cfg.node_id = Some("hub-b".into());
    let second = TestHub::start_with(second_dir, second_cfg).await;
    // Each writes another entry at version 3.
    assert_eq!(first.publish("e-a", json!({"side": "a"})).await.0, 201);
    assert_eq!(second.publish("e-b", json!({"side": "b"})).await.0, 201);
    let (key_a, key_b) = (hub_key(&first).await, hub_key(&second).await);

    let webhook = alert_webhook().await;
    let peer = TestHub::peer_of(vec![first.url(""), second.url("")], |c| {
        c.peer.trusted_hub_keys = vec![key_a.clone(), key_b.clone()];
        c.alerts.webhook_url = Some(format!("{}/alerts", webhook.uri()));
    })
    .await;
    wait_for("the peer to follow the first hub", || async {
        let (_, c) = peer.get("/api/v1/connection").await;
        (c["trust"]["lastCheckpoint"]["version"] == 3).then_some(())
    })
    .await;
    let (_, a_head) = first.get("/api/v1/system-register").await;
    first.stop().await;

    let alert = wait_for("the equivocation alert", || async {
        crate::support::alerts_of(&webhook, "peer.equivocation")
            .await
            .into_iter()
            .next()
    })
    .await;
    let evidence: Vec<&str> = alert["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(evidence.len(), 2, "{alert}");
    let a = checkpoint_note::open(evidence[0], std::slice::from_ref(&key_a)).unwrap();
    let b = checkpoint_note::open(evidence[1], std::slice::from_ref(&key_b)).unwrap();
    assert_eq!((a.checkpoint.version, b.checkpoint.version), (3, 3));
    assert_ne!(a.checkpoint.chain_hash, b.checkpoint.chain_hash);
    assert_eq!(
        a.checkpoint.chain_hash,
        a_head["headHash"].as_str().unwrap()
    );

    let (_, c) = peer.get("/api/v1/connection").await;
    let kept = &c["trust"]["equivocations"][0];
    assert_eq!(
        (
            kept["kind"].as_str(),
            kept["first"].as_str(),
            kept["second"].as_str()
        ),
        (Some("fork"), Some(evidence[0]), Some(evidence[1])),
        "{c}"
    );
    assert_eq!(c["hubs"][1]["checkpointRefused"], true, "{c}");
    assert!(
        peer.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("sorcha_peer_equivocations_total") && l.ends_with(" 1")),
        "metric"
    );
    let (_, register) = peer.get("/api/v1/system-register").await;
    assert_eq!(
        register["headHash"], a_head["headHash"],
        "the replica keeps the first copy"
    );
}

/// An event stream carries `checkpoint` events: a note signed by the hub's key that covers the
/// entries the stream has sent, at most once a second, never ahead of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_carry_checkpoints_of_what_they_sent() {
    let hub = TestHub::start().await;
    let key = hub_key(&hub).await;
    use eventsource_stream::Eventsource;
    let response = reqwest::get(hub.url("/api/v1/system-register/events"))
        .await
        .unwrap();
    let mut events = Box::pin(response.bytes_stream().eventsource().map(|e| e.unwrap()));
    assert_eq!(hub.publish("s-1", json!({"a": 1})).await.0, 201);
    let mut seen_entry = false;
    let checkpoint = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.next().await.unwrap();
            if event.event == "blueprint.published" {
                seen_entry = true;
            }
            if event.event == "checkpoint" {
                let version = serde_json::from_str::<Value>(&event.data).unwrap()["version"]
                    .as_i64()
                    .unwrap();
                if seen_entry {
                    return event;
                }
                // Before the entry, only the head the stream started at (genesis) is covered.
                assert_eq!(version, 1, "a checkpoint ahead of the stream: {event:?}");
            }
        }
    })
    .await
    .expect("a checkpoint event within 10 s");
    assert!(
        seen_entry,
        "the entry comes before the checkpoint covering it"
    );
    // No id of its own: the last event id stays the entry's.
    assert!(
        checkpoint.id.is_empty() || checkpoint.id == "2",
        "{checkpoint:?}"
    );
    let data: Value = serde_json::from_str(&checkpoint.data).unwrap();
    let opened = checkpoint_note::open(data["note"].as_str().unwrap(), &[key]).unwrap();
    assert_eq!(
        (data["version"].as_i64(), opened.checkpoint.version),
        (Some(2), 2)
    );

    // A stream that replays from the start gets that checkpoint once its replay passes
    // version 2, though nothing new is appended: right after the entries and the marker.
    let response = reqwest::get(hub.url("/api/v1/system-register/events?since=0"))
        .await
        .unwrap();
    let mut replay = Box::pin(response.bytes_stream().eventsource().map(|e| e.unwrap()));
    let kinds = tokio::time::timeout(Duration::from_secs(10), async {
        let mut kinds = Vec::new();
        while kinds.last().map(String::as_str) != Some("checkpoint") {
            let e = replay.next().await.unwrap();
            if !e.data.is_empty() {
                kinds.push(e.event);
            }
        }
        kinds
    })
    .await
    .expect("the replayed stream's checkpoint");
    assert_eq!(
        kinds,
        [
            "blueprint.published",
            "blueprint.published",
            "caught-up",
            "checkpoint"
        ]
    );
}

/// How a man in the middle changes a real hub's sync streams.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// Strips every checkpoint.
    DropNotes,
    /// Moves each checkpoint to the entry before the one it covers.
    ShiftNotes,
}

/// A real hub's gRPC link whose sync streams are tampered with.
struct TamperedLink {
    inner: Arc<dyn HubLink>,
    how: Tamper,
}

impl TamperedLink {
    fn tamper(&self, stream: LinkStream<SyncedEntry>) -> LinkStream<SyncedEntry> {
        let how = self.how;
        let mut held: Option<SyncedEntry> = None;
        Box::pin(
            stream
                .map(move |item| {
                    let mut synced = item.unwrap();
                    match how {
                        Tamper::DropNotes => {
                            synced.checkpoint = None;
                            vec![Ok(synced)]
                        }
                        Tamper::ShiftNotes => {
                            let note = synced.checkpoint.take();
                            let mut out = Vec::new();
                            if let Some(mut before) = held.replace(synced) {
                                before.checkpoint = note;
                                out.push(Ok(before));
                            }
                            out
                        }
                    }
                })
                .flat_map(futures::stream::iter),
        )
    }
}

#[async_trait::async_trait]
impl HubLink for TamperedLink {
    async fn open_session(&self, r: &ConnectRequest) -> Result<ConnectionGrant, LinkError> {
        self.inner.open_session(r).await
    }
    async fn close_session(
        &self,
        peer: &PeerId,
        session: &SessionId,
        goodbye: Goodbye,
        now: i64,
    ) -> Result<(), LinkError> {
        self.inner.close_session(peer, session, goodbye, now).await
    }
    async fn status(&self, peer: &PeerId) -> Result<HubStatus, LinkError> {
        self.inner.status(peer).await
    }
    async fn full_sync(
        &self,
        peer: &PeerId,
        session: &SessionId,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        Ok(self.tamper(self.inner.full_sync(peer, session, max).await?))
    }
    async fn incremental_sync(
        &self,
        peer: &PeerId,
        session: &SessionId,
        after: i64,
        max: Option<u32>,
    ) -> Result<LinkStream<SyncedEntry>, LinkError> {
        Ok(self.tamper(
            self.inner
                .incremental_sync(peer, session, after, max)
                .await?,
        ))
    }
    async fn subscribe(
        &self,
        peer: &PeerId,
        session: &SessionId,
        filters: &Filters,
        resume_from: i64,
    ) -> Result<LinkStream<Notification>, LinkError> {
        self.inner
            .subscribe(peer, session, filters, resume_from)
            .await
    }
    async fn peer_sync_view(
        &self,
        peer: &PeerId,
        session: &SessionId,
    ) -> Result<PeerSyncView, LinkError> {
        self.inner.peer_sync_view(peer, session).await
    }
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, LinkError> {
        self.inner.heartbeat(heartbeat).await
    }
    async fn heartbeat_status(
        &self,
        peer: &PeerId,
        session: &SessionId,
    ) -> Result<HeartbeatReport, LinkError> {
        self.inner.heartbeat_status(peer, session).await
    }
}

struct TamperingDialer(Tamper);

#[async_trait::async_trait]
impl Dialer for TamperingDialer {
    async fn dial(&self, url: &str) -> Result<Arc<dyn HubLink>, LinkError> {
        let inner = GrpcDialer::new(ClientOptions {
            connect_timeout: Duration::from_secs(5),
            peer_id: None,
            token: None,
            ca_cert_pem: None,
            keep_alive: None,
        })
        .dial(url)
        .await?;
        Ok(Arc::new(TamperedLink { inner, how: self.0 }))
    }
}

/// A stream whose checkpoints are stripped, or do not cover the entries they come with, is
/// not applied past the hub's connect checkpoint: the real hub's genuine notes do not vouch
/// for what a man in the middle sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_covering_checkpoints_is_not_applied() {
    let (hub, key) = hub_with_entries(20).await;
    for how in [Tamper::DropNotes, Tamper::ShiftNotes] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = peer_config(dir.path(), vec![hub.url("")]);
        cfg.peer.trusted_hub_keys = vec![key.clone()];
        let clock: sorcha_peer::clock::SharedClock = Arc::new(sorcha_peer::clock::SystemClock);
        let store =
            Arc::new(sorcha_peer::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let options = RegisterOptions {
            seed_genesis: false,
            ..RegisterOptions::default()
        };
        let register = Register::open(store, Arc::clone(&clock), options)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let (peer, task) = Peer::start(
            PeerParts {
                register,
                settings: PeerSettings::from(&cfg),
                node_id: pid("tampered"),
                clock,
                dialer: Arc::new(TamperingDialer(how)),
                metrics: Arc::new(Metrics::default()),
            },
            stop.clone(),
            Some(1),
        );
        let state = wait_for("the peer to refuse the tampered stream", || async {
            let s = peer.state();
            s.hubs[0].checkpoint_refused.then_some(s)
        })
        .await;
        let error = state.hubs[0].last_error.clone().unwrap();
        let expected = match how {
            Tamper::DropNotes => "sent no checkpoint",
            Tamper::ShiftNotes => "not the entry it came with",
        };
        assert!(error.contains(expected), "{how:?}: {error}");
        assert_eq!(
            peer.register().head_version(),
            0,
            "{how:?}: nothing applied"
        );
        assert!(peer.trust().last_checkpoint().is_none());
        stop.cancel();
        task.await.unwrap();
    }
}

/// `sorcha-peer watch` tells checkpoint events from entries: they go to stderr, and
/// `--count` counts entries only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_counts_entries_not_checkpoints() {
    use tokio::io::AsyncBufReadExt;
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("w-1", json!({"a": 1})).await.0, 201);
    let mut child = tokio::process::Command::new(binary())
        .args(["watch", "--since", "1", "--count", "2"])
        .env("SORCHA_SERVER", hub.url(""))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("signed checkpoint of version 2") {
                return;
            }
        }
        panic!("watch ended before a checkpoint");
    })
    .await
    .expect("a checkpoint within 10 s");
    assert_eq!(hub.publish("w-2", json!({"a": 2})).await.0, 201);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("watch ends after two entries")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("w-1") && lines[1].contains("w-2"),
        "{stdout}"
    );
}
