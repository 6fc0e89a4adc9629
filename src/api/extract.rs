//! Request extractors that answer bad input with problem+json instead of axum's plain text:
//! JSON bodies, query strings and the bearer-token caller.

use super::AppState;
use super::error::ApiError;
use crate::auth::Identity;
use crate::error_code::ErrorCode;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body; rejections become problem+json (400, 413 or 415).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON with Content-Type: application/json",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::TooLarge,
            "the request body is larger than the configured limit (limits.maxBodyBytes)",
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(ErrorCode::MalformedJson, detail),
        _ => ApiError::bad_request(detail),
    }
}

/// A query string; rejections become problem+json 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// The authenticated caller of a write or admin call (`Authorization: Bearer <token>`).
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = super::access::bearer_token(&parts.headers)?.ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <token> header")
        })?;
        state
            .tokens
            .authenticate(token)
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("the bearer token is not valid"))
    }
}

impl Caller {
    /// Fails with 403 unless the caller may publish.
    pub fn require_publisher(&self) -> Result<&Identity, ApiError> {
        if self.0.can_publish() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden("this token may not publish"))
        }
    }

    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<&Identity, ApiError> {
        if self.0.is_admin() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden("this call needs an admin token"))
        }
    }
}
