use ember_proto::error::{Code, ErrorCode};
use thiserror::Error;

/// Errors raised while decoding or validating profiles and selectors. Every
/// message is written for the person who sent the input.
#[derive(Debug, Error)]
pub enum Error {
    /// The input is not well-formed (bad protobuf, bad gzip, bad selector syntax).
    #[error("{0}")]
    Malformed(String),
    /// The input is well-formed but cannot be accepted (bad references, limits).
    #[error("{0}")]
    Unprocessable(String),
    /// The input exceeds a size limit.
    #[error("{0}")]
    TooLarge(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorCode for Error {
    fn code(&self) -> Code {
        match self {
            Error::Malformed(_) => Code::BadRequest,
            Error::Unprocessable(_) => Code::Unprocessable,
            Error::TooLarge(_) => Code::TooLarge,
        }
    }
}

ember_proto::impl_into_status!(Error);
