//! The rules a configuration must meet before a node starts on it.

use super::{Config, ConfigError};
use crate::api::cors::CorsPolicy;
use crate::protocol::PeerId;
use std::time::Duration;

/// Where the register lives (`store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded SQLite file in the data directory.
    Embedded,
    /// A MongoDB database at this `mongodb://` or `mongodb+srv://` URI.
    MongoDb(String),
}

impl StoreKind {
    /// Reads `store`.
    pub fn parse(store: &str) -> Result<Self, ConfigError> {
        if store == "embedded" {
            Ok(StoreKind::Embedded)
        } else if store.starts_with("mongodb://") || store.starts_with("mongodb+srv://") {
            Ok(StoreKind::MongoDb(store.to_owned()))
        } else {
            Err(ConfigError(format!(
                "store {store:?} is not supported: use \"embedded\" or a mongodb:// URI"
            )))
        }
    }
}

/// What a valid configuration resolves to: every setting that needs parsing or loading,
/// parsed or loaded once, for the composition root to use as it is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `store`.
    pub store: StoreKind,
    /// `nodeId`, when set.
    pub node_id: Option<PeerId>,
    /// `peer.caCert`, read: the PEM certificates a peer trusts for `https://` hubs.
    pub peer_ca_cert: Option<Vec<u8>>,
    /// `hub.hostnamePattern`, compiled.
    pub hostname_rule: regex::Regex,
    /// `cors.*`, checked.
    pub cors: CorsPolicy,
}

impl Settings {
    /// The node's id: `nodeId`, else `hostname` made into a valid id.
    pub fn node_id(&self, hostname: &str) -> PeerId {
        self.node_id
            .clone()
            .unwrap_or_else(|| PeerId::from_hostname(hostname))
    }
}

impl Config {
    /// The signature settings: every publisher a token identity, once, with a key; a
    /// requirement that can be met.
    fn validate_signatures(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let mut identities = std::collections::HashSet::new();
        for (i, publisher) in self.publishers.iter().enumerate() {
            let known = publisher.identity == "admin"
                || self.tokens.iter().any(|t| t.identity == publisher.identity);
            if !known {
                return err(format!(
                    "publishers[{i}].identity {:?} is no token's identity (tokens[].identity, or admin): its keys could never be used",
                    publisher.identity
                ));
            }
            if !identities.insert(&publisher.identity) {
                return err(format!(
                    "publishers[{i}]: identity {:?} is listed twice; give it one entry with all its keys",
                    publisher.identity
                ));
            }
            if publisher.keys.is_empty() && publisher.retired_keys.is_empty() {
                return err(format!(
                    "publishers[{i}] ({:?}) has no keys",
                    publisher.identity
                ));
            }
        }
        if self.signatures.require && self.publishers.iter().all(|p| p.keys.is_empty()) {
            return err(
                "signatures.require is set but no [[publishers]] entry has keys: every publication would be refused"
                    .into(),
            );
        }
        if self.peer.require_signatures && self.peer.publisher_keys.is_empty() {
            return err(
                "peer.requireSignatures is set but peer.publisherKeys is empty: no entry could be applied"
                    .into(),
            );
        }
        Ok(())
    }

    /// Checks values that parse but make no sense, and returns what needed parsing, parsed.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let store = StoreKind::parse(&self.store)?;
        let node_id = self
            .node_id
            .as_deref()
            .map(|id| PeerId::parse_as("nodeId", id))
            .transpose()
            .map_err(|e| ConfigError(e.to_string()))?;
        for (i, hub) in self.hubs.iter().enumerate() {
            check_hub_url(hub).map_err(|why| {
                ConfigError(format!(
                    "hubs[{i}] {hub:?} is not a hub URL ({why}): write http://host:port or \
                     https://host:port"
                ))
            })?;
        }
        let mut peer_ca_cert = None;
        if let Some(path) = &self.peer.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError(format!(
                    "peer.caCert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return err(format!(
                    "peer.caCert {} holds no PEM certificate",
                    path.display()
                ));
            }
            peer_ca_cert = Some(pem);
        }
        let hostname_rule = regex::Regex::new(&self.hub.hostname_pattern)
            .map_err(|e| ConfigError(format!("hub.hostnamePattern is not a valid regex: {e}")))?;
        for token in &self.tokens {
            if let Err(e) = crate::register::validation::published_by(&token.identity) {
                return err(format!("token identity {:?}: {e}", token.identity));
            }
            if token.token.expose().len() < 16 {
                return err(format!(
                    "token of identity {:?} is shorter than 16 characters",
                    token.identity
                ));
            }
        }
        self.validate_signatures()?;
        if self.idempotency.retention.is_zero() {
            return err(
                "idempotency.retention must be above zero: a retry must find its key".into(),
            );
        }
        if self.limits.max_header_bytes < 8192 {
            return err("limits.maxHeaderBytes must be at least 8192".into());
        }
        if self.limits.header_read_timeout.is_zero()
            || self.limits.keep_alive_interval.is_zero()
            || self.limits.keep_alive_timeout.is_zero()
            || self.limits.grpc_call_timeout.is_zero()
        {
            return err("limits: timeouts and intervals must be above zero".into());
        }
        if self.limits.idle_timeout <= self.limits.keep_alive_interval
            || self.limits.idle_timeout <= self.sse.keep_alive
        {
            return err(
                "limits.idleTimeout must exceed limits.keepAliveInterval and sse.keepAlive, \
                 or open streams would be cut"
                    .into(),
            );
        }
        if self.limits.max_concurrent_streams == 0
            || self.sse.max_subscribers == 0
            || self.limits.listen_backlog == 0
        {
            return err(
                "limits.maxConcurrentStreams, limits.listenBacklog and sse.maxSubscribers must \
                 be at least 1"
                    .into(),
            );
        }
        let network_max = crate::register::validation::MAX_DOCUMENT_BYTES;
        if self.limits.max_document_bytes == 0 || self.limits.max_document_bytes > network_max {
            return err(format!(
                "limits.maxDocumentBytes {} is out of range: use 1-{network_max} (the network-wide \
                 limit, so every node and store can hold every entry)",
                self.limits.max_document_bytes
            ));
        }
        if self.limits.max_page_bytes < 64 * 1024 || self.limits.recent_window_bytes == 0 {
            return err(
                "limits.maxPageBytes must be at least 65536 and limits.recentWindowBytes above 0"
                    .into(),
            );
        }
        if self.limits.read_budget_bytes < self.limits.max_page_bytes {
            return err("limits.readBudgetBytes must be at least limits.maxPageBytes".into());
        }
        if self.limits.store_call_timeout.is_zero()
            || self.limits.store_call_wait.is_zero()
            || self.limits.store_call_wait > self.limits.store_call_timeout
        {
            return err(
                "limits.storeCallTimeout and limits.storeCallWait must be above zero, the wait \
                 at most the timeout"
                    .into(),
            );
        }
        if !(1..=1000).contains(&self.limits.store_calls) {
            return err(format!(
                "limits.storeCalls {} is out of range: use 1-1000",
                self.limits.store_calls
            ));
        }
        if self.limits.max_body_bytes < self.limits.max_document_bytes {
            return err("limits.maxBodyBytes must be at least limits.maxDocumentBytes".into());
        }
        if self.hub.heartbeat_interval.is_zero() || self.hub.session_timeout.is_zero() {
            return err("hub.heartbeatInterval and hub.sessionTimeout must be above zero".into());
        }
        if self.hub.max_concurrent_full_syncs == 0 {
            return err("hub.maxConcurrentFullSyncs must be at least 1".into());
        }
        if self.hub.fleet_flush_interval.is_zero() || self.hub.fleet_retention.is_zero() {
            return err("hub.fleetFlushInterval and hub.fleetRetention must be above zero".into());
        }
        let peer = &self.peer;
        if [
            peer.heartbeat_interval,
            peer.heartbeat_timeout,
            peer.connect_timeout,
            peer.request_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return err(
                "peer.heartbeatInterval, peer.heartbeatTimeout, peer.connectTimeout and \
                 peer.requestTimeout must be above zero"
                    .into(),
            );
        }
        if self.hub.checkpoint_refresh.is_zero() {
            return err("hub.checkpointRefresh must be above zero".into());
        }
        // A checkpoint is looked at with each heartbeat answer: an age limit within one
        // interval would raise the alert between two healthy answers.
        if !peer.max_checkpoint_age.is_zero() && peer.max_checkpoint_age <= peer.heartbeat_interval
        {
            return err(format!(
                "peer.maxCheckpointAge ({:?}) must be longer than peer.heartbeatInterval ({:?}), \
                 or 0 to not check",
                peer.max_checkpoint_age, peer.heartbeat_interval
            ));
        }
        if self.hub.max_sessions == 0 {
            return err("hub.maxSessions must be at least 1".into());
        }
        for rate in [
            &self.hub.rate_limits.connect,
            &self.hub.rate_limits.full_sync,
            &self.hub.rate_limits.heartbeat,
        ] {
            if rate.every.is_zero() || rate.burst == 0 {
                return err(
                    "hub.rateLimits: every rate needs `every` above zero and `burst` of at least 1"
                        .into(),
                );
            }
        }
        // One heartbeat rule: a hub admits at least the pace it advertises to its peers.
        if self.hub.rate_limits.heartbeat.every > self.hub.heartbeat_interval {
            return err(format!(
                "hub.rateLimits.heartbeat.every ({:?}) is longer than hub.heartbeatInterval \
                 ({:?}): the hub would refuse heartbeats at the pace it advertises",
                self.hub.rate_limits.heartbeat.every, self.hub.heartbeat_interval
            ));
        }
        if self.hub.max_concurrent_syncs == 0 || self.hub.max_push_streams_per_session == 0 {
            return err(
                "hub.maxConcurrentSyncs and hub.maxPushStreamsPerSession must be at least 1".into(),
            );
        }
        for peer in &self.hub.peer_tokens {
            if peer.token.expose().len() < 16 {
                return err(format!(
                    "hub.peerTokens: the token of peer {:?} is shorter than 16 characters",
                    peer.peer_id
                ));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return err("tls.certFile and tls.keyFile must be set together".into());
        }
        if self.sse.keep_alive.is_zero() {
            return err("sse.keepAlive must be above zero".into());
        }
        let cors = CorsPolicy::new(&self.cors).map_err(ConfigError)?;
        Ok(Settings {
            store,
            node_id,
            peer_ca_cert,
            hostname_rule,
            cors,
        })
    }
}

/// Checks a hub URL: http or https, a host, nothing but `/` after the authority.
fn check_hub_url(url: &str) -> Result<(), &'static str> {
    let uri: axum::http::Uri = url.parse().map_err(|_| "it does not parse")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("the scheme must be http or https");
    }
    let authority = uri.authority().ok_or("the host is missing")?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err("the host is missing");
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err("a hub URL has no path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_are_checked() {
        for bad in [
            "notaurl",
            "ftp://h:1",
            "http://",
            "http://h:1/path",
            "//h:1",
            "http://u@h:1",
        ] {
            let c = Config {
                hubs: vec![bad.into()],
                ..Config::default()
            };
            let e = c.validate().unwrap_err();
            assert!(e.0.contains("hubs[0]"), "{bad}: {e}");
        }
        let c = Config {
            hubs: vec![
                "http://n0.sorcha.dev:5000".into(),
                "https://h.example/".into(),
            ],
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_hub_admits_the_heartbeat_pace_it_advertises() {
        let mut c = Config::default();
        assert!(c.validate().is_ok(), "the defaults hold the rule");
        c.hub.heartbeat_interval = Duration::from_millis(500);
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("hub.rateLimits.heartbeat.every"), "{e}");
        c.hub.rate_limits.heartbeat.every = Duration::from_millis(500);
        assert!(c.validate().is_ok());
        c.peer.request_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().0.contains("peer.requestTimeout"));
    }

    #[test]
    fn a_checkpoint_age_limit_outlasts_a_heartbeat_interval() {
        let mut c = Config::default();
        c.peer.max_checkpoint_age = c.peer.heartbeat_interval;
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("peer.maxCheckpointAge")
        );
        c.peer.max_checkpoint_age = Duration::ZERO;
        assert!(c.validate().is_ok(), "0 does not check");
        c.hub.checkpoint_refresh = Duration::ZERO;
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("hub.checkpointRefresh")
        );
    }
}
