//! Node-level resources: liveness, readiness, the node, the register summary and verification.

use crate::api::AppState;
use crate::api::conditional;
use crate::api::dto::{HealthView, NodeView, ReadyView, RegisterView, VerifyView};
use crate::api::error::{ApiError, Problem};
use crate::error_code::ErrorCode;
use crate::register::entry::SYSTEM_REGISTER_ID;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

/// Liveness: answers while the process runs.
#[utoipa::path(get, path = "/health", tag = "node",
    operation_id = "getHealth",
    responses((status = 200, description = "The node is alive", body = HealthView)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthView> {
    Json(HealthView {
        status: "ok".to_owned(),
        role: state.node.role.to_owned(),
        node_id: state.node.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        head_version: state.register.head_version(),
    })
}

/// Readiness: 200 once the store is open and the register verified.
#[utoipa::path(get, path = "/ready", tag = "node",
    operation_id = "getReady",
    responses(
        (status = 200, description = "Ready", body = ReadyView),
        (status = 503, description = "Not ready (e.g. the register failed its integrity check)", body = Problem,
            content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ReadyView>, ApiError> {
    if let Some(failure) = state.register.integrity() {
        return Err(ApiError::new(
            crate::error_code::ErrorCode::Corrupt,
            failure.to_string(),
        ));
    }
    // The store must answer (a shared database can go away under a running node).
    state.register.head().await?;
    Ok(Json(ReadyView { ready: true }))
}

pub(crate) async fn register_view(state: &AppState) -> Result<RegisterView, ApiError> {
    let head = state.register.head().await?;
    let stats = state.register.stats().await?;
    Ok(RegisterView {
        register_id: SYSTEM_REGISTER_ID.to_owned(),
        head_version: head.as_ref().map_or(0, |h| h.version),
        head_hash: head.map(|h| h.chain_hash),
        entries: stats.entries,
        blueprints: stats.blueprints,
        active_blueprints: stats.active_blueprints,
        last_published_at: stats.last_published_at,
    })
}

/// The node: role, id, register head and counts, uptime, integrity.
#[utoipa::path(get, path = "/api/v1/node", tag = "node",
    operation_id = "getNode",
    responses((status = 200, description = "The node", body = NodeView)))]
pub async fn node(State(state): State<AppState>) -> Result<Json<NodeView>, ApiError> {
    let failure = state.register.integrity();
    let connection = state.peer.as_ref().map(|p| p.state());
    Ok(Json(NodeView {
        connection_state: connection.as_ref().map(|c| c.state.into()),
        current_hub: connection.and_then(|c| c.current.map(|i| c.hubs[i].url.clone())),
        role: state.node.role.to_owned(),
        node_id: state.node.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        register: register_view(&state).await?,
        uptime_seconds: state.node.started.elapsed().as_secs(),
        started_at: state.node.started_at_ms,
        integrity_ok: failure.is_none(),
        integrity_failure: failure.and_then(|f| serde_json::to_value(f).ok()),
        checkpoint_key: state.hub.as_ref().and_then(|h| h.checkpoint_key()),
        publisher_keys: state.register.publisher_keys().texts(),
    }))
}

/// A hub's signed checkpoint of its head: a C2SP signed note (`text/plain`) naming the
/// register, the head version and chain hash and the hub's time, signed by the hub's key
/// (`checkpointKey` in `GET /api/v1/node`). A peer serves the last hub checkpoint that
/// covered its replica — isolated, it still shows how fresh the replica is and which hub
/// vouched for it. Check it with `sorcha-peer checkpoint`.
#[utoipa::path(get, path = "/api/v1/system-register/checkpoint", tag = "register",
    operation_id = "getCheckpoint",
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain",
            example = "sorcha.dev/system-register/00000000-0000-0000-0000-000000000000\n6\nq9A…=\ntimestamp 1796281398191\n\n\u{2014} hub-0 Uw2Q…=\n"),
        (status = 404, description = "No checkpoint yet: an empty register, or a peer no trusted checkpoint has covered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json")))]
pub async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let note = match (&state.hub, &state.peer) {
        (Some(hub), _) => hub
            .checkpoint_note()
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the register is empty"))?,
        (None, Some(peer)) => peer
            .trust()
            .last_checkpoint()
            .map(|v| v.note)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    "no hub checkpoint has covered this replica yet",
                )
            })?,
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "this node signs no checkpoints",
            ));
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

/// Summary of the system register: head, counts, last publish. Its `ETag` is the head
/// version; `If-None-Match` with it answers 304 while the head has not moved.
#[utoipa::path(get, path = "/api/v1/system-register", tag = "register",
    operation_id = "getSystemRegister",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` of this resource: 304 while it is current")),
    responses(
        (status = 200, description = "The register", body = RegisterView,
            headers(("ETag" = String, description = "The head version, quoted"))),
        (status = 304, description = "The head is still the one tagged by `If-None-Match`",
            headers(("ETag" = String, description = "The head version, quoted"))),
        (status = 400, description = "Malformed `If-None-Match`", body = Problem, content_type = "application/problem+json")))]
pub async fn system_register(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let head = state.register.head_version();
    if conditional::if_none_match(&headers, head) {
        return Ok(conditional::not_modified(head));
    }
    let view = register_view(&state).await?;
    Ok((
        [(header::ETAG, conditional::etag(view.head_version))],
        Json(view),
    )
        .into_response())
}

/// Runs the integrity check over the whole register (checksums, chain, contiguous versions,
/// register id). A failure also makes the node refuse writes.
#[utoipa::path(get, path = "/api/v1/system-register/verify", tag = "register",
    operation_id = "verifyRegister",
    responses((status = 200, description = "Outcome of the check", body = VerifyView)))]
pub async fn verify(State(state): State<AppState>) -> Result<Json<VerifyView>, ApiError> {
    let report = state.register.verify().await?;
    Ok(Json(VerifyView {
        ok: report.ok,
        checked: report.checked,
        head_version: report.head_version,
        head_hash: report.head_hash,
        first_bad_version: report.failure.as_ref().map(|f| f.version),
        defect: report.failure.as_ref().map(|f| f.defect.kind().to_owned()),
        error: report.failure.as_ref().map(|f| f.defect.to_string()),
        signed: report.signed,
        duration_ms: report.duration_ms,
    }))
}
