//! Prometheus metrics of one node (`GET /metrics`), named `sorcha_peer_…` with units and help.
//! Each node owns its registry, so several nodes in one process (tests) never mix figures.
//! Counters and histograms are recorded where things happen; gauges that mirror state (head,
//! sessions, connection) are set from that state when scraped.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write;
use std::sync::Mutex;

/// Kind of sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum SyncKind {
    /// FullSync.
    Full,
    /// IncrementalSync.
    Incremental,
}

/// Label set `{kind}` for syncs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// Full or incremental.
    pub kind: SyncKind,
}

/// Subscriber transport.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Transport {
    /// Server-Sent Events.
    Sse,
    /// gRPC push stream.
    Grpc,
}

/// Label set `{transport}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// SSE or gRPC.
    pub transport: Transport,
}

/// Outcome label.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed.
    Failed,
}

/// Label set `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Ok or failed.
    pub outcome: Outcome,
}

/// Label set `{hub, state}` of the fleet as one hub sees it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetStateLabels {
    /// The hub whose view it is.
    pub hub: String,
    /// The fleet state (`synced`, `behind`, `stale`, `refused`, `disconnected`).
    pub state: String,
}

/// Label set `{reason}` of peers a hub sent to another hub.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwayLabels {
    /// `draining` or `rebalancing`.
    pub reason: String,
}

/// Label set `{hub}`: the hub whose view of the fleet a figure is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HubLabels {
    /// The hub.
    pub hub: String,
}

/// Label values in Prometheus style (lower case).
macro_rules! lower_case_label {
    ($ty:ty { $($variant:ident => $text:literal),* }) => {
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self { $(Self::$variant => $text),* })
            }
        }
    };
}
/// A call of the register store ([`crate::store::RegisterStore`]), named as in the trait.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StoreOp {
    /// `head`.
    Head,
    /// `append`.
    Append,
    /// `prior`.
    Prior,
    /// `forget_keys`.
    ForgetKeys,
    /// `append_entries`.
    AppendEntries,
    /// `sync_progress` (labelled `checkpoint`, its name when the label was published).
    SyncProgress,
    /// `entries_after`.
    EntriesAfter,
    /// `entry`.
    Entry,
    /// `latest`.
    Latest,
    /// `history`.
    History,
    /// `sizes_after`.
    SizesAfter,
    /// `latest_size`.
    LatestSize,
    /// `read_ahead`.
    ReadAhead,
    /// `list_current`.
    ListCurrent,
    /// `stats`.
    Stats,
    /// `write_fleet`.
    WriteFleet,
    /// `read_fleet`.
    ReadFleet,
    /// `keep_checkpoints`.
    KeepCheckpoints,
    /// `checkpoints_between`.
    CheckpointsBetween,
}

/// Label set `{operation}` for store calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    /// The store call.
    pub operation: StoreOp,
}

/// Where a store call ran out of time.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StoreStage {
    /// Waiting for a free slot (`limits.storeCallWait`).
    Wait,
    /// Waiting for the store's answer (`limits.storeCallTimeout`).
    Call,
}

/// Label set `{operation, stage}` for store calls that ran out of time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreTimeoutLabels {
    /// The store call.
    pub operation: StoreOp,
    /// Where it ran out of time.
    pub stage: StoreStage,
}

impl StoreOp {
    /// Whether the call writes (it takes a write slot of the guarded store).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Self::Append
                | Self::AppendEntries
                | Self::ForgetKeys
                | Self::WriteFleet
                | Self::KeepCheckpoints
        )
    }

    /// The call's name, as in the trait, in metrics and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Append => "append",
            Self::Prior => "prior",
            Self::ForgetKeys => "forget_keys",
            Self::AppendEntries => "append_entries",
            Self::SyncProgress => "checkpoint",
            Self::EntriesAfter => "entries_after",
            Self::Entry => "entry",
            Self::Latest => "latest",
            Self::History => "history",
            Self::SizesAfter => "sizes_after",
            Self::LatestSize => "latest_size",
            Self::ReadAhead => "read_ahead",
            Self::ListCurrent => "list_current",
            Self::Stats => "stats",
            Self::WriteFleet => "write_fleet",
            Self::ReadFleet => "read_fleet",
            Self::KeepCheckpoints => "keep_checkpoints",
            Self::CheckpointsBetween => "checkpoints_between",
        }
    }
}

impl EncodeLabelValue for StoreOp {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.name())
    }
}
lower_case_label!(StoreStage { Wait => "wait", Call => "call" });
lower_case_label!(SyncKind { Full => "full", Incremental => "incremental" });
lower_case_label!(Transport { Sse => "sse", Grpc => "grpc" });
lower_case_label!(Outcome { Ok => "ok", Failed => "failed" });

/// Every metric of a node.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Durable publish latency (store append, incl. fsync).
    pub publish_duration: Histogram,
    /// Publishes by outcome.
    pub publishes: Family<OutcomeLabels, Counter>,
    /// Writes answered with the entry of an earlier identical request (idempotency key or
    /// publication transaction id) instead of appending.
    pub idempotent_replays: Counter,
    /// Sync duration on a peer, by kind.
    pub sync_duration: Family<SyncLabels, Histogram>,
    /// Entries applied by sync on a peer.
    pub sync_entries: Counter,
    /// Syncs on a peer by outcome.
    pub syncs: Family<OutcomeLabels, Counter>,
    /// Synced entries whose publisher signature did not verify against `peer.publisherKeys`
    /// (refused with `peer.requireSignatures`, else applied and logged).
    pub signature_defects: Counter,
    /// Hub checkpoints a peer refused: an untrusted key, a key other than the one pinned, none
    /// where one was due, or one that does not cover its entry.
    pub untrusted_checkpoints: Counter,
    /// Equivocations a peer saw: two valid checkpoints for one version with different hashes,
    /// or a key vouching for a smaller head after a larger one.
    pub equivocations: Counter,
    /// Bytes ([`crate::register::entry::Entry::weight`]) of each batch a peer's sync applies.
    pub sync_batch_bytes: Histogram,
    /// Sync streams served by a hub, by kind.
    pub sync_streams_served: Family<SyncLabels, Counter>,
    /// Entries streamed by a hub's sync streams.
    pub sync_entries_served: Counter,
    /// Notifications sent to subscribers, by transport.
    pub notifications_delivered: Family<TransportLabels, Counter>,
    /// Subscriber streams that ended with an error, by transport.
    pub notification_failures: Family<TransportLabels, Counter>,
    /// Open subscriber streams, by transport.
    pub subscribers: Family<TransportLabels, Gauge>,
    /// Heartbeat round trip seen by a peer.
    pub heartbeat_latency: Histogram,
    /// Heartbeats a peer sent, by outcome (failed = missed).
    pub heartbeats_sent: Family<OutcomeLabels, Counter>,
    /// Heartbeats a hub received.
    pub heartbeats_received: Counter,
    /// From an entry's commit on the hub to a connected peer's report that it applied it.
    pub propagation: Histogram,
    /// Peers of the fleet per state, as a hub sees it (every hub sharing its store).
    pub fleet_peers: Family<FleetStateLabels, Gauge>,
    /// SC-011 as a hub sees it: the share of the fleet's peers (all but those that left)
    /// holding every version published at least 5 minutes ago.
    pub fleet_current_ratio: Family<HubLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Fleet records a hub wrote to a shared store (one document per peer that changed).
    pub fleet_records_written: Counter,
    /// Failovers of a peer.
    pub failovers: Counter,
    /// From a peer's first connect attempt (after start, or after losing its hub) to its next
    /// session.
    pub connect_time: Histogram,
    /// Peer connection state: 0 Disconnected, 1 Connecting, 2 Connected, 3 HeartbeatTimeout, 4 Isolated.
    pub connection_state: Gauge,
    /// 1 while the peer is isolated.
    pub isolated: Gauge,
    /// The current hub's clock minus this peer's, as the peer estimates it.
    pub hub_clock_offset: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Age of the newest trusted checkpoint the current hub (or relay) handed out, on its
    /// clock at its last heartbeat answer.
    pub source_checkpoint_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Register head version.
    pub head_version: Gauge,
    /// Peer sessions on a hub.
    pub hub_sessions: Gauge,
    /// The most sessions a hub holds by its fair share (0 = no cap).
    pub fair_share_cap: Gauge,
    /// Peers a hub sent to another hub, by why.
    pub sessions_sent_away: Family<AwayLabels, Counter>,
    /// Bytes held by the recent window (entries and their derived encodings).
    pub recent_window_bytes: Gauge,
    /// Bytes held by reads from the node-wide read budget.
    pub read_bytes_in_flight: Gauge,
    /// 1 when the last integrity check passed, 0 when it failed.
    pub verify_ok: Gauge,
    /// Integrity check duration.
    pub verify_duration: Histogram,
    /// Duration of each register store call that got an answer, by operation (the count is
    /// the number of store round trips).
    pub store_call_duration: Family<StoreOpLabels, Histogram>,
    /// Store calls that ran out of time, by operation and stage.
    pub store_call_timeouts: Family<StoreTimeoutLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sorcha_peer");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            publish_duration: latency_histogram(),
            publishes: Family::default(),
            idempotent_replays: Counter::default(),
            sync_duration: Family::new_with_constructor(latency_histogram),
            sync_entries: Counter::default(),
            syncs: Family::default(),
            signature_defects: Counter::default(),
            untrusted_checkpoints: Counter::default(),
            equivocations: Counter::default(),
            // 64 KiB … 32 MiB: powers of two, so `limits.maxPageBytes` values are bucket edges.
            sync_batch_bytes: Histogram::new(exponential_buckets(65536.0, 2.0, 10)),
            sync_streams_served: Family::default(),
            sync_entries_served: Counter::default(),
            notifications_delivered: Family::default(),
            notification_failures: Family::default(),
            subscribers: Family::default(),
            heartbeat_latency: latency_histogram(),
            fleet_peers: Family::default(),
            fleet_current_ratio: Family::default(),
            fleet_records_written: Counter::default(),
            // With a bucket at SC-016's 30 s.
            // With a bucket at SC-014's 30 s.
            connect_time: Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            propagation: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            heartbeats_sent: Family::default(),
            heartbeats_received: Counter::default(),
            failovers: Counter::default(),
            connection_state: Gauge::default(),
            isolated: Gauge::default(),
            hub_clock_offset: Gauge::default(),
            source_checkpoint_age: Gauge::default(),
            head_version: Gauge::default(),
            hub_sessions: Gauge::default(),
            fair_share_cap: Gauge::default(),
            sessions_sent_away: Family::default(),
            recent_window_bytes: Gauge::default(),
            read_bytes_in_flight: Gauge::default(),
            verify_ok: Gauge::default(),
            verify_duration: latency_histogram(),
            store_call_duration: Family::new_with_constructor(latency_histogram),
            store_call_timeouts: Family::default(),
        };
        let s = Unit::Seconds;
        r.register_with_unit(
            "publish_duration",
            "Durable publish latency (append + fsync)",
            s.clone(),
            m.publish_duration.clone(),
        );
        r.register(
            "publishes",
            "Publishes, updates and deprecations by outcome",
            m.publishes.clone(),
        );
        r.register(
            "idempotent_replays",
            "Writes answered with the entry of an earlier identical request (Idempotency-Key or \
             publicationTransactionId) instead of appending",
            m.idempotent_replays.clone(),
        );
        r.register_with_unit(
            "sync_duration",
            "Duration of a peer's sync, by kind",
            s.clone(),
            m.sync_duration.clone(),
        );
        r.register(
            "sync_entries",
            "Entries applied by a peer's syncs",
            m.sync_entries.clone(),
        );
        r.register("syncs", "Syncs run by a peer, by outcome", m.syncs.clone());
        r.register(
            "signature_defects",
            "Synced entries whose publisher signature did not verify against \
             peer.publisherKeys (refused with peer.requireSignatures, else applied and logged)",
            m.signature_defects.clone(),
        );
        r.register(
            "untrusted_checkpoints",
            "Hub checkpoints a peer refused: untrusted key, another key than the one pinned, \
             none where one was due, or not covering its entry",
            m.untrusted_checkpoints.clone(),
        );
        r.register(
            "equivocations",
            "Equivocations a peer saw: two valid checkpoints for one version with different \
             hashes, or a key vouching for a smaller head after a larger one",
            m.equivocations.clone(),
        );
        r.register_with_unit(
            "sync_batch",
            "Bytes of each batch a peer's sync applies in one transaction",
            Unit::Bytes,
            m.sync_batch_bytes.clone(),
        );
        r.register(
            "sync_streams_served",
            "Sync streams served by a hub, by kind",
            m.sync_streams_served.clone(),
        );
        r.register(
            "sync_entries_served",
            "Entries streamed by a hub's sync streams",
            m.sync_entries_served.clone(),
        );
        r.register(
            "notifications_delivered",
            "Notifications sent to subscribers, by transport",
            m.notifications_delivered.clone(),
        );
        r.register(
            "notification_failures",
            "Subscriber streams ended by an error, by transport",
            m.notification_failures.clone(),
        );
        r.register(
            "subscribers",
            "Open subscriber streams, by transport",
            m.subscribers.clone(),
        );
        r.register_with_unit(
            "heartbeat_latency",
            "Heartbeat round trip seen by a peer",
            s.clone(),
            m.heartbeat_latency.clone(),
        );
        r.register(
            "heartbeats_sent",
            "Heartbeats sent by a peer, by outcome (failed = missed)",
            m.heartbeats_sent.clone(),
        );
        r.register(
            "heartbeats_received",
            "Heartbeats received by a hub",
            m.heartbeats_received.clone(),
        );
        r.register_with_unit(
            "connect",
            "From a peer's first connect attempt (after start, or after losing its hub) to its next session",
            s.clone(),
            m.connect_time.clone(),
        );
        r.register_with_unit(
            "propagation",
            "From an entry's commit on the hub to a connected peer's report that it applied it",
            s.clone(),
            m.propagation.clone(),
        );
        r.register(
            "fleet_peers",
            "Peers of the fleet per state (synced, behind, stale, refused, disconnected), as the \
             hub labelled sees every hub sharing its store",
            m.fleet_peers.clone(),
        );
        r.register(
            "fleet_current_ratio",
            "SC-011: the share of the fleet's peers (all but those that left) holding every \
             version published at least 5 minutes ago, as the hub labelled sees it",
            m.fleet_current_ratio.clone(),
        );
        r.register(
            "fleet_records_written",
            "Fleet records a hub wrote to a shared store (MongoDB): one per peer that changed, \
             in one batch per hub.fleetFlushInterval",
            m.fleet_records_written.clone(),
        );
        r.register(
            "failovers",
            "Failovers of a peer to another hub",
            m.failovers.clone(),
        );
        r.register("connection_state", "Peer connection state: 0 Disconnected, 1 Connecting, 2 Connected, 3 HeartbeatTimeout, 4 Isolated", m.connection_state.clone());
        r.register(
            "isolated",
            "1 while the peer is isolated from every hub",
            m.isolated.clone(),
        );
        r.register_with_unit(
            "hub_clock_offset",
            "The current hub's clock minus this peer's, estimated from the hub's timestamps; \
             heartbeats are sent on the hub's clock",
            s.clone(),
            m.hub_clock_offset.clone(),
        );
        r.register_with_unit(
            "source_checkpoint_age",
            "Age of the newest trusted checkpoint the current hub or relay handed out, on its \
             clock at its last heartbeat answer; above peer.maxCheckpointAge raises \
             peer.stale_source",
            s.clone(),
            m.source_checkpoint_age.clone(),
        );
        r.register(
            "register_head_version",
            "Version of the register's newest entry",
            m.head_version.clone(),
        );
        r.register(
            "hub_sessions",
            "Peer sessions held by a hub",
            m.hub_sessions.clone(),
        );
        r.register(
            "fair_share_cap",
            "The most peer sessions a hub sharing a store holds by its fair share \
             (hub.fairSharePercent); 0 = no cap",
            m.fair_share_cap.clone(),
        );
        r.register(
            "sessions_sent_away",
            "Peers a hub sent to another hub: draining, or rebalancing above its fair share",
            m.sessions_sent_away.clone(),
        );
        r.register_with_unit(
            "recent_window",
            "Bytes held by the recent window: entries and their derived encodings",
            Unit::Bytes,
            m.recent_window_bytes.clone(),
        );
        r.register_with_unit(
            "read_in_flight",
            "Bytes held by reads from the node-wide read budget (limits.readBudgetBytes)",
            Unit::Bytes,
            m.read_bytes_in_flight.clone(),
        );
        r.register(
            "verify_ok",
            "1 when the last integrity check passed, 0 when it failed",
            m.verify_ok.clone(),
        );
        r.register_with_unit(
            "verify_duration",
            "Duration of integrity checks",
            s.clone(),
            m.verify_duration.clone(),
        );
        r.register_with_unit(
            "store_call_duration",
            "Duration of register store calls that got an answer, by operation; the count is \
             the number of store round trips",
            s,
            m.store_call_duration.clone(),
        );
        r.register(
            "store_call_timeouts",
            "Register store calls that ran out of time, by operation and stage (wait: no free \
             slot within limits.storeCallWait; call: no answer within limits.storeCallTimeout)",
            m.store_call_timeouts.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = r;
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Counts an open subscriber stream while alive.
#[derive(Debug)]
pub struct SubscriberGuard {
    gauge: Gauge,
}

impl SubscriberGuard {
    /// Counts one more subscriber on `transport`.
    pub fn new(metrics: &Metrics, transport: Transport) -> Self {
        let gauge = metrics
            .subscribers
            .get_or_create(&TransportLabels { transport })
            .clone();
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
