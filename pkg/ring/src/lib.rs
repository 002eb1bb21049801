//! Cluster membership and the hash ring of ingesters.
//!
//! Every Ember process in a cluster runs a [`Ring`]: it gossips its own
//! address, roles and lifecycle [`State`] with the `memberlist` crate (SWIM
//! gossip with failure detection, a port of HashiCorp's memberlist) and keeps
//! a table of everyone else, so there is no central store to run (DESIGN.md
//! §4). Ingesters own tokens on a 32-bit consistent-hash ring; distributors
//! ask [`Ring::replicas`] which ingesters a series goes to, queriers ask
//! [`Ring::ingesters`] whom to read recent data from. `-target=all` runs
//! without gossip on a fixed one-member ring ([`Ring::single`]).
//!
//! Layout: `config` is the `memberlist` section of the configuration, `ring`
//! the public face, `gossip` hides memberlist's generics and tunes it, `meta`
//! is the wire format each member gossips, `tokens` derives tokens and walks
//! the ring, `table` holds the members and `shared` the state the ring and
//! gossip share, `http` serves `/ring`. Heartbeats are stamped and judged
//! with an injected clock.

mod config;
mod error;
mod gossip;
mod http;
mod member;
mod meta;
mod metrics;
mod ring;
mod shared;
mod table;
mod tokens;

pub use config::MemberlistConfig;
pub use error::{Error, Result};
pub use member::{Member, Roles, State};
pub use meta::MAX_ZONE_LEN;
pub use metrics::RingMetrics;
pub use ring::{DEFAULT_BIND_PORT, DEFAULT_NUM_TOKENS, Ring, RingConfig};
pub use tokens::tokens;
