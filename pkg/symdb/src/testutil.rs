//! Test fixtures shared by this crate's unit tests.

use ember_model::pprof::FlatProfile;
use ember_testkit::pprof::PprofBuilder;

/// Builds a CPU profile whose samples are stacks of function names, root
/// first. Functions have no file name, so the string table holds only the
/// sample type and the names.
pub(crate) fn profile(stacks: &[(&[&str], i64)]) -> FlatProfile {
    stacks
        .iter()
        .fold(
            PprofBuilder::new(&[("cpu", "nanoseconds")]).filename(""),
            |b, (stack, value)| b.sample(stack, &[*value]),
        )
        .build()
        .into()
}
