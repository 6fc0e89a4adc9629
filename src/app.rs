//! Composition root: builds the node from its configuration, serves it on a listener and
//! shuts it down in order within a bounded grace period.

use crate::api::{self, AppState, NodeInfo};
use crate::auth::Tokens;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Settings, StoreKind};
use crate::hub::Hub;
use crate::keys::SigningKey;
use crate::peer::{Peer, PeerParts, PeerSettings};
use crate::register::signature::{PublisherKeys, SignaturePolicy};
use crate::register::{Register, RegisterOptions};
use crate::role::{self, ResolvedRole};
use crate::store::RegisterStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::guarded::{CallLimits, GuardedStore};
use crate::store::mongo::MongoStore;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state (register, config, tokens).
    pub state: AppState,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Node {
    /// Asks the node to stop (non-blocking).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token cancelled when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the node has stopped on its own (e.g. after [`Node::shutdown`]).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("node task panicked")?
    }

    /// A hub drains (see [`Hub::drain`]) over `hub.drainPeriod`; a peer, or a hub whose
    /// drain period is 0, returns at once.
    pub async fn drain(&self) {
        let period = self.state.config.hub.drain_period;
        if let Some(hub) = &self.state.hub
            && !period.is_zero()
        {
            hub.drain(period).await;
        }
    }

    /// Stops the node and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown();
        self.wait().await
    }
}

/// Writes in flight at once on the embedded store: enough never to split a group commit.
const EMBEDDED_WRITE_SLOTS: usize = 1024;

/// Opens the store and register (so the node is ready when this returns), then serves on
/// `listener` in a background task. Uses the system hostname for role resolution.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Node> {
    start_with_hostname(config, listener, &role::system_hostname()).await
}

/// [`start`] with an explicit hostname (the seam tests use for role detection).
pub async fn start_with_hostname(
    config: Config,
    listener: TcpListener,
    hostname: &str,
) -> anyhow::Result<Node> {
    start_with_clock(config, listener, hostname, Arc::new(SystemClock)).await
}

/// [`start_with_hostname`] on `clock` instead of the system's (tests run nodes whose clocks
/// are wrong).
pub async fn start_with_clock(
    config: Config,
    listener: TcpListener,
    hostname: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Node> {
    let mut config = config;
    // The rules of `Config::validate` hold however the configuration was built; what they
    // parse is used as parsed.
    let settings = config.validate()?;
    let role = role::resolve(&config, &settings.hostname_rule, hostname)?;
    // Fail before opening anything when the blueprint schema, certificate or key is unusable
    // (validation has checked the rest).
    let blueprint_schema =
        crate::register::schema::BlueprintSchema::load(&config.validation.blueprint_schema)
            .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    let tls = if config.tls.enabled() {
        Some(crate::tls::server_config(&config.tls)?)
    } else {
        None
    };
    if role == ResolvedRole::Peer && config.hubs.is_empty() {
        config.hubs = crate::config::default_hubs();
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let store = open_store(&config, &settings.store, &metrics).await?;
    let register = open_register(
        &store,
        &clock,
        &config,
        role,
        blueprint_schema.map(Arc::new),
        &metrics,
    )
    .await?;
    let tokens = Tokens::from_config(&config).context("cannot set up REST tokens")?;
    if let Some(path) = &tokens.generated_at {
        tracing::info!(path = %path.display(), "admin token file");
    }
    let peer_id = settings.node_id(hostname);
    let node_id = peer_id.to_string();
    let shutdown = CancellationToken::new();
    let (peer, peer_task) = match role {
        ResolvedRole::Peer => {
            let parts = PeerParts {
                register: Arc::clone(&register),
                settings: PeerSettings::from(&config),
                node_id: peer_id,
                clock: Arc::clone(&clock),
                dialer: Arc::new(grpc_dialer(&config, &settings, &node_id)),
                metrics: Arc::clone(&metrics),
            };
            let (peer, task) = Peer::start(parts, shutdown.clone(), None);
            (Some(peer), Some(task))
        }
        ResolvedRole::Hub => (None, None),
    };
    // A hub signs its checkpoints. A relay (`peer.serveDownstream`) serves the peer protocol
    // from its replica, handing on its hubs' checkpoints; it is a peer to REST (no hub
    // endpoints), gRPC serves it.
    let voucher = match (&peer, role) {
        (_, ResolvedRole::Hub) => Some(crate::hub::Voucher::Signs(Arc::new(hub_signing_key(
            &config, &node_id,
        )?))),
        (Some(peer), _) if config.peer.serve_downstream => Some(crate::hub::Voucher::Forwards(
            Arc::clone(peer) as Arc<dyn crate::hub::Upstream>,
        )),
        _ => None,
    };
    let serving = voucher.map(|voucher| {
        Hub::vouched_by(
            Arc::clone(&register),
            Arc::clone(&metrics),
            config.hub.clone(),
            node_id.clone(),
            Arc::clone(&clock),
            shutdown.clone(),
            voucher,
        )
    });
    let (hub, relay) = match role {
        ResolvedRole::Hub => (serving, None),
        ResolvedRole::Peer => (None, serving),
    };
    if let (Some(peer), Some(relay)) = (&peer, &relay) {
        let relay: Arc<dyn crate::peer::Downstream> = Arc::clone(relay) as _;
        peer.report_downstream(&relay);
    }
    let sse_slots = Arc::new(tokio::sync::Semaphore::new(config.sse.max_subscribers));
    let state = AppState {
        register,
        metrics,
        config: Arc::new(config),
        tokens: Arc::new(tokens),
        node: Arc::new(NodeInfo {
            role: role.as_str(),
            node_id,
            started: Instant::now(),
            started_at_ms: clock.now_ms(),
        }),
        shutdown: shutdown.clone(),
        hub: hub.clone(),
        checkpoints: crate::api::sse::checkpoint_feed(hub.clone(), peer.clone(), shutdown.clone()),
        peer,
        sse_slots,
    };
    let background = Background {
        housekeeping: hub
            .clone()
            .or_else(|| relay.clone())
            .map(|hub| tokio::spawn(hub.run_housekeeping())),
        tailer: follow_other_hubs(&store, &state.register, &shutdown),
        peer: peer_task,
        store,
    };
    let credentials = api::grpc::peer_auth::PeerCredentials::new(&state.config.hub.peer_tokens);
    let (grpc, health) =
        api::grpc::router(hub.or(relay), credentials, &state.config.limits).await?;
    let router = api::router(state.clone(), grpc, settings.cors);
    let addr = listener.local_addr()?;
    let task = serve_until_stopped(listener, tls, router, &state, health, background)?;
    tracing::info!(%addr, role = role.as_str(), "node listening");
    Ok(Node {
        addr,
        state,
        shutdown,
        task,
    })
}

/// The register store `store` names, behind the node's deadlines and slots.
async fn open_store(
    config: &Config,
    store: &StoreKind,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Arc<dyn RegisterStore>> {
    // MongoDB's writes take the pool's other half; the embedded store's one writer takes
    // every queued write in one group commit, where fewer in flight would only make smaller
    // ones.
    let (backend, write_slots): (Arc<dyn RegisterStore>, usize) = match store {
        StoreKind::Embedded => (
            Arc::new(EmbeddedStore::open(&config.data_dir)?),
            EMBEDDED_WRITE_SLOTS,
        ),
        StoreKind::MongoDb(uri) => (
            Arc::new(MongoStore::connect(uri, &config.mongo, config.limits.store_calls).await?),
            config.limits.store_calls,
        ),
    };
    Ok(Arc::new(GuardedStore::new(
        backend,
        CallLimits {
            deadline: config.limits.store_call_timeout,
            slot_wait: config.limits.store_call_wait,
            slots: config.limits.store_calls,
            write_slots,
        },
        Arc::clone(metrics),
    )))
}

/// Opens (a hub: seeds and verifies) the register over `store`.
async fn open_register(
    store: &Arc<dyn RegisterStore>,
    clock: &Arc<dyn Clock>,
    config: &Config,
    role: ResolvedRole,
    blueprint_schema: Option<Arc<crate::register::schema::BlueprintSchema>>,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Arc<Register>> {
    Ok(Register::open(
        Arc::clone(store),
        Arc::clone(clock),
        RegisterOptions {
            seed_genesis: role == ResolvedRole::Hub,
            max_document_bytes: config.limits.max_document_bytes,
            recent_window_bytes: config.limits.recent_window_bytes,
            max_page_bytes: config.limits.max_page_bytes,
            read_budget_bytes: config.limits.read_budget_bytes,
            metrics: Arc::clone(metrics),
            // Hubs check documents; peers take the hub's entries as they are.
            blueprint_schema: match role {
                ResolvedRole::Hub => blueprint_schema,
                ResolvedRole::Peer => None,
            },
            idempotency_retention: config.idempotency.retention,
            signatures: signature_policy(config, role),
        },
    )
    .await?)
}

/// How a peer reaches its hubs: gRPC with its credentials, CA and keep-alive.
fn grpc_dialer(
    config: &Config,
    settings: &Settings,
    node_id: &str,
) -> crate::hub_client::GrpcDialer {
    crate::hub_client::GrpcDialer::new(crate::hub_client::ClientOptions {
        connect_timeout: config.peer.connect_timeout,
        peer_id: Some(node_id.to_owned()),
        token: config.peer.token.clone(),
        ca_cert_pem: settings.peer_ca_cert.clone(),
        // Heartbeats judge the hub; keep-alive is the backstop that closes a connection
        // gone silent (a ping each heartbeat period, answered within twice the time the
        // heartbeats take to give a hub up), never before the heartbeats would.
        keep_alive: Some((
            config.peer.heartbeat_interval,
            2 * (config.peer.heartbeat_interval + config.peer.heartbeat_timeout),
        )),
    })
}

/// Follows appends other hubs make to a shared store, so this node's SSE and push
/// subscribers see them too.
fn follow_other_hubs(
    store: &Arc<dyn RegisterStore>,
    register: &Arc<Register>,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (store, register, cancel) = (Arc::clone(store), Arc::clone(register), shutdown.clone());
    // The tail only says how far the store has moved; one task reads what moved into the
    // recent window (coalescing announcements that come faster than it reads) and only then
    // announces it, so followers, syncs and heartbeats find it in memory.
    let (moved, mut absorb) = tokio::sync::watch::channel(register.head_version());
    tokio::spawn(async move {
        while absorb.changed().await.is_ok() {
            // Each version once: this hub's own appends are in the window already (no read);
            // an append of another hub that finished before one of ours is read here,
            // filling the gap.
            let version = *absorb.borrow_and_update();
            register.absorb_appends(version).await;
        }
    });
    tokio::spawn(async move {
        store
            .follow_external_appends(
                &|version| {
                    moved.send_if_modified(|known| {
                        let later = version > *known;
                        *known = (*known).max(version);
                        later
                    });
                },
                cancel,
            )
            .await;
    })
}

/// What runs beside the server and is stopped after it, in this order.
struct Background {
    housekeeping: Option<JoinHandle<()>>,
    tailer: JoinHandle<()>,
    peer: Option<JoinHandle<()>>,
    store: Arc<dyn RegisterStore>,
}

/// Serves `router` on `listener` until the node's shutdown, then stops: NOT_SERVING, at most
/// `shutdownGrace` for connections to finish, the background tasks, the store.
fn serve_until_stopped(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    router: axum::Router,
    state: &AppState,
    health: tonic_health::server::HealthReporter,
    background: Background,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let grace = state.config.shutdown_grace;
    let handshake_timeout = state.config.tls.handshake_timeout;
    let limits = state.config.limits.clone();
    let stop = state.shutdown.clone();
    let server: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match tls {
        None => {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                // Notifications are small writes that must leave at once.
                let _ = tcp.set_nodelay(true);
            });
            Box::pin(async move { crate::serve::serve(listener, router, &limits, stop).await })
        }
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls, handshake_timeout)?;
            Box::pin(async move { crate::serve::serve(listener, router, &limits, stop).await })
        }
    };
    let token = state.shutdown.clone();
    Ok(tokio::spawn(async move {
        let deadline = async {
            token.cancelled().await;
            api::grpc::report_not_serving(&health).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {},
            () = deadline => tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace expired; closing remaining connections"),
        }
        if let Some(task) = background.housekeeping {
            let _ = task.await;
        }
        let _ = background.tailer.await;
        // The peer finishes its current apply and says goodbye to its hub.
        if let Some(task) = background.peer
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("peer did not stop within the grace period");
        }
        background
            .store
            .close()
            .await
            .context("closing the store")?;
        tracing::info!("node stopped");
        Ok(())
    }))
}

/// The register's signature policy: a hub checks writes against each identity's
/// `[[publishers]] keys` and stored entries against every publisher key, retired ones
/// included; a peer checks synced entries against `peer.publisherKeys`.
fn signature_policy(config: &Config, role: ResolvedRole) -> SignaturePolicy {
    match role {
        ResolvedRole::Hub => SignaturePolicy {
            signers: config
                .publishers
                .iter()
                .map(|p| {
                    (
                        p.identity.clone(),
                        PublisherKeys::new(p.keys.iter().cloned()),
                    )
                })
                .collect(),
            known: PublisherKeys::new(
                config
                    .publishers
                    .iter()
                    .flat_map(|p| p.keys.iter().chain(&p.retired_keys))
                    .cloned(),
            ),
            require: config.signatures.require,
        },
        ResolvedRole::Peer => SignaturePolicy {
            signers: Default::default(),
            known: PublisherKeys::new(config.peer.publisher_keys.iter().cloned()),
            require: config.peer.require_signatures,
        },
    }
}

/// File name of a hub's generated checkpoint key inside the data directory.
pub const HUB_SIGNING_KEY_FILE: &str = "hub-signing.key";

/// The hub's checkpoint signing key: `hub.signingKeyFile`, else `<dataDir>/hub-signing.key`,
/// generated under the node id on first start. Only its verifier key is logged.
fn hub_signing_key(config: &Config, node_id: &str) -> anyhow::Result<SigningKey> {
    let path = config
        .hub
        .signing_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(HUB_SIGNING_KEY_FILE));
    let (key, generated) = SigningKey::load_or_generate(&path, node_id)
        .with_context(|| format!("hub signing key {}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        verifier_key = %key.verifier(),
        generated,
        "hub checkpoint key"
    );
    Ok(key)
}
