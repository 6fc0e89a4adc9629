//! What kind of failure an error is, and what of it a caller may be told: the small code set
//! every answer is built from, and the one policy for what is shown and what is logged.
//!
//! A leaf: each domain error (register, store, hub, peer) implements [`Classified`] beside
//! its own definition; `crate::error_table` maps each code to its HTTP status and problem
//! type and to its gRPC status, both ways. Transports never look inside a domain error to
//! choose a status or a message: they ask [`caller_message`].

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
    /// A hub holds its fair share of the fleet: connect to another hub (no penalty).
    HubFull,
    /// A hub is draining (shutting down or told to): connect to another hub (no penalty).
    Draining,
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

    /// True when the hub sends the caller to another hub (it is full or draining): no
    /// backoff, and it does not count toward isolation.
    pub fn is_move_on(self) -> bool {
        matches!(self, ErrorCode::HubFull | ErrorCode::Draining)
    }

    /// True when the answer asks the caller to come back later (a rate or capacity limit).
    pub fn is_back_off(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Busy)
    }
}

/// How much of a failure reaches the caller, and what the node logs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// About the request or the caller (a rule broken, a refusal, a limit): shown as it is,
    /// not logged.
    Shown,
    /// This node is degraded but works (a slow store, an entry its store cannot hold): shown,
    /// logged as a warning.
    ShownDegraded,
    /// This node is at fault and the caller should know how (an integrity failure, a full
    /// disk): shown, logged as an error.
    ShownFault,
    /// This node is at fault and the message may name its internals (a driver's text, hosts,
    /// credentials in a connection string): logged as an error; the caller is told only this.
    Withheld(&'static str),
}

/// A failure that knows its [`ErrorCode`] and how much of it a caller may see.
pub trait Classified: std::fmt::Display {
    /// This failure's code.
    fn code(&self) -> ErrorCode;

    /// How much of it the caller is told (by default all of it: most failures are the
    /// caller's).
    fn disclosure(&self) -> Disclosure {
        Disclosure::Shown
    }
}

/// What a caller is told about `error`, over any transport (REST, gRPC, the in-process link);
/// logs the node's own failures with their details.
pub fn caller_message(error: &(impl Classified + ?Sized)) -> String {
    let code = error.code();
    match error.disclosure() {
        Disclosure::Shown => error.to_string(),
        Disclosure::ShownDegraded => {
            tracing::warn!(error = %error, ?code, "request failed: this node is degraded");
            error.to_string()
        }
        Disclosure::ShownFault => {
            tracing::error!(error = %error, ?code, "request failed: this node is at fault");
            error.to_string()
        }
        Disclosure::Withheld(public) => {
            tracing::error!(error = %error, ?code, "request failed: this node is at fault");
            public.to_owned()
        }
    }
}
