//! Blueprints: current state, one blueprint, its history; publish, update, deprecate.

use super::{page_limit, since};
use crate::api::AppState;
use crate::api::conditional;
use crate::api::dto::{
    DeprecateRequest, EntryPage, EntryView, ListParams, PublishRequest, SignatureView, SinceParams,
    UpdateRequest,
};
use crate::api::encode::{entry_response, page_response};
use crate::api::error::{ApiError, Problem};
use crate::api::extract::{ApiJson, ApiQuery, Caller};
use crate::api::idempotency;
use crate::error_code::ErrorCode;
use crate::register::signature::PublisherSignature;
use crate::register::validation;
use crate::register::{Publication, WriteOptions, Written};
use crate::store::ListQuery;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

/// Current blueprints (the newest entry of each), ordered by id, without documents.
#[utoipa::path(get, path = "/api/v1/system-register/blueprints", tag = "blueprints",
    operation_id = "listBlueprints",
    params(ListParams),
    responses(
        (status = 200, description = "A page of blueprints; `next` is the `cursor` of the next page", body = EntryPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<EntryPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    if let Some(cursor) = &params.cursor {
        validation::blueprint_id(cursor)
            .map_err(|_| ApiError::bad_request("cursor is not a value returned as `next`"))?;
    }
    let mut page = state
        .register
        .list(ListQuery {
            active: params.active,
            after_id: params.cursor,
            limit: limit + 1,
        })
        .await?;
    let more = page.len() > limit;
    page.truncate(limit);
    Ok(Json(EntryPage {
        next: more
            .then(|| page.last().map(|e| e.blueprint_id.clone()))
            .flatten(),
        items: page.iter().map(|e| EntryView::new(e, false)).collect(),
    }))
}

/// The newest entry of one blueprint, with its document. Its bytes come from the node's read
/// budget (503 with `Retry-After` when other large reads hold it too long).
#[utoipa::path(get, path = "/api/v1/system-register/blueprints/{id}", tag = "blueprints",
    operation_id = "getBlueprint",
    params(("id" = String, Path, description = "Blueprint id"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of this blueprint: 304 while its newest version is that one")),
    responses(
        (status = 200, description = "The blueprint's newest entry", body = EntryView,
            headers(("ETag" = String, description = "The version of the blueprint's newest entry, quoted; send it as `If-Match` to update or deprecate only that version"))),
        (status = 304, description = "The blueprint's newest version is the one tagged by `If-None-Match`",
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Bad id or malformed `If-None-Match`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown blueprint", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Other large reads hold the node's read budget; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A client holding the current version gets 304 without the document being read.
    if headers.contains_key(header::IF_NONE_MATCH) {
        let version = state.register.blueprint_version(&id).await?;
        if conditional::if_none_match(&headers, version) {
            return Ok(conditional::not_modified(version));
        }
    }
    let wait = Some(state.config.limits.read_budget_wait);
    let (entry, held) = state.register.blueprint(&id, wait).await?;
    Ok(entry_response(
        StatusCode::OK,
        HeaderMap::new(),
        &entry,
        Some(held),
    ))
}

/// The entries of one blueprint, oldest first, with documents, paged like the log: a page ends
/// after `limit` entries or before its entries exceed `limits.maxPageBytes` (at least one).
#[utoipa::path(get, path = "/api/v1/system-register/blueprints/{id}/history", tag = "blueprints",
    operation_id = "getBlueprintHistory",
    params(("id" = String, Path, description = "Blueprint id"), SinceParams),
    responses(
        (status = 200, description = "A page of the blueprint's entries: at most `limit`, ending before `limits.maxPageBytes` (at least one entry); `next` is the `since` of the next page", body = EntryPage),
        (status = 400, description = "Bad id or query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown blueprint", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Other large reads hold the node's read budget; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    let limit = page_limit(params.limit)?;
    let since = since(params.since)?;
    let register = &state.register;
    let page = register
        .history(
            &id,
            since,
            register.page_bound(limit),
            Some(state.config.limits.read_budget_wait),
        )
        .await?;
    Ok(page_response(page))
}

/// Peers never write: a write on a peer answers 409 with `Location` pointing at the hub.
fn refuse_on_peer(state: &AppState, path: &str) -> Result<(), ApiError> {
    let Some(peer) = &state.peer else {
        return Ok(());
    };
    let hub = peer
        .current_hub()
        .or_else(|| state.config.hubs.first().cloned())
        .unwrap_or_default();
    Err(ApiError::new(
        ErrorCode::ReadOnly,
        format!("this node is a peer and holds a read-only replica; publish to the hub {hub}"),
    )
    .with_location(format!("{}{path}", hub.trim_end_matches('/'))))
}

/// The write options a request asks for: `If-Match` (where the operation takes it) and
/// `Idempotency-Key`.
fn write_options(headers: &HeaderMap, conditional: bool) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        expected: conditional
            .then(|| conditional::if_match(headers))
            .flatten(),
        idempotency_key: idempotency::key(headers)?,
    })
}

/// The answer to a write: 201 with `Location` for a new blueprint, else 200; the same for a
/// replay of an earlier request, marked `Idempotent-Replayed: true`.
/// The signature a request carries, checked for form (its verification is the register's).
fn signature_of(view: Option<&SignatureView>) -> Result<Option<Box<PublisherSignature>>, ApiError> {
    view.map(|v| v.parse().map(Box::new))
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("invalid signature: {e}")))
}

fn written(written: &Written) -> Response {
    let entry = &written.entry;
    let mut headers = HeaderMap::new();
    if written.replayed {
        idempotency::mark_replayed(&mut headers);
    }
    let status = if entry.entry_type == crate::register::entry::EntryType::Published {
        let location = format!("/api/v1/system-register/blueprints/{}", entry.blueprint_id);
        if let Ok(value) = location.parse() {
            headers.insert(header::LOCATION, value);
        }
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    entry_response(status, headers, entry, None)
}

/// Publishes a new blueprint (entry type `published`). Needs a publisher token.
#[utoipa::path(post, path = "/api/v1/system-register/blueprints", tag = "blueprints",
    operation_id = "publishBlueprint",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (IETF httpapi Idempotency-Key): an RFC 8941 string such as `\"8e03978e-40d5-43e8-bc93-6894a57f9324\"` or the bare value, 1-255 printable ASCII characters. A retry of the same request (method, path, identity, canonical body) with the same key within `idempotency.retention` gets the first answer, marked `Idempotent-Replayed: true`, and writes nothing; the key with another request → 422")),
    request_body = PublishRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Published; the durable entry (or, replayed, the entry of the earlier identical request)", body = EntryView,
            headers(("Location" = String, description = "The blueprint"), ("ETag" = String, description = "The new version, quoted"), ("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier identical request (same `Idempotency-Key`, or same `publicationTransactionId`) and nothing was written now"))),
        (status = 400, description = "Invalid input, malformed JSON or malformed `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token may not publish", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists, the `publicationTransactionId` names an entry written by another request (`transaction-id-exists`), or this node is a peer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or document too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The document breaks the hub's blueprint schema (`schema-violation`: `violations` lists up to 20, each with its JSON pointer), or the `Idempotency-Key` was used by another request (`idempotency-key-reused`); nothing written", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Writes refused (corrupt register), or the store unavailable or too slow (`Retry-After` says when to retry)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The data volume is full; nothing was written", body = Problem, content_type = "application/problem+json")))]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<Response, ApiError> {
    let identity = caller.require_publisher()?;
    refuse_on_peer(&state, "/api/v1/system-register/blueprints")?;
    let options = write_options(&headers, false)?;
    let done = state
        .register
        .publish(
            Publication {
                blueprint_id: body.blueprint_id,
                document: body.document,
                metadata: body.metadata,
                publication_transaction_id: body.publication_transaction_id,
                signature: signature_of(body.signature.as_ref())?,
            },
            &identity.name,
            &options,
        )
        .await?;
    Ok(written(&done))
}

/// Publishes a new version of an existing blueprint (entry type `updated`); updating a
/// deprecated blueprint makes it active again. Needs a publisher token.
#[utoipa::path(put, path = "/api/v1/system-register/blueprints/{id}", tag = "blueprints",
    operation_id = "updateBlueprint",
    params(("id" = String, Path, description = "Blueprint id"),
        ("If-Match" = Option<String>, Header, description = "Write only if the blueprint's newest version is this `ETag` (`*`: any); else 412"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (IETF httpapi Idempotency-Key): an RFC 8941 string such as `\"8e03978e-40d5-43e8-bc93-6894a57f9324\"` or the bare value, 1-255 printable ASCII characters. A retry of the same request (method, path, identity, canonical body) with the same key within `idempotency.retention` gets the first answer, marked `Idempotent-Replayed: true`, and writes nothing; the key with another request → 422")),
    request_body = UpdateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated; the durable entry (or, replayed, the entry of the earlier identical request)", body = EntryView,
            headers(("ETag" = String, description = "The new version, quoted"), ("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier identical request (same `Idempotency-Key`, or same `publicationTransactionId`) and nothing was written now"))),
        (status = 400, description = "Invalid input, malformed JSON or malformed `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token may not publish", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown blueprint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The `publicationTransactionId` names an entry written by another request (`transaction-id-exists`), or this node is a read-only peer (`Location` names its hub)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or document too large", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version than the blueprint's newest; the problem and `ETag` say which is current", body = Problem, content_type = "application/problem+json",
            headers(("ETag" = String, description = "The current version, quoted"))),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The document breaks the hub's blueprint schema (`schema-violation`: `violations` lists up to 20, each with its JSON pointer), or the `Idempotency-Key` was used by another request (`idempotency-key-reused`); nothing written", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Writes refused, or the store unavailable or too slow (`Retry-After` says when to retry)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The data volume is full; nothing was written", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    let identity = caller.require_publisher()?;
    let options = write_options(&headers, true)?;
    refuse_on_peer(&state, &format!("/api/v1/system-register/blueprints/{id}"))?;
    let done = state
        .register
        .update(
            Publication {
                blueprint_id: id,
                document: body.document,
                metadata: body.metadata,
                publication_transaction_id: body.publication_transaction_id,
                signature: signature_of(body.signature.as_ref())?,
            },
            &identity.name,
            &options,
        )
        .await?;
    Ok(written(&done))
}

/// Deprecates a blueprint: appends an entry of type `deprecated` with `isActive=false`.
/// The body is optional: none, or a JSON object. Needs a publisher token.
#[utoipa::path(post, path = "/api/v1/system-register/blueprints/{id}/deprecate", tag = "blueprints",
    operation_id = "deprecateBlueprint",
    params(("id" = String, Path, description = "Blueprint id"),
        ("If-Match" = Option<String>, Header, description = "Write only if the blueprint's newest version is this `ETag` (`*`: any); else 412"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (IETF httpapi Idempotency-Key): an RFC 8941 string such as `\"8e03978e-40d5-43e8-bc93-6894a57f9324\"` or the bare value, 1-255 printable ASCII characters. A retry of the same request (method, path, identity, canonical body) with the same key within `idempotency.retention` gets the first answer, marked `Idempotent-Replayed: true`, and writes nothing; the key with another request → 422")),
    request_body(content = Option<DeprecateRequest>, description = "Optional metadata of the deprecation"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deprecated; the durable entry (or, replayed, the entry of the earlier identical request)", body = EntryView,
            headers(("ETag" = String, description = "The new version, quoted"), ("Idempotent-Replayed" = String, description = "`true` when this is the answer of an earlier identical request (same `Idempotency-Key`, or same `publicationTransactionId`) and nothing was written now"))),
        (status = 400, description = "Invalid input, malformed body or malformed `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token may not publish", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown blueprint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already deprecated, or this node is a read-only peer", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another version than the blueprint's newest; the problem and `ETag` say which is current", body = Problem, content_type = "application/problem+json",
            headers(("ETag" = String, description = "The current version, quoted"))),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The `Idempotency-Key` was used by another request (`idempotency-key-reused`); nothing written", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Writes refused, or the store unavailable or too slow (`Retry-After` says when to retry)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The data volume is full; nothing was written", body = Problem, content_type = "application/problem+json")))]
pub async fn deprecate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let identity = caller.require_publisher()?;
    let options = write_options(&headers, true)?;
    refuse_on_peer(
        &state,
        &format!("/api/v1/system-register/blueprints/{id}/deprecate"),
    )?;
    // No body at all is the optional body left out; anything else must be a JSON object
    // (serde would also read a struct from an array, and `null` is not an object).
    let request: DeprecateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DeprecateRequest::default()
    } else if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "invalid body: send no body, or a JSON object",
        ));
    } else {
        serde_json::from_slice::<DeprecateRequest>(&body)
            .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("invalid body: {e}")))?
    };
    let done = state
        .register
        .deprecate(
            &id,
            &identity.name,
            request.metadata,
            signature_of(request.signature.as_ref())?,
            &options,
        )
        .await?;
    Ok(written(&done))
}
