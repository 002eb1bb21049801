//! Ember's configuration: the sections of every component, composed into one
//! (DESIGN.md §1), and how it is loaded.
//!
//! Each component owns its section — its struct, defaults, `validate()` and the doc
//! comments its flag help comes from — next to its code: [`IngesterConfig`] in
//! `ember-ingester`, [`MemberlistConfig`] in `ember-ring`, and so on. This module
//! only composes them, adds the checks that span sections, and loads the whole
//! with [`ember_config::Loader`].
//!
//! Operators come from Grafana Pyroscope and Phlare and copy flags from their docs,
//! so the shape follows theirs: one YAML file whose keys mirror Go-style flags
//! (`-server.http-listen-port` is `server: {http_listen_port: ..}`) and an
//! `EMBER_*` environment variable per key (`EMBER_SERVER_HTTP_LISTEN_PORT`).
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
//! Per-tenant `overrides` are file-only: tenant names may hold the `.` and `-` that
//! flag and variable names use as separators. So are the agent's `scrape_configs`, a
//! list of jobs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ember_agent::{ClientConfig, ScrapeConfig};
use ember_compactor::CompactorConfig;
use ember_config::{Documented, Loader};
use ember_distributor::DistributorConfig;
use ember_ingester::IngesterConfig;
use ember_limits::{Limits, LimitsOverride, Overrides, TenantLimits};
use ember_objstore::StorageConfig;
use ember_ring::MemberlistConfig;
use serde::{Deserialize, Serialize};

pub use crate::logging::LogConfig;
pub use crate::selfprofile::SelfProfilingConfig;
pub use crate::server_config::{AuthConfig, IngesterClientConfig, ServerConfig};
use crate::target::{Target, deserialize_targets};

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "EMBER_";

/// Environment variable naming the configuration file when `-config.file` is absent.
pub const CONFIG_FILE_ENV: &str = "EMBER_CONFIG_FILE";

/// Errors from loading configuration; each names the key, flag, variable or file at
/// fault.
pub type ConfigError = ember_config::Error;

/// The whole configuration of an Ember process.
///
/// Build it with [`load`] (defaults, file, environment, flags) or [`Config::from_yaml`];
/// both call [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Comma-separated targets to run; -modules lists them.
    ///
    /// YAML takes a list or a comma string.
    #[serde(deserialize_with = "deserialize_targets")]
    pub target: Vec<Target>,
    /// The HTTP and gRPC listener.
    pub server: ServerConfig,
    /// Gossip membership for the ring.
    pub memberlist: MemberlistConfig,
    /// The distributor.
    pub distributor: DistributorConfig,
    /// Tenancy and authentication.
    pub auth: AuthConfig,
    /// How this process calls the ingesters of its cluster.
    pub ingester_client: IngesterClientConfig,
    /// Object storage for blocks.
    pub storage: StorageConfig,
    /// The ingester.
    pub ingester: IngesterConfig,
    /// The compactor.
    pub compactor: CompactorConfig,
    /// Default per-tenant limits.
    pub limits: Limits,
    /// Per-tenant changes to `limits`, keyed by tenant ID; file only.
    pub overrides: BTreeMap<String, LimitsOverride>,
    /// The agent's scrape jobs (DESIGN.md §5); file only.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Where the agent pushes.
    pub client: ClientConfig,
    /// Logging.
    pub log: LogConfig,
    /// Ember's profiles of itself.
    pub self_profiling: SelfProfilingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: vec![Target::All],
            server: ServerConfig::default(),
            memberlist: MemberlistConfig::default(),
            distributor: DistributorConfig::default(),
            auth: AuthConfig::default(),
            ingester_client: IngesterClientConfig::default(),
            storage: StorageConfig::default(),
            ingester: IngesterConfig::default(),
            compactor: CompactorConfig::default(),
            limits: Limits::default(),
            overrides: BTreeMap::new(),
            scrape_configs: Vec::new(),
            client: ClientConfig::default(),
            log: LogConfig::default(),
            self_profiling: SelfProfilingConfig::default(),
        }
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
        self.distributor.replication_factor(self.clustered())
    }

    /// Returns the per-tenant limits: `limits` with each tenant's `overrides`.
    pub fn tenant_limits(&self) -> Overrides {
        Overrides {
            defaults: self.limits.clone(),
            tenants: self.overrides.clone(),
        }
    }

    /// Returns the largest `ingester.v1` request an ingester accepts: the
    /// largest decompressed profile any tenant may push, plus 1 MiB for its
    /// series; unbounded when a tenant's limit is disabled (0).
    pub fn max_ingester_request_bytes(&self) -> usize {
        self.tenant_limits()
            .largest_decompressed_profile()
            .map_or(usize::MAX, |l| (l + MIB) as usize)
    }

    /// Returns the limits of `tenant`: `limits` with the tenant's `overrides` applied.
    pub fn limits_for(&self, tenant: &str) -> Limits {
        self.tenant_limits().limits(tenant)
    }

    /// Returns the defaults overlaid with a YAML document, validated: what [`load`] gives
    /// for a file with this content and no environment or flags.
    pub fn from_yaml(yaml: &str) -> Result<Config, ConfigError> {
        let config: Config = loader().from_yaml(yaml)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section, and the rules that span sections; the error names
    /// the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.target.is_empty() {
            return Err(ConfigError::invalid("target must name at least one target"));
        }
        self.server.validate()?;
        self.auth.validate(self.clustered())?;
        self.memberlist.validate()?;
        self.ingester.validate()?;
        self.validate_zone()?;
        self.compactor.validate()?;
        self.tenant_limits().validate()?;
        self.storage
            .validate()
            .map_err(|e| ConfigError::invalid(e.to_string()))?;
        ember_agent::config::validate(&self.scrape_configs, &self.client)?;
        self.self_profiling.validate()?;
        Ok(())
    }
}

impl Config {
    /// Checks the ingester's zone against the ring's limit and, with zone
    /// awareness, that a clustered ingester names one: an ingester without
    /// a zone would stand for a zone of its own.
    fn validate_zone(&self) -> Result<(), ConfigError> {
        let zone = &self.ingester.availability_zone;
        if zone.len() > ember_ring::MAX_ZONE_LEN {
            return Err(ConfigError::invalid(format!(
                "ingester.availability_zone {zone:?} is {} bytes long, at most {} fit in the ring's metadata",
                zone.len(),
                ember_ring::MAX_ZONE_LEN
            )));
        }
        if self.distributor.zone_awareness_enabled
            && zone.is_empty()
            && self.clustered()
            && self.target.contains(&Target::Ingester)
        {
            return Err(ConfigError::invalid(
                "ingester.availability_zone is empty but distributor.zone_awareness_enabled is true: give every ingester its zone (-ingester.availability-zone)",
            ));
        }
        Ok(())
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
    /// Prints the targets (`-modules`, see [`crate::modules`]) and exits.
    PrintModules,
    /// Prints this help text (`-help`, `-h`) and exits.
    PrintHelp(String),
    /// Prints the version (`-version`) and exits.
    PrintVersion,
}

/// Returns how Ember's configuration is loaded: its variables, its switches and
/// the sections only the file may set.
fn loader() -> Loader {
    Loader {
        env_prefix: ENV_PREFIX,
        config_file_env: CONFIG_FILE_ENV,
        usage: "Usage: ember [flags]\n\
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
        switches: &[
            ("modules", "list the targets -target accepts and exit"),
            ("version", "print the version and exit"),
        ],
        file_only: &["scrape_configs"],
        keyed_sections: vec![(
            "overrides",
            serde_yaml::to_value(Limits::default()).expect("default limits serialize"),
        )],
    }
}

/// Loads the configuration from defaults, the file, `env` and `args`, in that order of
/// precedence (see the module docs), and validates it.
///
/// `args` excludes the program name; `env` is typically `std::env::vars()`, of which
/// only `EMBER_*` variables are read. Flags are Go-style (`-name=value`, `-name value`,
/// `--name=value`, `--name value`; a boolean flag alone means true). `-config.file`,
/// `-modules`, `-help`/`-h` and `-version` are not configuration keys.
pub fn load(args: &[String], env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    match loader().load::<Config>(args, env)? {
        ember_config::Loaded::Run(config) => {
            config.validate()?;
            Ok(Loaded::Run(config))
        }
        ember_config::Loaded::Help(text) => Ok(Loaded::PrintHelp(text)),
        ember_config::Loaded::Switches(on) if on.contains(&"version") => Ok(Loaded::PrintVersion),
        ember_config::Loaded::Switches(_) => Ok(Loaded::PrintModules),
    }
}

/// Returns the `-help` text: usage, loading order, and every flag with its default.
pub fn help_text() -> String {
    loader().help::<Config>()
}

/// Returns this machine's name: the kernel's host name (in Kubernetes, the pod
/// name), else `$HOSTNAME`, else `ember`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (a truncated name is cut at the first NUL below).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let kernel = (rc == 0)
        .then(|| {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        })
        .filter(|h| !h.is_empty());
    kernel
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "ember".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_config::yaml_scalar_text;
    use ember_objstore::Backend;
    use serde_yaml::Value;
    use std::path::PathBuf;
    use std::time::Duration;

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
    fn zone_aware_ingesters_name_their_zone() {
        let zoned = run(
            &[
                "-target=ingester",
                "-distributor.zone-awareness-enabled",
                "-ingester.availability-zone=eu-west-1a",
            ],
            &[],
        );
        assert!(zoned.distributor.zone_awareness_enabled);
        assert_eq!(zoned.ingester.availability_zone, "eu-west-1a");
        assert_eq!(
            fail(
                &["-target=ingester", "-distributor.zone-awareness-enabled"],
                &[]
            ),
            "invalid configuration: ingester.availability_zone is empty but distributor.zone_awareness_enabled is true: give every ingester its zone (-ingester.availability-zone)"
        );
        // Distributors and queriers have no zone of their own to name, and a
        // single process has one member.
        run(
            &[
                "-target=distributor,querier",
                "-distributor.zone-awareness-enabled",
            ],
            &[],
        );
        run(&["-distributor.zone-awareness-enabled"], &[]);
        let long = format!("-ingester.availability-zone={}", "z".repeat(129));
        assert!(
            fail(&[&long], &[]).contains("at most 128 fit in the ring's metadata"),
            "{}",
            fail(&[&long], &[])
        );
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
        let keys = loader().keys::<Config>();
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
        let keys = loader().keys::<Config>();
        assert_eq!(keys.list.len(), 85);
        let mut names = std::collections::HashSet::new();
        for key in &keys.list {
            assert!(
                !Config::key_help(&key.path).unwrap_or_default().is_empty(),
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
        let keys = loader().keys::<Config>();
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
