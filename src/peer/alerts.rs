//! Operator alerts: an error-level log line and, when `alerts.webhookUrl` is set, a JSON POST.

use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Alerts an in-process watcher may fall behind by before it misses some.
const FEED: usize = 256;

/// How long shutdown waits for alert posts in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// Where a peer's alerts go (the log, the webhook, in-process watchers), and which standing
/// conditions have been alerted already.
#[derive(Debug)]
pub struct Alerter {
    webhook: Option<String>,
    /// Posts in flight; shutdown waits for them (bounded).
    posts: tokio_util::task::TaskTracker,
    /// Every alert raised, for in-process watchers (a simulation, an embedding program).
    feed: tokio::sync::broadcast::Sender<Alert>,
    /// `peer.refused` was raised and no connect has succeeded since.
    pub(super) refused: AtomicBool,
    /// `peer.clock_offset` was raised and the offset has not come back since.
    pub(super) clock_off: AtomicBool,
    /// `peer.stale_source` was raised and the source has not vouched for a fresh head since.
    pub(super) stale: AtomicBool,
}

impl Alerter {
    /// Alerts posted to `webhook` (`alerts.webhookUrl`), if any.
    pub fn new(webhook: Option<String>) -> Self {
        Self {
            webhook,
            posts: tokio_util::task::TaskTracker::new(),
            feed: tokio::sync::broadcast::channel(FEED).0,
            refused: AtomicBool::new(false),
            clock_off: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        }
    }

    /// Raises `alert`: the log line, the webhook, the watchers.
    pub fn raise(&self, alert: Alert) {
        // No watcher is fine: the log line and the webhook carry it.
        let _ = self.feed.send(alert.clone());
        raise(self.webhook.as_deref(), alert, &self.posts);
    }

    /// Every alert raised from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Alert> {
        self.feed.subscribe()
    }

    /// Waits (bounded) for posts in flight: an alert raised just before shutdown
    /// (e.g. isolation) still reaches its webhook.
    pub async fn drain(&self) {
        self.posts.close();
        let _ = tokio::time::timeout(DRAIN, self.posts.wait()).await;
    }
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `peer.isolated`, `peer.reconnected`, `peer.divergence`, …
    pub event: String,
    /// The node raising it.
    pub node_id: String,
    /// When, Unix ms.
    pub at: i64,
    /// What happened.
    pub message: String,
    /// Evidence, when the alert has some (`peer.equivocation`: both checkpoint notes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// Raises `alert`: logs it and posts it to `webhook` in the background, on `tasks` (so
/// shutdown can wait for posts in flight); a failed POST is logged, never retried forever.
pub fn raise(webhook: Option<&str>, alert: Alert, tasks: &tokio_util::task::TaskTracker) {
    // The alert's text is the log line's one message (a `message` field beside it would give
    // JSON logs two `message` keys).
    tracing::error!(event = %alert.event, "alert: {}", alert.message);
    let Some(url) = webhook.map(str::to_owned) else {
        return;
    };
    tasks.spawn(async move {
        let client = reqwest::Client::new();
        let result = client
            .post(&url)
            .timeout(Duration::from_secs(10))
            .json(&alert)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(e) = result {
            tracing::warn!(error = %e, event = %alert.event, "alert webhook failed");
        }
    });
}
