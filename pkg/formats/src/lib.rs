//! Converters from the formats Pyroscope's legacy `/ingest` endpoint accepts
//! into pprof (`google.v1.Profile`), so that the rest of Ember only ever sees
//! pprof: `folded`/`groups` and `lines` text, speedscope JSON and Java Flight
//! Recorder files, plus the parser of the `name=app.type{k=v}` query argument
//! and the table that maps a name suffix to its profile type.
//!
//! Every parser is bounded by [`Limits`]: input size, number of lines or
//! samples, stack depth and (for JFR) the work spent decoding, so that no
//! input can cost more than a known multiple of its size. Errors say what was
//! wrong and where, in words a user can act on.

mod builder;
pub mod folded;
pub mod jfr;
pub mod multipart;
pub mod name;
pub mod sample_type_config;
pub mod speedscope;
pub mod types;

pub use builder::ProfileBuilder;
pub use folded::FoldedOptions;
pub use name::ParsedName;
pub use types::ProfileKind;

/// Why an input was refused. Each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not in the format it claims to be (400).
    #[error("{0}")]
    Malformed(String),
    /// The input is larger than a limit allows (413).
    #[error("{0}")]
    TooLarge(String),
    /// The input is well formed but cannot become a profile (422).
    #[error("{0}")]
    Unprocessable(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ember_proto::error::ErrorCode for Error {
    fn code(&self) -> ember_proto::error::Code {
        use ember_proto::error::Code;
        match self {
            Error::Malformed(_) => Code::BadRequest,
            Error::TooLarge(_) => Code::TooLarge,
            Error::Unprocessable(_) => Code::Unprocessable,
        }
    }
}

ember_proto::impl_into_status!(Error);

/// Bounds applied while converting one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input in bytes.
    pub max_input_bytes: usize,
    /// Largest accepted number of input lines (text formats).
    pub max_lines: usize,
    /// Largest accepted number of distinct stacks (samples) in one profile.
    pub max_samples: usize,
    /// Largest accepted number of frames in one stack.
    pub max_stack_depth: usize,
}

impl Default for Limits {
    /// Returns the defaults of DESIGN.md §2: 4 MiB, 16,000 samples, depth 1,000.
    fn default() -> Self {
        Self {
            max_input_bytes: 4 << 20,
            max_lines: 1 << 20,
            max_samples: 16_000,
            max_stack_depth: 1_000,
        }
    }
}

impl Limits {
    pub(crate) fn check_size(&self, what: &str, len: usize) -> Result<()> {
        if len > self.max_input_bytes {
            return Err(Error::TooLarge(format!(
                "{what} input is {len} bytes, more than the limit of {} bytes",
                self.max_input_bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn check_depth(&self, what: &str, depth: usize) -> Result<()> {
        if self.max_stack_depth > 0 && depth > self.max_stack_depth {
            return Err(Error::Unprocessable(format!(
                "{what} has a stack of {depth} frames, more than the limit of {}",
                self.max_stack_depth
            )));
        }
        Ok(())
    }
}

/// `format=lines`: one `a;b;c` line per sample.
pub mod lines {
    pub use crate::folded::parse_lines as parse;
}
