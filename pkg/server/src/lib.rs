//! Assembles an Ember process: configuration, the components selected by
//! `-target`, and one port serving gRPC, Connect and the HTTP API.

pub mod app;
pub mod auth;
pub mod config;
mod connect;
pub mod health;
pub mod http;
mod ingest;
pub mod logging;
pub mod metrics;
pub mod modules;
mod render;
pub mod selfprofile;
mod server_config;
pub mod target;
pub mod tls;
