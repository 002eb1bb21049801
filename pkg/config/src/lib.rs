//! What every configurable part of Ember shares: one grammar for durations
//! ([`duration`]), help text taken from doc comments ([`Documented`]), the
//! error that names the key at fault ([`Error`]), and the layering of defaults, a
//! YAML file, environment variables and flags into one value ([`Loader`]).
//!
//! Each component owns its configuration section (a serde struct with `Default`,
//! `validate()` and documented fields) next to its code; the server composes the
//! sections into the whole configuration and loads it with a [`Loader`].

// The derive names the trait by its absolute path, in this crate's tests too.
extern crate self as ember_config;

mod docs;
pub mod duration;
mod load;
mod secret;

pub use docs::Documented;
pub use load::{Key, Keys, Loaded, Loader, split_list, yaml_scalar_text};
pub use secret::Secret;

/// Errors from loading or checking configuration; each names the key, flag,
/// variable or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag that matches no configuration key.
    #[error("unknown flag -{0}")]
    UnknownFlag(String),
    /// A flag that needs a value came last.
    #[error("flag -{0} needs a value")]
    MissingFlagValue(String),
    /// An argument that looks like a flag but cannot be one (`---x`, `-=x`).
    #[error("bad flag syntax {0:?}")]
    BadFlagSyntax(String),
    /// An argument that is not a flag.
    #[error("unexpected argument {0:?}: ember takes only flags, e.g. -target=all")]
    UnexpectedArgument(String),
    /// An environment variable with the prefix that matches no configuration key.
    #[error("unknown environment variable {0}")]
    UnknownEnv(String),
    /// A key in the configuration file that the configuration does not have.
    #[error("unknown configuration key {key:?} in {file}")]
    UnknownKey {
        /// Dotted path of the key, e.g. `server.http_lisen_port`.
        key: String,
        /// The file it was found in.
        file: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read configuration file {file}: {error}")]
    ReadFile {
        /// The file.
        file: String,
        /// Why reading failed.
        #[source]
        error: std::io::Error,
    },
    /// The configuration file is not valid YAML.
    #[error("cannot parse configuration file {file}: {error}")]
    ParseFile {
        /// The file.
        file: String,
        /// The YAML parser's error, with line and column.
        #[source]
        error: serde_yaml::Error,
    },
    /// The configuration file (or one of its sections) is not a mapping of keys.
    #[error("{key} in {file} must be a mapping of keys to values")]
    NotAMapping {
        /// The key whose value should be a mapping; `the top level` for the document.
        key: String,
        /// The file.
        file: String,
    },
    /// A flag or variable whose value does not fit the key's type.
    #[error("invalid value {value:?} for {set_by}: {expected}")]
    BadOverride {
        /// `flag -name` or `environment variable NAME`.
        set_by: String,
        /// The value given.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A value that does not deserialize into its key's type.
    #[error("invalid value for {key} (set by {set_by}): {message}")]
    InvalidValue {
        /// Dotted path of the key.
        key: String,
        /// Where the value came from: the file, `flag -name` or `environment variable NAME`.
        set_by: String,
        /// What is wrong with it.
        message: String,
    },
    /// A rule that a section's `validate()` checks is broken; the message names the key.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Error {
    /// Returns an [`Error::Invalid`] with `message`, which names the key.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// A `Result` whose error is a configuration [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
