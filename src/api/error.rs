//! Domain errors → RFC 9457 `application/problem+json` responses, with the status and problem
//! type of their code in the one error table (`crate::error_table`) and the detail the caller
//! may be told (`crate::error_code::caller_message`, which also logs the node's own failures).

use crate::error_code::{Classified, ErrorCode, caller_message};
use crate::error_table;
use crate::register::RegisterError;
use crate::register::schema::Violation;
use crate::register::validation::ValidationError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What exactly was wrong.
    pub detail: String,
    /// With `schema-violation`: where the document breaks the blueprint schema (up to 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ViolationView>)]
    pub violations: Vec<Violation>,
}

/// One violation of the blueprint schema.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ViolationView {
    /// JSON pointer into the document (`""` is the document itself).
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// An error answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    location: Option<String>,
    retry_after: Option<std::time::Duration>,
    etag: Option<i64>,
    // Boxed: the error stays small for the many paths that return it.
    violations: Box<[Violation]>,
}

impl ApiError {
    /// A problem of `code` with a detail message.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            location: None,
            retry_after: None,
            etag: None,
            violations: Box::default(),
        }
    }

    /// The problem for a domain failure: its code, and what the caller may be told of it
    /// ([`caller_message`], which logs the node's own failures).
    pub fn classified(e: &(impl Classified + ?Sized)) -> Self {
        Self::new(e.code(), caller_message(e))
    }

    /// Adds the schema violations a `schema-violation` problem lists.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations.into_boxed_slice();
        self
    }

    /// Adds the `ETag` of the resource's current version (a 412 says what is current).
    pub fn with_etag(mut self, version: i64) -> Self {
        self.etag = Some(version);
        self
    }

    /// 400 with a detail message.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, detail)
    }

    /// 401: no or unknown bearer token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, detail)
    }

    /// 403: token known, but not allowed this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    /// 404 with a detail message.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 503 with a detail message.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, detail)
    }

    /// Adds a `Retry-After` header (whole seconds, rounded up).
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Adds a `Location` header (e.g. the hub to publish to).
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        error_table::answer(self.code).http
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = error_table::answer(self.code);
        let status = answer.http;
        let problem = Problem {
            problem_type: format!("urn:sorcha:problem:{}", answer.problem),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail,
            violations: self.violations.into_vec(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
        }
        if let Some(location) = self.location
            && let Ok(value) = HeaderValue::from_str(&location)
        {
            headers.insert(header::LOCATION, value);
        }
        if let Some(version) = self.etag {
            headers.insert(header::ETAG, super::conditional::etag(version));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let error = ApiError::classified(&e);
        match e {
            // Both pass: a client retrying after a second finds the store back or fails fast
            // again.
            StoreError::Unavailable(_) | StoreError::Slow(_) => {
                error.with_retry_after(STORE_RETRY_AFTER)
            }
            _ => error,
        }
    }
}

/// The `Retry-After` of a 503 for an unavailable or slow store.
const STORE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl From<crate::hub::HubError> for ApiError {
    fn from(e: crate::hub::HubError) -> Self {
        match e {
            crate::hub::HubError::Register(e) => e.into(),
            other => ApiError::classified(&other),
        }
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        let code = e.code();
        let detail = caller_message(&e);
        match e {
            RegisterError::Store(store) => store.into(),
            RegisterError::Invalid(ValidationError::Schema { violations, .. }) => {
                ApiError::new(code, detail).with_violations(violations)
            }
            // The domain says "update it"; over REST an update is a PUT.
            RegisterError::AlreadyExists(id) => ApiError::new(
                code,
                format!("blueprint {id:?} already exists; use PUT to publish a new version"),
            ),
            RegisterError::Stale {
                id,
                expected,
                current,
            } => {
                let detail = if expected == super::conditional::NO_VERSION {
                    format!(
                        "blueprint {id:?} is at version {current}; the request's If-Match names \
                         no version of it (send the ETag of a read, e.g. If-Match: \"{current}\")"
                    )
                } else {
                    format!(
                        "blueprint {id:?} is at version {current}, not {expected} as the \
                         request's If-Match requires: read it again and retry"
                    )
                };
                ApiError::new(code, detail).with_etag(current)
            }
            RegisterError::Busy(_) => {
                ApiError::new(code, detail).with_retry_after(std::time::Duration::from_secs(1))
            }
            _ => ApiError::new(code, detail),
        }
    }
}
