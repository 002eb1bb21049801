//! The crate's one error type.

use std::net::SocketAddr;

/// Everything that can go wrong starting or running the ring.
///
/// Messages name the setting or peer involved so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work; the message says which setting to change.
    #[error("invalid ring configuration: {0}")]
    Config(String),

    /// Memberlist could not bind its TCP and UDP sockets.
    #[error(
        "binding memberlist to {addr}: {message} (is another process using the port? change -memberlist.bind-port)"
    )]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the transport reported.
        message: String,
    },

    /// A peer's gossiped metadata could not be read, usually because it runs an
    /// incompatible version.
    #[error("decoding ring metadata: {0}")]
    Metadata(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
