//! What kind of failure a domain error is: the small code set every answer is built from.
//!
//! Each domain error (register, store, hub, peer) maps to one [`ErrorCode`] here, and only
//! here; `crate::error_table` maps each code to its HTTP status and problem type and to its
//! gRPC status, both ways. Transports never look inside a domain error to choose a status.

use crate::hub::HubError;
use crate::peer::PeerError;
use crate::register::RegisterError;
use crate::register::validation::ValidationError;
use crate::store::StoreError;

/// The kinds of failure an answer can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request broke a rule (an id, a value, a query, the clock check).
    Invalid,
    /// The request body is not the JSON it must be.
    MalformedJson,
    /// The request body is not declared as JSON.
    UnsupportedMediaType,
    /// A document or body over its size limit.
    TooLarge,
    /// A document that breaks the configured blueprint schema.
    SchemaViolation,
    /// A publication whose publisher signature is missing (where required), by a key the
    /// caller may not sign with, or does not verify.
    SignatureRefused,
    /// A malformed `Idempotency-Key`.
    InvalidIdempotencyKey,
    /// Missing or unknown credentials.
    Unauthenticated,
    /// Known credentials that may not do this.
    Forbidden,
    /// A browser origin the node does not serve.
    OriginNotAllowed,
    /// No such resource (blueprint, version, path).
    NotFound,
    /// The hub does not know the session (or the peer): connect again.
    UnknownSession,
    /// A write on a peer, which holds a read-only replica.
    ReadOnly,
    /// Publishing an id that exists.
    AlreadyExists,
    /// Deprecating what is deprecated.
    AlreadyDeprecated,
    /// The transaction id names an entry written by another request.
    TransactionExists,
    /// A write that lost to another one (store expectation, head moved).
    Conflict,
    /// Concurrent writers kept winning.
    Contended,
    /// The idempotency key was used by a different request.
    KeyReused,
    /// A conditional write (`If-Match`) found another version.
    Stale,
    /// Not in this state: a heartbeat before connecting, a hub connecting as a peer.
    WrongState,
    /// Over a per-caller rate limit; retry after the time given.
    RateLimited,
    /// Over a capacity limit (sessions, syncs, streams, the read budget); retry shortly.
    Busy,
    /// Not connected, not ready, shutting down, or the store cannot be reached.
    Unavailable,
    /// The register failed its integrity check (or a stored entry is unreadable).
    Corrupt,
    /// The store's disk is full.
    StoreFull,
    /// A peer's sync from its hub failed.
    SyncFailed,
    /// A call took too long.
    Timeout,
    /// Anything else: a bug.
    Internal,
}

impl ErrorCode {
    /// True when the failure concerns the caller itself (its id or credentials), which
    /// retrying cannot change.
    pub fn is_permanent_refusal(self) -> bool {
        matches!(
            self,
            ErrorCode::Invalid | ErrorCode::Unauthenticated | ErrorCode::Forbidden
        )
    }

    /// True when the answer asks the caller to come back later (a rate or capacity limit).
    pub fn is_back_off(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Busy)
    }
}

impl StoreError {
    /// This failure's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Corrupt { .. } => ErrorCode::Corrupt,
            StoreError::Unavailable(_) | StoreError::Slow(_) => ErrorCode::Unavailable,
            StoreError::Full(_) => ErrorCode::StoreFull,
            StoreError::TooLarge(_) => ErrorCode::TooLarge,
            StoreError::ExpectationFailed { .. }
            | StoreError::HeadMoved { .. }
            | StoreError::Claimed(_) => ErrorCode::Conflict,
        }
    }
}

impl ValidationError {
    /// This failure's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ValidationError::DocumentTooLarge { .. } => ErrorCode::TooLarge,
            ValidationError::Schema { .. } => ErrorCode::SchemaViolation,
            ValidationError::IdempotencyKey(_) => ErrorCode::InvalidIdempotencyKey,
            _ => ErrorCode::Invalid,
        }
    }
}

impl RegisterError {
    /// This failure's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegisterError::Invalid(e) => e.code(),
            RegisterError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            RegisterError::Signature(_) => ErrorCode::SignatureRefused,
            RegisterError::NotFound(_) | RegisterError::NoSuchVersion(_) => ErrorCode::NotFound,
            RegisterError::AlreadyDeprecated(_) => ErrorCode::AlreadyDeprecated,
            RegisterError::Stale { .. } => ErrorCode::Stale,
            RegisterError::KeyReused { .. } => ErrorCode::KeyReused,
            RegisterError::TransactionExists { .. } => ErrorCode::TransactionExists,
            RegisterError::Contended(_) => ErrorCode::Contended,
            RegisterError::Corrupt(_) => ErrorCode::Corrupt,
            RegisterError::Busy(_) => ErrorCode::Busy,
            RegisterError::Store(e) => e.code(),
        }
    }
}

impl HubError {
    /// This failure's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Invalid(_) => ErrorCode::Invalid,
            HubError::UnknownSession(_) => ErrorCode::UnknownSession,
            HubError::WrongState(_) => ErrorCode::WrongState,
            HubError::Busy(_) => ErrorCode::Busy,
            HubError::RateLimited { .. } => ErrorCode::RateLimited,
            HubError::Unavailable(_) => ErrorCode::Unavailable,
            HubError::Register(e) => e.code(),
        }
    }
}

impl PeerError {
    /// This failure's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            PeerError::NotConnected(_) => ErrorCode::Unavailable,
            PeerError::Refused { .. } => ErrorCode::RateLimited,
            PeerError::SyncFailed(_) => ErrorCode::SyncFailed,
        }
    }
}
