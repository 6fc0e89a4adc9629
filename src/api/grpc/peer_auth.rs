//! Peer authentication on the hub's `sorcha.peer.v1` services (SPEC §7). When the hub has
//! peer tokens configured, every call must carry `peer-id` and `authorization: Bearer <token>`
//! metadata matching one of them (UNAUTHENTICATED otherwise), and the `peer_id` inside the
//! request must be the authenticated one (PERMISSION_DENIED otherwise). Health and reflection
//! stay open. Tokens are compared in constant time and never logged.

use super::status::status;
use crate::config::PeerTokenConfig;
use crate::error_code::ErrorCode;
use crate::hub::Hub;
use crate::protocol::PeerId;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::Status;

/// Path prefix of the services that need peer credentials.
const PROTECTED_PREFIX: &str = "/sorcha.peer.v1.";
/// The connect call's method, the end of its path.
const CONNECT_METHOD: &str = "/ConnectToCentralNode";

/// The peer a call was authenticated as, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedPeer(pub String);

/// The hub's peer credentials.
#[derive(Debug, Clone, Default)]
pub struct PeerCredentials {
    tokens: Arc<HashMap<String, crate::config::Secret>>,
}

impl PeerCredentials {
    /// Credentials from config; empty means peers are not authenticated.
    pub fn new(tokens: &[PeerTokenConfig]) -> Self {
        Self {
            tokens: Arc::new(
                tokens
                    .iter()
                    .map(|t| (t.peer_id.clone(), t.token.clone()))
                    .collect(),
            ),
        }
    }

    /// True when peers must authenticate.
    pub fn required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a call's metadata; the authenticated peer id on success.
    fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<AuthenticatedPeer, Status> {
        let header = |name: &str| -> Result<Option<&str>, Status> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(Some).map_err(|_| {
                    status(
                        ErrorCode::Unauthenticated,
                        format!("{name} metadata is not printable ASCII"),
                    )
                }),
            }
        };
        let (Some(peer_id), Some(authorization)) = (header("peer-id")?, header("authorization")?)
        else {
            return Err(status(
                ErrorCode::Unauthenticated,
                "this hub requires peer credentials: send `peer-id` and `authorization: Bearer <token>` metadata",
            ));
        };
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return Err(status(
                ErrorCode::Unauthenticated,
                "authorization metadata must be `Bearer <token>`",
            ));
        };
        // Compare against something even for unknown peers, so timing does not tell which
        // peer ids exist.
        let expected = self.tokens.get(peer_id);
        let reference = expected.map_or("", |s| s.expose());
        let matches = bool::from(reference.as_bytes().ct_eq(token.as_bytes()));
        if expected.is_some() && matches {
            Ok(AuthenticatedPeer(peer_id.to_owned()))
        } else {
            Err(status(
                ErrorCode::Unauthenticated,
                "unknown peer or wrong token for the given peer-id",
            ))
        }
    }
}

/// Axum middleware: authenticates `sorcha.peer.v1` calls when credentials are configured. A
/// connect refused for its credentials lists the peer id it claimed as `refused` in `hub`'s
/// fleet (other calls refused are not: a peer that cannot connect makes no other).
pub async fn require_peer(
    credentials: PeerCredentials,
    hub: Option<Arc<Hub>>,
    mut request: Request,
    next: Next,
) -> Response {
    if credentials.required() && request.uri().path().starts_with(PROTECTED_PREFIX) {
        match credentials.authenticate(request.headers()) {
            Ok(peer) => {
                request.extensions_mut().insert(peer);
            }
            Err(status) => {
                tracing::warn!(path = %request.uri().path(), reason = status.message(), "peer call refused");
                let claimed = request
                    .headers()
                    .get("peer-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|id| PeerId::parse(id).ok());
                if let (Some(hub), Some(peer)) = (hub, claimed)
                    && request.uri().path().ends_with(CONNECT_METHOD)
                {
                    hub.refused(
                        &peer,
                        &format!("refused by hub {}: {}", hub.node_id(), status.message()),
                    );
                }
                return status.into_http::<axum::body::Body>().into_response();
            }
        }
    }
    next.run(request).await
}

/// Refuses a call whose `peer_id` is not the authenticated peer (PERMISSION_DENIED). Without
/// peer authentication every call passes.
pub fn authorize(extensions: &axum::http::Extensions, peer_id: &str) -> Result<(), Status> {
    authorize_as(extensions.get::<AuthenticatedPeer>(), peer_id)
}

/// [`authorize`] for a caller taken out of the extensions earlier (streaming requests).
pub fn authorize_as(caller: Option<&AuthenticatedPeer>, peer_id: &str) -> Result<(), Status> {
    match caller {
        Some(AuthenticatedPeer(caller)) if caller != peer_id => Err(status(
            ErrorCode::Forbidden,
            format!(
                "authenticated as peer {caller:?}, which may not act for peer {:?}",
                peer_id.chars().take(80).collect::<String>()
            ),
        )),
        _ => Ok(()),
    }
}
