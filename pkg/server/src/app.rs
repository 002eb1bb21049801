//! Starts the components selected by `-target` and serves them until shutdown.
//!
//! Order matters on shutdown: readiness goes false, the server stops accepting
//! requests and lets in-flight ones finish, the agent pushes what it buffered,
//! and only then does the ingester stop taking writes and flush every head, so
//! no acknowledged profile is left behind in memory.
//!
//! In a cluster (any `-target` but `all`) every process gossips to form the
//! ring ([`ember_ring`]): distributors write to replicas over `ingester.v1`,
//! queriers read every ingester, and an ingester is ACTIVE (takes writes)
//! from the moment it serves until shutdown, when it is LEAVING while it
//! flushes, then leaves.

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
use ember_compactor::{Compactor, Retention};
use ember_distributor::{
    Distributor, IngestSink,
    replication::{Placement, Replicas, ReplicationConfig},
};
use ember_ingester::{Ingester, IngesterApi};
use ember_limits::TenantLimits;
use ember_proto::clients::IngesterClients;
use ember_querier::{IngesterSet, Querier, Recent, RemoteIngesters};
use ember_ring::{Member, Ring, Roles, State};
use ember_time::{SharedClock, SystemClock};
use thiserror::Error;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::{
    config::{Config, hostname},
    http::{Services, router},
    metrics::Metrics,
    target::{Target, expand},
};

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ember_config::Error),
    #[error("storage: {0}")]
    Storage(#[from] ember_objstore::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("compactor: {0}")]
    Compactor(#[from] ember_compactor::Error),
    #[error("ring: {0}")]
    Ring(#[from] ember_ring::Error),
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

/// The ring as distributors and queriers use it: ingester addresses.
#[derive(Debug)]
struct RingView(Arc<Ring>);

impl Placement for RingView {
    fn replicas(&self, key: u32, rf: usize) -> Vec<String> {
        self.0
            .replicas(key, rf)
            .into_iter()
            .map(|m| m.addr)
            .collect()
    }
}

impl IngesterSet for RingView {
    fn ingesters(&self) -> Vec<String> {
        self.0
            .ingesters()
            .into_iter()
            .filter(|m| m.healthy)
            .map(|m| m.addr)
            .collect()
    }
}

/// How long a call to another process may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts gossip for a clustered process, or describes the single process.
async fn start_ring(
    config: &Config,
    targets: &std::collections::BTreeSet<Target>,
    http_port: u16,
    clock: SharedClock,
) -> Result<Arc<Ring>, AppError> {
    let roles = Roles {
        ingester: targets.contains(&Target::Ingester),
        distributor: targets.contains(&Target::Distributor),
        querier: targets.contains(&Target::Querier),
        compactor: targets.contains(&Target::Compactor),
    };
    let node_name = config.memberlist.node_name(&hostname(), http_port);
    // Agents and compactors need no ring: only the write and read paths gossip.
    if !config.clustered() || !(roles.ingester || roles.distributor || roles.querier) {
        return Ok(Ring::single(
            Member {
                name: node_name,
                addr: format!("127.0.0.1:{http_port}"),
                roles,
                state: State::Active,
                tokens: Vec::new(),
                last_heartbeat: clock.now(),
                healthy: true,
            },
            clock,
        ));
    }
    let ring_config = config.memberlist.ring_config(
        node_name,
        roles,
        http_port,
        config.server.http_listen_address.parse().ok(),
    )?;
    Ok(Ring::start(ring_config, clock).await?)
}

/// A bound, not yet serving, Ember process.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    services: Services,
    ring: Arc<Ring>,
    ingester: Option<Arc<Ingester>>,
    agent: Option<Agent>,
    agent_grace: Duration,
    graceful_timeout: Duration,
    compactor: Option<Arc<Compactor>>,
    flush_interval: Duration,
}

impl App {
    /// Builds the selected components and binds the listener.
    pub async fn new(config: &Config) -> Result<Self, AppError> {
        let targets = expand(&config.target);
        let store = ember_objstore::build(&config.storage)?;
        // Bound first: ring members advertise the port they serve on.
        let address = format!(
            "{}:{}",
            config.server.http_listen_address, config.server.http_listen_port
        );
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        let http_port = listener.local_addr().map_err(AppError::Serve)?.port();
        let clock = SystemClock::shared();
        let ring = start_ring(config, &targets, http_port, clock.clone()).await?;
        let ring_view = Arc::new(RingView(ring.clone()));
        let clients = Arc::new(IngesterClients::new(PEER_TIMEOUT));
        let replication_factor = config.replication_factor();
        let ingester = if targets.contains(&Target::Ingester) {
            if !config.ingester.wal_fsync {
                warn!(
                    "write-ahead log fsync is off: acknowledged profiles may be lost if the machine crashes"
                );
            }
            let ingester = Ingester::open(
                config.ingester.clone(),
                store.clone(),
                clock.clone(),
                &config.wal_dir(),
            )
            .await
            .map_err(|e| AppError::Wal(e.to_string()))?
            .with_id(hostname());
            Some(Arc::new(ingester))
        } else {
            None
        };
        let distributor = if targets.contains(&Target::Distributor) {
            let sink: Arc<dyn IngestSink> = match (&ingester, config.clustered()) {
                (Some(ingester), false) => ingester.clone(),
                _ => Arc::new(Replicas::new(
                    ring_view.clone(),
                    clients.clone(),
                    ReplicationConfig {
                        replication_factor,
                        ..ReplicationConfig::default()
                    },
                    clock.clone(),
                )),
            };
            // Each push reads its tenant's limits: `limits` with that tenant's `overrides`.
            Some(Distributor::new(
                sink,
                Arc::new(config.tenant_limits()),
                clock.clone(),
            ))
        } else {
            None
        };
        let querier = targets.contains(&Target::Querier).then(|| {
            let recent = match (&ingester, config.clustered()) {
                (Some(ingester), false) => Recent::Local(ingester.clone()),
                _ => Recent::Remote(RemoteIngesters {
                    set: ring_view.clone(),
                    clients: clients.clone(),
                    replication_factor,
                }),
            };
            Arc::new(Querier::with_recent(recent, store.clone()))
        });
        let compactor = if targets.contains(&Target::Compactor) {
            let limits = config.tenant_limits();
            let retention: Retention = Arc::new(move |tenant: &str| {
                limits.limits(tenant).compactor_blocks_retention_period
            });
            Some(Arc::new(
                Compactor::new(
                    store.clone(),
                    config.compactor.clone(),
                    retention,
                    clock.clone(),
                )?
                .with_id(format!("compactor@{}", hostname())),
            ))
        } else {
            None
        };
        let ingester_api = ingester
            .as_ref()
            .filter(|_| config.clustered())
            .map(|i| IngesterApi(i.clone()));

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

        Ok(Self {
            listener,
            services: Services {
                distributor,
                querier,
                ingester: ingester_api,
                ring: ring.clone(),
                metrics,
                ready: Arc::new(AtomicBool::new(false)),
                multitenancy: config.auth.multitenancy_enabled,
                max_body_bytes: config.server.max_request_body_bytes as usize,
                max_ingester_request_bytes: config.max_ingester_request_bytes(),
                agent: agent.clone(),
            },
            ring,
            ingester,
            agent,
            agent_grace: config.client.timeout,
            compactor,
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
        // The compactor finishes the merge it is in when asked to stop.
        let (stop_compactor, compactor_stopped) = tokio::sync::watch::channel(false);
        let compactor = self.compactor.clone().map(|c| {
            let mut stopped = compactor_stopped.clone();
            tokio::spawn(c.run(async move {
                let _ = stopped.changed().await;
            }))
        });
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
        // Serving, with the write-ahead log replayed: take writes.
        self.ring.set_state(State::Active);
        info!(%address, "ember is serving");
        let server = axum::serve(self.listener, app).with_graceful_shutdown(signal);
        let server = tokio::spawn(async move { server.await });
        let _ = stopped_rx.await;
        // Distributors stop choosing this ingester before it refuses writes.
        if self.ingester.is_some() {
            self.ring.set_state(State::Leaving);
        }
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
        if let Some(compactor) = compactor {
            info!("stopping the compactor");
            let _ = stop_compactor.send(true);
            let _ = compactor.await;
        }
        self.ring.leave(Duration::from_secs(5)).await;
        info!("stopped");
        Ok(())
    }
}
