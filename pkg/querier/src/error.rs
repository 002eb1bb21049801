//! What can go wrong answering a query.

use ember_proto::error::{Code, ErrorCode};
use tonic::Status;

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be answered as written; the message says what to fix.
    #[error("{0}")]
    InvalidRequest(String),
    /// A profile type or selector of the request does not parse.
    #[error(transparent)]
    Model(#[from] ember_model::Error),
    /// A block could not be listed or read.
    #[error(transparent)]
    Storage(#[from] ember_block::Error),
    /// Recent data could not be had (too many ingesters down).
    #[error("{}", .0.message())]
    Recent(Status),
    /// A query limit refuses the request as written (`limits.max_query_length`,
    /// `limits.max_flamegraph_nodes_max`); the message names the limit.
    #[error("{0}")]
    QueryLimit(String),
    /// The tenant already runs `limits.max_concurrent_queries` queries.
    #[error("{0}")]
    TooManyQueries(String),
    /// The query ran longer than `limits.query_timeout`.
    #[error("{0}")]
    Timeout(String),
    /// A blocking evaluation task failed.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl ErrorCode for Error {
    fn code(&self) -> Code {
        match self {
            Error::InvalidRequest(_) | Error::QueryLimit(_) => Code::BadRequest,
            Error::TooManyQueries(_) => Code::RateLimited,
            Error::Timeout(_) => Code::Timeout,
            Error::Model(e) => e.code(),
            Error::Storage(e) => e.code(),
            Error::Recent(status) => Code::of(status),
            Error::Join(_) => Code::Internal,
        }
    }
}

ember_proto::impl_into_status!(Error);

/// Returns `Result` with the querier's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
