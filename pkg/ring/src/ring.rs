//! [`Ring`]: this process's membership in the cluster and its view of the others.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use ember_time::SharedClock;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use crate::{
    Error, Member, Result, Roles, State,
    gossip::{self, Gossip},
    meta::MAX_ZONE_LEN,
    shared::Shared,
    table::Health,
    tokens::tokens,
};

/// Tokens per ingester unless configured otherwise, as in Pyroscope.
pub const DEFAULT_NUM_TOKENS: usize = 128;

/// The memberlist port unless configured otherwise (`-memberlist.bind-port`).
pub const DEFAULT_BIND_PORT: u16 = 7946;

/// How this process takes part in the ring.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// Unique name of this process; the caller derives a default (hostname-port).
    pub node_name: String,
    /// Where memberlist listens, TCP and UDP (`-memberlist.bind-port`, default
    /// 0.0.0.0:7946). Port 0 picks a free port; see [`Ring::gossip_addr`].
    pub bind_addr: SocketAddr,
    /// The IP other members use to reach this process. `None` takes the bind
    /// address when it names one, else the first non-loopback IPv4 address of
    /// the host, else 127.0.0.1.
    pub advertise_addr: Option<IpAddr>,
    /// Seeds to join, `host:port` (`host` alone uses this process's memberlist
    /// port). Joining is retried in the background until one answers.
    pub join: Vec<String>,
    /// The targets this process runs.
    pub roles: Roles,
    /// The availability zone this process runs in, gossiped with it; empty
    /// for none.
    pub zone: String,
    /// Whether [`Ring::replicas`] puts a key's replicas in distinct zones.
    pub zone_awareness: bool,
    /// The port of this process's HTTP/gRPC server, gossiped as
    /// [`Member::addr`] together with the advertised IP.
    pub http_port: u16,
    /// Tokens this process owns on the ring if it is an ingester.
    pub num_tokens: usize,
    /// The key gossip is sealed with (AES-GCM), base64 of 16, 24 or 32 bytes;
    /// empty gossips in the clear.
    pub secret_key: ember_config::Secret,
    /// How often the heartbeat in the gossiped metadata is refreshed.
    pub heartbeat_period: Duration,
    /// A member whose heartbeat is older is unhealthy and gets no writes.
    pub heartbeat_timeout: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            node_name: String::new(),
            bind_addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_BIND_PORT),
            advertise_addr: None,
            join: Vec::new(),
            roles: Roles::default(),
            zone: String::new(),
            zone_awareness: false,
            http_port: 4040,
            num_tokens: DEFAULT_NUM_TOKENS,
            secret_key: ember_config::Secret::default(),
            heartbeat_period: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(60),
        }
    }
}

/// Returns the gossip key of `secret`, if one is set.
pub(crate) fn parse_key(
    secret: &ember_config::Secret,
) -> Result<Option<memberlist::proto::SecretKey>> {
    if secret.is_empty() {
        return Ok(None);
    }
    secret.expose().trim().parse().map(Some).map_err(|_| {
        Error::Config(
            "memberlist.secret_key must be base64 of 16, 24 or 32 bytes, e.g. the output of `head -c 32 /dev/urandom | base64`"
                .into(),
        )
    })
}

impl RingConfig {
    /// Returns an error naming the first setting that cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::Config(message));
        if self.node_name.is_empty() {
            return invalid("the node name is empty; give every process a unique name".into());
        }
        if self.roles.ingester && self.num_tokens == 0 {
            return invalid(
                "an ingester needs at least 1 token; set num_tokens (default 128)".into(),
            );
        }
        if u32::try_from(self.num_tokens).is_err() {
            return invalid(format!("num_tokens {} is too large", self.num_tokens));
        }
        if self.heartbeat_period.is_zero() {
            return invalid("heartbeat_period must be positive (default 5s)".into());
        }
        if self.heartbeat_timeout <= self.heartbeat_period {
            return invalid(format!(
                "heartbeat_timeout {:?} must exceed heartbeat_period {:?}, or every member is reported unhealthy",
                self.heartbeat_timeout, self.heartbeat_period
            ));
        }
        if self.zone.len() > MAX_ZONE_LEN {
            return invalid(format!(
                "the availability zone {:?} is longer than {MAX_ZONE_LEN} bytes",
                self.zone
            ));
        }
        if self.advertise_addr.is_some_and(|ip| ip.is_unspecified()) {
            return invalid(
                "the advertise address cannot be 0.0.0.0 or ::; give an address other members can reach".into(),
            );
        }
        Ok(())
    }

    /// Returns the IP to advertise: the configured one, the bind IP when it is
    /// specific, or the host's first non-loopback IPv4 address.
    fn advertise_ip(&self) -> IpAddr {
        if let Some(ip) = self.advertise_addr {
            return ip;
        }
        if !self.bind_addr.ip().is_unspecified() {
            return self.bind_addr.ip();
        }
        getifs::local_ipv4_addrs()
            .ok()
            .and_then(|addrs| addrs.iter().map(|a| a.addr()).find(|ip| !ip.is_loopback()))
            .map_or(Ipv4Addr::LOCALHOST.into(), IpAddr::V4)
    }
}

/// The running gossip side of a [`Ring`].
struct Running {
    gossip: Gossip,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Running {
    fn stop_tasks(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// This process's membership in the cluster and the token ring of ingesters.
///
/// Membership travels by gossip (memberlist, SWIM): each member gossips a few
/// bytes of metadata — HTTP address, roles, state, token count, heartbeat —
/// and every process builds the same token ring from them. Dropping a `Ring`
/// without [`Ring::leave`] stops gossip abruptly, as a crash would: the
/// others notice through failure detection.
pub struct Ring {
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("name", &self.shared.name)
            .field("gossip_addr", &self.gossip_addr())
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Starts gossiping and joins the seeds in the background.
    ///
    /// Ingesters start JOINING and must call [`Ring::set_state`] with ACTIVE
    /// once they accept writes; other roles own no tokens and start ACTIVE.
    pub async fn start(config: RingConfig, clock: SharedClock) -> Result<Arc<Ring>> {
        config.validate()?;
        let advertise_ip = config.advertise_ip();
        let local = Member {
            name: config.node_name.clone(),
            addr: SocketAddr::new(advertise_ip, config.http_port).to_string(),
            zone: config.zone.clone(),
            roles: config.roles,
            state: if config.roles.ingester {
                State::Joining
            } else {
                State::Active
            },
            tokens: if config.roles.ingester {
                tokens(&config.node_name, config.num_tokens)
            } else {
                Vec::new()
            },
            last_heartbeat: clock.now(),
            healthy: true,
        };
        let shared = Arc::new(Shared::new(
            local,
            Health::Heartbeat(config.heartbeat_timeout),
            config.zone_awareness,
            clock,
        ));
        // The delegate relies on the local metadata encoding; an address is
        // at most 47 bytes, but check once rather than fail silently later.
        shared.local_meta().encode()?;

        let gossip = gossip::start(
            shared.clone(),
            config.bind_addr,
            advertise_ip,
            parse_key(&config.secret_key)?,
        )
        .await?;
        let runtime = tokio::runtime::Handle::current();
        let mut tasks = vec![
            runtime
                .spawn(gossip::heartbeat(
                    shared.clone(),
                    gossip.clone(),
                    config.heartbeat_period,
                ))
                .abort_handle(),
        ];
        if !config.join.is_empty() {
            let join = gossip::join(gossip.clone(), config.join.clone());
            tasks.push(runtime.spawn(join).abort_handle());
        }
        info!(
            name = config.node_name,
            gossip_addr = %gossip.advertise_address(),
            addr = shared.local().addr,
            zone = config.zone,
            roles = %config.roles,
            seeds = ?config.join,
            "ring member started"
        );
        Ok(Arc::new(Ring {
            shared,
            running: Some(Running {
                gossip,
                runtime,
                tasks: Mutex::new(tasks),
            }),
        }))
    }

    /// Returns a fixed ring of one member without gossip, for `-target=all`:
    /// `/ring` still shows the process and [`Ring::replicas`] returns it.
    ///
    /// An ingester given no tokens gets [`DEFAULT_NUM_TOKENS`] derived from
    /// its name, so that lookups find it. The member counts as healthy, with a
    /// heartbeat of now: the process vouches for itself.
    pub fn single(mut member: Member, clock: SharedClock) -> Arc<Ring> {
        if member.roles.ingester && member.tokens.is_empty() {
            member.tokens = tokens(&member.name, DEFAULT_NUM_TOKENS);
        }
        member.tokens.sort_unstable();
        member.tokens.dedup();
        Arc::new(Ring {
            shared: Arc::new(Shared::new(member, Health::Always, false, clock)),
            running: None,
        })
    }

    /// Returns where memberlist listens for other members (with the port it
    /// picked when configured with port 0); `None` for [`Ring::single`].
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| *r.gossip.advertise_address())
    }

    /// Changes this member's state and gossips it right away.
    pub fn set_state(&self, state: State) {
        self.shared.update_local(|m| m.state = state);
        if let Some(running) = &self.running {
            let gossip = running.gossip.clone();
            let announce = async move { gossip::announce(&gossip, Duration::from_secs(5)).await };
            let task = running.runtime.spawn(announce).abort_handle();
            let mut tasks = running.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Returns the time as this ring's clock tells it.
    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.shared.clock.now()
    }

    /// Returns this member's state.
    pub fn state(&self) -> State {
        self.shared.local().state
    }

    /// Returns this member.
    pub fn local(&self) -> Member {
        self.shared.local()
    }

    /// Returns every known alive member, of all roles, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.shared.members()
    }

    /// Returns the alive members that are ingesters, in any state, sorted by name.
    pub fn ingesters(&self) -> Vec<Member> {
        self.shared.ingesters()
    }

    /// The `rf` distinct ACTIVE healthy ingesters owning `key`: walk the token ring
    /// clockwise from the first token >= key (wrapping), skipping tokens of ingesters
    /// already chosen or not ACTIVE/healthy. Fewer than rf if fewer exist.
    ///
    /// With zone awareness the walk also skips an ingester whose zone already
    /// holds a replica while zones with a writable ingester are left, as dskit
    /// does; with fewer such zones than `rf`, a second walk fills the rest
    /// from the zones there are.
    pub fn replicas(&self, key: u32, rf: usize) -> Vec<Member> {
        self.shared.replicas(key, rf)
    }

    /// Leaves the cluster: gossips LEAVING, then tells the others this member
    /// is gone (so they drop it at once instead of waiting for failure
    /// detection) and stops gossip. Gives up after about `timeout`; problems
    /// are logged, since the process is exiting anyway.
    pub async fn leave(&self, timeout: Duration) {
        self.shared.update_local(|m| m.state = State::Leaving);
        let Some(running) = &self.running else {
            return;
        };
        running.stop_tasks();
        let deadline = Instant::now() + timeout;
        gossip::announce(&running.gossip, timeout / 2).await;
        let left = deadline.saturating_duration_since(Instant::now());
        match running
            .gossip
            .leave(left.max(Duration::from_millis(100)))
            .await
        {
            Ok(_) => info!(name = self.shared.name, "left the ring"),
            Err(e) => {
                warn!(name = self.shared.name, error = %e, "leaving the ring; the others will notice by failure detection")
            }
        }
        if let Err(e) = running.gossip.shutdown().await {
            warn!(error = %e, "stopping memberlist");
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.stop_tasks();
            let gossip = running.gossip.clone();
            // Safe after leave(): shutting down twice is a no-op.
            running.runtime.spawn(async move {
                let _ = gossip.shutdown().await;
            });
        }
    }
}
