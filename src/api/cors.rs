//! Cross-origin access (CORS): one policy, from `cors.*`, for every REST path, the event
//! stream and gRPC-Web.
//!
//! tower-http's `CorsLayer` answers preflights and adds the response headers; it is built once
//! per path with the methods that path has. In front of it, [`CorsGate`] decides whether a
//! request is a cross-origin request this node serves at all:
//! - an allowed `Origin` goes through the `CorsLayer`;
//! - a preflight from any other origin is refused with 403 (the detail says which setting
//!   admits the origin) and carries no CORS header;
//! - every other request (no `Origin`, a same-origin page, a disallowed origin's simple
//!   request) is served untouched, without CORS headers, so the browser keeps the answer from
//!   a disallowed page and an `OPTIONS` that is not a preflight still gets 405.

use super::error::ApiError;
use crate::config::CorsConfig;
use crate::error_code::ErrorCode;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// Request headers a cross-origin page may send: authentication, JSON bodies, conditional
/// and idempotent writes, event-stream resume, gRPC-Web's own and trace context.
pub const ALLOWED_REQUEST_HEADERS: [&str; 12] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "last-event-id",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "peer-id",
    "traceparent",
    "tracestate",
];

/// Response headers a cross-origin page may read (besides the CORS-safelisted ones).
pub const EXPOSED_RESPONSE_HEADERS: [&str; 7] = [
    "etag",
    "location",
    "retry-after",
    "idempotent-replayed",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Which origins may call the node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    /// `*`: any origin.
    Any,
    /// Exactly these serialized origins (lower case), possibly none.
    Listed(Vec<String>),
}

/// The node's CORS policy, checked once from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Origins,
    credentials: bool,
}

impl CorsPolicy {
    /// Checks `cors.*`: each origin is `*` (alone) or `scheme://host[:port]` with scheme
    /// http or https and nothing after the authority; credentials never go with `*`.
    pub fn new(config: &CorsConfig) -> Result<Self, String> {
        let listed = &config.allowed_origins;
        let origins = if listed.iter().any(|o| o == "*") {
            if listed.len() > 1 {
                return Err(
                    "cors.allowedOrigins: \"*\" allows every origin and must be the only entry"
                        .into(),
                );
            }
            Origins::Any
        } else {
            Origins::Listed(listed.iter().map(|o| origin(o)).collect::<Result<_, _>>()?)
        };
        if config.allow_credentials && origins == Origins::Any {
            return Err(
                "cors.allowCredentials cannot be used with cors.allowedOrigins = [\"*\"]: \
                 list the origins that may send credentials"
                    .into(),
            );
        }
        Ok(Self {
            origins,
            credentials: config.allow_credentials,
        })
    }

    /// True when pages of `origin` may call the node.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::Listed(list) => origin
                .to_str()
                .is_ok_and(|o| list.iter().any(|allowed| allowed.eq_ignore_ascii_case(o))),
        }
    }

    /// The layer for one path that answers `methods` (gRPC-Web: `POST`).
    pub fn layer(self: &Arc<Self>, methods: &[Method]) -> CorsGate {
        let allow_origin = match &self.origins {
            Origins::Any => AllowOrigin::any(),
            // Only allowed origins reach the CorsLayer (the gate checks first): mirror them.
            Origins::Listed(_) => AllowOrigin::mirror_request(),
        };
        let cors = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(methods.to_vec())
            .allow_headers(ALLOWED_REQUEST_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_RESPONSE_HEADERS.map(HeaderName::from_static))
            .allow_credentials(self.credentials)
            .max_age(PREFLIGHT_MAX_AGE);
        CorsGate {
            policy: Arc::clone(self),
            cors,
        }
    }
}

/// One configured origin, checked and lower-cased.
fn origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "cors.allowedOrigins: {text:?} is not an origin ({why}); write scheme://host[:port], \
             e.g. https://app.example.com or http://127.0.0.1:5101"
        ))
    };
    let Ok(uri) = text.parse::<axum::http::Uri>() else {
        return bad("it does not parse as a URL");
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return bad("the scheme or host is missing");
    };
    if !matches!(scheme, "http" | "https") {
        return bad("the scheme must be http or https");
    }
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return bad("it must name a host, without user information");
    }
    if text != format!("{scheme}://{authority}") {
        return bad("nothing may follow the host and port, not even a '/'");
    }
    Ok(text.to_ascii_lowercase())
}

/// True for a CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A layer putting one path behind the CORS policy (see the module documentation).
#[derive(Debug, Clone)]
pub struct CorsGate {
    policy: Arc<CorsPolicy>,
    cors: CorsLayer,
}

impl<S: Clone> Layer<S> for CorsGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            cors: self.cors.layer(inner.clone()),
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// A service behind [`CorsGate`].
#[derive(Debug, Clone)]
pub struct Gated<S> {
    inner: S,
    cors: Cors<S>,
    policy: Arc<CorsPolicy>,
}

impl<S> Service<Request<Body>> for Gated<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call drives a clone to readiness itself (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match request.headers().get(header::ORIGIN) {
            Some(origin) if self.policy.allows(origin) => {
                Box::pin(self.cors.clone().oneshot(request))
            }
            Some(origin) if is_preflight(&request) => {
                let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
                Box::pin(std::future::ready(Ok(refused(&origin))))
            }
            _ => Box::pin(self.inner.clone().oneshot(request)),
        }
    }
}

/// The answer to a preflight from an origin that may not call the node.
fn refused(origin: &str) -> Response {
    ApiError::new(
        ErrorCode::OriginNotAllowed,
        format!(
            "pages of origin {origin:?} may not call this node: add the origin to \
             cors.allowedOrigins (--cors-origin)"
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> Result<CorsPolicy, String> {
        CorsPolicy::new(&CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_credentials: credentials,
        })
    }

    #[test]
    fn origins_are_checked_at_start_up() {
        assert!(policy(&[], false).is_ok());
        assert!(policy(&["*"], false).is_ok());
        assert!(policy(&["http://127.0.0.1:5101", "https://App.Example.com"], true).is_ok());
        for bad in [
            "127.0.0.1:5101",
            "http://127.0.0.1:5101/",
            "http://a.example/path",
            "ftp://a.example",
            "http://user@a.example",
            "null",
            "",
        ] {
            let e = policy(&[bad], false).expect_err(bad);
            assert!(e.contains("cors.allowedOrigins"), "{e}");
        }
        assert!(policy(&["*", "http://a.example"], false).is_err());
        let e = policy(&["*"], true).unwrap_err();
        assert!(e.contains("allowCredentials"), "{e}");
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let p = policy(&["http://127.0.0.1:5101", "https://App.Example.com"], false).unwrap();
        let allows = |o: &str| p.allows(&HeaderValue::from_str(o).unwrap());
        assert!(allows("http://127.0.0.1:5101"));
        assert!(allows("https://app.example.com"));
        assert!(!allows("http://127.0.0.1:5102"));
        assert!(!allows("https://app.example.com.evil.test"));
        assert!(!allows("null"));
        let none = policy(&[], false).unwrap();
        assert!(!none.allows(&HeaderValue::from_static("http://127.0.0.1:5101")));
        let any = policy(&["*"], false).unwrap();
        assert!(any.allows(&HeaderValue::from_static("null")));
    }
}
