//! Test support shared by Ember's crates, so that each fixture exists once.
//!
//! Crates use it as a dev-dependency (the `ember-bench` tool as a normal one:
//! it launches `ember` and picks ports too). It depends on nothing of Ember
//! but the wire types (`ember-proto`), so any crate can use it without a
//! dependency cycle.
//!
//! - [`testdata`] finds, lists and reads the shared profiles
//!   (`shared/testdata/profiles`).
//! - [`pprof`] builds small `google.v1.Profile`s from stacks of function
//!   names, and gzips and decodes pprof bytes.
//! - [`flame`] holds the flame-graph example of `DESIGN.md` §2.
//! - [`ports`] picks free loopback ports.
//! - [`process`] finds the `ember` binary, starts servers with their output in
//!   a log file and waits until they answer.

pub mod flame;
pub mod ports;
pub mod pprof;
pub mod process;
pub mod testdata;
