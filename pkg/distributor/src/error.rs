//! Why the distributor refuses a push; each refusal names the limit, its key,
//! its value and the tenant.

use ember_proto::error::{Code, ErrorCode};
use tonic::Status;

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Larger than a size limit of the tenant.
    #[error("{0}")]
    TooLarge(String),
    /// Over the tenant's ingestion rate.
    #[error("{0}")]
    RateLimited(String),
    /// Beyond a per-profile or per-series limit of the tenant.
    #[error("{0}")]
    OverLimit(String),
    /// The profile does not decode or validate.
    #[error(transparent)]
    Profile(#[from] ember_model::Error),
    /// Storage refused the write or could not take it: the status of the
    /// sink (this process's ingester, or the replicas).
    #[error("{}", .0.message())]
    Write(Status),
    /// A profile of a push request, with the series it came in.
    #[error("series {index} {labels}: {source}")]
    InSeries {
        /// The series' index in the request.
        index: usize,
        /// The series' labels.
        labels: String,
        /// Why its profile was refused.
        source: Box<Error>,
    },
    /// The blocking task that decodes a push failed.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl ErrorCode for Error {
    fn code(&self) -> Code {
        match self {
            Error::TooLarge(_) => Code::TooLarge,
            Error::RateLimited(_) => Code::RateLimited,
            Error::OverLimit(_) => Code::Unprocessable,
            Error::Profile(e) => e.code(),
            Error::Write(status) => Code::of(status),
            Error::InSeries { source, .. } => source.code(),
            Error::Join(_) => Code::Internal,
        }
    }
}

ember_proto::impl_into_status!(Error);

/// Returns `Result` with the distributor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
