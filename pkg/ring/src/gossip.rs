//! Memberlist wiring: the concrete transport, the protocol timings, the
//! delegate that keeps the member table current, and the background tasks
//! (joining seeds, heartbeats).
//!
//! Every memberlist generic is fixed here — `SmolStr` ids, `SocketAddr`
//! addresses, the tokio runtime, TCP/UDP without compression or checksums,
//! AES-GCM sealing when a key is configured — so nothing outside this module
//! names them.

use std::{
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    sync::Arc,
    time::Duration,
};

use memberlist::{
    Memberlist, Options,
    delegate::{CompositeDelegate, EventDelegate, NodeDelegate, VoidDelegate},
    net::NetTransportOptions,
    proto::{EncryptionAlgorithm, MaybeResolvedAddress, Meta as WireMeta, NodeState, SecretKey},
    tokio::{TokioNetTransport, TokioSocketAddrResolver, TokioTcp},
};
use smol_str::SmolStr;
use tracing::{debug, info, warn};

use crate::{Error, Member, Result, meta::Meta, shared::Shared, tokens::tokens};

type Transport = TokioNetTransport<SmolStr, TokioSocketAddrResolver, TokioTcp>;
type Void = VoidDelegate<SmolStr, SocketAddr>;
type Delegate = CompositeDelegate<SmolStr, SocketAddr, Void, Void, Observer, Void, Observer, Void>;

/// A running memberlist with the ring's delegate.
pub(crate) type Gossip = Memberlist<Transport, Delegate>;

/// Returns memberlist's protocol timings, tuned for a LAN (one data centre or
/// Kubernetes cluster) where round trips are well under a millisecond.
///
/// A process that dies without leaving is removed in a few seconds: some
/// member probes it within about one probe interval (0.5 s; each member
/// probes one peer per interval, round robin), the direct probe times out
/// after 0.3 s, indirect probes through other members fill the rest of the
/// interval, then the member is suspected for `suspicion_mult * max(1,
/// log10(n)) * probe_interval` = 2 s below 10 members, up to 6x that (12 s)
/// while no other member confirms the suspicion. Detection therefore takes
/// roughly 3-4 s in small clusters and stays under ~15 s in large ones,
/// inside the 30 s budget a distributor can tolerate writing to a dead
/// ingester. Gossip every 200 ms to 3 peers spreads a state change to a few
/// hundred members within a second or two; full state sync (push/pull) every
/// 15 s repairs anything gossip missed. A dead member's name can be taken
/// by a new address after 10 s, so a restarted pod with a new IP rejoins
/// under its old name.
fn options() -> Options {
    Options::lan()
        .with_probe_interval(Duration::from_millis(500))
        .with_probe_timeout(Duration::from_millis(300))
        .with_suspicion_mult(4)
        .with_suspicion_max_timeout_mult(6)
        .with_gossip_interval(Duration::from_millis(200))
        .with_gossip_nodes(3)
        .with_push_pull_interval(Duration::from_secs(15))
        .with_gossip_to_the_dead_time(Duration::from_secs(15))
        .with_dead_node_reclaim_time(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(5))
}

/// Starts memberlist on `bind`, advertising `advertise_ip` and the bound port.
pub(crate) async fn start(
    shared: Arc<Shared>,
    bind: SocketAddr,
    advertise_ip: IpAddr,
    secret_key: Option<SecretKey>,
) -> Result<Gossip> {
    let bind_error = |message: String| Error::Bind {
        addr: bind,
        message,
    };
    // Memberlist reports the port it bound for port 0 only as its advertised
    // address; when another IP is advertised, find a free port first.
    let port = if bind.port() == 0 && bind.ip() != advertise_ip {
        free_port(bind.ip()).map_err(|e| bind_error(e.to_string()))?
    } else {
        bind.port()
    };
    let mut transport = NetTransportOptions::new(SmolStr::new(&shared.name));
    transport.add_bind_address(SocketAddr::new(bind.ip(), port));
    if port != 0 {
        transport = transport.with_advertise_address(SocketAddr::new(advertise_ip, port));
    }
    let observer = Observer {
        shared: shared.clone(),
    };
    let delegate = CompositeDelegate::new()
        .with_node_delegate(observer.clone())
        .with_event_delegate(observer);
    let mut options = options();
    if let Some(key) = secret_key {
        // Every message is sealed with AES-GCM and nothing unsealed is taken: a
        // process without the key can neither read nor join the ring.
        options = options
            .with_primary_key(key)
            .with_encryption_algo(EncryptionAlgorithm::default())
            .with_gossip_verify_incoming(true)
            .with_gossip_verify_outgoing(true);
    }
    Memberlist::with_delegate(delegate, transport, options)
        .await
        .map_err(|e| bind_error(e.to_string()))
}

/// Returns a port that is free for both TCP and UDP on `ip`. Another process
/// may take it before memberlist binds it; that fails loudly at start.
fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    for _ in 0..10 {
        let tcp = TcpListener::bind((ip, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no port free for both TCP and UDP after 10 tries",
    ))
}

/// Joins the cluster through `seeds`, retrying with backoff until one answers:
/// in a fresh cluster the seeds may start after this process. A seed without
/// a port is taken to use the same port as this process.
pub(crate) async fn join(gossip: Gossip, seeds: Vec<String>) {
    let own = *gossip.advertise_address();
    let mut backoff = Duration::from_millis(500);
    for attempt in 1u32.. {
        let mut addrs = Vec::new();
        let mut problems = Vec::new();
        for seed in &seeds {
            let target = with_port(seed, own.port());
            match tokio::net::lookup_host(&target).await {
                // A seed list often names every member, this one included.
                Ok(found) => addrs.extend(found.filter(|addr| *addr != own)),
                Err(e) => problems.push(format!("resolving {target}: {e}")),
            }
        }
        if addrs.is_empty() && problems.is_empty() {
            info!(
                ?seeds,
                "the only seed is this member; waiting for others to join it"
            );
            return;
        }
        // One at a time: `join_many`'s future is not `Send`, so it cannot run
        // on a spawned task; every seed is still tried, as memberlist would.
        let mut joined = Vec::new();
        for addr in addrs {
            match gossip.join(MaybeResolvedAddress::resolved(addr)).await {
                Ok(addr) => joined.push(addr),
                Err(e) => problems.push(format!("joining {addr}: {e}")),
            }
        }
        if !joined.is_empty() {
            info!(
                ?joined,
                attempt,
                problems = problems.join("; "),
                "joined the ring"
            );
            rejoin(gossip, seeds, own).await;
            return;
        }
        warn!(attempt, retry_in = ?backoff, problems = problems.join("; "), "no seed answered");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// How often a member that joined through seeds joins them again.
const REJOIN_EVERY: Duration = Duration::from_secs(15);

/// Joins `seeds` again every [`REJOIN_EVERY`], for good (as dskit's
/// `-memberlist.rejoin-interval` does). A seed that restarts after the others
/// declared it dead and stopped gossiping to it (`gossip_to_the_dead_time`)
/// knows no member, and nobody would tell it of one: a seed naming only itself
/// (the first member of a cluster) would stay alone, and as a distributor
/// refuse every push. A join is one push/pull, so this costs one state
/// exchange per seed per interval.
async fn rejoin(gossip: Gossip, seeds: Vec<String>, own: SocketAddr) {
    loop {
        tokio::time::sleep(REJOIN_EVERY).await;
        for seed in &seeds {
            let target = with_port(seed, own.port());
            let Ok(found) = tokio::net::lookup_host(&target).await else {
                continue;
            };
            for addr in found.filter(|addr| *addr != own) {
                if let Err(e) = gossip.join(MaybeResolvedAddress::resolved(addr)).await {
                    debug!(%addr, error = %e, "rejoining a seed failed");
                }
            }
        }
    }
}

/// Returns `seed` with `port` appended when it has none (`-memberlist.join=ingester-0`).
///
/// A `dns+` prefix, as dskit writes a name to resolve to every address it has
/// (`dns+ember-memberlist.ns.svc.cluster.local:7946`, a headless Service), is
/// dropped: every seed is resolved that way here, so Pyroscope's join flags work
/// as they are.
fn with_port(seed: &str, port: u16) -> String {
    let seed = seed.strip_prefix("dns+").unwrap_or(seed);
    if seed.parse::<SocketAddr>().is_ok() {
        return seed.to_owned();
    }
    if let Ok(ip) = seed.parse::<IpAddr>() {
        return SocketAddr::new(ip, port).to_string();
    }
    match seed.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') && p.parse::<u16>().is_ok() => seed.to_owned(),
        _ => format!("{seed}:{port}"),
    }
}

/// Refreshes the local heartbeat every `period` and gossips it.
pub(crate) async fn heartbeat(shared: Arc<Shared>, gossip: Gossip, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; start() just beat.
    loop {
        ticker.tick().await;
        let now = shared.clock.now();
        shared.update_local(|m| m.last_heartbeat = now);
        announce(&gossip, period).await;
    }
}

/// Gossips the local metadata now instead of waiting for the next push/pull.
pub(crate) async fn announce(gossip: &Gossip, timeout: Duration) {
    // Times out only when no peer took the broadcast in time; gossip retries
    // on its own, so this is not worth more than a debug line.
    if let Err(e) = gossip.update_node(timeout).await {
        debug!(error = %e, "broadcasting ring metadata");
    }
}

/// The delegate: provides the local metadata and mirrors memberlist's view of
/// the other members into the member table.
#[derive(Clone)]
pub(crate) struct Observer {
    shared: Arc<Shared>,
}

impl Observer {
    fn upsert(&self, node: &NodeState<SmolStr, SocketAddr>) {
        let name = node.id().as_str();
        // This process's own entry is written only by the process itself;
        // echoes of its metadata from the network may be stale.
        if name == self.shared.name {
            return;
        }
        let meta = match Meta::decode(node.meta()) {
            Ok(meta) => meta,
            Err(e) => {
                warn!(member = name, gossip_addr = %node.address(), error = %e, "ignoring member");
                return;
            }
        };
        let num_tokens = meta.num_tokens as usize;
        let known = self.shared.get(name);
        let tokens = match known {
            Some(ref m) if m.tokens.len() == num_tokens && m.roles.ingester => m.tokens.clone(),
            _ if meta.roles.ingester => tokens(name, num_tokens),
            _ => Vec::new(),
        };
        if known.is_none() {
            info!(member = name, addr = meta.addr, zone = meta.zone, roles = %meta.roles, state = %meta.state, "member joined");
        }
        self.shared.upsert(Member {
            name: name.to_owned(),
            addr: meta.addr,
            zone: meta.zone,
            roles: meta.roles,
            state: meta.state,
            tokens,
            last_heartbeat: meta.heartbeat,
            healthy: true,
        });
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl NodeDelegate for Observer {
    async fn node_meta(&self, limit: usize) -> WireMeta {
        self.shared.count_gossip("sent");
        // Ring::start checked that the metadata encodes and fits.
        let encoded = self.shared.local_meta().encode().unwrap_or_default();
        debug_assert!(encoded.len() <= limit);
        WireMeta::try_from(encoded).unwrap_or_default()
    }
}

impl EventDelegate for Observer {
    type Id = SmolStr;
    type Address = SocketAddr;

    async fn notify_join(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        self.shared.count_gossip("received");
        self.upsert(&node);
    }

    async fn notify_update(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        self.shared.count_gossip("received");
        self.upsert(&node);
    }

    async fn notify_leave(&self, node: Arc<NodeState<SmolStr, SocketAddr>>) {
        self.shared.count_gossip("received");
        let name = node.id().as_str();
        if name != self.shared.name && self.shared.remove(name).is_some() {
            info!(member = name, gossip_addr = %node.address(), "member left or failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_get_the_default_port() {
        assert_eq!(with_port("ingester-0", 7946), "ingester-0:7946");
        assert_eq!(with_port("ingester-0:8000", 7946), "ingester-0:8000");
        assert_eq!(with_port("10.0.0.1:8000", 7946), "10.0.0.1:8000");
        assert_eq!(with_port("[::1]:8000", 7946), "[::1]:8000");
        assert_eq!(with_port("10.0.0.1", 7946), "10.0.0.1:7946");
        assert_eq!(with_port("::1", 7946), "[::1]:7946");
    }

    #[test]
    fn dns_plus_seeds_are_resolved_as_plain_names() {
        assert_eq!(
            with_port("dns+ember-memberlist.ns.svc.cluster.local:7946", 8000),
            "ember-memberlist.ns.svc.cluster.local:7946"
        );
        assert_eq!(
            with_port("dns+ember-memberlist", 7946),
            "ember-memberlist:7946"
        );
        assert_eq!(with_port("dns+10.0.0.1", 7946), "10.0.0.1:7946");
    }
}
