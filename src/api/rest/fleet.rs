//! The fleet: every peer of every hub sharing this hub's store, with a summary, and how far
//! each publication has reached it. The views here are the REST shape of
//! [`crate::hub::fleet`], which stays free of it.

use super::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::api::AppState;
use crate::api::error::{ApiError, Problem};
use crate::api::extract::ApiQuery;
use crate::error_code::ErrorCode;
use crate::hub::fleet::{FleetPeer, FleetState, FleetView};
use crate::hub::{Hub, Propagation};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// The longest a propagation answer waits (`timeout`).
pub const MAX_PROPAGATION_WAIT: Duration = Duration::from_secs(300);
/// The wait when `waitFor` is given without `timeout`.
pub const DEFAULT_PROPAGATION_WAIT: Duration = Duration::from_secs(30);

/// A peer's state in the fleet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Holds the hub's head.
    Synced,
    /// Lacks the head (see `behindSince`, `lagSeconds`).
    Behind,
    /// No report within two heartbeat intervals.
    Stale,
    /// Refused by its hub, or refusing its hub's data (see `refusal`).
    Refused,
    /// Left politely; listed for `hub.fleetRetention`.
    Disconnected,
}

impl From<FleetState> for PeerState {
    fn from(s: FleetState) -> Self {
        match s {
            FleetState::Synced => PeerState::Synced,
            FleetState::Behind => PeerState::Behind,
            FleetState::Stale => PeerState::Stale,
            FleetState::Refused => PeerState::Refused,
            FleetState::Disconnected => PeerState::Disconnected,
        }
    }
}

impl From<PeerState> for FleetState {
    fn from(s: PeerState) -> Self {
        match s {
            PeerState::Synced => FleetState::Synced,
            PeerState::Behind => FleetState::Behind,
            PeerState::Stale => FleetState::Stale,
            PeerState::Refused => FleetState::Refused,
            PeerState::Disconnected => FleetState::Disconnected,
        }
    }
}

/// One peer of the fleet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetPeerView {
    /// Peer id.
    pub peer_id: String,
    /// The hub that knows it (its session's, or the one that last saw it).
    pub hub_id: String,
    /// Its state.
    pub state: PeerState,
    /// The newest version it reported holding.
    pub applied_version: i64,
    /// The version covered by the last hub checkpoint it verified and applied, as it reported
    /// (0 = it checks none, or none yet, or an older release).
    pub trusted_version: i64,
    /// The answering hub's head − `appliedVersion` (≥ 0).
    pub version_lag: i64,
    /// Seconds since it fell behind (0 unless `behind`).
    pub lag_seconds: f64,
    /// Since when it lacks the head (the commit of the first version it lacks, when known),
    /// Unix ms; absent while it holds the head.
    pub behind_since: Option<i64>,
    /// Its last heartbeat, Unix ms (0 = none yet). For another hub's peer, as of that hub's
    /// last write of its record (at most ten heartbeat intervals old while it heartbeats).
    pub last_heartbeat_at: i64,
    /// When its session with `hubId` began, Unix ms.
    pub connected_since: i64,
    /// When the fleet first knew it, Unix ms.
    pub first_seen: i64,
    /// Its hub's clock minus its own at its last heartbeat (delay included), ms.
    pub clock_offset_ms: i64,
    /// The node software it runs, as it said ("" = not said; older releases).
    pub software_version: String,
    /// Why it is refused: who refused whom, and the reason.
    pub refusal: Option<String>,
    /// The relays between `hubId` and the peer, nearest the hub first (empty: in session with
    /// the hub itself); the other fields are as the nearest relay reported them.
    pub via: Vec<String>,
}

impl From<&FleetPeer> for FleetPeerView {
    fn from(p: &FleetPeer) -> Self {
        let r = &p.record;
        Self {
            peer_id: r.peer_id.clone(),
            hub_id: r.hub_id.clone(),
            state: p.state.into(),
            applied_version: r.applied_version,
            trusted_version: r.trusted_version,
            version_lag: p.version_lag,
            lag_seconds: p.lag_seconds,
            behind_since: r.behind_since,
            last_heartbeat_at: r.last_heartbeat_at,
            connected_since: r.connected_since,
            first_seen: r.first_seen,
            clock_offset_ms: r.clock_offset_ms,
            software_version: r.software_version.clone(),
            via: r.via.clone(),
            refusal: r.refusal.clone(),
        }
    }
}

/// A hub whose peers are listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetHubView {
    /// Hub id.
    pub hub_id: String,
    /// When it last wrote its part of the fleet record, Unix ms (the answering hub: now).
    pub seen_at: i64,
    /// It is draining: it takes no new peers and sends its own to other hubs.
    pub draining: bool,
    /// Its peers listed (every state).
    pub peers: usize,
}

/// Counts over the whole fleet (filters do not apply).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummaryView {
    /// Peers listed.
    pub peers: usize,
    /// Peers `synced`.
    pub synced: usize,
    /// Peers `behind`.
    pub behind: usize,
    /// Peers `stale`.
    pub stale: usize,
    /// Peers `refused`.
    pub refused: usize,
    /// Peers `disconnected`.
    pub disconnected: usize,
    /// SC-011's reference: the newest version committed at least 5 minutes ago (0 = none
    /// known yet, as in a hub's first 5 minutes).
    pub settled_version: i64,
    /// SC-011: of the peers counted (all but `disconnected`), the share holding
    /// `settledVersion` (1 when none is counted). The criterion asks ≥ 0.95.
    pub current_ratio: f64,
}

/// The fleet as one hub sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetPage {
    /// The answering hub.
    pub hub_id: String,
    /// Its head version (states and lags are measured against it).
    pub head_version: i64,
    /// When it answered, Unix ms.
    pub generated_at: i64,
    /// Counts over the whole fleet.
    pub summary: FleetSummaryView,
    /// Every hub whose peers are listed.
    pub hubs: Vec<FleetHubView>,
    /// The peers matching the filters after `after`, by peer id.
    // Each serialized once, when it is measured against the page's byte bound.
    #[schema(value_type = Vec<FleetPeerView>)]
    pub peers: Vec<Box<serde_json::value::RawValue>>,
    /// The `after` of the next page; absent on the last.
    pub next: Option<String>,
}

/// Query of the fleet.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FleetParams {
    /// Only peers in this state.
    pub state: Option<PeerState>,
    /// Only peers of this hub.
    pub hub: Option<String>,
    /// Only peers whose id sorts after this one; pass the previous page's `next`.
    pub after: Option<String>,
    /// Most peers in the page, 1–1000 (default 100). A page also ends before it exceeds the
    /// node's `limits.maxPageBytes` (at least one peer): follow `next` until it is absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

fn hub(state: &AppState) -> Result<&Arc<Hub>, ApiError> {
    super::hub_of(state, "the fleet is listed by hubs")
}

fn summary_view(view: &FleetView, settled: i64) -> FleetSummaryView {
    let s = view.summary(settled);
    let count = |state| {
        s.by_state
            .iter()
            .find(|(st, _)| *st == state)
            .map_or(0, |(_, n)| *n)
    };
    FleetSummaryView {
        peers: s.peers,
        synced: count(FleetState::Synced),
        behind: count(FleetState::Behind),
        stale: count(FleetState::Stale),
        refused: count(FleetState::Refused),
        disconnected: count(FleetState::Disconnected),
        settled_version: s.settled_version,
        current_ratio: s.current_ratio,
    }
}

/// The fleet: every peer of every hub sharing this hub's store (an embedded hub: its own),
/// once each, on the hub that knew it last, with counts per state and SC-011's ratio.
#[utoipa::path(get, path = "/api/v1/fleet", tag = "fleet",
    operation_id = "listFleet",
    params(FleetParams),
    responses(
        (status = 200, description = "A page of the fleet: at most `limit` peers, ending before `limits.maxPageBytes` (at least one); `next` is the `after` of the next page", body = FleetPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a hub", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<FleetParams>,
) -> Result<Json<FleetPage>, ApiError> {
    let hub = hub(&state)?;
    let limit = match params.limit {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(l) => {
            return Err(ApiError::bad_request(format!(
                "limit {l} is out of range: use 1-{MAX_LIMIT}"
            )));
        }
    };
    let view = hub.fleet_view();
    let settled = hub.settled_version(view.now);
    let hubs = view
        .hubs
        .iter()
        .map(|h| FleetHubView {
            hub_id: h.hub_id.clone(),
            seen_at: h.seen_at,
            draining: h.draining,
            peers: view
                .peers
                .iter()
                .filter(|p| p.record.hub_id == h.hub_id)
                .count(),
        })
        .collect();
    let wanted = view.peers.iter().filter(|p| {
        params.state.is_none_or(|s| p.state == FleetState::from(s))
            && params.hub.as_deref().is_none_or(|h| p.record.hub_id == h)
            && params
                .after
                .as_deref()
                .is_none_or(|a| p.record.peer_id.as_str() > a)
    });
    let max_bytes = state.config.limits.max_page_bytes;
    let (mut peers, mut last, mut bytes, mut more) = (Vec::new(), None, 0usize, false);
    for p in wanted {
        if peers.len() == limit {
            more = true;
            break;
        }
        let item = serde_json::value::to_raw_value(&FleetPeerView::from(p)).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot encode a fleet entry: {e}"),
            )
        })?;
        let size = item.get().len() + 1;
        if !peers.is_empty() && bytes + size > max_bytes {
            more = true;
            break;
        }
        bytes += size;
        peers.push(item);
        last = Some(&p.record.peer_id);
    }
    let next = more.then(|| last.cloned()).flatten();
    Ok(Json(FleetPage {
        hub_id: view.hub_id.clone(),
        head_version: view.head_version,
        generated_at: view.now,
        summary: summary_view(&view, settled),
        hubs,
        peers,
        next,
    }))
}

/// How far a publication has reached the fleet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropagationView {
    /// The version.
    pub version: i64,
    /// When it was committed, Unix ms.
    pub published_at: i64,
    /// Peers counted: those the fleet knew when it was committed, except those that left.
    pub peers: usize,
    /// Of those, peers holding it.
    pub applied: usize,
    /// `applied / peers` (1 when no peer is counted).
    pub ratio: f64,
    /// The first peers (by id, at most 20) that do not hold it yet.
    pub pending: Vec<String>,
    /// Every counted peer holds it.
    pub complete: bool,
}

impl From<Propagation> for PropagationView {
    fn from(p: Propagation) -> Self {
        Self {
            version: p.version,
            published_at: p.published_at,
            ratio: p.reach.ratio(),
            complete: p.reach.complete(),
            peers: p.reach.peers,
            applied: p.reach.applied,
            pending: p.reach.pending,
        }
    }
}

/// Query of a publication's propagation.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PropagationParams {
    /// Answer once this share of the peers holds the version (0–1), or when `timeout`
    /// passes; without it (and without `timeout`), answer at once.
    #[param(minimum = 0.0, maximum = 1.0)]
    pub wait_for: Option<f64>,
    /// The longest wait: a number and `ms`, `s` or `m` ("30s", "2m", "500ms"; default 30s;
    /// longer than 5m is cut to 5m). Alone, it waits for every peer (`waitFor=1`).
    #[param(pattern = r"^[0-9]{1,6}(ms|s|m)$")]
    pub timeout: Option<String>,
}

/// Checks `waitFor` and `timeout`: the share waited for and the longest wait.
fn wait_of(params: &PropagationParams) -> Result<Option<(f64, Duration)>, ApiError> {
    let timeout = params
        .timeout
        .as_deref()
        .map(parse_timeout)
        .transpose()?
        .map(|t| t.min(MAX_PROPAGATION_WAIT));
    match params.wait_for {
        None => Ok(timeout.map(|t| (1.0, t))),
        Some(r) if (0.0..=1.0).contains(&r) => {
            Ok(Some((r, timeout.unwrap_or(DEFAULT_PROPAGATION_WAIT))))
        }
        Some(r) => Err(ApiError::bad_request(format!(
            "waitFor {r} is out of range: use a share from 0 to 1 (0.95 = 95 %)"
        ))),
    }
}

/// A `timeout`: digits and a unit, `ms`, `s` or `m`.
fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    let invalid = || {
        ApiError::bad_request(format!(
            "timeout {:?} is not a number with ms, s or m (like \"30s\")",
            text.chars().take(40).collect::<String>()
        ))
    };
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|at| text.split_at(at))
        .ok_or_else(invalid)?;
    if digits.is_empty() || digits.len() > 6 {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(invalid()),
    }
}

/// How far the entry at `version` has reached the fleet: of the peers the fleet knew when it
/// was committed (except those that left since), how many hold it, and the first that do not.
/// With `waitFor`, the answer comes once that share holds it, or when `timeout` passes
/// (`complete` and `ratio` say which). Asked for `text/event-stream`, the answer is a stream:
/// an `event: progress` at once and whenever the counts change, then one `event: done` (the
/// last answer: reached, or timed out), each with the same JSON as `data:`; bounded by
/// `timeout` (default 30s) and counted among the node's event streams (`sse.maxSubscribers`).
#[utoipa::path(get, path = "/api/v1/system-register/entries/{version}/propagation", tag = "fleet",
    operation_id = "getPropagation",
    params(("version" = i64, Path, description = "Register version", minimum = 1), PropagationParams,
        ("Accept" = Option<String>, Header, description = "`text/event-stream` for the answer as it goes")),
    responses(
        (status = 200, description = "How far it has reached; as a stream of `progress` events and a last `done` for `Accept: text/event-stream`",
            content((PropagationView = "application/json"), (PropagationView = "text/event-stream"))),
        (status = 400, description = "Bad version or query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No entry at this version, or not a hub", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many event streams open (`sse.maxSubscribers`, streams only); `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json")))]
pub async fn propagation(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<PropagationParams>,
) -> Result<Response, ApiError> {
    let hub = hub(&state)?;
    let version = super::version_param(&version)?;
    let wait = wait_of(&params)?;
    let streamed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if !streamed {
        let answer = match wait {
            None => hub.propagation(version).await,
            Some((ratio, timeout)) => hub.await_propagation(version, ratio, timeout).await,
        };
        return Ok(Json(PropagationView::from(answer?)).into_response());
    }
    // A version the store does not hold is a 404 before any stream starts.
    if version > state.register.head_version() {
        let stored = state.register.head().await?.map_or(0, |h| h.version);
        if stored < version {
            return Err(crate::register::RegisterError::NoSuchVersion(version).into());
        }
    }
    let slot = crate::api::sse::stream_slot(&state)?;
    let (ratio, timeout) = wait.unwrap_or((1.0, DEFAULT_PROPAGATION_WAIT));
    let frames = hub
        .follow_propagation(version, ratio, timeout)
        .map(move |update| {
            let _held = &slot;
            let frame = match update {
                Ok((answer, done)) => {
                    let data =
                        serde_json::to_string(&PropagationView::from(answer)).unwrap_or_default();
                    format!(
                        "event: {}\ndata: {data}\n\n",
                        if done { "done" } else { "progress" }
                    )
                }
                Err(e) => {
                    let detail =
                        serde_json::json!({ "detail": crate::error_code::caller_message(&e) });
                    format!("event: error\ndata: {detail}\n\n")
                }
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(frame))
        });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}
