//! Ember's profile model: what a profile, a series and a query selector are,
//! independent of storage and transport.
//!
//! - [`labels`]: series label sets and the reserved label names;
//! - [`profile_type`]: profile type IDs (`name:sample_type:sample_unit:period_type:period_unit`);
//! - [`pprof`]: bounded decoding and validation of pprof payloads;
//! - [`selector`]: PromQL-style label selectors;
//! - [`flamegraph`]: the function-name call tree and its flame-graph encodings;
//! - [`ingest`]: how a pprof becomes series, and the [`ingest::IngestSink`] writes go to;
//! - [`time`]: times as Pyroscope's HTTP API writes them;
//! - [`wire`]: `ingester.v1` messages to and from the model.

pub mod flamegraph;
pub mod ingest;
pub mod labels;
pub mod pprof;
pub mod profile_type;
pub mod selector;
pub mod time;
pub mod wire;

mod error;

pub use error::{Error, Result};
pub use labels::{Label, Labels};
pub use profile_type::ProfileType;
pub use selector::{MatchOp, Matcher, Selector};

/// Identifies one stored profile of one series, the same on every replica:
/// queries and the compactor count a profile once per ID.
///
/// The distributor draws one random ID per pushed profile; its `i`-th series
/// (one per sample type) stores `id + i`, so the rows of one pprof stay
/// distinct. 0 means "no ID" (data written before IDs existed) and is never
/// de-duplicated.
pub type ProfileId = u128;

/// Returns a new random profile ID (a ULID: 80 random bits under the time).
pub fn new_profile_id() -> ProfileId {
    ulid::Ulid::new().0
}

/// Returns the ID of `series`-th series of a profile with ID `profile`.
pub fn series_profile_id(profile: ProfileId, series: usize) -> ProfileId {
    if profile == 0 {
        0
    } else {
        profile.wrapping_add(series as u128)
    }
}
