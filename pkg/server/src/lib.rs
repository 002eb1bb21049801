//! Assembles an Ember process: configuration, the components selected by
//! `-target`, and one port serving gRPC, Connect and the HTTP API.

pub mod adhoc;
pub mod app;
pub mod async_query;
pub mod auth;
pub mod config;
mod connect;
mod dot;
pub mod grafana;
pub mod health;
pub mod http;
mod ingest;
pub mod logging;
pub mod metrics;
pub mod modules;
mod render;
pub mod selfprofile;
mod server_config;
pub mod settings;
pub mod status;
pub mod target;
pub mod tls;
