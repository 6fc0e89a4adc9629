//! Transport adapters: one axum router on one port serving REST, SSE, gRPC (h2c and
//! gRPC-Web), OpenAPI + Swagger UI and the dashboard. Handlers translate; rules live in
//! `register/`.

pub mod dto;
pub mod encode;
pub mod error;
pub mod extract;
pub mod grpc;
pub mod rest;
pub mod sse;

use crate::auth::Tokens;
use crate::config::Config;
use crate::hub::Hub;
use crate::peer::Peer;
use crate::register::Register;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{Html, IntoResponse};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

/// Facts about the running node shown by the API.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `hub` or `peer`.
    pub role: &'static str,
    /// The node's id.
    pub node_id: String,
    /// When the node started (monotonic).
    pub started: Instant,
    /// When the node started, Unix ms UTC.
    pub started_at_ms: i64,
}

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The register.
    pub register: Arc<Register>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Accepted REST tokens.
    pub tokens: Arc<Tokens>,
    /// Node facts.
    pub node: Arc<NodeInfo>,
    /// Cancelled at shutdown; ends streams.
    pub shutdown: CancellationToken,
    /// The hub role, when this node is a hub.
    pub hub: Option<Arc<Hub>>,
    /// The peer role, when this node is a peer.
    pub peer: Option<Arc<Peer>>,
    /// One permit per open SSE stream (`sse.maxSubscribers`).
    pub sse_slots: Arc<tokio::sync::Semaphore>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sorcha-peer",
        description = "REST/JSON API of a sorcha-peer node: the system register of blueprints, \
                       its live event stream and the node's state. Errors are RFC 9457 \
                       application/problem+json."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "node", description = "Liveness, readiness and the node itself"),
        (name = "register", description = "The system register: summary, log and integrity"),
        (name = "blueprints", description = "Blueprints: read, publish, update, deprecate"),
        (name = "events", description = "Server-Sent Events"),
        (name = "peers", description = "Peer sessions of a hub"),
        (name = "replication", description = "A peer's hub connection and sync")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The REST routes and the OpenAPI document describing them.
pub fn rest_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rest::node::health))
        .routes(routes!(rest::node::ready))
        .routes(routes!(rest::node::node))
        .routes(routes!(rest::node::system_register))
        .routes(routes!(rest::node::verify))
        .routes(routes!(rest::blueprints::list, rest::blueprints::publish))
        .routes(routes!(rest::blueprints::get, rest::blueprints::update))
        .routes(routes!(rest::blueprints::history))
        .routes(routes!(rest::blueprints::deprecate))
        .routes(routes!(rest::entries::entries))
        .routes(routes!(rest::peers::list))
        .routes(routes!(rest::peers::get))
        .routes(routes!(rest::connection::connection))
        .routes(routes!(rest::connection::reconnect))
        .routes(routes!(rest::connection::checkpoint))
        .routes(routes!(rest::connection::sync))
        .routes(routes!(sse::events))
        .split_for_parts()
}

/// The OpenAPI document served at `/openapi.json` (and committed as `openapi/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    rest_router().1
}

// The dashboard is compiled in, so the binary serves it from anywhere without files.
const DASHBOARD: &str = include_str!("../../static/index.html");
const DASHBOARD_JS: &str = include_str!("../../static/app.js");
const DASHBOARD_CSS: &str = include_str!("../../static/style.css");

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn dashboard_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        DASHBOARD_JS,
    )
}

async fn dashboard_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        DASHBOARD_CSS,
    )
}

/// Prometheus scrape: gauges mirroring state are refreshed, then everything is rendered.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let m = state.register.metrics();
    if let Some(hub) = &state.hub {
        m.hub_sessions
            .set(i64::try_from(hub.sessions().len()).unwrap_or(i64::MAX));
    }
    if let Some(peer) = &state.peer {
        let view = peer.connection();
        m.connection_state.set(view.state as i64);
        m.isolated.set(i64::from(
            view.state == crate::peer::state::ConnectionState::Isolated,
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no resource at {}", uri.path()),
    )
}

/// The whole application router: REST + SSE + OpenAPI + Swagger UI + dashboard, merged with
/// the gRPC router, then one fallback.
pub fn router(state: AppState, grpc: Router) -> Router {
    let (rest, openapi) = rest_router();
    let body_limit = state.config.limits.max_body_bytes;
    let rest = rest
        .route("/", axum::routing::get(dashboard))
        .route("/metrics", axum::routing::get(metrics))
        .route("/static/app.js", axum::routing::get(dashboard_js))
        .route("/static/style.css", axum::routing::get(dashboard_css))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    let grpc_web_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_headers(Any)
        .allow_methods(Any)
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            header::CONTENT_TYPE,
        ]);
    Router::new()
        .merge(rest)
        .merge(SwaggerUi::new("/swagger-ui").url("/openapi.json", openapi))
        .merge(grpc.layer(grpc_web_cors))
        .fallback(not_found)
}
