//! Operator alerts: an error-level log line and, when `alerts.webhookUrl` is set, a JSON POST.

use serde::Serialize;
use std::time::Duration;

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
