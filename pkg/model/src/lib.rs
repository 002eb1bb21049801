//! Ember's profile model: what a profile, a series and a query selector are,
//! independent of storage and transport.
//!
//! - [`labels`]: series label sets and the reserved label names;
//! - [`profile_type`]: profile type IDs (`name:sample_type:sample_unit:period_type:period_unit`);
//! - [`pprof`]: bounded decoding and validation of pprof payloads;
//! - [`selector`]: PromQL-style label selectors;
//! - [`flamegraph`]: the function-name call tree and its flame-graph encodings.

pub mod flamegraph;
pub mod ingest;
pub mod labels;
pub mod pprof;
pub mod profile_type;
pub mod selector;

mod error;

pub use error::{Error, Result};
pub use labels::{Label, Labels};
pub use profile_type::ProfileType;
pub use selector::{MatchOp, Matcher, Selector};
