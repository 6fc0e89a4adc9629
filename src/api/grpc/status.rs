//! Hub errors → gRPC status codes (the wire contract's table). Internal details are logged,
//! never sent.

use crate::hub::HubError;
use crate::register::RegisterError;
use crate::store::StoreError;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

impl From<HubError> for Status {
    fn from(e: HubError) -> Self {
        match e {
            HubError::InvalidArgument(m) => Status::invalid_argument(m),
            HubError::NotFound(m) => Status::not_found(m),
            HubError::FailedPrecondition(m) => Status::failed_precondition(m),
            HubError::ResourceExhausted(m) => Status::resource_exhausted(m),
            // The standard `google.rpc.RetryInfo` detail, which gRPC clients understand.
            HubError::RateLimited {
                message,
                retry_after,
            } => Status::with_error_details(
                tonic::Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            HubError::Unavailable(m) => Status::unavailable(m),
            HubError::Register(RegisterError::Store(StoreError::Unavailable(detail))) => {
                tracing::error!(%detail, "store unavailable during a gRPC call");
                Status::unavailable("the hub's register store is unavailable; try again later")
            }
            HubError::Register(RegisterError::Corrupt(f)) => Status::unavailable(format!(
                "the hub's register failed its integrity check: {f}"
            )),
            HubError::Register(other) => {
                tracing::error!(error = %other, "unexpected register error during a gRPC call");
                Status::internal("internal error")
            }
        }
    }
}
