use ember_proto::error::{Code, ErrorCode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("block {block}: {message}")]
    Corrupt { block: String, message: String },
    #[error(
        "block {block} has format version {version}, newer than this binary reads ({supported})"
    )]
    UnsupportedVersion {
        block: String,
        version: u32,
        supported: u32,
    },
    #[error("meta.json: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reading or writing a block fails on storage or on corrupt data: nothing a
/// client can fix by changing its request.
impl ErrorCode for Error {
    fn code(&self) -> Code {
        Code::Internal
    }
}

ember_proto::impl_into_status!(Error);
