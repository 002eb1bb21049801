//! End-to-end tests of the real `ember` binary, one module per capability.
//!
//! They are one test binary so that the suite links (and stores) the
//! workspace once rather than once per file.

mod agent_bad_targets;
mod agent_buffer;
mod agent_go;
mod agent_kubernetes;
mod agent_support;
mod auth;
mod bad_input;
mod cluster;
mod crash_recovery;
mod faults;
mod filtering;
mod flamegraph_format;
mod go_pprof;
mod grafana;
mod grafana_api;
mod grafana_plugin;
mod health;
mod ingest_formats;
mod ingest_jfr;
mod ingest_node;
mod limits;
mod load;
mod metrics;
mod prometheus;
mod python_sdk;
mod query_limits;
mod restart_blocks;
mod s3;
mod self_profiling;
mod shared_profiles;
mod spans;
mod tls;
mod ui;
mod zones;
