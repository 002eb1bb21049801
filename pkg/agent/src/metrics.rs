//! The agent's metrics, `ember_agent_*`, registered into the process's registry.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters and gauges of scraping and pushing. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Targets being scraped, by job.
    pub targets: IntGaugeVec,
    /// Scrapes attempted, by job and type.
    pub scrapes: IntCounterVec,
    /// Scrapes that failed, by job and type.
    pub scrape_failures: IntCounterVec,
    /// Bytes of successful responses, by job and type.
    pub scraped_bytes: IntCounterVec,
    /// Scrape latency, by job.
    pub scrape_duration: HistogramVec,
    /// Profiles a distributor accepted.
    pub pushed_profiles: IntCounter,
    /// Push requests that failed (each retry counts).
    pub push_failures: IntCounter,
    /// Profiles given up on, by reason: `buffer_full` (oldest dropped while
    /// distributors were unreachable) or `rejected` (the distributor refused them).
    pub dropped_profiles: IntCounterVec,
    /// Profiles waiting to be pushed.
    pub buffered_profiles: IntGauge,
}

impl AgentMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            targets: IntGaugeVec::new(
                Opts::new("ember_agent_targets", "Targets being scraped, by job"),
                &["job"],
            )?,
            scrapes: IntCounterVec::new(
                Opts::new("ember_agent_scrapes_total", "Scrapes attempted"),
                &["job", "type"],
            )?,
            scrape_failures: IntCounterVec::new(
                Opts::new("ember_agent_scrape_failures_total", "Scrapes that failed"),
                &["job", "type"],
            )?,
            scraped_bytes: IntCounterVec::new(
                Opts::new(
                    "ember_agent_scraped_bytes_total",
                    "Bytes of successful scrape responses",
                ),
                &["job", "type"],
            )?,
            scrape_duration: HistogramVec::new(
                HistogramOpts::new("ember_agent_scrape_duration_seconds", "Scrape latency"),
                &["job"],
            )?,
            pushed_profiles: IntCounter::new(
                "ember_agent_pushed_profiles_total",
                "Profiles accepted by a distributor",
            )?,
            push_failures: IntCounter::new(
                "ember_agent_push_failures_total",
                "Push requests that failed, retries included",
            )?,
            dropped_profiles: IntCounterVec::new(
                Opts::new(
                    "ember_agent_dropped_profiles_total",
                    "Profiles dropped: buffer_full or rejected",
                ),
                &["reason"],
            )?,
            buffered_profiles: IntGauge::new(
                "ember_agent_buffered_profiles",
                "Profiles waiting to be pushed",
            )?,
        };
        registry.register(Box::new(m.targets.clone()))?;
        registry.register(Box::new(m.scrapes.clone()))?;
        registry.register(Box::new(m.scrape_failures.clone()))?;
        registry.register(Box::new(m.scraped_bytes.clone()))?;
        registry.register(Box::new(m.scrape_duration.clone()))?;
        registry.register(Box::new(m.pushed_profiles.clone()))?;
        registry.register(Box::new(m.push_failures.clone()))?;
        registry.register(Box::new(m.dropped_profiles.clone()))?;
        registry.register(Box::new(m.buffered_profiles.clone()))?;
        // Present from the start, so a dashboard shows 0 rather than nothing.
        m.dropped_profiles.with_label_values(&["buffer_full"]);
        m.dropped_profiles.with_label_values(&["rejected"]);
        Ok(m)
    }
}
