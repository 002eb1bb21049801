//! The agent's configuration: `scrape_configs` and `client` (DESIGN.md §5).
//!
//! The shape is Phlare's and Prometheus's, so existing configurations carry over:
//! `job_name`, `scrape_interval`, `scrape_timeout`, `scheme`, `static_configs`,
//! `kubernetes_sd_configs` (with `kubeconfig_file`, `namespaces` and `selectors`) and
//! `profiling_config.pprof_config`. Unknown keys are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use ember_config::{Documented, Secret, duration};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::ProfileKind;

const MIB: u64 = 1024 * 1024;

/// One scrape job (`scrape_configs[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Names the job; shown on `/targets` and in the `job` label of the agent's metrics.
    pub job_name: String,
    /// Time between two scrapes of a target; default 15s. CPU is profiled for one
    /// second less (`?seconds=<interval-1>`), so consecutive CPU profiles do not overlap.
    #[serde(with = "duration")]
    pub scrape_interval: Duration,
    /// Time a scrape may take; default 10s. A CPU scrape gets its profiling seconds on top.
    #[serde(with = "duration")]
    pub scrape_timeout: Duration,
    /// `http` or `https`; default `http`. Pod annotations may override it per type.
    pub scheme: String,
    /// Largest response accepted from a target, in bytes; default 16 MiB.
    pub body_size_limit: u64,
    /// Fixed targets, for machines outside Kubernetes.
    pub static_configs: Vec<StaticConfig>,
    /// Kubernetes pod discovery, filtered by the pods' annotations.
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    /// Which profile types are scraped, and where.
    pub profiling_config: ProfilingConfig,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            job_name: String::new(),
            scrape_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(10),
            scheme: "http".into(),
            body_size_limit: 16 * MIB,
            static_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            profiling_config: ProfilingConfig::default(),
        }
    }
}

/// Fixed targets of a job (`static_configs[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// Labels added to every profile of these targets, e.g. `service_name`.
    pub labels: BTreeMap<String, String>,
}

/// Kubernetes pod discovery (`kubernetes_sd_configs[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSdConfig {
    /// Only `pod` is supported.
    pub role: String,
    /// Kubeconfig to use; empty for in-cluster configuration, else `KUBECONFIG` or
    /// `~/.kube/config`.
    pub kubeconfig_file: String,
    /// Namespaces to watch; empty for all.
    pub namespaces: NamespaceDiscovery,
    /// Label and field selectors, as in Prometheus.
    pub selectors: Vec<Selector>,
}

impl Default for KubernetesSdConfig {
    fn default() -> Self {
        Self {
            role: "pod".into(),
            kubeconfig_file: String::new(),
            namespaces: NamespaceDiscovery::default(),
            selectors: Vec::new(),
        }
    }
}

/// Namespaces to watch (`namespaces`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceDiscovery {
    /// Namespace names; empty for every namespace.
    pub names: Vec<String>,
}

/// A Kubernetes selector (`selectors[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    /// Only `pod` is supported.
    pub role: String,
    /// Label selector, e.g. `app=web,tier!=db`.
    pub label: String,
    /// Field selector, e.g. `spec.nodeName=node-1`.
    pub field: String,
}

/// Which profile types are scraped (`profiling_config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilingConfig {
    /// Per-type settings; types left out keep their defaults.
    pub pprof_config: PprofConfig,
    /// Put before every path, e.g. `/app`.
    pub path_prefix: String,
}

/// Per-type settings (`pprof_config`); each key is a [`ProfileKind`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PprofConfig {
    /// CPU (`/debug/pprof/profile`); `cpu` is accepted too.
    #[serde(alias = "cpu", skip_serializing_if = "Option::is_none")]
    pub process_cpu: Option<PprofTypeConfig>,
    /// Allocations (`/debug/pprof/allocs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<PprofTypeConfig>,
    /// Goroutines (`/debug/pprof/goroutine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goroutine: Option<PprofTypeConfig>,
    /// Blocking (`/debug/pprof/block`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<PprofTypeConfig>,
    /// Mutex contention (`/debug/pprof/mutex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutex: Option<PprofTypeConfig>,
    /// Wall-clock time with fgprof (`/debug/fgprof`); off unless enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fgprof: Option<PprofTypeConfig>,
}

/// Settings of one profile type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PprofTypeConfig {
    /// Whether the type is scraped; default true except for fgprof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Path on the target; default per type (DESIGN.md §5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For CPU and fgprof: profile for `scrape_interval - 1s` per scrape (default
    /// true). Other types are cumulative and turned into deltas by the distributor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<bool>,
}

/// What a [`ProfileKind`] resolves to for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedType {
    /// The kind.
    pub kind: ProfileKind,
    /// The path, with the job's `path_prefix`.
    pub path: String,
    /// Whether the scrape asks for `seconds=<interval-1>`.
    pub delta: bool,
}

impl PprofConfig {
    fn get(&self, kind: ProfileKind) -> Option<&PprofTypeConfig> {
        match kind {
            ProfileKind::Cpu => self.process_cpu.as_ref(),
            ProfileKind::Memory => self.memory.as_ref(),
            ProfileKind::Goroutine => self.goroutine.as_ref(),
            ProfileKind::Block => self.block.as_ref(),
            ProfileKind::Mutex => self.mutex.as_ref(),
            ProfileKind::Fgprof => self.fgprof.as_ref(),
        }
    }
}

impl ProfilingConfig {
    /// Returns the settings of `kind`, defaults filled in.
    pub fn resolve(&self, kind: ProfileKind) -> ResolvedType {
        let set = self.pprof_config.get(kind);
        let path = set
            .and_then(|c| c.path.clone())
            .unwrap_or_else(|| kind.default_path().to_string());
        ResolvedType {
            kind,
            path: format!("{}{}", self.path_prefix.trim_end_matches('/'), path),
            delta: set.and_then(|c| c.delta).unwrap_or(kind.is_sampled()),
        }
    }

    /// Returns whether `kind` is scraped when a target does not say otherwise.
    pub fn enabled(&self, kind: ProfileKind) -> bool {
        self.pprof_config
            .get(kind)
            .and_then(|c| c.enabled)
            .unwrap_or(kind != ProfileKind::Fgprof)
    }

    /// Returns the enabled types, resolved.
    pub fn enabled_types(&self) -> Vec<ResolvedType> {
        ProfileKind::ALL
            .into_iter()
            .filter(|&k| self.enabled(k))
            .map(|k| self.resolve(k))
            .collect()
    }
}

/// How pushes are sent to a remote distributor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(rename_all = "lowercase")]
pub enum PushProtocol {
    /// Connect unary over HTTP/1.1 (`application/proto`, gzip); works over https.
    #[default]
    Connect,
    /// gRPC over plaintext HTTP/2.
    Grpc,
}

/// Where and how profiles are pushed (`client`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Distributor URL the agent pushes to; empty pushes in-process with -target=all.
    ///
    /// A base URL, e.g. `http://distributor:4040`.
    pub url: String,
    /// Tenant the agent pushes as (X-Scope-OrgID); empty for none.
    ///
    /// Without one, pushes are tenant `anonymous`.
    pub tenant_id: String,
    /// How the agent pushes: connect or grpc (plaintext).
    pub protocol: PushProtocol,
    /// Time one push may take.
    ///
    /// Default 10s.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Time the agent waits to batch profiles into one push.
    ///
    /// Default 1s.
    #[serde(with = "duration")]
    pub batch_wait: Duration,
    /// Most profiles in one push.
    ///
    /// Default 64.
    pub batch_max_profiles: usize,
    /// Most profiles the agent holds while distributors are down; the oldest are dropped.
    ///
    /// Dropped profiles are counted. Default 1000.
    pub buffer_max_profiles: usize,
    /// Most bytes of profiles the agent holds.
    ///
    /// While distributors are unreachable; default 128 MiB.
    pub buffer_max_bytes: u64,
    /// First wait before retrying a failed push.
    ///
    /// Doubles up to `max_backoff`. Default 500ms.
    #[serde(with = "duration")]
    pub min_backoff: Duration,
    /// Longest wait between push retries.
    ///
    /// Default 30s.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Bearer token sent with every push; empty: none.
    ///
    /// For a distributor with `-auth.tokens-file`.
    pub bearer_token: Secret,
    /// Basic auth credentials sent with every push.
    pub basic_auth: BasicAuth,
    /// CA bundle (PEM) that verifies an https distributor; empty: the system's roots.
    pub tls_ca_path: PathBuf,
}

/// Basic auth credentials (`client.basic_auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    /// Basic auth username sent with every push; empty: none.
    pub username: String,
    /// Basic auth password.
    pub password: Secret,
}

impl ClientConfig {
    /// Returns the `Authorization` header value of a push, if credentials are set.
    pub fn authorization(&self) -> Option<String> {
        use base64::Engine as _;
        if !self.bearer_token.is_empty() {
            return Some(format!("Bearer {}", self.bearer_token.expose()));
        }
        (!self.basic_auth.username.is_empty()).then(|| {
            let pair = format!(
                "{}:{}",
                self.basic_auth.username,
                self.basic_auth.password.expose()
            );
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            tenant_id: String::new(),
            protocol: PushProtocol::Connect,
            timeout: Duration::from_secs(10),
            batch_wait: Duration::from_secs(1),
            batch_max_profiles: 64,
            buffer_max_profiles: 1000,
            buffer_max_bytes: 128 * MIB,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            bearer_token: Secret::default(),
            basic_auth: BasicAuth::default(),
            tls_ca_path: PathBuf::new(),
        }
    }
}

/// Checks what serde cannot: names, durations, schemes, bounds. The error
/// names the key.
pub fn validate(
    scrape_configs: &[ScrapeConfig],
    client: &ClientConfig,
) -> ember_config::Result<()> {
    let err = |m: String| Err(ember_config::Error::invalid(m));
    let mut names = std::collections::HashSet::new();
    for (i, job) in scrape_configs.iter().enumerate() {
        let at = format!("scrape_configs[{i}]");
        if job.job_name.trim().is_empty() {
            return err(format!("{at}.job_name must not be empty"));
        }
        if !names.insert(job.job_name.as_str()) {
            return err(format!(
                "{at}.job_name {:?} is used by another job",
                job.job_name
            ));
        }
        if job.scrape_interval < Duration::from_secs(1) {
            return err(format!("{at}.scrape_interval must be at least 1s"));
        }
        if job.scrape_timeout.is_zero() {
            return err(format!("{at}.scrape_timeout must be greater than 0s"));
        }
        if !matches!(job.scheme.as_str(), "http" | "https") {
            return err(format!(
                "{at}.scheme must be http or https, got {:?}",
                job.scheme
            ));
        }
        if job.body_size_limit == 0 {
            return err(format!("{at}.body_size_limit must be greater than 0"));
        }
        for (j, s) in job.static_configs.iter().enumerate() {
            if let Some(t) = s
                .targets
                .iter()
                .find(|t| t.trim().is_empty() || t.contains('/'))
            {
                return err(format!(
                    "{at}.static_configs[{j}].targets has {t:?}: write host:port without a scheme or path"
                ));
            }
        }
        for (j, k) in job.kubernetes_sd_configs.iter().enumerate() {
            if k.role != "pod" {
                return err(format!(
                    "{at}.kubernetes_sd_configs[{j}].role must be pod, got {:?}",
                    k.role
                ));
            }
        }
    }
    let c = client;
    if !(c.url.is_empty() || c.url.starts_with("http://") || c.url.starts_with("https://")) {
        return err(format!(
            "client.url must start with http:// or https://, got {:?}",
            c.url
        ));
    }
    if c.protocol == PushProtocol::Grpc && c.url.starts_with("https://") {
        return err(
            "client.protocol grpc supports plaintext http:// only; use connect for https".into(),
        );
    }
    if c.timeout.is_zero() {
        return err("client.timeout must be greater than 0s".into());
    }
    if c.batch_max_profiles == 0 {
        return err("client.batch_max_profiles must be at least 1".into());
    }
    if c.buffer_max_profiles == 0 || c.buffer_max_bytes == 0 {
        return err(
            "client.buffer_max_profiles and client.buffer_max_bytes must be greater than 0".into(),
        );
    }
    if c.protocol == PushProtocol::Grpc && !c.tls_ca_path.as_os_str().is_empty() {
        return err("client.tls_ca_path needs client.protocol connect (https)".into());
    }
    if !c.bearer_token.is_empty() && !c.basic_auth.username.is_empty() {
        return err("client.bearer_token and client.basic_auth are exclusive: set one".into());
    }
    if c.basic_auth.username.is_empty() != c.basic_auth.password.is_empty() {
        return err("client.basic_auth needs both username and password, or neither".into());
    }
    if c.min_backoff.is_zero() || c.max_backoff < c.min_backoff {
        return err(
            "client.min_backoff must be greater than 0s and at most client.max_backoff".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let yaml = r#"
- job_name: default
  scrape_interval: 15s
  static_configs:
    - targets: ["127.0.0.1:6060"]
      labels: {service_name: my-go-app}
  kubernetes_sd_configs:
    - role: pod
      namespaces: {names: [default]}
  profiling_config:
    pprof_config:
      memory: {enabled: true, path: /debug/pprof/allocs}
      fgprof: {enabled: true}
      process_cpu: {delta: true}
"#;
        let jobs: Vec<ScrapeConfig> = serde_yaml::from_str(yaml).unwrap();
        validate(&jobs, &ClientConfig::default()).unwrap();
        let p = &jobs[0].profiling_config;
        assert_eq!(jobs[0].scrape_timeout, Duration::from_secs(10));
        assert_eq!(p.enabled_types().len(), 6);
        assert_eq!(p.resolve(ProfileKind::Memory).path, "/debug/pprof/allocs");
        assert!(p.resolve(ProfileKind::Cpu).delta);
        assert!(!p.resolve(ProfileKind::Mutex).delta);
        assert!(
            serde_yaml::from_str::<Vec<ScrapeConfig>>("- job_name: x\n  intervall: 1s\n").is_err()
        );
    }

    #[test]
    fn defaults_skip_fgprof() {
        let p = ProfilingConfig::default();
        let kinds: Vec<_> = p.enabled_types().into_iter().map(|t| t.kind).collect();
        assert_eq!(kinds.len(), 5);
        assert!(!kinds.contains(&ProfileKind::Fgprof));
    }

    #[test]
    fn validation_names_keys() {
        let job = ScrapeConfig {
            job_name: "a".into(),
            ..Default::default()
        };
        let message = |e: ember_config::Error| match e {
            ember_config::Error::Invalid(m) => m,
            other => panic!("{other}"),
        };
        let bad = |j: ScrapeConfig| message(validate(&[j], &ClientConfig::default()).unwrap_err());
        assert_eq!(
            bad(ScrapeConfig {
                job_name: " ".into(),
                ..job.clone()
            }),
            "scrape_configs[0].job_name must not be empty"
        );
        assert!(
            bad(ScrapeConfig {
                scheme: "ftp".into(),
                ..job.clone()
            })
            .contains("scheme")
        );
        let client = ClientConfig {
            url: "distributor:4040".into(),
            ..Default::default()
        };
        assert!(message(validate(&[job], &client).unwrap_err()).contains("client.url"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            duration::parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(duration::format(Duration::from_secs(90)), "1m30s");
        assert!(duration::parse("15").is_err());
    }
}
