//! Replicated writes: each profile goes to `replication_factor` ingesters of
//! the ring and is acknowledged once a quorum has it in its write-ahead log.
//!
//! # Placement
//!
//! The ring key of a profile is a hash of (tenant, service, shard). With one
//! shard, all of a service's profiles land on the same replica set, so its
//! symbols are stored (and de-duplicated) on few ingesters. A service that
//! pushes more than `bytes_per_shard` per second is split over more shards,
//! by a hash of the profile's own labels (e.g. its pod), so a hot service
//! spreads its load while each of its series keeps to one replica set as
//! long as its service's rate is steady.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use ember_model::{
    ingest::{IngestSink, ProfileWrite},
    labels::SERVICE_NAME,
    wire,
};
use ember_proto::{
    clients::{IngesterAddr, IngesterClients},
    error::Code,
    ingester::v1::PushRequest,
};
use ember_time::SharedClock;
use rustc_hash::FxHashMap;
use tokio::runtime::Handle;
use tonic::Status;
use tracing::warn;

use crate::DistributorMetrics;
use xxhash_rust::xxh3::Xxh3;

/// Finds the ingesters that own a ring key.
pub trait Placement: Send + Sync + Debug {
    /// Returns up to `rf` distinct writable ingesters owning `key`.
    fn replicas(&self, key: u32, rf: usize) -> Vec<IngesterAddr>;
}

/// Returns how many replicas must acknowledge a write: a majority.
pub fn quorum(rf: usize) -> usize {
    rf / 2 + 1
}

/// Returns how many zones must hold an acknowledged write with zone-aware
/// replication: one more than the zones a query may find down
/// (`rf - quorum`, as many as the ingesters it may miss without zones).
pub fn zones_needed(rf: usize) -> usize {
    rf - quorum(rf) + 1
}

/// Replication settings.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub replication_factor: usize,
    /// Whether the replicas are in distinct zones and a write must reach
    /// [`zones_needed`] of them.
    pub zone_awareness: bool,
    /// A service pushing more than this many bytes per second spreads over
    /// more than one replica set.
    pub bytes_per_shard: f64,
    /// The most replica sets one service spreads over.
    pub max_shards: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            zone_awareness: false,
            bytes_per_shard: 4.0 * 1024.0 * 1024.0,
            max_shards: 8,
        }
    }
}

/// Writes each profile to a quorum of its replicas.
#[derive(Debug)]
pub struct Replicas {
    placement: Arc<dyn Placement>,
    clients: Arc<IngesterClients>,
    config: ReplicationConfig,
    clock: SharedClock,
    runtime: Handle,
    load: Mutex<FxHashMap<(String, String), ServiceLoad>>,
    metrics: DistributorMetrics,
}

/// A service's recent push rate, decaying exponentially.
#[derive(Debug, Clone, Copy)]
struct ServiceLoad {
    bytes_per_second: f64,
    at: SystemTime,
}

/// How fast a service's measured rate forgets the past.
const LOAD_HALF_LIFE: Duration = Duration::from_secs(30);

impl Replicas {
    /// Returns a sink that places profiles with `placement`; it must be
    /// created on the async runtime it will use for its calls.
    pub fn new(
        placement: Arc<dyn Placement>,
        clients: Arc<IngesterClients>,
        config: ReplicationConfig,
        clock: SharedClock,
    ) -> Self {
        Self {
            placement,
            clients,
            config,
            clock,
            runtime: Handle::current(),
            load: Mutex::new(FxHashMap::default()),
            metrics: DistributorMetrics::detached(),
        }
    }

    /// Records each write to a replica into `metrics`.
    pub fn with_metrics(mut self, metrics: DistributorMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Records `bytes` for the service and returns over how many shards it spreads.
    fn shards(&self, tenant: &str, service: &str, bytes: usize, now: SystemTime) -> usize {
        let mut load = self.load.lock().expect("poisoned");
        let entry = load
            .entry((tenant.to_owned(), service.to_owned()))
            .or_insert(ServiceLoad {
                bytes_per_second: 0.0,
                at: now,
            });
        let elapsed = now
            .duration_since(entry.at)
            .unwrap_or_default()
            .as_secs_f64();
        let decay = 0.5f64.powf(elapsed / LOAD_HALF_LIFE.as_secs_f64());
        // An exponentially weighted rate: each byte adds 1/half-life-ish weight.
        entry.bytes_per_second = entry.bytes_per_second * decay
            + bytes as f64 * std::f64::consts::LN_2 / LOAD_HALF_LIFE.as_secs_f64();
        entry.at = now;
        let shards = (entry.bytes_per_second / self.config.bytes_per_shard).ceil() as usize;
        shards.clamp(1, self.config.max_shards.max(1))
    }

    /// Returns the ring key of a profile of `tenant`.
    fn key(&self, tenant: &str, w: &ProfileWrite<'_>, bytes: usize) -> u32 {
        let Some(first) = w.series.first() else {
            return 0;
        };
        let service = first.labels.service_name();
        let shards = self.shards(tenant, service, bytes, self.clock.now());
        let shard = if shards == 1 {
            0
        } else {
            // The profile's own labels, without the per-sample-type ones.
            let mut h = Xxh3::new();
            for l in first.labels.iter().filter(|l| !l.name.starts_with("__")) {
                h.update(l.name.as_bytes());
                h.update(&[0]);
                h.update(l.value.as_bytes());
                h.update(&[0]);
            }
            h.digest() % shards as u64
        };
        let mut h = Xxh3::new();
        h.update(tenant.as_bytes());
        h.update(&[0]);
        h.update(SERVICE_NAME.as_bytes());
        h.update(service.as_bytes());
        h.update(&[0]);
        h.update(&shard.to_le_bytes());
        h.digest() as u32
    }
}

impl IngestSink for Replicas {
    fn write(&self, tenant: &str, w: &ProfileWrite<'_>) -> Result<(), Status> {
        let request = wire::push_request(w);
        let key = self.key(tenant, w, request.profile.len());
        let rf = self.config.replication_factor.max(1);
        let needed = quorum(rf);
        let replicas = self.placement.replicas(key, rf);
        if replicas.len() < needed {
            return Err(Code::Unavailable.status(format!(
                "only {} of {rf} ingesters are available to take tenant {tenant:?}'s profile, {needed} are needed (replication_factor {rf}): wait for ingesters to join the ring, or lower -distributor.replication-factor",
                replicas.len()
            )));
        }
        // A query tolerates a zone down only if every acknowledged write is
        // also in another zone, so the acknowledgements must span zones.
        let zones_needed = if self.config.zone_awareness {
            zones_needed(rf)
        } else {
            1
        };
        let zones = distinct_zones(replicas.iter().map(|r| r.zone.as_str()));
        if zones < zones_needed {
            return Err(Code::Unavailable.status(format!(
                "the ingesters available to take tenant {tenant:?}'s profile are in {zones} zones, zone-aware replication needs {zones_needed} (replication_factor {rf}): wait for the ingesters of another zone to join the ring"
            )));
        }
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(replicas.len());
        let request = Arc::new(request);
        for IngesterAddr { addr, zone } in replicas {
            let client = self.clients.get(&addr);
            let clients = self.clients.clone();
            let request = request.clone();
            let tenant = tenant.to_owned();
            let done = done_tx.clone();
            let metrics = self.metrics.clone();
            // Every replica gets the write, even after a quorum answered.
            self.runtime.spawn(async move {
                let started = std::time::Instant::now();
                let result = async {
                    let mut client = client?;
                    client
                        .push(clients.request(&tenant, PushRequest::clone(&request))?)
                        .await
                        .map(|_| ())
                }
                .await;
                metrics
                    .replication_duration
                    .with_label_values(&[&addr])
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = &result {
                    metrics
                        .replication_failures
                        .with_label_values(&[&addr])
                        .inc();
                    warn!(ingester = %addr, tenant, error = %e, "replicating a profile failed");
                }
                let _ = done.send((addr, zone, result)).await;
            });
        }
        drop(done_tx);
        let runtime = self.runtime.clone();
        runtime.block_on(async move {
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            while let Some((addr, zone, result)) = done_rx.recv().await {
                match result {
                    Ok(()) => {
                        acked.push(zone);
                        if acked.len() >= needed
                            && distinct_zones(acked.iter().map(String::as_str)) >= zones_needed
                        {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        // A refusal (a limit) is the same on every replica: pass it on.
                        if is_refusal(&e) {
                            return Err(e);
                        }
                        errors.push(format!("{addr}: {}", e.message()));
                    }
                }
            }
            let zones = if zones_needed > 1 {
                let zones = distinct_zones(acked.iter().map(String::as_str));
                format!(" in {zones} of the {zones_needed} zones")
            } else {
                String::new()
            };
            Err(Code::Unavailable.status(format!(
                "the profile reached {} of the {needed} ingesters{zones} a write needs (replication_factor {rf}): {}",
                acked.len(),
                errors.join("; ")
            )))
        })
    }
}

/// Returns how many different zones `zones` names.
fn distinct_zones<'a>(zones: impl Iterator<Item = &'a str>) -> usize {
    zones.collect::<std::collections::BTreeSet<_>>().len()
}

/// Returns whether an ingester refused the write for what it is (not for
/// being unreachable or unavailable).
fn is_refusal(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::ResourceExhausted
            | tonic::Code::FailedPrecondition
    )
}

#[cfg(test)]
mod tests {
    use ember_model::pprof::FlatProfile;
    use ember_model::{
        Labels, ProfileType,
        ingest::{SeriesSpec, labels_of},
    };
    use ember_proto::google::v1::Profile;

    use super::*;

    #[derive(Debug)]
    struct Nowhere;

    impl Placement for Nowhere {
        fn replicas(&self, _key: u32, _rf: usize) -> Vec<IngesterAddr> {
            Vec::new()
        }
    }

    fn replicas() -> Replicas {
        Replicas::new(
            Arc::new(Nowhere),
            Arc::new(IngesterClients::new(Duration::from_secs(1))),
            ReplicationConfig::default(),
            ember_time::SystemClock::shared(),
        )
    }

    fn series(labels: Labels) -> Vec<SeriesSpec> {
        vec![SeriesSpec {
            labels,
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
                .parse::<ProfileType>()
                .unwrap(),
            sample_type: 0,
            samples: None,
        }]
    }

    fn key(r: &Replicas, service: &str, pod: &str, bytes: usize) -> u32 {
        let profile = FlatProfile::default();
        let series = series(labels_of(&[("service_name", service), ("pod", pod)]));
        let write = ProfileWrite {
            id: 1,
            profile: &profile,
            series: &series,
            time_nanos: 0,
            max_active_series: 0,
            annotations: &[],
            encoded: None,
        };
        r.key("t", &write, bytes)
    }

    #[tokio::test]
    async fn a_quiet_service_keeps_to_one_replica_set_and_a_hot_one_spreads() {
        let r = replicas();
        let quiet: std::collections::BTreeSet<u32> = (0..20)
            .map(|i| key(&r, "quiet", &format!("pod-{i}"), 10_000))
            .collect();
        assert_eq!(quiet.len(), 1, "one service, one ring key");
        // 64 MiB pushed at once: far over 4 MiB/s, so up to 8 shards.
        let hot: std::collections::BTreeSet<u32> = (0..40)
            .map(|i| key(&r, "hot", &format!("pod-{i}"), 64 << 20))
            .collect();
        assert!(hot.len() > 1 && hot.len() <= 8, "{} ring keys", hot.len());
        // One pod of the hot service keeps its key while the rate holds.
        assert_eq!(
            key(&r, "hot", "pod-1", 64 << 20),
            key(&r, "hot", "pod-1", 64 << 20)
        );
    }

    #[tokio::test]
    async fn too_few_ingesters_is_a_clear_503() {
        let r = replicas();
        let profile = FlatProfile::default();
        let series = series(labels_of(&[("service_name", "s")]));
        let err = r
            .write(
                "t",
                &ProfileWrite {
                    id: 1,
                    profile: &profile,
                    series: &series,
                    time_nanos: 0,
                    max_active_series: 0,
                    annotations: &[],
                    encoded: None,
                },
            )
            .unwrap_err();
        assert_eq!(Code::of(&err).http(), 503);
        assert!(
            err.message().contains("only 0 of 3 ingesters"),
            "{}",
            err.message()
        );
    }

    /// A placement that always answers the same ingesters.
    #[derive(Debug)]
    struct Fixed(Vec<IngesterAddr>);

    impl Placement for Fixed {
        fn replicas(&self, _key: u32, _rf: usize) -> Vec<IngesterAddr> {
            self.0.clone()
        }
    }

    /// Serves a real in-memory ingester's `ingester.v1` on 127.0.0.1; returns
    /// its address.
    async fn serve_ingester() -> String {
        use ember_ingester::{Ingester, IngesterApi, IngesterConfig};
        use ember_proto::ingester::v1::ingester_service_server::IngesterServiceServer;
        let ingester = Ingester::new(
            IngesterConfig::default(),
            Arc::new(object_store::memory::InMemory::new()),
            ember_time::SystemClock::shared(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // The server's HTTP layer turns the tenant header into a `Tenant`.
        let tenant = |mut request: tonic::Request<()>| {
            let tenant = request
                .metadata()
                .get(ember_proto::clients::TENANT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(tenant) = tenant {
                request.extensions_mut().insert(ember_proto::Tenant(tenant));
            }
            Ok(request)
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(IngesterServiceServer::with_interceptor(
                    IngesterApi(Arc::new(ingester)),
                    tenant,
                ))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// Returns an address nothing listens on.
    fn dead_addr() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn at(addr: &str, zone: &str) -> IngesterAddr {
        IngesterAddr {
            addr: addr.to_owned(),
            zone: zone.to_owned(),
        }
    }

    /// Writes one profile through `placement`; returns the error's message.
    async fn write_through(
        placement: Vec<IngesterAddr>,
        zone_awareness: bool,
    ) -> Result<(), String> {
        let r = Replicas::new(
            Arc::new(Fixed(placement)),
            Arc::new(IngesterClients::new(Duration::from_secs(5))),
            ReplicationConfig {
                zone_awareness,
                ..ReplicationConfig::default()
            },
            ember_time::SystemClock::shared(),
        );
        tokio::task::spawn_blocking(move || {
            let profile = Profile {
                string_table: vec!["".into(), "cpu".into(), "nanoseconds".into()],
                sample_type: vec![ember_proto::google::v1::ValueType { r#type: 1, unit: 2 }],
                ..Profile::default()
            }
            .into();
            let series = series(labels_of(&[("service_name", "s")]));
            r.write(
                "t",
                &ProfileWrite {
                    id: 1,
                    profile: &profile,
                    series: &series,
                    time_nanos: 1_000_000_000,
                    max_active_series: 0,
                    annotations: &[],
                    encoded: None,
                },
            )
            .map_err(|e| {
                assert_eq!(Code::of(&e).http(), 503, "{}", e.message());
                e.message().to_owned()
            })
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zone_aware_writes_are_acknowledged_by_two_zones() {
        let (a1, a2, b1) = (
            serve_ingester().await,
            serve_ingester().await,
            serve_ingester().await,
        );
        let dead = dead_addr();
        // Two of zone a answer, zone b's replica is down: a majority, but
        // losing zone a would lose the profile.
        let one_zone = vec![at(&a1, "a"), at(&a2, "a"), at(&dead, "b")];
        write_through(one_zone.clone(), false).await.unwrap();
        let err = write_through(one_zone, true).await.unwrap_err();
        assert!(
            err.contains("reached 2 of the 2 ingesters in 1 of the 2 zones"),
            "{err}"
        );
        // One answer from each zone is enough, whichever replica is down.
        write_through(vec![at(&a1, "a"), at(&dead, "a"), at(&b1, "b")], true)
            .await
            .unwrap();
        write_through(vec![at(&a1, "a"), at(&a2, "b"), at(&dead, "c")], true)
            .await
            .unwrap();
        // Replicas of one zone only are refused before any is written.
        let err = write_through(vec![at(&a1, "a"), at(&a2, "a")], true)
            .await
            .unwrap_err();
        assert!(
            err.contains("are in 1 zones, zone-aware replication needs 2"),
            "{err}"
        );
    }

    #[test]
    fn zones_needed_is_one_more_than_a_query_tolerates() {
        assert_eq!(zones_needed(1), 1);
        assert_eq!(zones_needed(2), 1);
        assert_eq!(zones_needed(3), 2);
        assert_eq!(zones_needed(5), 3);
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(5), 3);
    }
}
