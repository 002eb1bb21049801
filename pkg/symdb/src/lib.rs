//! The symbol database: de-duplicated symbols and stack traces of one partition
//! (one service within one block).
//!
//! Strings, mappings, functions and locations are each stored once per
//! partition. A stack trace is a node of a parent-pointer tree whose nodes are
//! `(parent, location)`, so stacks sharing a prefix share storage and a
//! stack-trace ID is simply a node index. Queries sum values per node into a
//! dense vector and resolve the tree once ([`resolve`]), never per profile.

mod interner;
mod remap;
pub mod resolve;
mod symbols;
mod whole_stacks;

pub use interner::table_bytes;
pub use remap::Remap;

pub use symbols::{
    Function, Line, Location, Mapping, ROOT_NODE, StackTree, Symbols, SymbolsBuilder,
};

#[cfg(test)]
mod testutil;
