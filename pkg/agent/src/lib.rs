//! Ember's agent (`-target=agent`, DESIGN.md §5): finds pprof endpoints, scrapes them
//! and pushes what it gets to distributors, so programs get profiled without an SDK.
//!
//! - [`discovery`] turns `static_configs` and annotated Kubernetes pods (list + watch)
//!   into [`Target`]s: one per endpoint and profile type.
//! - [`scrape`] runs one loop per target: a start offset spread over the interval, a
//!   timeout, a bound on the response size and on scrapes in flight; a target that
//!   hangs or answers garbage only fails itself.
//! - [`push`] batches profiles, retries with backoff, and holds at most
//!   `client.buffer_max_*` while distributors are down, dropping (and counting) the
//!   oldest beyond. It pushes in-process ([`push::InProcess`]) or over Connect or gRPC.
//! - [`Agent::routes`] serves `/targets` (HTML, or JSON with `?format=json` or
//!   `Accept: application/json`); [`metrics`] registers `ember_agent_*`.

mod client;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod push;
pub mod scrape;
mod targets;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::{ClientConfig, PushProtocol, ScrapeConfig};
pub use push::{InProcess, PushError, PushSink};

/// A kind of pprof endpoint the agent scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProfileKind {
    /// `/debug/pprof/profile`, sampled for `seconds`.
    Cpu,
    /// `/debug/pprof/allocs`.
    Memory,
    /// `/debug/pprof/goroutine`.
    Goroutine,
    /// `/debug/pprof/block`.
    Block,
    /// `/debug/pprof/mutex`.
    Mutex,
    /// `/debug/fgprof`, sampled for `seconds`.
    Fgprof,
}

impl ProfileKind {
    /// Every kind, in a stable order.
    pub const ALL: [ProfileKind; 6] = [
        ProfileKind::Cpu,
        ProfileKind::Memory,
        ProfileKind::Goroutine,
        ProfileKind::Block,
        ProfileKind::Mutex,
        ProfileKind::Fgprof,
    ];

    /// Returns the `<type>` of the `profiles.grafana.com/<type>.scrape` annotation.
    pub fn annotation(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::Memory => "memory",
            ProfileKind::Goroutine => "goroutine",
            ProfileKind::Block => "block",
            ProfileKind::Mutex => "mutex",
            ProfileKind::Fgprof => "fgprof",
        }
    }

    /// Returns the profile name pushed as `__name__`; it tells `block` from `mutex`,
    /// whose sample types are the same.
    pub fn profile_name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "process_cpu",
            ProfileKind::Memory => "memory",
            ProfileKind::Goroutine => "goroutines",
            ProfileKind::Block => "block",
            ProfileKind::Mutex => "mutex",
            ProfileKind::Fgprof => "wall",
        }
    }

    /// Returns the path scraped when none is configured.
    pub fn default_path(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "/debug/pprof/profile",
            ProfileKind::Memory => "/debug/pprof/allocs",
            ProfileKind::Goroutine => "/debug/pprof/goroutine",
            ProfileKind::Block => "/debug/pprof/block",
            ProfileKind::Mutex => "/debug/pprof/mutex",
            ProfileKind::Fgprof => "/debug/fgprof",
        }
    }

    /// Returns whether the endpoint samples for a duration (`?seconds=`) rather than
    /// returning cumulative counters.
    pub fn is_sampled(self) -> bool {
        matches!(self, ProfileKind::Cpu | ProfileKind::Fgprof)
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.annotation())
    }
}

/// One endpoint and profile type to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The scrape job that found it.
    pub job: String,
    /// What is scraped.
    pub kind: ProfileKind,
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`.
    pub address: String,
    /// Path, possibly with a query.
    pub path: String,
    /// Whether `seconds=<interval-1>` is added (sampled kinds).
    pub delta: bool,
    /// Time between scrapes.
    pub interval: Duration,
    /// Time one scrape may take (sampling seconds come on top).
    pub timeout: Duration,
    /// Largest response accepted.
    pub body_size_limit: u64,
    /// Labels of every profile from this target.
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// Returns the seconds a sampled scrape asks for: the interval less one second.
    pub fn seconds(&self) -> Option<u64> {
        (self.delta && self.kind.is_sampled())
            .then(|| self.interval.as_secs().saturating_sub(1).max(1))
    }

    /// Returns the URL scraped, with `seconds=` for sampled kinds.
    pub fn url(&self) -> String {
        let mut url = format!("{}://{}{}", self.scheme, self.address, self.path);
        if let Some(seconds) = self.seconds()
            && !self.path.contains("seconds=")
        {
            url.push(if self.path.contains('?') { '&' } else { '?' });
            url.push_str(&format!("seconds={seconds}"));
        }
        url
    }

    /// Returns what identifies the target: a change of any part is a new target.
    pub fn key(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!(
            "{}|{}|{}|{}",
            self.job,
            self.kind,
            self.url(),
            labels.join(",")
        )
    }
}

/// Knobs that are not part of the YAML configuration.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Most scrapes in flight at once; bounds memory to this many responses of at most
    /// `body_size_limit` each. Default 64.
    pub max_concurrent_scrapes: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            max_concurrent_scrapes: 64,
        }
    }
}

/// What `/targets` shows for one target.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    /// When the last scrape started.
    pub last_scrape: Option<chrono::DateTime<chrono::Utc>>,
    /// How long it took.
    pub last_duration: Option<Duration>,
    /// Why it failed; `None` after a success.
    pub last_error: Option<String>,
    /// Bytes of the last successful response.
    pub last_bytes: u64,
}

/// A target as the scrape manager runs it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveTarget {
    pub(crate) target: Target,
    pub(crate) status: Arc<Mutex<TargetStatus>>,
}

/// The running agent: discovery, scrape loops and the pusher.
///
/// Dropping it keeps its tasks running; [`Agent::stop`] ends them.
#[derive(Debug, Clone)]
pub struct Agent {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) active: Mutex<BTreeMap<String, ActiveTarget>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    buffer: Arc<push::Buffer>,
    pusher: Mutex<Option<JoinHandle<()>>>,
}

impl Agent {
    /// Starts discovery, scraping and pushing to `sink`, registering `ember_agent_*`
    /// metrics in `registry`. Call within a Tokio runtime.
    pub fn start(
        scrape_configs: Vec<ScrapeConfig>,
        client: ClientConfig,
        sink: Arc<dyn PushSink>,
        registry: &Registry,
        options: AgentOptions,
    ) -> Result<Agent, prometheus::Error> {
        // kube's TLS takes rustls's process default, which cannot be guessed when
        // several providers are compiled in; an earlier choice is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = metrics::AgentMetrics::register(registry)?;
        let buffer = Arc::new(push::Buffer::new(&client, metrics.clone()));
        let pusher = tokio::spawn(push::run(buffer.clone(), sink, client.clone()));
        let shared = Arc::new(Shared {
            active: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            buffer: buffer.clone(),
            pusher: Mutex::new(Some(pusher)),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let mut tasks = discovery::spawn(&scrape_configs, tx);
        let ctx = Arc::new(scrape::ScrapeContext::new(
            options.max_concurrent_scrapes,
            buffer,
            metrics,
        ));
        tasks.push(tokio::spawn(scrape::manage(rx, shared.clone(), ctx)));
        shared.tasks.lock().expect("not poisoned").extend(tasks);
        info!(jobs = scrape_configs.len(), "agent started");
        Ok(Agent { shared })
    }

    /// Returns the targets being scraped, ordered by key.
    pub fn targets(&self) -> Vec<(Target, TargetStatus)> {
        self.shared
            .active
            .lock()
            .expect("not poisoned")
            .values()
            .map(|a| {
                (
                    a.target.clone(),
                    a.status.lock().expect("not poisoned").clone(),
                )
            })
            .collect()
    }

    /// Returns the `/targets` route.
    pub fn routes(&self) -> axum::Router {
        targets::routes(self.clone())
    }

    /// Stops discovery and scraping, then gives buffered profiles up to `grace` to be
    /// pushed.
    pub async fn stop(&self, grace: Duration) {
        let tasks: Vec<_> = std::mem::take(&mut *self.shared.tasks.lock().expect("not poisoned"));
        for task in tasks {
            task.abort();
        }
        let _ = scrape::stop_all(&self.shared);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.shared.buffer.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(pusher) = self.shared.pusher.lock().expect("not poisoned").take() {
            pusher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: ProfileKind, path: &str) -> Target {
        Target {
            job: "j".into(),
            kind,
            scheme: "http".into(),
            address: "10.0.0.1:6060".into(),
            path: path.into(),
            delta: true,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            body_size_limit: 1,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn cpu_asks_for_interval_less_one_second() {
        assert_eq!(
            target(ProfileKind::Cpu, "/debug/pprof/profile").url(),
            "http://10.0.0.1:6060/debug/pprof/profile?seconds=14"
        );
        assert_eq!(
            target(ProfileKind::Cpu, "/p?debug=0").url(),
            "http://10.0.0.1:6060/p?debug=0&seconds=14"
        );
        assert_eq!(
            target(ProfileKind::Memory, "/debug/pprof/allocs").url(),
            "http://10.0.0.1:6060/debug/pprof/allocs"
        );
        let mut short = target(ProfileKind::Cpu, "/x");
        short.interval = Duration::from_secs(1);
        assert_eq!(short.seconds(), Some(1));
    }
}
