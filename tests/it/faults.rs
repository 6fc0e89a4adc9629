//! Faults with real processes: a hub killed with SIGKILL in the middle of a 10 000-entry full
//! sync, and a hub whose data volume fills up (a small tmpfs). In both, no acknowledged write
//! is lost, the chain verifies after restart and the peer converges on the hub. (A hub killed
//! during a publish storm is `crash.rs`; a peer killed while applying is in `peer.rs`.) Also: a
//! reconnect storm fills the listen queue, not the kernel's drop counters.

use crate::support::{ADMIN, PausableProxy, TestHub, get_json, spawn_node_at, wait_for};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

async fn head(addr: SocketAddr) -> (i64, String) {
    let r = get_json(addr, "/api/v1/system-register").await;
    (
        r["headVersion"].as_i64().unwrap_or(-1),
        r["headHash"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn verified(addr: SocketAddr) -> Value {
    let report = get_json(addr, "/api/v1/system-register/verify").await;
    assert_eq!(
        report["ok"], true,
        "chain of {addr} does not verify: {report}"
    );
    report
}

async fn converged(peer: SocketAddr, hub: SocketAddr) -> (i64, String) {
    wait_for("the peer to converge on the hub", || async move {
        let (h, p) = (head(hub).await, head(peer).await);
        (h == p).then_some(h)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_during_a_10000_entry_full_sync_leaves_the_peer_consistent_and_it_converges() {
    const N: i64 = 10_000;
    let hub_dir = tempfile::tempdir().unwrap();
    {
        use sorcha_peer::store::RegisterStore;
        let store = sorcha_peer::store::embedded::EmbeddedStore::open(hub_dir.path()).unwrap();
        sorcha_peer::store::synthetic::fill(&store, N, 2048, None)
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let mut hub = spawn_node_at(hub_dir.path(), "127.0.0.1:0", &["--role", "hub"], &[]).await;
    let hub_addr = hub.addr;
    // The peer reaches the hub through a proxy that can freeze the stream mid-sync, so the
    // kill lands while entries are in flight whatever the machine's speed.
    let proxy = PausableProxy::start(hub_addr).await;
    let peer = TestHub::peer_of(vec![format!("http://{}", proxy.addr)], |_| {}).await;
    let partial = wait_for("a partial full sync", || async {
        let cp = get_json(peer.addr(), "/api/v1/sync/checkpoint").await;
        cp["currentVersion"].as_i64().filter(|v| *v > 0)
    })
    .await;
    proxy.pause();
    hub.child.kill().await.unwrap();
    proxy.resume();
    assert!(partial < N + 1, "killed mid-sync ({partial} of {})", N + 1);

    // The replica holds a verified prefix and a checkpoint that matches it.
    wait_for("the peer to notice", || async {
        let view = get_json(peer.addr(), "/api/v1/connection").await;
        (view["state"] != "Connected").then_some(())
    })
    .await;
    let (version, hash) = head(peer.addr()).await;
    assert!(version < N + 1);
    let checkpoint = get_json(peer.addr(), "/api/v1/sync/checkpoint").await;
    assert_eq!(checkpoint["currentVersion"], version, "{checkpoint}");
    assert_eq!(checkpoint["headHash"], hash.as_str(), "{checkpoint}");
    verified(peer.addr()).await;

    // The hub comes back on the same address; the peer resumes and converges.
    let hub = spawn_node_at(
        hub_dir.path(),
        &hub_addr.to_string(),
        &["--role", "hub"],
        &[],
    )
    .await;
    verified(hub.addr).await;
    let (version, _) = converged(peer.addr(), hub.addr).await;
    assert_eq!(version, N + 1);
    let report = verified(peer.addr()).await;
    assert_eq!(report["checked"], N + 1);
    let peers = get_json(hub.addr, "/api/v1/peers").await;
    assert_eq!(
        peers["fullSyncs"], 0,
        "the restarted hub saw an incremental resume: {peers}"
    );
}

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount is needed for the disk-full test");
        assert!(
            status.success(),
            "mounting a tmpfs failed (the disk-full test needs root, as CI has)"
        );
        Self { path, _dir: dir }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn data_dir(tmpfs: &Tmpfs) -> PathBuf {
    tmpfs.path.join("hub")
}

async fn publish(http: &reqwest::Client, addr: SocketAddr, id: &str, pad: usize) -> (u16, Value) {
    let r = http
        .post(format!("http://{addr}/api/v1/system-register/blueprints"))
        .bearer_auth(ADMIN)
        .json(&json!({"blueprintId": id, "document": {"pad": "d".repeat(pad)}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_volume_refuses_writes_clearly_and_loses_nothing() {
    let volume = Tmpfs::mount("3m");
    let dir: &Path = &data_dir(&volume);
    let mut hub = spawn_node_at(dir, "127.0.0.1:0", &["--role", "hub"], &[]).await;
    let hub_addr = hub.addr;
    let peer = TestHub::peer_of(vec![format!("http://{hub_addr}")], |_| {}).await;
    let http = crate::support::http_client();

    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..400 {
        let id = format!("fill-{i:03}");
        match publish(&http, hub_addr, &id, 16 * 1024).await {
            (201, entry) => acked.push((id, entry["checksum"].as_str().unwrap().to_owned())),
            (status, problem) => {
                refusal = Some((status, problem));
                break;
            }
        }
    }
    let (status, problem) = refusal.expect("3 MiB filled up before 400 × 16 KiB publishes");
    assert!(acked.len() > 10, "some publishes fit ({})", acked.len());
    assert_eq!(status, 507, "{problem}");
    assert_eq!(
        problem["type"], "urn:sorcha:problem:store-full",
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("disk is full"),
        "{problem}"
    );
    // Still serving: health, reads, and the peer holds everything acknowledged.
    let health = http
        .get(format!("http://{hub_addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    verified(hub_addr).await;
    converged(peer.addr(), hub_addr).await;

    // Room again: writes work without a restart; then a SIGKILL and a restart lose nothing.
    volume.resize("64m");
    let (status, problem) = publish(&http, hub_addr, "after-space", 1024).await;
    assert_eq!(status, 201, "{problem}");
    acked.push((
        "after-space".into(),
        problem["checksum"].as_str().unwrap().to_owned(),
    ));
    hub.child.kill().await.unwrap();
    let hub = spawn_node_at(dir, &hub_addr.to_string(), &["--role", "hub"], &[]).await;
    for (id, checksum) in &acked {
        let entry = get_json(
            hub.addr,
            &format!("/api/v1/system-register/blueprints/{id}"),
        )
        .await;
        assert_eq!(
            entry["checksum"].as_str(),
            Some(checksum.as_str()),
            "{id} lost"
        );
    }
    verified(hub.addr).await;
    converged(peer.addr(), hub.addr).await;
    verified(peer.addr()).await;
}

/// A reconnect storm lands in the kernel's accept queue instead of being dropped: the node's
/// listener (`limits.listenBacklog`, 4096) queues 1 500 simultaneous connections while nothing
/// accepts them — tokio's default backlog (1024) would leave hundreds hanging in SYN retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_is_queued_not_dropped() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let backlog = sorcha_peer::config::LimitsConfig::default().listen_backlog;
    assert!(backlog >= 4096);
    let listener = sorcha_peer::serve::bind("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
    let addr = listener.local_addr().unwrap();
    let connects: Vec<_> = (0..1500)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
            })
        })
        .collect();
    let mut held = Vec::new();
    for c in connects {
        let stream = c.await.unwrap().expect("connected within 5 s").unwrap();
        held.push(stream);
    }
    assert_eq!(held.len(), 1500);
    drop(listener);
}
