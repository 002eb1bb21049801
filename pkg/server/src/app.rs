//! Starts the components selected by `-target` and serves them until shutdown.
//!
//! Order matters on shutdown: readiness goes false, the server stops accepting
//! requests and lets in-flight ones finish, the agent pushes what it buffered,
//! and only then does the ingester stop taking writes and flush every head, so
//! no acknowledged profile is left behind in memory.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ember_agent::{Agent, AgentOptions, InProcess, PushSink};
use ember_distributor::{Distributor, Limits as DistributorLimits, LimitsFn};
use ember_ingester::{Ingester, IngesterConfig};
use ember_model::pprof::DecodeLimits;
use ember_querier::Querier;
use thiserror::Error;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::{
    config::{Config, Limits},
    http::{Services, router},
    metrics::Metrics,
    target::{Target, expand},
};

#[derive(Debug, Error)]
pub enum AppError {
    #[error("storage: {0}")]
    Storage(#[from] ember_objstore::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error(
        "target {0} is not available in this version of ember; run -target=all or distributor,ingester,querier in one process"
    )]
    Unavailable(Target),
    #[error(
        "-target=distributor needs an ingester in the same process in this version; add ingester to -target"
    )]
    DistributorWithoutIngester,
    #[error(
        "-target=agent needs client.url (a distributor to push to) unless a distributor runs in the same process"
    )]
    AgentWithoutDistributor,
    #[error("agent: {0}")]
    Agent(String),
    #[error("opening the ingester's write-ahead log: {0}")]
    Wal(String),
    #[error("flushing on shutdown: {0}")]
    Flush(#[from] ember_ingester::Error),
}

/// Converts the configured limits into the distributor's.
fn distributor_limits(l: &Limits) -> DistributorLimits {
    DistributorLimits {
        max_profile_size_bytes: l.max_profile_size_bytes as usize,
        decode: DecodeLimits {
            max_decompressed_bytes: l.max_decompressed_profile_size_bytes as usize,
            max_samples: l.max_samples_per_profile,
            max_stack_depth: l.max_stack_depth,
        },
        max_label_names_per_series: l.max_label_names_per_series,
        max_label_name_length: l.max_label_name_length,
        max_label_value_length: l.max_label_value_length,
        ingestion_rate_mb: l.ingestion_rate_mb,
        ingestion_burst_size_mb: l.ingestion_burst_size_mb,
        max_active_series: l.max_active_series,
    }
}

/// A bound, not yet serving, Ember process.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    services: Services,
    ingester: Option<Arc<Ingester>>,
    agent: Option<Agent>,
    agent_grace: Duration,
    graceful_timeout: Duration,
    flush_interval: Duration,
}

impl App {
    /// Builds the selected components and binds the listener.
    pub async fn new(config: &Config) -> Result<Self, AppError> {
        let targets = expand(&config.target);
        if targets.contains(&Target::Compactor) && !config.target.contains(&Target::All) {
            return Err(AppError::Unavailable(Target::Compactor));
        }
        let store = ember_objstore::build(&config.storage)?;
        let ingester = if targets.contains(&Target::Ingester) {
            let ingester_config = IngesterConfig {
                id: hostname(),
                max_block_duration: config.ingester.max_block_duration,
                max_block_bytes: config.ingester.max_block_bytes,
            };
            let ingester = Ingester::open(ingester_config, store.clone(), &config.wal_dir())
                .await
                .map_err(|e| AppError::Wal(e.to_string()))?;
            Some(Arc::new(ingester))
        } else {
            None
        };
        let distributor = if targets.contains(&Target::Distributor) {
            let ingester = ingester
                .clone()
                .ok_or(AppError::DistributorWithoutIngester)?;
            // Each push reads its tenant's limits: `limits` with that tenant's `overrides`.
            let limits_config = config.clone();
            Some(Distributor::new(
                ingester,
                LimitsFn(move |tenant: &str| distributor_limits(&limits_config.limits_for(tenant))),
            ))
        } else {
            None
        };
        let querier = targets
            .contains(&Target::Querier)
            .then(|| Arc::new(Querier::new(ingester.clone(), store.clone())));

        let metrics = Metrics::new();
        // The agent runs when asked for by name, or with `all` when it has jobs.
        let run_agent = config.target.contains(&Target::Agent)
            || (targets.contains(&Target::Agent) && !config.scrape_configs.is_empty());
        let agent = if run_agent {
            let sink: Arc<dyn PushSink> = if config.client.url.is_empty() {
                let distributor = distributor
                    .clone()
                    .ok_or(AppError::AgentWithoutDistributor)?;
                Arc::new(InProcess(Arc::new(distributor)))
            } else {
                ember_agent::push::remote(&config.client).map_err(AppError::Agent)?
            };
            let agent = Agent::start(
                config.scrape_configs.clone(),
                config.client.clone(),
                sink,
                &metrics.registry,
                AgentOptions::default(),
            )
            .map_err(|e| AppError::Agent(e.to_string()))?;
            Some(agent)
        } else {
            None
        };

        let address = format!(
            "{}:{}",
            config.server.http_listen_address, config.server.http_listen_port
        );
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        Ok(Self {
            listener,
            services: Services {
                distributor,
                querier,
                metrics,
                ready: Arc::new(AtomicBool::new(false)),
                multitenancy: config.auth.multitenancy_enabled,
                max_body_bytes: config.server.max_request_body_bytes as usize,
                agent: agent.clone(),
            },
            ingester,
            agent,
            agent_grace: config.client.timeout,
            graceful_timeout: config.server.graceful_shutdown_timeout,
            flush_interval: config.ingester.flush_interval,
        })
    }

    /// Returns the bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let ready = self.services.ready.clone();
        let app = router(self.services);
        if let Some(ingester) = &self.ingester {
            tokio::spawn(ingester.clone().run_flush_loop(self.flush_interval));
        }
        let address = self.listener.local_addr().map_err(AppError::Serve)?;
        let ingester = self.ingester.clone();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = {
            let ready = ready.clone();
            async move {
                shutdown.await;
                info!("shutting down: no longer ready");
                ready.store(false, Ordering::Release);
                let _ = stopped_tx.send(());
            }
        };
        ready.store(true, Ordering::Release);
        info!(%address, "ember is serving");
        let server = axum::serve(self.listener, app).with_graceful_shutdown(signal);
        let server = tokio::spawn(async move { server.await });
        let _ = stopped_rx.await;
        // In-flight requests get the graceful period; then the server is dropped.
        match tokio::time::timeout(self.graceful_timeout, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(AppError::Serve(e)),
            Ok(Err(e)) => warn!(error = %e, "server task failed"),
            Err(_) => {
                warn!("in-flight requests did not finish within the graceful shutdown timeout")
            }
        }
        // Buffered profiles get pushed (in-process, into the heads) before the flush.
        if let Some(agent) = &self.agent {
            info!("stopping the agent");
            agent.stop(self.agent_grace).await;
        }
        if let Some(ingester) = ingester {
            info!("flushing heads");
            ingester.stop().await?;
        }
        info!("stopped");
        Ok(())
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ember".into())
}
