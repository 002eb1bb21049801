//! Prometheus metrics of the process, served on `/metrics`.
//!
//! The process creates one [`Registry`] here; every module registers its
//! component's metrics into it once (`ember_distributor_*`, ...: see
//! `docs/metrics.md`). This module adds the HTTP metrics, the process
//! collector (`process_*`) and `ember_build_info`.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics registry and the HTTP metrics it records.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ember_http_requests_total",
                "HTTP and gRPC requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ember_http_request_duration_seconds",
                "Request latency by route",
            ),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("unique metric");
        Self {
            registry,
            requests,
            duration,
        }
    }

    /// Registers what describes the process: CPU, memory and file
    /// descriptors (`process_*`, on Linux), and `ember_build_info` = 1 with
    /// the version, the git revision built from and the `-target` it runs.
    pub fn register_process(&self, target: &str) -> Result<(), prometheus::Error> {
        #[cfg(target_os = "linux")]
        self.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let info = IntGaugeVec::new(
            Opts::new(
                "ember_build_info",
                "Ember's version, git revision and -target; always 1",
            ),
            &["version", "revision", "target"],
        )?;
        self.registry.register(Box::new(info.clone()))?;
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("EMBER_REVISION"), target])
            .set(1);
        Ok(())
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Records the count and latency of every request.
pub(crate) async fn record(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

pub(crate) async fn handler(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics.render(),
    )
}
