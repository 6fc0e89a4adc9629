//! Transport adapters: one axum router on one port serving REST, SSE, gRPC (h2c and
//! gRPC-Web), OpenAPI + Swagger UI and the dashboard. Handlers translate; rules live in
//! `register/`.

pub mod access;
pub mod conditional;
pub mod cors;
pub mod dto;
pub mod encode;
pub mod error;
pub mod extract;
pub mod grpc;
pub mod idempotency;
pub mod rest;
pub mod sse;
pub mod trace;
pub mod unique_keys;

use crate::auth::Tokens;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::register::Register;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, header};
use axum::response::{Html, IntoResponse};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
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
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
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
    /// The node's newest checkpoint, encoded once for every event stream.
    pub checkpoints: sse::CheckpointFeed,
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
        (name = "fleet", description = "Every peer of every hub sharing a store, and how far each publication has reached them"),
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

/// States the id, publisher and `Idempotency-Key` rules of `register::validation` as the
/// patterns of the parameters and body fields that carry them, so the description cannot
/// drift from the checks.
fn state_rule_patterns(openapi: &mut utoipa::openapi::OpenApi) {
    use crate::register::validation::{
        BLUEPRINT_ID_PATTERN, IDEMPOTENCY_KEY_HEADER_PATTERN, PUBLISHED_BY_PATTERN,
    };
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{RefOr, Schema};
    fn set(schema: Option<&mut RefOr<Schema>>, pattern: &str) {
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.pattern = Some(pattern.to_owned());
        }
    }
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.head,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                let pattern = match (&parameter.parameter_in, parameter.name.as_str()) {
                    (ParameterIn::Path, "id") | (ParameterIn::Query, "blueprintId" | "cursor") => {
                        BLUEPRINT_ID_PATTERN
                    }
                    (ParameterIn::Query, "publishedBy") => PUBLISHED_BY_PATTERN,
                    (ParameterIn::Header, "Idempotency-Key") => IDEMPOTENCY_KEY_HEADER_PATTERN,
                    _ => continue,
                };
                set(parameter.schema.as_mut(), pattern);
            }
        }
    }
    if let Some(RefOr::T(Schema::Object(publish))) = openapi
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("PublishRequest"))
    {
        set(
            publish.properties.get_mut("blueprintId"),
            BLUEPRINT_ID_PATTERN,
        );
    }
}

/// What wraps each REST path's routes: nothing (to describe the API), or the node's read
/// access rule and its CORS policy for the methods the path has.
struct PathLayers {
    node: Option<(AppState, Arc<cors::CorsPolicy>)>,
}

impl PathLayers {
    fn wrap(
        &self,
        (schemas, paths, routes): UtoipaMethodRouter<AppState>,
    ) -> UtoipaMethodRouter<AppState> {
        let Some((state, cors)) = &self.node else {
            return (schemas, paths, routes);
        };
        let reads_need_rule = paths.paths.keys().all(|p| access::is_api_path(p));
        let routes = if reads_need_rule {
            routes.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                access::api_reads,
            ))
        } else {
            routes
        };
        let routes = if reads_need_rule {
            // Resources that change say so; an immutable one sets its own Cache-Control.
            routes.layer(axum::middleware::map_response(no_cache_by_default))
        } else {
            routes
        };
        let routes = routes.layer(cors.layer(&methods_of(&paths)));
        (schemas, paths, routes)
    }
}

/// `Cache-Control: no-cache` on an answer that does not set its own: the resources under
/// `/api/` change (a client may keep them, but must revalidate, e.g. with `If-None-Match`).
async fn no_cache_by_default(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-cache"));
    response
}

/// The methods of the operations in `paths`.
fn methods_of(paths: &utoipa::openapi::path::Paths) -> Vec<Method> {
    let mut methods = Vec::new();
    for item in paths.paths.values() {
        for (method, op) in [
            (Method::GET, &item.get),
            (Method::HEAD, &item.head),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ] {
            if op.is_some() && !methods.contains(&method) {
                methods.push(method);
            }
        }
        // HEAD comes with GET (see `describe_node_rules`).
        if item.get.is_some() && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
    }
    methods
}

/// The REST routes, each path wrapped by `layers`, and the OpenAPI document describing them.
fn rest_routes(layers: &PathLayers) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let l = |routes| layers.wrap(routes);
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(l(routes!(rest::node::health)))
        .routes(l(routes!(rest::node::ready)))
        .routes(l(routes!(rest::node::node)))
        .routes(l(routes!(rest::node::system_register)))
        .routes(l(routes!(rest::node::verify)))
        .routes(l(routes!(rest::node::checkpoint)))
        .routes(l(routes!(
            rest::blueprints::list,
            rest::blueprints::publish
        )))
        .routes(l(routes!(rest::blueprints::get, rest::blueprints::update)))
        .routes(l(routes!(rest::blueprints::history)))
        .routes(l(routes!(rest::blueprints::deprecate)))
        .routes(l(routes!(rest::entries::entries)))
        .routes(l(routes!(rest::entries::entry)))
        .routes(l(routes!(rest::peers::list)))
        .routes(l(routes!(rest::peers::get)))
        .routes(l(routes!(rest::fleet::list)))
        .routes(l(routes!(rest::fleet::propagation)))
        .routes(l(routes!(rest::drain::drain)))
        .routes(l(routes!(rest::connection::connection)))
        .routes(l(routes!(rest::connection::reconnect)))
        .routes(l(routes!(rest::connection::sync_progress)))
        .routes(l(routes!(rest::connection::sync)))
        .routes(l(routes!(sse::events)))
        .split_for_parts();
    describe_node_rules(&mut doc);
    state_rule_patterns(&mut doc);
    (router, doc)
}

/// Writes into the document what applies to many operations at once: every read under
/// `/api/` may need a token (`auth.publicReads`), and an optional body is declared as an
/// optional request body of its schema (not as `oneOf [null, …]`, which client generators
/// cannot send as "no body").
fn describe_node_rules(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder, Schema};
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in [&mut item.post, &mut item.put].into_iter().flatten() {
            let Some(body) = op.request_body.as_mut() else {
                continue;
            };
            for content in body.content.values_mut() {
                if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                    let mut items = one_of.items.iter().filter(|s| !is_null(s));
                    if let (Some(only), None) = (items.next(), items.next()) {
                        content.schema = Some(only.clone());
                        body.required = Some(Required::False);
                    }
                }
            }
        }
        if let Some(get) = item.get.as_mut().filter(|_| access::is_api_path(path)) {
            get.responses
                .responses
                .entry("401".to_owned())
                .or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(
                                "This node's reads need a token (`auth.publicReads = false`) and \
                             none, or an invalid one, was sent",
                            )
                            .content(
                                "application/problem+json",
                                Content::new(Some(Ref::from_schema_name("Problem"))),
                            )
                            .build(),
                    )
                });
            // Anonymous, or a bearer token of any role.
            get.security.get_or_insert_with(|| {
                vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ]
            });
        }
        // HEAD works wherever GET does: axum answers it with the GET handler, without the body.
        if let Some(get) = item.get.as_ref()
            && item.head.is_none()
        {
            let mut head = get.clone();
            head.operation_id = get.operation_id.as_ref().map(|id| format!("{id}Head"));
            head.summary = get.summary.as_ref().map(|s| format!("{s} (headers only)"));
            for response in head.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.clear();
                }
            }
            item.head = Some(head);
        }
    }
}

fn is_null(schema: &utoipa::openapi::RefOr<utoipa::openapi::Schema>) -> bool {
    use utoipa::openapi::schema::{SchemaType, Type};
    matches!(
        schema,
        utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(o))
            if o.schema_type == SchemaType::Type(Type::Null)
    )
}

/// The REST routes and the OpenAPI document describing them.
pub fn rest_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    rest_routes(&PathLayers { node: None })
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
    let m = &state.metrics;
    if let Some(hub) = &state.hub {
        m.hub_sessions
            .set(i64::try_from(hub.sessions().len()).unwrap_or(i64::MAX));
    }
    if let Some(peer) = &state.peer {
        let view = peer.state();
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
    error::ApiError::not_found(format!("no resource at {}", uri.path()))
}

/// The whole application router: REST + SSE + OpenAPI + Swagger UI + dashboard, merged with
/// the gRPC router, then one fallback. Every path is behind the node's CORS `policy`; REST reads
/// behind its read access rule; REST requests run in a redacted `http` span.
pub fn router(state: AppState, grpc: Router, policy: cors::CorsPolicy) -> Router {
    let policy = Arc::new(policy);
    let layers = PathLayers {
        node: Some((state.clone(), Arc::clone(&policy))),
    };
    let (rest, openapi) = rest_routes(&layers);
    let body_limit = state.config.limits.max_body_bytes;
    let get = || policy.layer(&[Method::GET]);
    let metrics = axum::routing::get(metrics)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::metrics_reads,
        ))
        .layer(get());
    let rest = rest
        .route("/", axum::routing::get(dashboard).layer(get()))
        .route("/metrics", metrics)
        .route(
            "/static/app.js",
            axum::routing::get(dashboard_js).layer(get()),
        )
        .route(
            "/static/style.css",
            axum::routing::get(dashboard_css).layer(get()),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(state);
    let docs =
        Router::from(SwaggerUi::new("/swagger-ui").url("/openapi.json", openapi)).layer(get());
    Router::new()
        .merge(rest)
        .merge(docs)
        .merge(grpc.layer(policy.layer(&[Method::POST])))
        .fallback(not_found)
}
