use thiserror::Error;

/// What can go wrong in a compaction pass.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ember_config::Error),
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error(transparent)]
    Block(#[from] ember_block::Error),
    #[error("block {block}: {message}")]
    Corrupt { block: String, message: String },
    #[error("encoding {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
