//! The one error table: each [`ErrorCode`] → its HTTP status and RFC 9457 problem type (REST,
//! SSE) and its gRPC status code (the hub's services), and the reverse for the gRPC client.
//! Every transport answers through it; `crate::error_code` says which code a domain error is.

use crate::error_code::ErrorCode;
use axum::http::StatusCode;
use tonic::Code;

/// How a code is answered on each transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub http: StatusCode,
    /// The problem type's slug (`urn:sorcha:problem:<slug>`).
    pub problem: &'static str,
    /// The gRPC status code.
    pub grpc: Code,
}

const fn row(http: StatusCode, problem: &'static str, grpc: Code) -> Answer {
    Answer {
        http,
        problem,
        grpc,
    }
}

/// The table.
pub fn answer(code: ErrorCode) -> Answer {
    use ErrorCode as E;
    use StatusCode as H;
    match code {
        E::Invalid => row(H::BAD_REQUEST, "invalid-request", Code::InvalidArgument),
        E::MalformedJson => row(H::BAD_REQUEST, "malformed-json", Code::InvalidArgument),
        E::UnsupportedMediaType => row(
            H::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            Code::InvalidArgument,
        ),
        E::TooLarge => row(H::PAYLOAD_TOO_LARGE, "too-large", Code::ResourceExhausted),
        E::SchemaViolation => row(
            H::UNPROCESSABLE_ENTITY,
            "schema-violation",
            Code::InvalidArgument,
        ),
        E::SignatureRefused => row(
            H::UNPROCESSABLE_ENTITY,
            "signature-refused",
            Code::InvalidArgument,
        ),
        E::InvalidIdempotencyKey => row(
            H::BAD_REQUEST,
            "invalid-idempotency-key",
            Code::InvalidArgument,
        ),
        E::Unauthenticated => row(H::UNAUTHORIZED, "unauthorized", Code::Unauthenticated),
        E::Forbidden => row(H::FORBIDDEN, "forbidden", Code::PermissionDenied),
        E::OriginNotAllowed => row(
            H::FORBIDDEN,
            "cors-origin-not-allowed",
            Code::PermissionDenied,
        ),
        E::NotFound => row(H::NOT_FOUND, "not-found", Code::NotFound),
        E::UnknownSession => row(H::NOT_FOUND, "unknown-session", Code::NotFound),
        E::ReadOnly => row(H::CONFLICT, "read-only-peer", Code::FailedPrecondition),
        E::AlreadyExists => row(H::CONFLICT, "already-exists", Code::AlreadyExists),
        E::AlreadyDeprecated => row(H::CONFLICT, "already-deprecated", Code::FailedPrecondition),
        E::TransactionExists => row(H::CONFLICT, "transaction-id-exists", Code::AlreadyExists),
        E::Conflict => row(H::CONFLICT, "conflict", Code::Aborted),
        E::Contended => row(H::CONFLICT, "contended", Code::Aborted),
        E::KeyReused => row(
            H::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            Code::InvalidArgument,
        ),
        E::Stale => row(
            H::PRECONDITION_FAILED,
            "precondition-failed",
            Code::FailedPrecondition,
        ),
        E::WrongState => row(H::CONFLICT, "wrong-state", Code::FailedPrecondition),
        E::RateLimited => row(
            H::TOO_MANY_REQUESTS,
            "rate-limited",
            Code::ResourceExhausted,
        ),
        E::Busy => row(
            H::SERVICE_UNAVAILABLE,
            "unavailable",
            Code::ResourceExhausted,
        ),
        E::HubFull => row(H::SERVICE_UNAVAILABLE, "hub-full", Code::ResourceExhausted),
        E::Draining => row(H::SERVICE_UNAVAILABLE, "draining", Code::Unavailable),
        E::Unavailable => row(H::SERVICE_UNAVAILABLE, "unavailable", Code::Unavailable),
        E::Corrupt => row(
            H::SERVICE_UNAVAILABLE,
            "register-corrupt",
            Code::Unavailable,
        ),
        E::StoreFull => row(
            H::INSUFFICIENT_STORAGE,
            "store-full",
            Code::ResourceExhausted,
        ),
        E::SyncFailed => row(H::BAD_GATEWAY, "sync-failed", Code::Unavailable),
        E::Timeout => row(H::GATEWAY_TIMEOUT, "timeout", Code::DeadlineExceeded),
        E::Internal => row(H::INTERNAL_SERVER_ERROR, "internal", Code::Internal),
    }
}

/// The `ErrorInfo` reason of a hub at its fair share of the fleet (domain [`HUB_DOMAIN`]).
pub const HUB_FULL_REASON: &str = "HUB_FULL";
/// The `ErrorInfo` reason of a draining hub (domain [`HUB_DOMAIN`]).
pub const HUB_DRAINING_REASON: &str = "HUB_DRAINING";
/// `ErrorInfo` metadata of a [`HUB_FULL_REASON`]: the hub's live sessions and its cap
/// (decimal), so a peer refused everywhere can pick the least loaded hub.
pub const LOAD_SESSIONS_KEY: &str = "sessions";
/// See [`LOAD_SESSIONS_KEY`].
pub const LOAD_CAP_KEY: &str = "cap";
/// The `ErrorInfo` domain of the hub's own reasons.
pub const HUB_DOMAIN: &str = "sorcha.peer.v1";

/// The code a hub's gRPC status stands for, as its client reads it. Several codes share a
/// gRPC status; a peer's calls can only meet one of each (`NOT_FOUND` always names its
/// session), `RESOURCE_EXHAUSTED` with a `RetryInfo` detail is a rate limit, and with an
/// `ErrorInfo` of reason [`HUB_FULL_REASON`] a hub at its fair share; `UNAVAILABLE` with one of
/// reason [`HUB_DRAINING_REASON`] a draining hub.
pub fn from_grpc(code: Code, retry_info: bool, reason: Option<&str>) -> ErrorCode {
    match code {
        Code::ResourceExhausted if reason == Some(HUB_FULL_REASON) => ErrorCode::HubFull,
        Code::Unavailable if reason == Some(HUB_DRAINING_REASON) => ErrorCode::Draining,
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::Invalid,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::Forbidden,
        Code::NotFound => ErrorCode::UnknownSession,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::FailedPrecondition => ErrorCode::WrongState,
        Code::ResourceExhausted if retry_info => ErrorCode::RateLimited,
        Code::ResourceExhausted => ErrorCode::Busy,
        Code::Unavailable | Code::Cancelled | Code::Aborted => ErrorCode::Unavailable,
        Code::DeadlineExceeded => ErrorCode::Timeout,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reverse mapping reads back what the hub's services send.
    #[test]
    fn the_client_reads_back_each_code_a_hub_sends_to_peers() {
        for (code, retry_info) in [
            (ErrorCode::Invalid, false),
            (ErrorCode::Unauthenticated, false),
            (ErrorCode::Forbidden, false),
            (ErrorCode::UnknownSession, false),
            (ErrorCode::WrongState, false),
            (ErrorCode::RateLimited, true),
            (ErrorCode::Busy, false),
            (ErrorCode::Unavailable, false),
            (ErrorCode::Timeout, false),
            (ErrorCode::Internal, false),
        ] {
            assert_eq!(from_grpc(answer(code).grpc, retry_info, None), code);
        }
        assert_eq!(
            from_grpc(
                answer(ErrorCode::HubFull).grpc,
                false,
                Some(HUB_FULL_REASON)
            ),
            ErrorCode::HubFull
        );
        assert_eq!(
            from_grpc(
                answer(ErrorCode::Draining).grpc,
                false,
                Some(HUB_DRAINING_REASON)
            ),
            ErrorCode::Draining
        );
        // Corrupt registers and unreachable stores are alike to a peer: go elsewhere.
        assert_eq!(
            from_grpc(answer(ErrorCode::Corrupt).grpc, false, None),
            ErrorCode::Unavailable
        );
    }
}
