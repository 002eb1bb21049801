//! Ember's configuration: what it holds and how it is loaded (DESIGN.md §1).
//!
//! Operators come from Grafana Pyroscope and Phlare and copy flags from their docs, so
//! the shape follows theirs: one YAML file whose keys mirror Go-style flags
//! (`-server.http-listen-port` is `server: {http_listen_port: ..}`) and an `EMBER_*`
//! environment variable per key (`EMBER_SERVER_HTTP_LISTEN_PORT`).
//!
//! # Loading order
//!
//! [`load`] applies, each source overriding the ones before it:
//!
//! 1. built-in defaults ([`Config::default`]): `ember` alone runs every target on
//!    `./data`;
//! 2. the YAML file named by `-config.file` (or `EMBER_CONFIG_FILE`);
//! 3. `EMBER_*` environment variables;
//! 4. command-line flags, in the order given.
//!
//! The sources are merged as one YAML value tree and deserialized once, so a value means
//! the same whatever its source. The set of keys is the tree of [`Config::default`]:
//! a key, flag or variable outside it is an error that names it, never silently ignored.
//! Flags and variables are typed by the default they override: booleans accept Go's
//! spellings (`true`, `1`, `f`...), lists are comma separated, strings are taken as
//! written (so a bucket named `123` stays a string). A key left empty in the file
//! (`join:` with every entry commented out) keeps its default.
//!
//! Per-tenant `overrides` are file-only: tenant names may hold the `.` and `-` that
//! flag and variable names use as separators. So are the agent's `scrape_configs`, a
//! list of jobs.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use ember_agent::{ClientConfig, ScrapeConfig};
use ember_objstore::StorageConfig;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::target::Target;

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "EMBER_";

/// Environment variable naming the configuration file when `-config.file` is absent.
pub const CONFIG_FILE_ENV: &str = "EMBER_CONFIG_FILE";

/// The whole configuration of an Ember process.
///
/// Build it with [`load`] (defaults, file, environment, flags) or [`Config::from_yaml`];
/// both call [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The targets this process runs (`-target`); YAML takes a list or a comma string.
    #[serde(deserialize_with = "deserialize_targets")]
    pub target: Vec<Target>,
    /// The HTTP and gRPC listener (`server`).
    pub server: ServerConfig,
    /// Gossip membership for the ring (`memberlist`).
    pub memberlist: MemberlistConfig,
    /// The distributor (`distributor`).
    pub distributor: DistributorConfig,
    /// Tenancy (`auth`).
    pub auth: AuthConfig,
    /// Object storage for blocks (`storage`).
    pub storage: StorageConfig,
    /// The ingester (`ingester`).
    pub ingester: IngesterConfig,
    /// The compactor (`compactor`).
    pub compactor: CompactorConfig,
    /// Default per-tenant limits (`limits`).
    pub limits: Limits,
    /// Per-tenant changes to `limits`, keyed by tenant ID (`overrides`); file only.
    pub overrides: BTreeMap<String, LimitsOverride>,
    /// The agent's scrape jobs (`scrape_configs`, DESIGN.md §5); file only.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Where the agent pushes (`client`).
    pub client: ClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: vec![Target::All],
            server: ServerConfig::default(),
            memberlist: MemberlistConfig::default(),
            distributor: DistributorConfig::default(),
            auth: AuthConfig::default(),
            storage: StorageConfig::default(),
            ingester: IngesterConfig::default(),
            compactor: CompactorConfig::default(),
            limits: Limits::default(),
            overrides: BTreeMap::new(),
            scrape_configs: Vec::new(),
            client: ClientConfig::default(),
        }
    }
}

/// The HTTP and gRPC listener, shared by every target (`server`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; default `0.0.0.0`, every interface.
    pub http_listen_address: String,
    /// Port for HTTP and gRPC; default 4040, where the Pyroscope SDKs push. 0 picks a
    /// free port.
    pub http_listen_port: u16,
    /// How long in-flight requests may run after a shutdown signal; default 30s.
    #[serde(with = "duration")]
    pub graceful_shutdown_timeout: Duration,
    /// Largest request body accepted before decompression; default 16 MiB.
    pub max_request_body_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: "0.0.0.0".to_string(),
            http_listen_port: 4040,
            graceful_shutdown_timeout: Duration::from_secs(30),
            max_request_body_bytes: 16 * MIB,
        }
    }
}

/// Gossip membership (`memberlist`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemberlistConfig {
    /// Address to bind gossip to; default `0.0.0.0`.
    pub bind_addr: String,
    /// Port for gossip (TCP and UDP); default 7946. 0 picks a free port.
    pub bind_port: u16,
    /// Peers to join, `host:port`; empty means a cluster of one. Joining is
    /// retried until a peer answers, so processes may start in any order.
    pub join: Vec<String>,
    /// The IP address other members reach this process at (gossip and its
    /// HTTP/gRPC port); empty: the bind address when it is specific, else
    /// the host's first non-loopback IPv4 address.
    pub advertise_addr: String,
    /// This process's unique name in the ring; empty: `<hostname>-<http port>`.
    /// An ingester keeps its name across restarts, and with it its tokens.
    pub node_name: String,
}

impl Default for MemberlistConfig {
    fn default() -> Self {
        Self {
            bind_addr: "0.0.0.0".to_string(),
            bind_port: 7946,
            join: Vec::new(),
            advertise_addr: String::new(),
            node_name: String::new(),
        }
    }
}

/// The distributor (`distributor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// How many ingesters receive each series; a write is acknowledged once a
    /// majority has it. 0 (the default): 1 with `-target=all`, 3 in a cluster.
    pub replication_factor: usize,
}

/// Tenancy (`auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Reads the tenant from `X-Scope-OrgID`; when false every request is `anonymous`.
    pub multitenancy_enabled: bool,
}

/// The ingester (`ingester`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// Longest time range of a head block before it is cut and flushed; default 1h.
    #[serde(with = "duration")]
    pub max_block_duration: Duration,
    /// Largest in-memory size of a head block before it is cut; default 512 MiB.
    pub max_block_bytes: u64,
    /// How often heads are checked against the two limits above and cut heads
    /// (including those whose upload failed) are uploaded; default 10s. Tests
    /// shorten it to see blocks within seconds.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Directory of the write-ahead log, which every accepted profile is written
    /// (and, with `wal_fsync`, fsynced) to before the push is acknowledged and
    /// which is replayed on start. Empty (the default) means
    /// `<storage.filesystem.dir>/wal`, whatever the storage backend.
    /// It must survive a restart: it is the only local state an ingester needs.
    pub wal_dir: PathBuf,
    /// Whether the write-ahead log is fsynced before a push is acknowledged;
    /// default true. Off, an acknowledged profile survives a crash of the
    /// process (it is in the kernel's page cache) but may be lost if the
    /// machine crashes or loses power; for benchmarks and disposable setups.
    pub wal_fsync: bool,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            max_block_duration: Duration::from_secs(3600),
            max_block_bytes: 512 * MIB,
            flush_interval: Duration::from_secs(10),
            wal_dir: PathBuf::new(),
            wal_fsync: true,
        }
    }
}

/// The compactor (`compactor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// Time ranges of compacted blocks, each a multiple of the one before:
    /// level-1 blocks merge into blocks of the first, those into the second...
    /// Default 1h, 4h, 24h.
    #[serde(with = "duration::list")]
    pub block_ranges: Vec<Duration>,
    /// How often the compactor looks for work; default 15m.
    #[serde(with = "duration")]
    pub compaction_interval: Duration,
    /// How long after a range ends before its blocks are merged, so that
    /// every ingester has flushed it; default 1h.
    #[serde(with = "duration")]
    pub settle_delay: Duration,
    /// How long merged or expired blocks stay after being marked for
    /// deletion, so that queries reading them finish; default 15m.
    #[serde(with = "duration")]
    pub deletion_delay: Duration,
}

impl From<&Config> for ember_compactor::CompactorConfig {
    fn from(config: &Config) -> Self {
        let c = &config.compactor;
        Self {
            id: format!("compactor@{}", hostname()),
            block_ranges: c.block_ranges.clone(),
            settle: c.settle_delay,
            deletion_delay: c.deletion_delay,
            interval: c.compaction_interval,
        }
    }
}

/// Returns this machine's name (`$HOSTNAME`), or `ember`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ember".into())
}

impl Default for CompactorConfig {
    fn default() -> Self {
        let defaults = ember_compactor::CompactorConfig::default();
        Self {
            block_ranges: defaults.block_ranges,
            compaction_interval: defaults.interval,
            settle_delay: defaults.settle,
            deletion_delay: defaults.deletion_delay,
        }
    }
}

/// Per-tenant ingestion limits (`limits`, and per tenant through `overrides`).
///
/// A limit set to 0 is disabled, as in Pyroscope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest profile as received; default 4 MiB.
    pub max_profile_size_bytes: u64,
    /// Largest profile after decompression, so a zip bomb is refused; default 64 MiB.
    pub max_decompressed_profile_size_bytes: u64,
    /// Most samples in one profile; default 16000.
    pub max_samples_per_profile: usize,
    /// Deepest stack trace; default 1000.
    pub max_stack_depth: usize,
    /// Most label names on one series; default 30.
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes; default 1024.
    pub max_label_name_length: usize,
    /// Longest label value in bytes; default 2048.
    pub max_label_value_length: usize,
    /// Sustained ingestion rate in MB/s; default 4.
    pub ingestion_rate_mb: f64,
    /// Ingestion burst in MB; default 2.
    pub ingestion_burst_size_mb: f64,
    /// Most series with data in the head block; default 5000.
    pub max_active_series: usize,
    /// How long the compactor keeps a tenant's blocks; default 0s, forever.
    #[serde(with = "duration")]
    pub compactor_blocks_retention_period: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_profile_size_bytes: 4 * MIB,
            max_decompressed_profile_size_bytes: 64 * MIB,
            max_samples_per_profile: 16_000,
            max_stack_depth: 1_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1_024,
            max_label_value_length: 2_048,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 2.0,
            max_active_series: 5_000,
            compactor_blocks_retention_period: Duration::ZERO,
        }
    }
}

/// Changes to [`Limits`] for one tenant: each field left out keeps the value of `limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsOverride {
    /// See [`Limits::max_profile_size_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_profile_size_bytes: Option<u64>,
    /// See [`Limits::max_decompressed_profile_size_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_decompressed_profile_size_bytes: Option<u64>,
    /// See [`Limits::max_samples_per_profile`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_samples_per_profile: Option<usize>,
    /// See [`Limits::max_stack_depth`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stack_depth: Option<usize>,
    /// See [`Limits::max_label_names_per_series`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_names_per_series: Option<usize>,
    /// See [`Limits::max_label_name_length`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_name_length: Option<usize>,
    /// See [`Limits::max_label_value_length`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_value_length: Option<usize>,
    /// See [`Limits::ingestion_rate_mb`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingestion_rate_mb: Option<f64>,
    /// See [`Limits::ingestion_burst_size_mb`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingestion_burst_size_mb: Option<f64>,
    /// See [`Limits::max_active_series`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_series: Option<usize>,
    /// See [`Limits::compactor_blocks_retention_period`].
    #[serde(skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub compactor_blocks_retention_period: Option<Duration>,
}

impl LimitsOverride {
    /// Returns `base` with every field this override sets replaced.
    pub fn apply(&self, base: &Limits) -> Limits {
        let mut limits = base.clone();
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field {
                    limits.$field = value;
                })*
            };
        }
        set!(
            max_profile_size_bytes,
            max_decompressed_profile_size_bytes,
            max_samples_per_profile,
            max_stack_depth,
            max_label_names_per_series,
            max_label_name_length,
            max_label_value_length,
            ingestion_rate_mb,
            ingestion_burst_size_mb,
            max_active_series,
            compactor_blocks_retention_period,
        );
        limits
    }
}

const MIB: u64 = 1024 * 1024;

impl Config {
    /// Returns the write-ahead log directory: `ingester.wal_dir`, or
    /// `<storage.filesystem.dir>/wal` when that is empty.
    pub fn wal_dir(&self) -> PathBuf {
        if self.ingester.wal_dir.as_os_str().is_empty() {
            self.storage.filesystem.dir.join("wal")
        } else {
            self.ingester.wal_dir.clone()
        }
    }

    /// Returns whether the targets run as separate processes of a cluster
    /// (anything but `-target=all`), which gossip to form the ring.
    pub fn clustered(&self) -> bool {
        !self.target.contains(&Target::All)
    }

    /// Returns the replication factor: `distributor.replication_factor`, or
    /// when 0, 3 in a cluster and 1 for `-target=all`.
    pub fn replication_factor(&self) -> usize {
        match self.distributor.replication_factor {
            0 if self.clustered() => 3,
            0 => 1,
            n => n,
        }
    }

    /// Returns the largest `ingester.v1` request an ingester accepts: the
    /// largest decompressed profile any tenant may push, plus 1 MiB for its
    /// series; unbounded when a tenant's limit is disabled (0).
    pub fn max_ingester_request_bytes(&self) -> usize {
        let largest = std::iter::once(self.limits.clone())
            .chain(self.overrides.keys().map(|t| self.limits_for(t)))
            .map(|l| l.max_decompressed_profile_size_bytes)
            .try_fold(0u64, |max, l| (l != 0).then_some(max.max(l)));
        largest.map_or(usize::MAX, |l| (l + MIB) as usize)
    }

    /// Returns the limits of `tenant`: `limits` with the tenant's `overrides` applied.
    pub fn limits_for(&self, tenant: &str) -> Limits {
        match self.overrides.get(tenant) {
            Some(change) => change.apply(&self.limits),
            None => self.limits.clone(),
        }
    }

    /// Returns the defaults overlaid with a YAML document, validated: what [`load`] gives
    /// for a file with this content and no environment or flags.
    pub fn from_yaml(yaml: &str) -> Result<Config, ConfigError> {
        let keys = Keys::new();
        let mut tree = keys.defaults.clone();
        merge_file(&mut tree, &keys.schema, yaml, "configuration")?;
        let config = deserialize(tree, &HashMap::new(), Some("configuration"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules serde cannot express; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.target.is_empty() {
            return invalid("target must name at least one target".into());
        }
        if self.server.http_listen_address.trim().is_empty() {
            return invalid(
                "server.http_listen_address must not be empty, use 0.0.0.0 for every interface"
                    .into(),
            );
        }
        if self.server.max_request_body_bytes == 0 {
            return invalid("server.max_request_body_bytes must be greater than 0".into());
        }
        if self
            .memberlist
            .join
            .iter()
            .any(|peer| peer.trim().is_empty())
        {
            return invalid("memberlist.join must not contain empty addresses".into());
        }
        if !self.memberlist.advertise_addr.is_empty()
            && self
                .memberlist
                .advertise_addr
                .parse::<std::net::IpAddr>()
                .is_err()
        {
            return invalid(format!(
                "memberlist.advertise_addr {:?} is not an IP address",
                self.memberlist.advertise_addr
            ));
        }
        if self
            .memberlist
            .bind_addr
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            return invalid(format!(
                "memberlist.bind_addr {:?} is not an IP address, use 0.0.0.0 for every interface",
                self.memberlist.bind_addr
            ));
        }
        if self.ingester.max_block_duration.is_zero() {
            return invalid("ingester.max_block_duration must be greater than 0s".into());
        }
        ember_compactor::CompactorConfig::from(self)
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("compactor: {e}")))?;
        if self.ingester.max_block_bytes == 0 {
            return invalid("ingester.max_block_bytes must be greater than 0".into());
        }
        if self.ingester.flush_interval.is_zero() {
            return invalid("ingester.flush_interval must be greater than 0s".into());
        }
        validate_limits(&self.limits, "limits")?;
        for tenant in self.overrides.keys() {
            if tenant.trim().is_empty() {
                return invalid("overrides must not have an empty tenant ID".into());
            }
            validate_limits(&self.limits_for(tenant), &format!("overrides.{tenant}"))?;
        }
        self.storage.validate()?;
        ember_agent::config::validate(&self.scrape_configs, &self.client)
            .map_err(|e| ConfigError::Invalid(e.0))?;
        Ok(())
    }
}

fn validate_limits(limits: &Limits, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in [
        ("ingestion_rate_mb", limits.ingestion_rate_mb),
        ("ingestion_burst_size_mb", limits.ingestion_burst_size_mb),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(ConfigError::Invalid(format!(
                "{prefix}.{key} must be a non-negative number, got {value}"
            )));
        }
    }
    Ok(())
}

/// Accepts `target` as a comma string (`distributor,ingester`) or a list, whose items
/// may themselves be comma strings.
fn deserialize_targets<'de, D>(deserializer: D) -> Result<Vec<Target>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct TargetsVisitor;

    impl<'de> serde::de::Visitor<'de> for TargetsVisitor {
        type Value = Vec<Target>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a target name, a comma-separated list of them, or a list")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            split_list(value)
                .map(|name| name.parse().map_err(E::custom))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut targets = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                targets.extend(TargetsVisitor.visit_str::<A::Error>(&item)?);
            }
            Ok(targets)
        }
    }

    deserializer.deserialize_any(TargetsVisitor)
}

/// Splits a comma list, trimming items and dropping empty ones.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Go- and Prometheus-style durations: `500ms`, `15s`, `1h30m`, `1.5h`.
///
/// Units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d` and `w`; a bare `0` is
/// zero. [`format`] writes the shortest exact form with units up to hours, which
/// [`parse`] reads back. Use the module with `#[serde(with = "duration")]`.
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Error for text that is not a duration.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("invalid duration {input:?}: {reason}")]
    pub struct ParseDurationError {
        /// The text that was given.
        pub input: String,
        /// What is wrong with it.
        pub reason: String,
    }

    const UNITS: &str = "ns, us, ms, s, m, h, d, w";

    /// Parses a duration such as `15s`, `1h30m` or `1.5h`.
    pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
        let error = |reason: String| ParseDurationError {
            input: input.to_string(),
            reason,
        };
        let text = input.trim();
        if text == "0" {
            return Ok(Duration::ZERO);
        }
        if text.is_empty() {
            return Err(error(format!(
                "expected a number followed by a unit ({UNITS}), e.g. 15s"
            )));
        }
        let is_number = |c: char| c.is_ascii_digit() || c == '.';
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after.find(is_number).unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            rest = after;

            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
                return Err(error(format!(
                    "expected a number followed by a unit ({UNITS}), e.g. 15s"
                )));
            }
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                "d" => 86_400 * 1_000_000_000,
                "w" => 7 * 86_400 * 1_000_000_000,
                "" => return Err(error(format!("missing unit ({UNITS}) after {number}"))),
                other => return Err(error(format!("unknown unit {other:?}, use {UNITS}"))),
            };
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole
                    .parse()
                    .map_err(|_| error("number too large".into()))?
            };
            // Exact decimal arithmetic, as Go does; digits past nanoseconds are dropped.
            let fraction = &fraction[..fraction.len().min(18)];
            let fraction_nanos = if fraction.is_empty() {
                0
            } else {
                let digits: u128 = fraction.parse().map_err(|_| error("bad fraction".into()))?;
                digits * unit_nanos / 10u128.pow(fraction.len() as u32)
            };
            total = whole
                .checked_mul(unit_nanos)
                .and_then(|nanos| nanos.checked_add(fraction_nanos))
                .and_then(|nanos| nanos.checked_add(total))
                .ok_or_else(|| error("duration too long".into()))?;
        }
        let secs =
            u64::try_from(total / 1_000_000_000).map_err(|_| error("duration too long".into()))?;
        Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
    }

    /// Formats a duration as [`parse`] reads it: `0s`, `500ms`, `30s`, `1h30m`.
    pub fn format(duration: Duration) -> String {
        if duration.is_zero() {
            return "0s".to_string();
        }
        let mut nanos = duration.as_nanos();
        let mut out = String::new();
        for (unit, size) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ] {
            let count = nanos / size;
            if count > 0 {
                out.push_str(&count.to_string());
                out.push_str(unit);
                nanos %= size;
            }
        }
        out
    }

    /// Serializes a duration with [`format`].
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    /// Deserializes a duration with [`parse`]; a bare number other than 0 is refused,
    /// because `30` could mean seconds or nanoseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct DurationVisitor;

        impl serde::de::Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 15s, 1h30m or 500ms")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Duration, E> {
                parse(value).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Duration, E> {
                parse(&value.to_string()).map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Duration, E> {
                parse(&value.to_string()).map_err(E::custom)
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Duration, E> {
                parse(&value.to_string()).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }

    /// `Option<Duration>` with [`format`] and [`parse`], for overrides.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);

        pub fn serialize<S: Serializer>(
            duration: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match duration {
                Some(d) => super::serialize(d, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
        }
    }

    /// `Vec<Duration>` with [`format`] and [`parse`].
    pub mod list {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);

        pub fn serialize<S: Serializer>(
            durations: &[Duration],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(durations.len()))?;
            for d in durations {
                seq.serialize_element(&super::format(*d))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<Duration>, D::Error> {
            Ok(Vec::<Wrapped>::deserialize(deserializer)?
                .into_iter()
                .map(|w| w.0)
                .collect())
        }
    }
}

/// What [`load`] asks the binary to do.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once per process; boxing would only complicate callers"
)]
pub enum Loaded {
    /// Runs with this configuration.
    Run(Config),
    /// Prints the targets (`-modules`, see [`crate::target::modules_help`]) and exits.
    PrintModules,
    /// Prints this help text (`-help`, `-h`) and exits.
    PrintHelp(String),
    /// Prints the version (`-version`) and exits.
    PrintVersion,
}

/// Returns whether `name` has the shape of a variable Kubernetes injects for a
/// Service (`EMBER_PORT`, `EMBER_QUERIER_SERVICE_HOST`, `EMBER_PORT_4040_TCP_ADDR`):
/// a Service named `ember` must not stop its own pods from starting.
fn is_service_link(name: &str, value: &str) -> bool {
    let url = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    (name.ends_with("_PORT") && url)
        || name
            .split_once("_PORT_")
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
        || name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
}

/// Errors from loading configuration; each names the key, flag, variable or file at
/// fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag that matches no configuration key.
    #[error("unknown flag -{0}")]
    UnknownFlag(String),
    /// A flag that needs a value came last.
    #[error("flag -{0} needs a value")]
    MissingFlagValue(String),
    /// An argument that looks like a flag but cannot be one (`---x`, `-=x`).
    #[error("bad flag syntax {0:?}")]
    BadFlagSyntax(String),
    /// An argument that is not a flag.
    #[error("unexpected argument {0:?}: ember takes only flags, e.g. -target=all")]
    UnexpectedArgument(String),
    /// An `EMBER_*` environment variable that matches no configuration key.
    #[error("unknown environment variable {0}")]
    UnknownEnv(String),
    /// A key in the configuration file that the configuration does not have.
    #[error("unknown configuration key {key:?} in {file}")]
    UnknownKey {
        /// Dotted path of the key, e.g. `server.http_lisen_port`.
        key: String,
        /// The file it was found in.
        file: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read configuration file {file}: {error}")]
    ReadFile {
        /// The file.
        file: String,
        /// Why reading failed.
        #[source]
        error: std::io::Error,
    },
    /// The configuration file is not valid YAML.
    #[error("cannot parse configuration file {file}: {error}")]
    ParseFile {
        /// The file.
        file: String,
        /// The YAML parser's error, with line and column.
        #[source]
        error: serde_yaml::Error,
    },
    /// The configuration file (or one of its sections) is not a mapping of keys.
    #[error("{key} in {file} must be a mapping of keys to values")]
    NotAMapping {
        /// The key whose value should be a mapping; `the top level` for the document.
        key: String,
        /// The file.
        file: String,
    },
    /// A flag or variable whose value does not fit the key's type.
    #[error("invalid value {value:?} for {set_by}: {expected}")]
    BadOverride {
        /// `flag -name` or `environment variable NAME`.
        set_by: String,
        /// The value given.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A value that does not deserialize into its key's type.
    #[error("invalid value for {key} (set by {set_by}): {message}")]
    InvalidValue {
        /// Dotted path of the key.
        key: String,
        /// Where the value came from: the file, `flag -name` or `environment variable NAME`.
        set_by: String,
        /// What is wrong with it.
        message: String,
    },
    /// A rule of [`Config::validate`] is broken.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The `storage` section is incomplete for its backend.
    #[error("invalid configuration: {0}")]
    Storage(#[from] ember_objstore::Error),
}

/// Loads the configuration from defaults, the file, `env` and `args`, in that order of
/// precedence (see the module docs).
///
/// `args` excludes the program name; `env` is typically `std::env::vars()`, of which
/// only `EMBER_*` variables are read. Flags are Go-style (`-name=value`, `-name value`,
/// `--name=value`, `--name value`; a boolean flag alone means true). `-config.file`,
/// `-modules`, `-help`/`-h` and `-version` are not configuration keys.
pub fn load(args: &[String], env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let keys = Keys::new();
    let flags = match parse_args(args, &keys)? {
        Some(flags) => flags,
        None => return Ok(Loaded::PrintHelp(help_text_for(&keys))),
    };
    if flags.version {
        return Ok(Loaded::PrintVersion);
    }
    if flags.modules {
        return Ok(Loaded::PrintModules);
    }

    let mut tree = keys.defaults.clone();
    let mut set_by = HashMap::new();

    let config_file = flags.config_file.clone().or_else(|| {
        env.iter()
            .find(|(name, value)| name == CONFIG_FILE_ENV && !value.is_empty())
            .map(|(_, value)| value.clone())
    });
    if let Some(path) = &config_file {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
            file: path.clone(),
            error,
        })?;
        merge_file(&mut tree, &keys.schema, &text, path)?;
    }

    for (name, value) in env {
        if !name.starts_with(ENV_PREFIX) || name == CONFIG_FILE_ENV {
            continue;
        }
        let Some(key) = keys.by_env(name) else {
            if is_service_link(name, value) {
                continue;
            }
            return Err(ConfigError::UnknownEnv(name.clone()));
        };
        let origin = format!("environment variable {name}");
        set_key(&mut tree, key, value, &origin, false)?;
        set_by.insert(key.path.clone(), origin);
    }

    let mut seen_lists = Vec::new();
    for flag in &flags.values {
        let origin = format!("flag -{}", flag.name);
        // A list flag given again adds to the list, as Pyroscope's -memberlist.join does.
        let append = seen_lists.contains(&flag.key.path);
        if flag.key.default.is_sequence() && !append {
            seen_lists.push(flag.key.path.clone());
        }
        set_key(&mut tree, flag.key, &flag.value, &origin, append)?;
        set_by.insert(flag.key.path.clone(), origin);
    }

    let config = deserialize(tree, &set_by, config_file.as_deref())?;
    config.validate()?;
    Ok(Loaded::Run(config))
}

/// Returns the `-help` text: usage, loading order, and every flag with its default.
pub fn help_text() -> String {
    help_text_for(&Keys::new())
}

/// One configuration key that a flag or variable can set: a leaf of the defaults tree.
#[derive(Debug)]
struct Key {
    /// Dotted YAML path, e.g. `server.http_listen_port`.
    path: String,
    /// The default value, which also gives the type of overrides.
    default: Value,
}

impl Key {
    /// Returns the flag name without dashes, e.g. `server.http-listen-port`.
    fn flag(&self) -> String {
        self.path.replace('_', "-")
    }

    /// Returns the environment variable, e.g. `EMBER_SERVER_HTTP_LISTEN_PORT`.
    fn env(&self) -> String {
        let name = self.path.to_ascii_uppercase().replace(['.', '-'], "_");
        format!("{ENV_PREFIX}{name}")
    }
}

/// The configuration's keys, derived from [`Config::default`] so they cannot drift from
/// the structs.
#[derive(Debug)]
struct Keys {
    /// `Config::default()` as a YAML tree: the base that sources are merged onto.
    defaults: Value,
    /// `defaults` with `overrides.*` standing for any tenant: what a file may contain.
    schema: Value,
    /// Every leaf of `defaults`, in struct order.
    list: Vec<Key>,
}

/// Stands for any key of a mapping in the schema tree.
const ANY_KEY: &str = "*";

impl Keys {
    fn new() -> Self {
        let defaults =
            serde_yaml::to_value(Config::default()).expect("default configuration serializes");
        let mut schema = defaults.clone();
        let mut tenant = Mapping::new();
        tenant.insert(
            ANY_KEY.into(),
            serde_yaml::to_value(Limits::default()).expect("default limits serialize"),
        );
        schema["overrides"] = Value::Mapping(tenant);

        let mut list = Vec::new();
        collect_leaves(&defaults, "", &mut list);
        // Scrape jobs are a list of mappings: file only, like `overrides`.
        list.retain(|key| key.path != "scrape_configs");
        Keys {
            defaults,
            schema,
            list,
        }
    }

    fn by_path(&self, path: &str) -> Option<&Key> {
        self.list.iter().find(|key| key.path == path)
    }

    fn by_env(&self, name: &str) -> Option<&Key> {
        self.list.iter().find(|key| key.env() == name)
    }
}

fn collect_leaves(value: &Value, prefix: &str, out: &mut Vec<Key>) {
    match value {
        Value::Mapping(map) => {
            for (name, child) in map {
                let Some(name) = name.as_str() else { continue };
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                collect_leaves(child, &path, out);
            }
        }
        leaf => out.push(Key {
            path: prefix.to_string(),
            default: leaf.clone(),
        }),
    }
}

/// Merges a YAML document onto `tree`, refusing keys that `schema` does not have.
fn merge_file(tree: &mut Value, schema: &Value, text: &str, file: &str) -> Result<(), ConfigError> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|error| ConfigError::ParseFile {
        file: file.to_string(),
        error,
    })?;
    doc.apply_merge().map_err(|error| ConfigError::ParseFile {
        file: file.to_string(),
        error,
    })?;
    match doc {
        Value::Null => Ok(()),
        Value::Mapping(map) => merge_mapping(tree, schema, map, "", file),
        _ => Err(ConfigError::NotAMapping {
            key: "the top level".into(),
            file: file.to_string(),
        }),
    }
}

fn merge_mapping(
    tree: &mut Value,
    schema: &Value,
    map: Mapping,
    prefix: &str,
    file: &str,
) -> Result<(), ConfigError> {
    for (name, value) in map {
        let name = match name {
            Value::String(name) => name,
            other => yaml_scalar_text(&other),
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(child_schema) = schema.get(&name).or_else(|| schema.get(ANY_KEY)) else {
            return Err(ConfigError::UnknownKey {
                key: path,
                file: file.to_string(),
            });
        };
        if value.is_null() {
            continue; // An empty key keeps its default.
        }
        if !tree.is_mapping() {
            *tree = Value::Mapping(Mapping::new());
        }
        let slot = tree
            .as_mapping_mut()
            .expect("just made a mapping")
            .entry(Value::String(name))
            .or_insert(Value::Null);
        match (child_schema.is_mapping(), value) {
            (true, Value::Mapping(child)) => {
                merge_mapping(slot, child_schema, child, &path, file)?;
            }
            (true, _) => {
                return Err(ConfigError::NotAMapping {
                    key: path,
                    file: file.to_string(),
                });
            }
            (false, value) => *slot = value,
        }
    }
    Ok(())
}

fn yaml_scalar_text(value: &Value) -> String {
    serde_yaml::to_string(value)
        .map(|text| text.trim_end().to_string())
        .unwrap_or_default()
}

/// Sets `key` in `tree` from a flag or variable value, typed by the key's default.
fn set_key(
    tree: &mut Value,
    key: &Key,
    raw: &str,
    origin: &str,
    append: bool,
) -> Result<(), ConfigError> {
    let bad = |expected| ConfigError::BadOverride {
        set_by: origin.to_string(),
        value: raw.to_string(),
        expected,
    };
    let value = match &key.default {
        Value::Sequence(default) => {
            let item_type = default.first();
            let mut items = Vec::new();
            if append && let Some(Value::Sequence(existing)) = lookup(tree, &key.path) {
                items.extend(existing.iter().cloned());
            }
            for item in split_list(raw) {
                items.push(typed_scalar(item_type, item).map_err(bad)?);
            }
            Value::Sequence(items)
        }
        default => typed_scalar(Some(default), raw).map_err(bad)?,
    };

    let mut node = tree;
    for segment in key.path.split('.') {
        if !node.is_mapping() {
            // The file gave a scalar where a section belongs; deserializing reports it.
            return Ok(());
        }
        node = node
            .as_mapping_mut()
            .expect("checked above")
            .entry(Value::String(segment.to_string()))
            .or_insert(Value::Null);
    }
    *node = value;
    Ok(())
}

fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(tree, |node, segment| node.get(segment))
}

/// Converts override text to a value of the same kind as `like`.
fn typed_scalar(like: Option<&Value>, raw: &str) -> Result<Value, &'static str> {
    let text = raw.trim();
    match like {
        Some(Value::Bool(_)) => parse_bool(text)
            .map(Value::Bool)
            .ok_or("expected true or false"),
        Some(Value::Number(number)) if number.is_f64() => text
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .map(Value::from)
            .ok_or("expected a number"),
        Some(Value::Number(number)) if number.is_u64() => text
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| "expected a non-negative integer"),
        Some(Value::Number(_)) => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "expected an integer"),
        Some(Value::String(_)) | None => Ok(Value::String(raw.to_string())),
        Some(_) => serde_yaml::from_str(raw).map_err(|_| "expected a YAML value"),
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Deserializes the merged tree once, naming the source of a bad value.
fn deserialize(
    tree: Value,
    set_by: &HashMap<String, String>,
    file: Option<&str>,
) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let key = error.path().to_string();
        let leaf = key.split('[').next().unwrap_or_default();
        let origin = set_by
            .get(leaf)
            .cloned()
            .or_else(|| file.map(str::to_string))
            .unwrap_or_else(|| "defaults".to_string());
        ConfigError::InvalidValue {
            key,
            set_by: origin,
            message: error.into_inner().to_string(),
        }
    })
}

/// A configuration flag found on the command line.
#[derive(Debug)]
struct FlagValue<'k> {
    /// The name as typed, without dashes.
    name: String,
    key: &'k Key,
    value: String,
}

/// The command line, parsed.
#[derive(Debug, Default)]
struct Flags<'k> {
    config_file: Option<String>,
    modules: bool,
    version: bool,
    values: Vec<FlagValue<'k>>,
}

/// Parses Go-style flags; `None` means help was asked for, which like Go's `flag`
/// package wins over anything after it.
fn parse_args<'k>(args: &[String], keys: &'k Keys) -> Result<Option<Flags<'k>>, ConfigError> {
    let mut flags = Flags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            return match args.next() {
                Some(extra) => Err(ConfigError::UnexpectedArgument(extra.clone())),
                None => Ok(Some(flags)),
            };
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(ConfigError::UnexpectedArgument(arg.clone()));
        };
        if body.is_empty() && arg == "-" {
            return Err(ConfigError::UnexpectedArgument(arg.clone()));
        }
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::BadFlagSyntax(arg.clone()));
        }
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let switch = |inline: Option<&str>| match inline {
            None => Ok(true),
            Some(text) => parse_bool(text).ok_or_else(|| ConfigError::BadOverride {
                set_by: format!("flag -{name}"),
                value: text.to_string(),
                expected: "expected true or false",
            }),
        };
        let mut value = |inline: Option<&str>| match inline {
            Some(text) => Ok(text.to_string()),
            None => args
                .next()
                .cloned()
                .ok_or_else(|| ConfigError::MissingFlagValue(name.to_string())),
        };
        match name {
            "h" | "help" => {
                if switch(inline)? {
                    return Ok(None);
                }
            }
            "modules" => flags.modules = switch(inline)?,
            "version" => flags.version = switch(inline)?,
            "config.file" => flags.config_file = Some(value(inline)?),
            _ => {
                let key = keys
                    .by_path(&name.replace('-', "_"))
                    .ok_or_else(|| ConfigError::UnknownFlag(name.to_string()))?;
                // A boolean never takes the next argument, as in Go: `-x false` is not
                // `-x=false`.
                let text = if key.default.is_bool() {
                    inline.unwrap_or("true").to_string()
                } else {
                    value(inline)?
                };
                flags.values.push(FlagValue {
                    name: name.to_string(),
                    key,
                    value: text,
                });
            }
        }
    }
    Ok(Some(flags))
}

fn help_text_for(keys: &Keys) -> String {
    let mut out = String::from(
        "Usage: ember [flags]\n\
         \n\
         Ember is a continuous profiling database that speaks the Grafana Pyroscope API.\n\
         \n\
         Configuration is applied in this order, each source overriding the ones before:\n\
         built-in defaults, the YAML file given by -config.file, EMBER_* environment\n\
         variables, then flags. Flags are written -name=value, -name value, --name=value or\n\
         --name value; a boolean flag alone means true; lists are comma separated. Every\n\
         flag has a YAML key (-server.http-listen-port is server: {http_listen_port: ..})\n\
         and an environment variable (EMBER_SERVER_HTTP_LISTEN_PORT). Per-tenant\n\
         overrides and the agent's scrape_configs are set in the file only.\n\
         \n",
    );
    let special = [
        (
            "config.file string",
            "YAML configuration file to load (env EMBER_CONFIG_FILE)",
        ),
        ("h, -help", "print this help and exit"),
        ("modules", "list the targets -target accepts and exit"),
        ("version", "print the version and exit"),
    ];
    for (flag, help) in special {
        let _ = writeln!(out, "  -{flag}\n        {help}");
    }
    for key in &keys.list {
        let kind = match &key.default {
            Value::Bool(_) => "",
            Value::Number(number) if number.is_f64() => " float",
            Value::Number(_) => " int",
            Value::Sequence(_) => " list",
            Value::String(text) if duration::parse(text).is_ok() => " duration",
            _ => " string",
        };
        let default = match &key.default {
            Value::String(text) => format!("{text:?}"),
            Value::Sequence(items) => {
                let items: Vec<String> = items.iter().map(yaml_scalar_text).collect();
                format!("{:?}", items.join(","))
            }
            other => yaml_scalar_text(other),
        };
        let _ = writeln!(
            out,
            "  -{}{kind}\n        {} (default {default}, env {})",
            key.flag(),
            describe(&key.path),
            key.env(),
        );
    }
    out
}

/// Returns the help line of a key; a test makes sure no key goes without one.
fn describe(path: &str) -> &'static str {
    match path {
        "target" => "comma-separated targets to run; -modules lists them",
        "server.http_listen_address" => "address to serve HTTP and gRPC on",
        "server.http_listen_port" => "port to serve HTTP and gRPC on; 0 picks a free port",
        "server.graceful_shutdown_timeout" => "time in-flight requests get after a shutdown signal",
        "server.max_request_body_bytes" => "largest request body accepted, before decompression",
        "memberlist.bind_addr" => "address to bind gossip to",
        "memberlist.bind_port" => "port for gossip between Ember processes; 0 picks a free port",
        "memberlist.join" => "comma-separated host:port of peers to join; repeatable",
        "memberlist.advertise_addr" => "IP other members reach this process at; empty: detected",
        "memberlist.node_name" => "unique name in the ring; empty: <hostname>-<http port>",
        "distributor.replication_factor" => {
            "ingesters that receive each series; 0: 1 with -target=all, 3 in a cluster"
        }
        "auth.multitenancy_enabled" => {
            "read the tenant from X-Scope-OrgID; when off every request is tenant anonymous"
        }
        "storage.backend" => "object store for blocks: filesystem, s3, gcs, azure or memory",
        "storage.filesystem.dir" => "directory for blocks with the filesystem backend",
        "storage.s3.endpoint" => "S3 server host:port or URL; empty for AWS by region",
        "storage.s3.bucket_name" => "S3 bucket for blocks",
        "storage.s3.region" => "S3 region; empty for us-east-1 or AWS_REGION",
        "storage.s3.access_key_id" => "S3 access key ID; empty for the AWS credential chain",
        "storage.s3.secret_access_key" => "S3 secret access key",
        "storage.s3.insecure" => "use plain HTTP for an endpoint without a scheme",
        "storage.s3.force_path_style" => "always put the bucket in the URL path, not the host",
        "storage.gcs.bucket_name" => "GCS bucket for blocks",
        "storage.gcs.service_account_path" => {
            "GCS service account JSON key file; empty for application default credentials"
        }
        "storage.azure.account_name" => "Azure storage account name",
        "storage.azure.account_key" => "Azure storage account key; empty for managed identity",
        "storage.azure.container_name" => "Azure container for blocks",
        "storage.azure.endpoint" => "Azure blob service URL; empty for the public cloud",
        "ingester.max_block_duration" => "longest time range of a head block before it is cut",
        "ingester.max_block_bytes" => "largest in-memory head block before it is cut",
        "ingester.flush_interval" => "how often heads are cut when due and cut heads uploaded",
        "ingester.wal_dir" => "write-ahead log directory; empty for <storage.filesystem.dir>/wal",
        "ingester.wal_fsync" => {
            "fsync the write-ahead log before acknowledging a push; false may lose acknowledged profiles if the machine crashes"
        }
        "limits.max_profile_size_bytes" => "largest profile as received; 0 disables",
        "limits.max_decompressed_profile_size_bytes" => {
            "largest profile after decompression; 0 disables"
        }
        "limits.max_samples_per_profile" => "most samples in one profile; 0 disables",
        "limits.max_stack_depth" => "deepest stack trace; 0 disables",
        "limits.max_label_names_per_series" => "most label names on a series; 0 disables",
        "limits.max_label_name_length" => "longest label name in bytes; 0 disables",
        "limits.max_label_value_length" => "longest label value in bytes; 0 disables",
        "limits.ingestion_rate_mb" => "sustained ingestion rate per tenant in MB/s; 0 disables",
        "limits.ingestion_burst_size_mb" => "ingestion burst per tenant in MB",
        "limits.max_active_series" => "most series per tenant in the head block; 0 disables",
        "limits.compactor_blocks_retention_period" => {
            "how long the compactor keeps a tenant's blocks; 0s keeps them forever"
        }
        "compactor.block_ranges" => "comma-separated ranges of compacted blocks, e.g. 1h,4h,24h",
        "compactor.compaction_interval" => "how often the compactor looks for blocks to merge",
        "compactor.settle_delay" => "time after a range ends before its blocks are merged",
        "compactor.deletion_delay" => "time marked blocks stay before they are deleted",
        "client.url" => {
            "distributor URL the agent pushes to; empty pushes in-process with -target=all"
        }
        "client.tenant_id" => "tenant the agent pushes as (X-Scope-OrgID); empty for none",
        "client.protocol" => "how the agent pushes: connect or grpc (plaintext)",
        "client.timeout" => "time one push may take",
        "client.batch_wait" => "time the agent waits to batch profiles into one push",
        "client.batch_max_profiles" => "most profiles in one push",
        "client.buffer_max_profiles" => {
            "most profiles the agent holds while distributors are down; the oldest are dropped"
        }
        "client.buffer_max_bytes" => "most bytes of profiles the agent holds",
        "client.min_backoff" => "first wait before retrying a failed push",
        "client.max_backoff" => "longest wait between push retries",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_objstore::Backend;
    use std::path::PathBuf;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn run(argv: &[&str], vars: &[(&str, &str)]) -> Config {
        match load(&args(argv), &env(vars)).unwrap() {
            Loaded::Run(config) => config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    fn fail(argv: &[&str], vars: &[(&str, &str)]) -> String {
        load(&args(argv), &env(vars)).unwrap_err().to_string()
    }

    /// Writes `yaml` to a temporary file and returns the `-config.file` flag for it.
    fn config_file(yaml: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.yaml");
        std::fs::write(&path, yaml).unwrap();
        let flag = format!("-config.file={}", path.display());
        (dir, flag)
    }

    #[test]
    fn defaults_match_the_design() {
        let config = run(&[], &[]);
        assert_eq!(config, Config::default());
        assert_eq!(config.target, vec![Target::All]);
        assert_eq!(config.server.http_listen_address, "0.0.0.0");
        assert_eq!(config.server.http_listen_port, 4040);
        assert_eq!(
            config.server.graceful_shutdown_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(config.server.max_request_body_bytes, 16 << 20);
        assert_eq!(config.memberlist.bind_port, 7946);
        assert!(config.memberlist.join.is_empty());
        assert_eq!(config.distributor.replication_factor, 0);
        assert_eq!(config.replication_factor(), 1, "-target=all keeps one copy");
        assert!(!config.clustered());
        assert!(config.ingester.wal_fsync);
        assert!(!config.auth.multitenancy_enabled);
        assert_eq!(config.storage.backend, Backend::Filesystem);
        assert_eq!(config.storage.filesystem.dir, PathBuf::from("./data"));
        assert_eq!(
            config.ingester.max_block_duration,
            Duration::from_secs(3600)
        );
        assert_eq!(config.ingester.max_block_bytes, 512 << 20);
        assert_eq!(config.ingester.flush_interval, Duration::from_secs(10));
        let limits = &config.limits;
        assert_eq!(limits.max_profile_size_bytes, 4 << 20);
        assert_eq!(limits.max_decompressed_profile_size_bytes, 64 << 20);
        assert_eq!(limits.max_samples_per_profile, 16_000);
        assert_eq!(limits.max_stack_depth, 1_000);
        assert_eq!(limits.max_label_names_per_series, 30);
        assert_eq!(limits.max_label_name_length, 1_024);
        assert_eq!(limits.max_label_value_length, 2_048);
        assert_eq!(limits.ingestion_rate_mb, 4.0);
        assert_eq!(limits.ingestion_burst_size_mb, 2.0);
        assert_eq!(limits.max_active_series, 5_000);
        assert!(config.overrides.is_empty());
    }

    #[test]
    fn unrelated_environment_is_ignored() {
        let config = run(&[], &[("PATH", "/bin"), ("HOME", "/root"), ("EMBERX", "1")]);
        assert_eq!(config, Config::default());
    }

    #[test]
    fn each_source_overrides_the_one_before() {
        let (_dir, file) = config_file(
            "server:\n  http_listen_port: 1111\n  http_listen_address: 127.0.0.1\n\
             memberlist:\n  bind_port: 2222\n\
             distributor:\n  replication_factor: 2\n",
        );
        let vars = [
            ("EMBER_SERVER_HTTP_LISTEN_PORT", "3333"),
            ("EMBER_MEMBERLIST_BIND_PORT", "4444"),
        ];
        let config = run(&[&file, "-server.http-listen-port=5555"], &vars);
        assert_eq!(config.server.http_listen_port, 5555, "flag beats env");
        assert_eq!(config.memberlist.bind_port, 4444, "env beats file");
        assert_eq!(
            config.distributor.replication_factor, 2,
            "file beats defaults"
        );
        assert_eq!(config.server.http_listen_address, "127.0.0.1");
        assert_eq!(
            config.server.max_request_body_bytes,
            16 << 20,
            "defaults remain"
        );

        let config = run(&[&file], &vars);
        assert_eq!(config.server.http_listen_port, 3333);
    }

    #[test]
    fn later_flags_win() {
        let config = run(
            &["-server.http-listen-port=1", "-server.http-listen-port=2"],
            &[],
        );
        assert_eq!(config.server.http_listen_port, 2);
    }

    #[test]
    fn every_flag_syntax_works() {
        for argv in [
            &["-target=querier"][..],
            &["--target=querier"],
            &["-target", "querier"],
            &["--target", "querier"],
        ] {
            assert_eq!(run(argv, &[]).target, vec![Target::Querier], "{argv:?}");
        }
        let config = run(
            &["--storage.s3.bucket-name", "b", "-storage.backend", "s3"],
            &[],
        );
        assert_eq!(config.storage.backend, Backend::S3);
        assert_eq!(config.storage.s3.bucket_name, "b");
        // Underscores are accepted too, matching the YAML key.
        let config = run(&["-server.http_listen_port=9"], &[]);
        assert_eq!(config.server.http_listen_port, 9);
    }

    #[test]
    fn flag_value_may_contain_equals_and_dashes() {
        let config = run(
            &[
                "-storage.s3.secret-access-key=a=b",
                "-storage.s3.endpoint",
                "-weird",
            ],
            &[],
        );
        assert_eq!(config.storage.s3.secret_access_key, "a=b");
        assert_eq!(config.storage.s3.endpoint, "-weird");
    }

    #[test]
    fn pyroscope_flags_map_to_keys() {
        let config = run(
            &[
                "-server.http-listen-address=127.0.0.1",
                "-server.http-listen-port=4100",
                "-memberlist.bind-port=7000",
                "-memberlist.join=a:1,b:2",
                "-distributor.replication-factor=3",
                "-auth.multitenancy-enabled",
                "-storage.backend=s3",
                "-storage.filesystem.dir=/var/lib/ember",
                "-storage.s3.endpoint=minio:9000",
                "-storage.s3.bucket-name=profiles",
                "-storage.s3.region=eu-west-1",
                "-storage.s3.access-key-id=id",
                "-storage.s3.secret-access-key=secret",
                "-storage.s3.insecure",
                "-storage.s3.force-path-style=true",
                "-ingester.wal-fsync=false",
            ],
            &[],
        );
        assert_eq!(config.server.http_listen_address, "127.0.0.1");
        assert_eq!(config.server.http_listen_port, 4100);
        assert_eq!(config.memberlist.bind_port, 7000);
        assert_eq!(config.memberlist.join, vec!["a:1", "b:2"]);
        assert_eq!(config.distributor.replication_factor, 3);
        assert!(config.auth.multitenancy_enabled);
        assert!(!config.ingester.wal_fsync);
        assert_eq!(config.storage.backend, Backend::S3);
        assert_eq!(
            config.storage.filesystem.dir,
            PathBuf::from("/var/lib/ember")
        );
        let s3 = &config.storage.s3;
        assert_eq!(s3.endpoint, "minio:9000");
        assert_eq!(s3.bucket_name, "profiles");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.access_key_id, "id");
        assert_eq!(s3.secret_access_key, "secret");
        assert!(s3.insecure);
        assert!(s3.force_path_style);
    }

    #[test]
    fn bool_flags() {
        assert!(
            run(&["-auth.multitenancy-enabled"], &[])
                .auth
                .multitenancy_enabled
        );
        assert!(
            run(&["--auth.multitenancy-enabled=true"], &[])
                .auth
                .multitenancy_enabled
        );
        assert!(
            run(&["-auth.multitenancy-enabled=1"], &[])
                .auth
                .multitenancy_enabled
        );
        let vars = [("EMBER_AUTH_MULTITENANCY_ENABLED", "true")];
        assert!(
            !run(&["-auth.multitenancy-enabled=false"], &vars)
                .auth
                .multitenancy_enabled
        );
        // A boolean never takes the next argument.
        let config = run(&["-auth.multitenancy-enabled", "-target=querier"], &[]);
        assert!(config.auth.multitenancy_enabled);
        assert_eq!(config.target, vec![Target::Querier]);
        assert_eq!(
            fail(&["-auth.multitenancy-enabled", "false"], &[]),
            "unexpected argument \"false\": ember takes only flags, e.g. -target=all"
        );
        assert_eq!(
            fail(&["-auth.multitenancy-enabled=yes"], &[]),
            "invalid value \"yes\" for flag -auth.multitenancy-enabled: expected true or false"
        );
        assert_eq!(
            fail(&[], &[("EMBER_AUTH_MULTITENANCY_ENABLED", "on")]),
            "invalid value \"on\" for environment variable EMBER_AUTH_MULTITENANCY_ENABLED: \
             expected true or false"
        );
    }

    #[test]
    fn comma_lists_from_every_source() {
        assert_eq!(
            run(&["-target=distributor,ingester"], &[]).target,
            vec![Target::Distributor, Target::Ingester]
        );
        let vars = [("EMBER_MEMBERLIST_JOIN", "a:1, b:2,")];
        assert_eq!(run(&[], &vars).memberlist.join, vec!["a:1", "b:2"]);
        let (_dir, file) = config_file("target: distributor, querier\n");
        assert_eq!(
            run(&[&file], &[]).target,
            vec![Target::Distributor, Target::Querier]
        );
        let (_dir, file) =
            config_file("target: [ingester, compactor]\nmemberlist:\n  join: [x:1]\n");
        let config = run(&[&file], &[]);
        assert_eq!(config.target, vec![Target::Ingester, Target::Compactor]);
        assert_eq!(config.memberlist.join, vec!["x:1"]);
        // A flag replaces the file's list, and a repeated flag adds to it.
        let config = run(
            &[&file, "-memberlist.join=y:2", "-memberlist.join", "z:3,w:4"],
            &[],
        );
        assert_eq!(config.memberlist.join, vec!["y:2", "z:3", "w:4"]);
        let config = run(&["-target=querier", "-target=ingester"], &[]);
        assert_eq!(config.target, vec![Target::Querier, Target::Ingester]);
    }

    #[test]
    fn bad_target_names_the_valid_ones() {
        let err = fail(&["-target=querier,ingestor"], &[]);
        assert_eq!(
            err,
            "invalid value for target (set by flag -target): unknown target \"ingestor\", \
             valid targets are all, agent, distributor, ingester, querier, compactor"
        );
        assert_eq!(
            fail(&["-target="], &[]),
            "invalid configuration: target must name at least one target"
        );
    }

    #[test]
    fn durations_in_every_source() {
        let (_dir, file) = config_file(
            "server:\n  graceful_shutdown_timeout: 500ms\ningester:\n  max_block_duration: 2h\n  flush_interval: 250ms\n",
        );
        let config = run(&[&file], &[]);
        assert_eq!(
            config.server.graceful_shutdown_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(
            config.ingester.max_block_duration,
            Duration::from_secs(7200)
        );
        assert_eq!(config.ingester.flush_interval, Duration::from_millis(250));
        let config = run(
            &["-ingester.max-block-duration=1h30m"],
            &[("EMBER_SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", "15s")],
        );
        assert_eq!(
            config.ingester.max_block_duration,
            Duration::from_secs(5400)
        );
        assert_eq!(
            config.server.graceful_shutdown_timeout,
            Duration::from_secs(15)
        );

        let err = fail(&["-server.graceful-shutdown-timeout=soon"], &[]);
        assert_eq!(
            err,
            "invalid value for server.graceful_shutdown_timeout \
             (set by flag -server.graceful-shutdown-timeout): invalid duration \"soon\": \
             expected a number followed by a unit (ns, us, ms, s, m, h, d, w), e.g. 15s"
        );
        let (_dir, file) = config_file("server:\n  graceful_shutdown_timeout: 30\n");
        let err = fail(&[&file], &[]);
        assert!(
            err.starts_with("invalid value for server.graceful_shutdown_timeout (set by "),
            "{err}"
        );
        assert!(
            err.ends_with(
                "invalid duration \"30\": missing unit (ns, us, ms, s, m, h, d, w) after 30"
            ),
            "{err}"
        );
    }

    #[test]
    fn duration_parse_and_format() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("15s", Duration::from_secs(15)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("1w", Duration::from_secs(7 * 86_400)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (" 1m ", Duration::from_secs(60)),
            ("1.000000001s", Duration::new(1, 1)),
        ];
        for (text, want) in cases {
            assert_eq!(duration::parse(text).unwrap(), want, "{text}");
        }
        for bad in ["", "s", "1", "1x", "-1s", "1.2.3s", "1 s", "h1"] {
            assert!(duration::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            duration::parse("5y").unwrap_err().to_string(),
            "invalid duration \"5y\": unknown unit \"y\", use ns, us, ms, s, m, h, d, w"
        );
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(48 * 3600), "48h"),
            (Duration::new(1, 1), "1s1ns"),
        ] {
            assert_eq!(duration::format(duration), text);
            assert_eq!(duration::parse(text).unwrap(), duration);
        }
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let (dir, file) = config_file("server:\n  http_lisen_port: 4040\n");
        let path = dir.path().join("ember.yaml");
        assert_eq!(
            fail(&[&file], &[]),
            format!(
                "unknown configuration key \"server.http_lisen_port\" in {}",
                path.display()
            )
        );
        let (_dir, file) = config_file("sever:\n  http_listen_port: 4040\n");
        assert!(fail(&[&file], &[]).starts_with("unknown configuration key \"sever\" in "));
        let (_dir, file) = config_file("storage:\n  s3:\n    bucket: x\n");
        assert!(
            fail(&[&file], &[]).starts_with("unknown configuration key \"storage.s3.bucket\" in ")
        );
        let (_dir, file) = config_file("overrides:\n  tenant-a:\n    max_series: 1\n");
        assert!(
            fail(&[&file], &[])
                .starts_with("unknown configuration key \"overrides.tenant-a.max_series\" in ")
        );
        assert_eq!(
            Config::from_yaml("limits:\n  max_stack: 1\n")
                .unwrap_err()
                .to_string(),
            "unknown configuration key \"limits.max_stack\" in configuration"
        );
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        let env = [
            ("EMBER_PORT", "tcp://10.0.0.1:4040"),
            ("EMBER_PORT_4040_TCP_ADDR", "10.0.0.1"),
            ("EMBER_QUERIER_SERVICE_HOST", "10.0.0.2"),
            ("EMBER_QUERIER_SERVICE_PORT_HTTP", "4040"),
            ("EMBER_SERVER_HTTP_LISTEN_PORT", "5050"),
        ];
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match load(&[], &env).unwrap() {
            Loaded::Run(c) => assert_eq!(c.server.http_listen_port, 5050),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_flags_and_variables_are_named() {
        assert_eq!(
            fail(&["-server.http-lisen-port=4040"], &[]),
            "unknown flag -server.http-lisen-port"
        );
        assert_eq!(fail(&["--nope"], &[]), "unknown flag -nope");
        assert_eq!(fail(&["-server"], &[]), "unknown flag -server");
        assert_eq!(fail(&["-overrides=x"], &[]), "unknown flag -overrides");
        assert_eq!(
            fail(&[], &[("EMBER_SERVER_HTTP_LISEN_PORT", "1")]),
            "unknown environment variable EMBER_SERVER_HTTP_LISEN_PORT"
        );
        assert_eq!(
            fail(&["serve"], &[]),
            "unexpected argument \"serve\": ember takes only flags, e.g. -target=all"
        );
        assert_eq!(
            fail(&["-"], &[]),
            "unexpected argument \"-\": ember takes only flags, e.g. -target=all"
        );
        assert_eq!(
            fail(&["---target=all"], &[]),
            "bad flag syntax \"---target=all\""
        );
        assert_eq!(fail(&["-=x"], &[]), "bad flag syntax \"-=x\"");
        assert_eq!(fail(&["-target"], &[]), "flag -target needs a value");
        assert_eq!(
            fail(&["--config.file"], &[]),
            "flag -config.file needs a value"
        );
        assert_eq!(
            run(&["-target=querier", "--"], &[]).target,
            vec![Target::Querier]
        );
        assert_eq!(
            fail(&["--", "x"], &[]),
            "unexpected argument \"x\": ember takes only flags, e.g. -target=all"
        );
    }

    #[test]
    fn typed_values_are_checked_at_their_source() {
        assert_eq!(
            fail(&["-server.http-listen-port=http"], &[]),
            "invalid value \"http\" for flag -server.http-listen-port: expected a non-negative integer"
        );
        assert_eq!(
            fail(&["-server.http-listen-port=70000"], &[]),
            "invalid value for server.http_listen_port (set by flag -server.http-listen-port): \
             invalid value: integer `70000`, expected u16"
        );
        assert_eq!(
            fail(&[], &[("EMBER_LIMITS_INGESTION_RATE_MB", "fast")]),
            "invalid value \"fast\" for environment variable EMBER_LIMITS_INGESTION_RATE_MB: \
             expected a number"
        );
        let config = run(
            &[
                "-limits.ingestion-rate-mb=8",
                "-limits.ingestion-burst-size-mb=0.5",
            ],
            &[],
        );
        assert_eq!(config.limits.ingestion_rate_mb, 8.0);
        assert_eq!(config.limits.ingestion_burst_size_mb, 0.5);
        // Strings stay strings: a numeric bucket name is not turned into a number.
        let config = run(
            &["-storage.s3.bucket-name=123", "-storage.s3.region=true"],
            &[],
        );
        assert_eq!(config.storage.s3.bucket_name, "123");
        assert_eq!(config.storage.s3.region, "true");
        let (dir, file) = config_file("server:\n  http_listen_port: high\n");
        assert_eq!(
            fail(&[&file], &[]),
            format!(
                "invalid value for server.http_listen_port (set by {}): invalid type: string \"high\", expected u16",
                dir.path().join("ember.yaml").display()
            )
        );
        let (_dir, file) = config_file("storage:\n  backend: s4\n");
        let err = fail(&[&file], &[]);
        assert!(err.contains("storage.backend"), "{err}");
        assert!(err.contains("unknown variant `s4`"), "{err}");
    }

    #[test]
    fn file_shape_errors() {
        let (_dir, file) = config_file("- a\n- b\n");
        assert!(
            fail(&[&file], &[]).starts_with("the top level in "),
            "{}",
            fail(&[&file], &[])
        );
        let (_dir, file) = config_file("server: 5\n");
        let err = fail(&[&file], &[]);
        assert!(
            err.starts_with("server in ") && err.ends_with("must be a mapping of keys to values"),
            "{err}"
        );
        let (_dir, file) = config_file("server: [\n");
        assert!(fail(&[&file], &[]).starts_with("cannot parse configuration file "));
        let err = fail(&["-config.file=/nonexistent/ember.yaml"], &[]);
        assert!(
            err.starts_with("cannot read configuration file /nonexistent/ember.yaml: "),
            "{err}"
        );
    }

    #[test]
    fn empty_file_and_empty_keys_keep_defaults() {
        let (_dir, file) = config_file("");
        assert_eq!(run(&[&file], &[]), Config::default());
        let (_dir, file) = config_file("# nothing\nserver:\nmemberlist:\n  join:\noverrides:\n");
        assert_eq!(run(&[&file], &[]), Config::default());
    }

    #[test]
    fn config_file_from_environment() {
        let (dir, _) = config_file("distributor:\n  replication_factor: 3\n");
        let path = dir.path().join("ember.yaml").display().to_string();
        let config = run(&[], &[(CONFIG_FILE_ENV, &path)]);
        assert_eq!(config.distributor.replication_factor, 3);
        // The flag names the file when both are given.
        let (_dir2, other) = config_file("distributor:\n  replication_factor: 2\n");
        let config = run(&[&other], &[(CONFIG_FILE_ENV, &path)]);
        assert_eq!(config.distributor.replication_factor, 2);
    }

    #[test]
    fn yaml_anchors_and_merge_keys() {
        let config = Config::from_yaml(
            "limits: &base\n  max_active_series: 10\noverrides:\n  t1:\n    <<: *base\n    max_stack_depth: 5\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_active_series, 10);
        assert_eq!(config.limits_for("t1").max_active_series, 10);
        assert_eq!(config.limits_for("t1").max_stack_depth, 5);
    }

    #[test]
    fn tenant_overrides() {
        let config = Config::from_yaml(
            "limits:\n  max_active_series: 100\n\
             overrides:\n  tenant-a:\n    max_active_series: 20000\n    ingestion_rate_mb: 16\n  \
             tenant.b: {}\n",
        )
        .unwrap();
        let a = config.limits_for("tenant-a");
        assert_eq!(a.max_active_series, 20_000);
        assert_eq!(a.ingestion_rate_mb, 16.0);
        assert_eq!(a.max_stack_depth, 1_000);
        assert_eq!(config.limits_for("tenant.b").max_active_series, 100);
        assert_eq!(config.limits_for("other").max_active_series, 100);

        let err = Config::from_yaml("overrides:\n  t:\n    ingestion_rate_mb: -1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: overrides.t.ingestion_rate_mb must be a non-negative number, got -1"
        );
    }

    #[test]
    fn limits_override_has_every_limits_field() {
        let full = serde_yaml::to_string(&Limits::default()).unwrap();
        let change: LimitsOverride = serde_yaml::from_str(&full).unwrap();
        assert_eq!(change.apply(&Limits::default()), Limits::default());
        let set = serde_yaml::to_value(&change).unwrap();
        assert_eq!(
            set.as_mapping().unwrap().len(),
            serde_yaml::to_value(Limits::default())
                .unwrap()
                .as_mapping()
                .unwrap()
                .len()
        );
    }

    #[test]
    fn ingester_requests_are_bounded_by_the_largest_profile_limit() {
        let config = Config::default();
        assert_eq!(config.max_ingester_request_bytes(), (65 * MIB) as usize);
        let config = Config::from_yaml(
            "overrides:\n  big:\n    max_decompressed_profile_size_bytes: 134217728\n",
        )
        .unwrap();
        assert_eq!(config.max_ingester_request_bytes(), (129 * MIB) as usize);
        let config =
            Config::from_yaml("overrides:\n  any:\n    max_decompressed_profile_size_bytes: 0\n")
                .unwrap();
        assert_eq!(config.max_ingester_request_bytes(), usize::MAX);
    }

    #[test]
    fn a_cluster_keeps_three_copies_by_default() {
        let config = Config::from_yaml("target: ingester\n").unwrap();
        assert!(config.clustered());
        assert_eq!(config.replication_factor(), 3);
        let config =
            Config::from_yaml("target: ingester\ndistributor:\n  replication_factor: 2\n").unwrap();
        assert_eq!(config.replication_factor(), 2);
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(
            fail(&["-storage.backend=s3"], &[]),
            "invalid configuration: storage.s3.bucket_name is required when storage.backend is s3"
        );
        assert_eq!(
            fail(&["-memberlist.advertise-addr=pod-1"], &[]),
            "invalid configuration: memberlist.advertise_addr \"pod-1\" is not an IP address"
        );
        assert_eq!(
            fail(&["-ingester.max-block-duration=0s"], &[]),
            "invalid configuration: ingester.max_block_duration must be greater than 0s"
        );
        assert_eq!(
            fail(&["-ingester.flush-interval=0s"], &[]),
            "invalid configuration: ingester.flush_interval must be greater than 0s"
        );
        assert_eq!(
            fail(&["-server.max-request-body-bytes=0"], &[]),
            "invalid configuration: server.max_request_body_bytes must be greater than 0"
        );
        let err = Config::from_yaml("memberlist:\n  join: ['a:1', '']\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: memberlist.join must not contain empty addresses"
        );
    }

    #[test]
    fn special_flags() {
        assert!(matches!(
            load(&args(&["-h"]), &[]).unwrap(),
            Loaded::PrintHelp(_)
        ));
        assert!(matches!(
            load(&args(&["--help"]), &[]).unwrap(),
            Loaded::PrintHelp(_)
        ));
        // Help wins over what follows it, as with Go's flag package.
        assert!(matches!(
            load(&args(&["-help", "-nope"]), &[]).unwrap(),
            Loaded::PrintHelp(_)
        ));
        assert!(matches!(
            load(&args(&["-version"]), &[]).unwrap(),
            Loaded::PrintVersion
        ));
        assert!(matches!(
            load(&args(&["-modules"]), &[]).unwrap(),
            Loaded::PrintModules
        ));
        assert!(matches!(
            load(&args(&["--modules=true"]), &[]).unwrap(),
            Loaded::PrintModules
        ));
        assert!(matches!(
            load(&args(&["-modules=false"]), &[]).unwrap(),
            Loaded::Run(_)
        ));
        // They do not read the file.
        assert!(matches!(
            load(&args(&["-config.file=/nonexistent", "-modules"]), &[]).unwrap(),
            Loaded::PrintModules
        ));
    }

    #[test]
    fn help_lists_every_flag_with_default() {
        let keys = Keys::new();
        let help = help_text();
        for key in &keys.list {
            assert!(
                help.contains(&format!("  -{}", key.flag())),
                "{} missing",
                key.path
            );
            assert!(help.contains(&key.env()), "{} missing", key.env());
        }
        assert!(help.contains("  -server.http-listen-port int\n"), "{help}");
        assert!(
            help.contains("(default 4040, env EMBER_SERVER_HTTP_LISTEN_PORT)"),
            "{help}"
        );
        assert!(
            help.contains("  -server.graceful-shutdown-timeout duration\n"),
            "{help}"
        );
        assert!(help.contains("(default \"30s\""), "{help}");
        assert!(help.contains("  -target list\n"), "{help}");
        assert!(
            help.contains("(default \"all\", env EMBER_TARGET)"),
            "{help}"
        );
        assert!(help.contains("  -auth.multitenancy-enabled\n"), "{help}");
        assert!(help.contains("(default false,"), "{help}");
        assert!(help.contains("  -storage.backend string\n"), "{help}");
        assert!(help.contains("(default \"filesystem\","), "{help}");
        assert!(
            help.contains("  -limits.ingestion-rate-mb float\n"),
            "{help}"
        );
        assert!(help.contains("  -config.file string\n"), "{help}");
    }

    #[test]
    fn every_key_has_a_description_and_a_unique_env_name() {
        let keys = Keys::new();
        assert_eq!(keys.list.len(), 57);
        let mut names = std::collections::HashSet::new();
        for key in &keys.list {
            assert!(
                !describe(&key.path).is_empty(),
                "{} has no description",
                key.path
            );
            assert!(names.insert(key.env()), "{} is ambiguous", key.env());
            assert_ne!(key.env(), CONFIG_FILE_ENV);
        }
    }

    #[test]
    fn every_key_is_settable_by_env_and_flag() {
        // Round trip: setting every key to its default through each source changes nothing.
        let keys = Keys::new();
        let text = |value: &Value| match value {
            Value::Sequence(items) => items
                .iter()
                .map(yaml_scalar_text)
                .collect::<Vec<_>>()
                .join(","),
            Value::String(text) => text.clone(),
            other => yaml_scalar_text(other),
        };
        let vars: Vec<(String, String)> = keys
            .list
            .iter()
            .map(|key| (key.env(), text(&key.default)))
            .collect();
        let flags: Vec<String> = keys
            .list
            .iter()
            .map(|key| format!("-{}={}", key.flag(), text(&key.default)))
            .collect();
        match load(&flags, &vars).unwrap() {
            Loaded::Run(config) => assert_eq!(config, Config::default()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = run(&["-storage.s3.secret-access-key=hunter2"], &[]);
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
