//! Memory bounded by bytes, at small scale: 1 MiB documents against a 4 MiB recent window,
//! 2 MiB pages and a 3 MiB read budget. The window never exceeds its bound, pages respect
//! theirs and their cursor walks the whole register, reads beyond the budget wait or get 503
//! with `Retry-After` without losing anything, and a peer syncs everything in bounded batches.

use crate::support::{TestHub, WAIT, get_json, sse, take_events, wait_for};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1024 * 1024;
const WINDOW: usize = 4 * MIB;
const PAGE: usize = 2 * MIB;
const BUDGET: usize = 3 * MIB;
/// Two fit in a page with their overhead.
const DOCUMENT: usize = 900 * 1024;
const DOCUMENTS: usize = 12;

fn small_limits(c: &mut sorcha_peer::config::Config) {
    c.limits.recent_window_bytes = WINDOW;
    c.limits.max_page_bytes = PAGE;
    c.limits.read_budget_bytes = BUDGET;
    c.limits.read_budget_wait = Duration::from_millis(100);
    c.limits.max_document_bytes = 2 * MIB;
    c.limits.max_body_bytes = 3 * MIB;
}

/// A canonical document of exactly `bytes` bytes whose content names `i`.
fn document(i: usize, bytes: usize) -> Value {
    let tag = format!("{i:04}");
    // {"blob":"<tag><fill>"} is 11 bytes plus the string.
    json!({ "blob": format!("{tag}{}", "x".repeat(bytes - 11 - tag.len())) })
}

/// A gauge or counter value from a node's metrics page.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    crate::support::metric_sample(addr, name)
        .await
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Walks `/entries` from 0 with `next`, checking each page's bound; returns every version.
async fn walk_entries(hub: &TestHub) -> Vec<i64> {
    let mut versions = Vec::new();
    let mut since = "0".to_owned();
    for _ in 0..100 {
        let (status, page) = hub
            .get(&format!(
                "/api/v1/system-register/entries?since={since}&limit=1000"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        let document_bytes: usize = items.iter().map(|e| e["document"].to_string().len()).sum();
        assert!(
            items.len() == 1 || document_bytes <= PAGE,
            "a page of {} entries carries {document_bytes} document bytes",
            items.len()
        );
        versions.extend(items.iter().map(|e| e["version"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => since = next.to_owned(),
            None => return versions,
        }
    }
    panic!("the cursor never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_bounded_by_bytes_and_nothing_is_lost() {
    let hub = TestHub::configured(small_limits).await;
    let mut follower = sse(hub.addr(), "?since=0&include=document", None).await;
    for i in 0..DOCUMENTS {
        let (status, entry) = hub
            .publish(&format!("big-{i}"), document(i, DOCUMENT))
            .await;
        assert_eq!(status, 201, "{entry}");
        let window = metric(hub.addr(), "sorcha_peer_recent_window_bytes").await;
        assert!(
            window > 0.0 && window <= WINDOW as f64,
            "window {window} > {WINDOW}"
        );
    }
    let head = DOCUMENTS as i64 + 1;

    // The log pages respect the byte bound, and the cursor reaches every entry.
    assert_eq!(walk_entries(&hub).await, (1..=head).collect::<Vec<_>>());
    // So do a blueprint's history pages (one entry here) and single reads.
    let (status, one) = hub.get("/api/v1/system-register/blueprints/big-3").await;
    assert_eq!(status, 200);
    assert_eq!(one["document"], document(3, DOCUMENT));

    // Replays that never read what they are sent hold budget (each the rest of the page it
    // is stuck in; the whole register is more than their socket buffers take); beyond the
    // budget, other replays wait, and REST readers wait the configured time and get 503 with
    // Retry-After.
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut socket = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
        socket
            .write_all(
                b"GET /api/v1/system-register/events?since=0&include=document HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await
            .unwrap();
        stuck.push(socket);
    }
    let refused = wait_for("a read refused for lack of budget", || async {
        let r = hub
            .http
            .get(hub.url("/api/v1/system-register/entries?since=0"))
            .send()
            .await
            .unwrap();
        (r.status() == 503).then(|| {
            (
                r.headers().get("retry-after").cloned(),
                r.headers()["content-type"].clone(),
            )
        })
    })
    .await;
    assert_eq!(refused.0.expect("Retry-After").to_str().unwrap(), "1");
    assert_eq!(refused.1, "application/problem+json");
    let in_flight = metric(hub.addr(), "sorcha_peer_read_in_flight_bytes").await;
    assert!(in_flight <= BUDGET as f64, "{in_flight} in flight");

    // Once they leave, the SSE follower (which fell behind the window and waited for
    // budget meanwhile) gets every entry in order with its document...
    drop(stuck);
    let events = take_events(&mut follower, DOCUMENTS + 1).await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.id, (i + 1).to_string());
        let data: Value = serde_json::from_str(&event.data).unwrap();
        if i > 0 {
            assert_eq!(data["entry"]["document"], document(i - 1, DOCUMENT));
        }
    }
    // ...every byte comes back to the budget, and every entry is still there.
    wait_for("the budget to come back", || async {
        (metric(hub.addr(), "sorcha_peer_read_in_flight_bytes").await == 0.0).then_some(())
    })
    .await;
    assert_eq!(walk_entries(&hub).await, (1..=head).collect::<Vec<_>>());

    // A peer with the same bounds syncs the whole register in bounded batches.
    let peer = TestHub::peer_of(vec![hub.url("")], small_limits).await;
    wait_for("the peer to reach the hub's head", || async {
        let node = get_json(peer.addr(), "/api/v1/node").await;
        (node["register"]["headVersion"] == head).then_some(())
    })
    .await;
    let verify = get_json(peer.addr(), "/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    let batches = metric(peer.addr(), "sorcha_peer_sync_batch_bytes_count").await;
    let bounded = metric(
        peer.addr(),
        &format!("sorcha_peer_sync_batch_bytes_bucket{{le=\"{}.0\"}}", PAGE),
    )
    .await;
    assert!(
        batches >= (DOCUMENTS / 2) as f64,
        "{batches} batches for {DOCUMENTS} documents of {DOCUMENT} bytes"
    );
    assert_eq!(bounded, batches, "every batch within {PAGE} bytes");
    let window = metric(peer.addr(), "sorcha_peer_recent_window_bytes").await;
    assert!(window <= WINDOW as f64, "peer window {window}");
    let _ = WAIT;
    peer.stop().await;
    hub.stop().await;
}
