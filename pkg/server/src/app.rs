//! Starts the modules that `-target` resolves to ([`crate::modules`]) and serves
//! them until shutdown.
//!
//! Each module's init reads what the modules before it built from a [`Context`]
//! and adds its own part, and may leave a [`Running`] handle behind. Shutdown has
//! two steps: every handle first hears that the process is draining (readiness
//! gains "shutting down", an ingester turns LEAVING so distributors stop choosing it), then
//! the handles stop in reverse start order: the server lets in-flight requests
//! finish, the agent pushes what it buffered, the compactor finishes its merge,
//! the ingester stops taking writes and flushes every head, and the ring is left
//! last. No acknowledged profile is left behind in memory.
//!
//! The port serves from the moment it is bound (the listener module): `/live`,
//! `/ready` with the [`Readiness`] reasons the modules set (the write-ahead log
//! replay's progress, ring state, object-store reachability), `/metrics` and
//! `/debug/pprof/*`; every other request gets 503 until the server module
//! installs the full router, after every module is initialized.
//!
//! In a cluster (any `-target` but `all`) every process gossips to form the
//! ring ([`ember_ring`]): distributors write to replicas over `ingester.v1`,
//! queriers read every ingester, and an ingester is ACTIVE (takes writes)
//! from the moment it serves until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use ember_agent::{Agent, AgentOptions, InProcess, PushSink};
use ember_compactor::{Compactor, CompactorMetrics, Retention};
use ember_distributor::{
    Distributor, DistributorMetrics,
    replication::{Placement, Replicas, ReplicationConfig},
};
use ember_ingester::{Ingester, IngesterApi, IngesterMetrics, ReplayProgress};
use ember_limits::TenantLimits;
use ember_model::ingest::IngestSink;
use ember_proto::clients::{IngesterAddr, IngesterClients};
use ember_querier::{IngesterSet, Querier, QuerierMetrics, RemoteIngesters};
use ember_query::RecentData;
use ember_ring::{Member, Ring, Roles, State};
use ember_time::{SharedClock, SystemClock};
use object_store::ObjectStore;
use thiserror::Error;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    auth::Authenticator,
    config::{Config, hostname},
    health::{Readiness, reason},
    http::{Open, Services, Slot, router, serving},
    metrics::Metrics,
    modules::{Module, resolve},
    selfprofile::Profiler,
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
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("ingester: {0}")]
    Ingester(#[from] ember_ingester::Error),
    #[error(transparent)]
    Credentials(#[from] crate::auth::FileError),
    #[error("server TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("module {0} needs module {1}, which did not start")]
    Missing(Module, Module),
    #[error("self_profiling.enabled needs a distributor in this process or client.url to push to")]
    SelfProfilingWithoutDistributor,
}

/// The ring as distributors and queriers use it: ingester addresses.
#[derive(Debug)]
struct RingView(Arc<Ring>);

impl Placement for RingView {
    fn replicas(&self, key: u32, rf: usize) -> Vec<IngesterAddr> {
        self.0.replicas(key, rf).into_iter().map(address).collect()
    }
}

impl IngesterSet for RingView {
    fn ingesters(&self) -> Vec<IngesterAddr> {
        self.0
            .ingesters()
            .into_iter()
            .filter(|m| m.healthy)
            .map(address)
            .collect()
    }
}

/// Returns where a ring member is called, and its zone.
fn address(member: Member) -> IngesterAddr {
    IngesterAddr {
        addr: member.addr,
        zone: member.zone,
    }
}

/// How long a call to another process may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns the clients of other processes: over TLS when `ingester_client`
/// says so, sending the cluster token when one is set.
fn peer_clients(config: &Config) -> Result<IngesterClients, AppError> {
    let invalid = |m: String| AppError::Config(ember_config::Error::invalid(m));
    let mut clients = IngesterClients::new(PEER_TIMEOUT);
    let tls = &config.ingester_client;
    if tls.tls_enabled {
        let ca = if tls.tls_ca_path.as_os_str().is_empty() {
            None
        } else {
            Some(std::fs::read(&tls.tls_ca_path).map_err(|e| {
                invalid(format!(
                    "ingester_client.tls_ca_path {}: {e}",
                    tls.tls_ca_path.display()
                ))
            })?)
        };
        let name = (!tls.tls_server_name.is_empty()).then(|| tls.tls_server_name.clone());
        clients = clients.with_tls(ca, name);
        info!("calling ingesters over TLS");
    }
    let token = &config.auth.cluster_token;
    if token.is_empty() {
        return Ok(clients);
    }
    clients
        .with_token(token.expose())
        .map_err(|s| invalid(format!("auth.cluster_token: {}", s.message())))
}

/// A started module's part in the process's life after its init.
#[async_trait::async_trait]
trait Running: Send + Sync {
    /// Starts background work, once every module is initialized.
    fn start(&mut self) {}
    /// Hears the shutdown signal, before any module stops: stop advertising.
    fn draining(&self) {}
    /// Stops; called in reverse start order.
    async fn stop(self: Box<Self>) -> Result<(), AppError>;
}

/// What the modules of one process build, each in turn.
struct Context<'a> {
    config: &'a Config,
    targets: std::collections::BTreeSet<Target>,
    clock: SharedClock,
    metrics: Metrics,
    clients: Arc<IngesterClients>,
    /// The bound address of the port.
    address: Option<SocketAddr>,
    http_port: u16,
    store: Option<Arc<dyn ObjectStore>>,
    ring: Option<Arc<Ring>>,
    ingester: Option<Arc<Ingester>>,
    distributor: Option<Distributor>,
    querier: Option<Arc<Querier>>,
    agent: Option<Agent>,
    auth: Option<Arc<Authenticator>>,
    /// Why the process is not ready; each module sets and clears its reasons.
    readiness: Readiness,
    profiler: Profiler,
    /// Where the server module installs the full router.
    slot: Slot,
    /// The server, serving from the moment the port is bound.
    serving: Option<Serving>,
}

/// The running HTTP/gRPC server task and its stop signal.
struct Serving {
    task: JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Context<'_> {
    /// Returns the registry every module registers its metrics into, once.
    fn registry(&self) -> &prometheus::Registry {
        &self.metrics.registry
    }

    fn store(&self, module: Module) -> Result<Arc<dyn ObjectStore>, AppError> {
        self.store
            .clone()
            .ok_or(AppError::Missing(module, Module::Storage))
    }

    fn ring(&self, module: Module) -> Result<Arc<Ring>, AppError> {
        self.ring
            .clone()
            .ok_or(AppError::Missing(module, Module::Ring))
    }

    /// Returns the ingester of this process when components talk in-process.
    fn local_ingester(&self) -> Option<Arc<Ingester>> {
        self.ingester.clone().filter(|_| !self.config.clustered())
    }

    /// Initializes `module`, returning its handle if it has work after init.
    async fn init(&mut self, module: Module) -> Result<Option<Box<dyn Running>>, AppError> {
        let config = self.config;
        Ok(match module {
            Module::Listener => {
                // Bound first: ring members advertise the port they serve on.
                let address = format!(
                    "{}:{}",
                    config.server.http_listen_address, config.server.http_listen_port
                );
                let listener = TcpListener::bind(&address)
                    .await
                    .map_err(|source| AppError::Listen { address, source })?;
                let bound = listener.local_addr().map_err(AppError::Serve)?;
                self.http_port = bound.port();
                self.address = Some(bound);
                self.serve(listener)?;
                None
            }
            Module::Storage => {
                let metrics = ember_objstore::ObjstoreMetrics::register(self.registry())?;
                let store =
                    ember_objstore::instrument(ember_objstore::build(&config.storage)?, metrics);
                // An ingester takes writes into its log through an outage: it
                // stays ready, degraded; the others cannot work without the store.
                crate::health::watch_object_store(
                    store.clone(),
                    self.readiness.clone(),
                    crate::health::OBJECT_STORE_CHECK_EVERY,
                    !self.targets.contains(&Target::Ingester),
                );
                self.store = Some(store);
                None
            }
            Module::Ring => {
                let ring = self.start_ring().await?;
                ring.record_metrics(&ember_ring::RingMetrics::register(self.registry())?);
                if self.targets.contains(&Target::Ingester) {
                    let member = ring.clone();
                    self.readiness.set_live(reason::RING, move || {
                        let state = member.state();
                        (state != State::Active)
                            .then(|| format!("not ACTIVE in the ring ({})", state.as_str()))
                    });
                }
                self.ring = Some(ring.clone());
                Some(Box::new(RingModule(ring)))
            }
            Module::Ingester => {
                if !config.ingester.wal_fsync {
                    warn!(
                        "write-ahead log fsync is off: acknowledged profiles may be lost if the machine crashes"
                    );
                }
                // `/ready` shows the replay's progress while it runs.
                let progress = ReplayProgress::shared();
                let shown = progress.clone();
                self.readiness
                    .set_live(reason::WAL_REPLAY, move || shown.describe());
                let opened = Ingester::open_with_progress(
                    config.ingester.clone(),
                    self.store(module)?,
                    self.clock.clone(),
                    &config.wal_dir(),
                    progress,
                )
                .await;
                self.readiness.clear(reason::WAL_REPLAY);
                let ingester = Arc::new(opened?.with_id(hostname()).with_metrics(
                    IngesterMetrics::register(self.registry())?,
                    ember_ingester::WalMetrics::register(self.registry())?,
                ));
                self.ingester = Some(ingester.clone());
                Some(Box::new(IngesterModule {
                    ingester,
                    ring: self.ring(module)?,
                    flush_interval: config.ingester.flush_interval,
                }))
            }
            Module::Distributor => {
                let metrics = DistributorMetrics::register(self.registry())?;
                let sink: Arc<dyn IngestSink> = match self.local_ingester() {
                    Some(ingester) => ingester,
                    None => Arc::new(
                        Replicas::new(
                            Arc::new(RingView(self.ring(module)?)),
                            self.clients.clone(),
                            ReplicationConfig {
                                replication_factor: config.replication_factor(),
                                zone_awareness: config.distributor.zone_awareness_enabled,
                                ..ReplicationConfig::default()
                            },
                            self.clock.clone(),
                        )
                        .with_metrics(metrics.clone()),
                    ),
                };
                // Each push reads its tenant's limits: `limits` with that tenant's `overrides`.
                self.distributor = Some(
                    Distributor::new(sink, Arc::new(config.tenant_limits()), self.clock.clone())
                        .with_metrics(metrics),
                );
                None
            }
            Module::Querier => {
                let metrics = QuerierMetrics::register(self.registry())?;
                let recent: Arc<dyn RecentData> = match self.local_ingester() {
                    Some(ingester) => ingester,
                    None => Arc::new(RemoteIngesters {
                        set: Arc::new(RingView(self.ring(module)?)),
                        clients: self.clients.clone(),
                        replication_factor: config.replication_factor(),
                        zone_awareness: config.distributor.zone_awareness_enabled,
                        metrics: metrics.clone(),
                    }),
                };
                // Each query reads its tenant's limits, as each push does.
                let cache = ember_querier::BlockCache::new(
                    config.storage.cache.max_size_bytes,
                    ember_querier::BlockCacheMetrics::register(self.registry())?,
                );
                let querier = Querier::new(Some(recent), self.store(module)?)
                    .with_cache(Arc::new(cache))
                    .with_metrics(metrics)
                    .with_limits(Arc::new(config.tenant_limits()), self.clock.clone());
                self.querier = Some(Arc::new(querier));
                None
            }
            Module::Compactor => {
                let limits = config.tenant_limits();
                let retention: Retention = Arc::new(move |tenant: &str| {
                    limits.limits(tenant).compactor_blocks_retention_period
                });
                let compactor = Compactor::new(
                    self.store(module)?,
                    config.compactor.clone(),
                    retention,
                    self.clock.clone(),
                )?
                .with_id(format!("compactor@{}", hostname()))
                .with_metrics(CompactorMetrics::register(self.registry())?);
                Some(Box::new(CompactorModule::new(Arc::new(compactor))))
            }
            Module::Agent => {
                // The agent runs when asked for by name, or with `all` when it has jobs.
                if !config.target.contains(&Target::Agent) && config.scrape_configs.is_empty() {
                    return Ok(None);
                }
                let sink: Arc<dyn PushSink> = if config.client.url.is_empty() {
                    let distributor = self
                        .distributor
                        .clone()
                        .ok_or(AppError::AgentWithoutDistributor)?;
                    Arc::new(InProcess(Arc::new(distributor)))
                } else {
                    ember_agent::push::remote(&config.client)?
                };
                let agent = Agent::start(
                    config.scrape_configs.clone(),
                    config.client.clone(),
                    sink,
                    &self.metrics.registry,
                    AgentOptions::default(),
                )?;
                self.agent = Some(agent.clone());
                Some(Box::new(AgentModule {
                    agent,
                    grace: config.client.timeout,
                }))
            }
            Module::Server => {
                let serving = self
                    .serving
                    .take()
                    .ok_or(AppError::Missing(module, Module::Listener))?;
                let ring = self.ring(module)?;
                if config.auth.enabled() {
                    let auth = Authenticator::open(&config.auth.tokens_file)?;
                    self.auth = Some(Arc::new(auth));
                }
                let services = Services {
                    distributor: self.distributor.clone(),
                    querier: self.querier.clone(),
                    ingester: self
                        .ingester
                        .clone()
                        .filter(|_| config.clustered())
                        .map(IngesterApi),
                    ring: ring.clone(),
                    multitenancy: config.auth.multitenancy_enabled,
                    max_body_bytes: config.server.max_request_body_bytes as usize,
                    max_ingester_request_bytes: config.max_ingester_request_bytes(),
                    agent: self.agent.clone(),
                    auth: self.auth.clone(),
                    cluster_token: config.auth.cluster_token.clone(),
                    grafana: match (&self.querier, &self.store) {
                        (Some(_), Some(store)) => Some(crate::grafana::GrafanaApi::new(
                            store.clone(),
                            self.clock.clone(),
                        )),
                        _ => None,
                    },
                    status: Some(crate::status::StatusApi::new(config)),
                };
                Some(Box::new(ServerModule {
                    auth: self.auth.clone(),
                    services: Some(services),
                    slot: self.slot.clone(),
                    ring,
                    readiness: self.readiness.clone(),
                    graceful_timeout: config.server.graceful_shutdown_timeout,
                    serving: Some(serving),
                    self_profiling: self.self_profiling()?,
                    self_profile_task: None,
                }))
            }
        })
    }

    /// Starts serving on `listener` (HTTPS when configured): the open paths
    /// at once, the rest once the server module installs its router.
    fn serve(&mut self, listener: TcpListener) -> Result<(), AppError> {
        let config = self.config;
        let tls = if config.server.tls() {
            let s = &config.server;
            let ca = (!s.http_tls_ca_path.as_os_str().is_empty())
                .then_some(s.http_tls_ca_path.as_path());
            Some(crate::tls::server_config(
                &s.http_tls_cert_path,
                &s.http_tls_key_path,
                ca,
            )?)
        } else {
            None
        };
        let app = serving(
            Open {
                readiness: self.readiness.clone(),
                metrics: self.metrics.clone(),
                profiler: self.profiler.clone(),
            },
            self.slot.clone(),
        );
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stop_rx.await;
        };
        let task = match tls {
            Some(tls) => tokio::spawn(crate::tls::serve(listener, app, tls, stopped)),
            None => {
                let server = axum::serve(listener, app).with_graceful_shutdown(stopped);
                tokio::spawn(async move { server.await })
            }
        };
        self.serving = Some(Serving { task, stop });
        Ok(())
    }

    /// Returns where self-profiling pushes (this process's distributor, else
    /// `client.url`), as which tenant, and the `target` label; `None` when off.
    fn self_profiling(&self) -> Result<Option<SelfProfiling>, AppError> {
        let config = self.config;
        if !config.self_profiling.enabled {
            return Ok(None);
        }
        let sink: Arc<dyn PushSink> = match &self.distributor {
            Some(distributor) => Arc::new(InProcess(Arc::new(distributor.clone()))),
            None if !config.client.url.is_empty() => ember_agent::push::remote(&config.client)?,
            None => return Err(AppError::SelfProfilingWithoutDistributor),
        };
        let tenant = if config.client.tenant_id.is_empty() {
            ember_proto::Tenant::ANONYMOUS.to_owned()
        } else {
            config.client.tenant_id.clone()
        };
        let target = config
            .target
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Some(SelfProfiling {
            profiler: self.profiler.clone(),
            sink,
            tenant,
            target,
            interval: config.self_profiling.interval,
        }))
    }

    /// Starts gossip for a clustered process, or describes the single process.
    async fn start_ring(&self) -> Result<Arc<Ring>, AppError> {
        let (config, targets, port) = (self.config, &self.targets, self.http_port);
        let roles = Roles {
            ingester: targets.contains(&Target::Ingester),
            distributor: targets.contains(&Target::Distributor),
            querier: targets.contains(&Target::Querier),
            compactor: targets.contains(&Target::Compactor),
        };
        let node_name = config.memberlist.node_name(&hostname(), port);
        // Agents and compactors need no ring: only the write and read paths gossip.
        if !config.clustered() || !(roles.ingester || roles.distributor || roles.querier) {
            let member = Member {
                name: node_name,
                addr: format!("127.0.0.1:{port}"),
                zone: config.ingester.availability_zone.clone(),
                roles,
                state: State::Active,
                tokens: Vec::new(),
                last_heartbeat: self.clock.now(),
                healthy: true,
            };
            return Ok(Ring::single(member, self.clock.clone()));
        }
        let ring_config = ember_ring::RingConfig {
            zone: config.ingester.availability_zone.clone(),
            zone_awareness: config.distributor.zone_awareness_enabled,
            ..config.memberlist.ring_config(
                node_name,
                roles,
                port,
                config.server.http_listen_address.parse().ok(),
            )?
        };
        Ok(Ring::start(ring_config, self.clock.clone()).await?)
    }
}

/// The ring: left last, so the others drop this member at once.
struct RingModule(Arc<Ring>);

#[async_trait::async_trait]
impl Running for RingModule {
    async fn stop(self: Box<Self>) -> Result<(), AppError> {
        self.0.leave(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// The ingester: flushes periodically, turns LEAVING on the signal, flushes
/// every head on stop.
struct IngesterModule {
    ingester: Arc<Ingester>,
    ring: Arc<Ring>,
    flush_interval: Duration,
}

#[async_trait::async_trait]
impl Running for IngesterModule {
    fn start(&mut self) {
        tokio::spawn(self.ingester.clone().run_flush_loop(self.flush_interval));
    }

    fn draining(&self) {
        // Distributors stop choosing this ingester before it refuses writes.
        self.ring.set_state(State::Leaving);
    }

    async fn stop(self: Box<Self>) -> Result<(), AppError> {
        info!("flushing heads");
        self.ingester.stop().await?;
        Ok(())
    }
}

/// The compactor: passes until stopped; finishes the merge it is in.
struct CompactorModule {
    compactor: Arc<Compactor>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl CompactorModule {
    fn new(compactor: Arc<Compactor>) -> Self {
        Self {
            compactor,
            stop: tokio::sync::watch::channel(false).0,
            task: None,
        }
    }
}

#[async_trait::async_trait]
impl Running for CompactorModule {
    fn start(&mut self) {
        let mut stopped = self.stop.subscribe();
        self.task = Some(tokio::spawn(self.compactor.clone().run(async move {
            let _ = stopped.changed().await;
        })));
    }

    async fn stop(self: Box<Self>) -> Result<(), AppError> {
        info!("stopping the compactor");
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// The agent: pushes what it buffered (in-process, into the heads) on stop.
struct AgentModule {
    agent: Agent,
    grace: Duration,
}

#[async_trait::async_trait]
impl Running for AgentModule {
    async fn stop(self: Box<Self>) -> Result<(), AppError> {
        info!("stopping the agent");
        self.agent.stop(self.grace).await;
        Ok(())
    }
}

/// Where and how often self-profiling pushes.
struct SelfProfiling {
    /// The one `/debug/pprof/profile` uses too: one profile runs at a time.
    profiler: Profiler,
    sink: Arc<dyn PushSink>,
    tenant: String,
    target: String,
    interval: Duration,
}

/// The HTTP/gRPC server: serving since the port was bound, it takes every
/// request once started, goes unready on the signal and gives in-flight
/// requests the graceful period on stop.
struct ServerModule {
    /// Watched for changes of the credentials file while serving.
    auth: Option<Arc<Authenticator>>,
    services: Option<Services>,
    slot: Slot,
    ring: Arc<Ring>,
    readiness: Readiness,
    graceful_timeout: Duration,
    serving: Option<Serving>,
    self_profiling: Option<SelfProfiling>,
    self_profile_task: Option<JoinHandle<()>>,
}

#[async_trait::async_trait]
impl Running for ServerModule {
    fn start(&mut self) {
        let Some(services) = self.services.take() else {
            return;
        };
        self.slot.install(router(services));
        if let Some(auth) = &self.auth {
            tokio::spawn(auth.clone().watch());
        }
        self.readiness.clear(reason::STARTING);
        // Serving, with the write-ahead log replayed: take writes.
        self.ring.set_state(State::Active);
        if let Some(p) = self.self_profiling.take() {
            self.self_profile_task = Some(crate::selfprofile::run_loop(
                p.profiler, p.sink, p.tenant, p.target, p.interval,
            ));
        }
    }

    fn draining(&self) {
        info!("shutting down: no longer ready");
        self.readiness.set(reason::SHUTDOWN, "shutting down");
        if let Some(task) = &self.self_profile_task {
            task.abort();
        }
    }

    async fn stop(mut self: Box<Self>) -> Result<(), AppError> {
        let Some(serving) = self.serving.take() else {
            return Ok(());
        };
        let _ = serving.stop.send(());
        // In-flight requests get the graceful period; then the server is dropped.
        match tokio::time::timeout(self.graceful_timeout, serving.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(AppError::Serve(e)),
            Ok(Err(e)) => {
                warn!(error = %e, "server task failed");
                Ok(())
            }
            Err(_) => {
                warn!("in-flight requests did not finish within the graceful shutdown timeout");
                Ok(())
            }
        }
    }
}

/// A bound, not yet serving, Ember process.
pub struct App {
    address: SocketAddr,
    /// Started modules with work after init, in start order.
    running: Vec<(Module, Box<dyn Running>)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("address", &self.address)
            .field(
                "running",
                &self.running.iter().map(|(m, _)| m).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl App {
    /// Initializes the modules of the configured targets, in dependency order.
    pub async fn new(config: &Config) -> Result<Self, AppError> {
        let modules = resolve(&config.target);
        info!(modules = ?modules, "starting modules");
        let mut context = Context {
            config,
            targets: expand(&config.target),
            clock: SystemClock::shared(),
            metrics: Metrics::new(),
            clients: Arc::new(peer_clients(config)?),
            address: None,
            http_port: 0,
            store: None,
            ring: None,
            ingester: None,
            distributor: None,
            querier: None,
            agent: None,
            auth: None,
            readiness: Readiness::new(),
            profiler: Profiler::new(),
            slot: Slot::default(),
            serving: None,
        };
        context
            .readiness
            .set(reason::STARTING, "starting: modules are initializing");
        let target: Vec<&str> = config.target.iter().map(|t| t.as_str()).collect();
        context.metrics.register_process(&target.join(","))?;
        let mut running = Vec::new();
        for module in modules {
            if let Some(handle) = context.init(module).await? {
                running.push((module, handle));
            }
        }
        let address = context
            .address
            .ok_or(AppError::Missing(Module::Server, Module::Listener))?;
        Ok(Self { address, running })
    }

    /// Returns the bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.address)
    }

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        for (_, module) in &mut self.running {
            module.start();
        }
        info!(address = %self.address, "ember is serving");
        shutdown.await;
        for (_, module) in self.running.iter().rev() {
            module.draining();
        }
        let mut first_error = None;
        for (name, module) in self.running.into_iter().rev() {
            if let Err(e) = module.stop().await {
                warn!(module = %name, error = %e, "stopping module failed");
                first_error.get_or_insert(e);
            }
        }
        info!("stopped");
        first_error.map_or(Ok(()), Err)
    }
}
