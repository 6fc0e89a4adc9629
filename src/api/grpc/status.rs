//! Hub errors → gRPC status, through the one error table (`crate::error_table`). Server-side
//! failures are logged with their details and answered without them.

use crate::error_code::ErrorCode;
use crate::error_table;
use crate::hub::HubError;
use crate::register::RegisterError;
use crate::store::StoreError;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

impl From<HubError> for Status {
    fn from(e: HubError) -> Self {
        let code = e.code();
        let grpc = error_table::answer(code).grpc;
        let message = match &e {
            HubError::Register(RegisterError::Store(StoreError::Unavailable(detail))) => {
                tracing::error!(%detail, "store unavailable during a gRPC call");
                "the hub's register store is unavailable; try again later".to_owned()
            }
            HubError::Register(RegisterError::Corrupt(f)) => {
                format!("the hub's register failed its integrity check: {f}")
            }
            HubError::Register(RegisterError::Store(StoreError::Corrupt { .. })) => {
                tracing::error!(error = %e, "register entry unreadable during a gRPC call");
                format!("the hub's register failed its integrity check: {e}")
            }
            _ if matches!(code, ErrorCode::Internal | ErrorCode::StoreFull) => {
                tracing::error!(error = %e, "unexpected register error during a gRPC call");
                "internal error".to_owned()
            }
            _ => e.to_string(),
        };
        match e {
            // The standard `google.rpc.RetryInfo` detail, which gRPC clients understand.
            HubError::RateLimited { retry_after, .. } => Status::with_error_details(
                grpc,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            _ => Status::new(grpc, message),
        }
    }
}

/// A status of `code` (per the error table) with a message for the caller.
pub fn status(code: ErrorCode, message: impl Into<String>) -> Status {
    Status::new(error_table::answer(code).grpc, message)
}
