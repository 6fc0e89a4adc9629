//! Hub errors → gRPC status, through the one error table (`crate::error_table`), with what the
//! caller may be told of them (`crate::error_code::caller_message`).

use crate::error_code::{Classified, ErrorCode, caller_message};
use crate::error_table;
use crate::hub::HubError;
use crate::register::validation::ValidationError;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

impl From<HubError> for Status {
    fn from(e: HubError) -> Self {
        let grpc = error_table::answer(e.code()).grpc;
        let message = caller_message(&e);
        match e {
            // The standard `google.rpc.RetryInfo` detail, which gRPC clients understand.
            HubError::RateLimited { retry_after, .. } => Status::with_error_details(
                grpc,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            // Which hub to try instead is the peer's choice: the reason says "another", the
            // load lets a peer refused everywhere pick the least loaded.
            HubError::Full { load, .. } => Status::with_error_details(
                grpc,
                message,
                ErrorDetails::with_error_info(
                    error_table::HUB_FULL_REASON,
                    error_table::HUB_DOMAIN,
                    [
                        (
                            error_table::LOAD_SESSIONS_KEY.to_owned(),
                            load.sessions.to_string(),
                        ),
                        (error_table::LOAD_CAP_KEY.to_owned(), load.cap.to_string()),
                    ],
                ),
            ),
            HubError::Draining(_) => Status::with_error_details(
                grpc,
                message,
                ErrorDetails::with_error_info(
                    error_table::HUB_DRAINING_REASON,
                    error_table::HUB_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                ),
            ),
            _ => Status::new(grpc, message),
        }
    }
}

/// A request the wire conversion refused (a peer id, a limit): INVALID_ARGUMENT with what was
/// wrong.
impl From<ValidationError> for Status {
    fn from(e: ValidationError) -> Self {
        Status::new(error_table::answer(e.code()).grpc, caller_message(&e))
    }
}

/// A status of `code` (per the error table) with a message for the caller.
pub fn status(code: ErrorCode, message: impl Into<String>) -> Status {
    Status::new(error_table::answer(code).grpc, message)
}
